import Foundation
import Testing
@testable import UVLoop

/// Servers that survive the internet (issue 13): the connection cap, the idle deadline, graceful
/// shutdown with a deadline, binding first and serving later, adopted listening sockets. The
/// crowds are real clients: Python's asyncio and socket modules in their own processes.
@Suite("Streams: admission control, idle deadlines, graceful shutdown")
struct ServerAdmissionTests {
    /// Runs a python3 program with `arguments`; its output (stdout) and status.
    static func python(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try runProgram(executableOnPath("python3")!, ["-c", program] + arguments)
    }

    static let hasPython = executableOnPath("python3") != nil

    /// 2,000 clients at once, each sends a line and reads its echo.
    static let crowdClient = """
    import asyncio, resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, count = int(sys.argv[1]), int(sys.argv[2])
    async def one(i):
        for attempt in range(50):
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            return "connect"
        try:
            w.write(b"client %d\\n" % i)
            line = await asyncio.wait_for(r.readline(), 30)
            return "ok" if line == b"client %d\\n" % i else "bad %r" % line
        except Exception as e:
            return type(e).__name__
        finally:
            w.close()
    async def main():
        results = await asyncio.gather(*(one(i) for i in range(count)))
        bad = [r for r in results if r != "ok"]
        print("served %d of %d %s" % (count - len(bad), count, sorted(set(bad))[:5]))
    asyncio.run(main())
    """

    @Test(.timeLimit(.minutes(2)), .enabled(if: hasPython))
    func twoThousandClientsAgainstACapOfAHundredAreAllServedNeverMoreThanAHundredAtOnce() async throws {
        let figures = try await asHeavyTest {
            try onFreshLoop { loop -> (String, Int, Int) in
                let open = Box(0)
                let peak = Box(0)
                let server = try await loop.startServer(host: "127.0.0.1", port: 0, backlog: 2048,
                                                        maxConnections: 100) { reader, writer in
                    let now = open.mutate { count -> Int in count += 1; return count }
                    peak.mutate { $0 = max($0, now) }
                    defer { open.mutate { $0 -= 1 } }
                    // Hold the slot a little, so that the cap is what limits.
                    await loopSleep(loop, 0.005)
                    guard let line = try? await reader.readLine() else { return }
                    try? writer.write(line)
                    try? await writer.drain()
                    writer.close()
                    try? await writer.waitClosed()
                }
                let port = server.port
                let output = try await loop.runInExecutor { try Self.python(Self.crowdClient, [String(port), "2000"]) }
                #expect(server.activeConnections <= 100)
                await server.shutdown(gracePeriod: 1)
                return (output.output, peak.value, server.activeConnections)
            }
        }
        #expect(figures.0.hasPrefix("served 2000 of 2000"), "\(figures.0)")
        #expect(figures.1 <= 100, "peak \(figures.1) connections at once")
        #expect(figures.1 >= 90, "the cap was never reached (peak \(figures.1)): the test proves nothing")
        #expect(figures.2 == 0)
    }

    /// A slowloris crowd (reconnecting when cut) and 25 real requests.
    static let slowlorisClient = """
    import asyncio, resource, sys, time
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, crowd = int(sys.argv[1]), int(sys.argv[2])
    stop = False
    async def slow():
        while not stop:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                while not stop:
                    w.write(b"G")                  # one header byte a second, never a full line
                    await w.drain()
                    await asyncio.sleep(1)
            except (OSError, ConnectionError):
                await asyncio.sleep(0.01)
    async def real(i):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /%d\\n" % i)
        line = await r.readline()
        w.close()
        return line == b"GET /%d\\n" % i
    async def main():
        global stop
        crowd_tasks = [asyncio.ensure_future(slow()) for _ in range(crowd)]
        await asyncio.sleep(1.0)                   # the crowd holds every slot
        start = time.monotonic()
        try:
            results = await asyncio.wait_for(asyncio.gather(*(real(i) for i in range(25))), 20)
            print("real %d of 25 in %.1f s" % (sum(results), time.monotonic() - start))
        except asyncio.TimeoutError:
            print("real requests timed out")
        stop = True
        for t in crowd_tasks: t.cancel()
        await asyncio.gather(*crowd_tasks, return_exceptions=True)
    asyncio.run(main())
    """

    @Test(.timeLimit(.minutes(1)), .enabled(if: hasPython))
    func aSlowlorisCrowdIsCutByTheIdleDeadlineAndRealRequestsAreServed() async throws {
        let (output, timedOut) = try await asHeavyTest {
            try onFreshLoop { loop -> (String, Int) in
                let timedOut = Box(0)
                let server = try await loop.startServer(host: "127.0.0.1", port: 0, backlog: 1024, maxConnections: 100,
                                                        idleTimeout: 0.4) { reader, writer in
                    do {
                        let line = try await reader.readLine()
                        try writer.write(line)
                        try await writer.drain()
                    } catch UVError.ETIMEDOUT {
                        timedOut.mutate { $0 += 1 }
                    } catch {}
                    writer.close()
                }
                let port = server.port
                let output = try await loop.runInExecutor { try Self.python(Self.slowlorisClient, [String(port), "300"]) }
                await server.shutdown(gracePeriod: 0)
                return (output.output, timedOut.value)
            }
        }
        #expect(output.hasPrefix("real 25 of 25"), "\(output)")
        #expect(timedOut > 100, "only \(timedOut) slow connections were cut by the idle deadline")
    }

    @Test(.timeLimit(.minutes(1))) func anIdleConnectionIsAbortedWithETIMEDOUTAndABusyOneIsNot() throws {
        try onFreshLoop { loop in
            let results = Box<[String]>([])
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, idleTimeout: 0.3) { reader, writer in
                let started = loop.time()
                do {
                    while true {
                        let chunk = try await reader.read(100)
                        if chunk.isEmpty { break }
                        try writer.write(chunk)
                    }
                    results.mutate { $0.append("eof") }
                } catch UVError.ETIMEDOUT {
                    let idle = loop.time() - started
                    results.mutate { $0.append(idle >= 0.29 && idle < 1.5 ? "timed out" : "timed out after \(idle) s") }
                    #expect(throws: UVError.ETIMEDOUT) { try writer.write([1]) }
                } catch {
                    results.mutate { $0.append("\(error)") }
                }
            }
            // The idle one says nothing: cut after about 0.3 s, reset (measured from the handler's start,
            // a little after the accept the deadline counts from).
            let (idleReader, idleWriter) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            // The busy one sends a byte every 0.1 s for a second: never idle for 0.3 s.
            let (busyReader, busyWriter) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            for _ in 0..<10 {
                try busyWriter.write([7])
                #expect(try await busyReader.read(1) == [7])
                await loopSleep(loop, 0.1)
            }
            await #expect(throws: UVError.ECONNRESET) { _ = try await idleReader.read() }
            #expect(results.value == ["timed out"])
            busyWriter.close()
            idleWriter.close()
            await server.shutdown(gracePeriod: 1)
            #expect(results.value.sorted() == ["eof", "timed out"])
        }
    }

    @Test(.timeLimit(.minutes(1))) func shutdownGivesHandlersTheGraceThenCancelsAndAbortsTheRest() throws {
        try onFreshLoop { loop in
            let events = Box<[String]>([])
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                guard let first = try? await reader.readLine() else { return }
                if first == Array("quick\n".utf8) {
                    await loopSleep(loop, 0.1)           // finishes inside the grace
                    try? writer.write("done\n")
                    writer.close()
                    events.mutate { $0.append("quick finished") }
                } else {
                    do {
                        _ = try await reader.read()       // waits for ever: outside the grace
                        events.mutate { $0.append("slow read returned") }
                    } catch {
                        events.mutate { $0.append("slow read threw") }
                    }
                    if Task.isCancelled { events.mutate { $0.append("slow cancelled") } }
                }
            }
            let port = server.port
            let (quickReader, quickWriter) = try await loop.openConnection(host: "127.0.0.1", port: port)
            let (slowReader, slowWriter) = try await loop.openConnection(host: "127.0.0.1", port: port)
            try quickWriter.write("quick\n")
            try slowWriter.write("slow\n")
            await loopSleep(loop, 0.05)
            #expect(server.activeConnections == 2)
            let start = loop.time()
            await server.shutdown(gracePeriod: 0.5)
            let took = loop.time() - start
            #expect(took >= 0.45 && took < 2, "shutdown took \(took) s for a grace of 0.5 s")
            #expect(events.value.contains("quick finished"))
            #expect(events.value.contains("slow read threw") || events.value.contains("slow read returned"), "\(events.value)")
            #expect(server.activeConnections == 0)
            #expect(!server.isServing)
            #expect(try await quickReader.read() == Array("done\n".utf8))
            // The slow client was cut: reset, or end of file.
            do {
                let rest = try await slowReader.read()
                #expect(rest.isEmpty)
            } catch {
                #expect(error as? UVError == .ECONNRESET, "\(error)")
            }
            await #expect(throws: UVError.ECONNREFUSED) { _ = try await loop.openConnection(host: "127.0.0.1", port: port) }
            try await server.waitClosed()
            quickWriter.close()
            slowWriter.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func shutdownReturnsAsSoonAsTheHandlersFinishAndAZeroGraceCutsAtOnce() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                _ = try? await reader.readLine()
                writer.close()
            }
            let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            try writer.write("bye\n")
            var start = loop.time()
            await server.shutdown(gracePeriod: 30)
            #expect(loop.time() - start < 5, "shutdown waited for its grace although every handler had finished")

            // Handlers that never finish, and a grace of 0, NaN or -1: cut at once.
            for grace in [0, Double.nan, -1] {
                let stuck = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, _ in
                    _ = try? await reader.read()
                    try? await Task.sleep(for: .seconds(60))   // cancelled by the cut
                }
                let connection = try await loop.openConnection(host: "127.0.0.1", port: stuck.port)
                await loopSleep(loop, 0.05)
                start = loop.time()
                await stuck.shutdown(gracePeriod: grace)
                #expect(loop.time() - start < 5, "grace \(grace)")
                try await stuck.waitClosed()   // the handler was cancelled, so it returned
                connection.1.close()
            }
            writer.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func aServerStartedWithoutServingQueuesClientsUntilStartServing() throws {
        try onFreshLoop { loop in
            let handled = Box(0)
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, limit: 1000,
                                                    startServing: false) { reader, writer in
                handled.mutate { $0 += 1 }
                #expect(reader.limit == 1000)
                if let line = try? await reader.readLine() { try? writer.write(line) }
                writer.close()
            }
            #expect(!server.isServing)
            // The port is bound and listening: the kernel completes the handshake, nobody accepts.
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            try writer.write("queued\n")
            await loopSleep(loop, 0.1)
            #expect(handled.value == 0)
            #expect(server.activeConnections == 0)
            try server.startServing()
            try server.startServing()   // idempotent
            #expect(server.isServing)
            #expect(try await reader.readLine() == Array("queued\n".utf8))
            #expect(handled.value == 1)
            server.close()
            #expect(throws: StreamError.closed) { try server.startServing() }
            writer.close()
            try await server.waitClosed()
        }
    }

    @Test(.timeLimit(.minutes(1))) func serveForeverEndsWithCancellationAndClosesTheServer() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, startServing: false, echo)
            let port = server.port
            let serving = loop.createTask { () async throws -> String in
                do {
                    try await server.serveForever()
                    return "returned"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            await loopSleep(loop, 0.05)
            #expect(server.isServing)
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port)
            try writer.write("ping\n")
            #expect(try await reader.readLine() == Array("ping\n".utf8))
            serving.cancel()
            #expect(try await serving.value == "cancelled")
            #expect(!server.isServing)
            await #expect(throws: UVError.ECONNREFUSED) { _ = try await loop.openConnection(host: "127.0.0.1", port: port) }
            writer.close()

            // Closed by someone else: serveForever returns.
            let other = try await loop.startServer(host: "127.0.0.1", port: 0, echo)
            let forever = loop.createTask { () async throws -> String in
                try await other.serveForever()
                return "returned"
            }
            await loopSleep(loop, 0.05)
            other.close()
            #expect(try await forever.value == "returned")
            await #expect(throws: StreamError.closed) { try await other.serveForever() }
        }
    }

    @Test(.timeLimit(.minutes(1))) func badServerOptionsAreRefused() throws {
        try onFreshLoop { loop in
            for (limit, cap, idle) in [(0, nil, nil), (1, 0, nil), (1, -5, nil), (1, nil, 0.0), (1, nil, -1.0),
                                       (1, nil, Double.nan)] as [(Int, Int?, Double?)] {
                await #expect(throws: EventLoopError.invalidArgument, "limit \(limit) cap \(String(describing: cap)) idle \(String(describing: idle))") {
                    _ = try await loop.startServer(host: "127.0.0.1", port: 0, limit: limit, maxConnections: cap,
                                                   idleTimeout: idle) { _, _ in }
                }
            }
            // +infinity means no deadline.
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, idleTimeout: .infinity) { _, _ in }
            server.close()
        }
    }

    // MARK: Adopted listening sockets

    /// A TCP socket bound to 127.0.0.1 (any port) by hand, listening when asked; its port.
    static func handMadeSocket(type: Int32 = Int32(SOCK_STREAM.rawValue), listening: Bool) -> (Int32, Int) {
        let fd = socket(AF_INET, type, 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(fd, $0, length)
                _ = getsockname(fd, $0, &length)
            }
        }
        if listening { _ = listen(fd, 16) }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    @Test(.timeLimit(.minutes(1))) func aListeningSocketMadeElsewhereIsAdopted() throws {
        let (fd, port) = Self.handMadeSocket(listening: true)
        try onFreshLoop { loop in
            let server = try await loop.startServer(socket: fd, maxConnections: 4, echo)
            #expect(server.port == port)
            #expect(server.addresses.first?.port == port)
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port)
            try writer.write("adopted\n")
            #expect(try await reader.readLine() == Array("adopted\n".utf8))
            writer.close()
            server.close()
            try await server.waitClosed()
        }
        // The server owned it: closed with the server.
        #expect(fcntl(fd, F_GETFD) == -1 || !isListening(fd))
    }

    private func isListening(_ fd: Int32) -> Bool {
        var value: Int32 = 0
        var size = socklen_t(4)
        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &size) == 0 && value == 1
    }

    @Test(.timeLimit(.minutes(1))) func aListeningUnixSocketMadeElsewhereIsAdopted() throws {
        let path = "/tmp/uvloop-adopt-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        #expect(listen(fd, 8) == 0)
        try onFreshLoop { loop in
            let server = try await loop.startServer(socket: fd, echo)
            #expect(server.port == 0)
            #expect(server.addresses.first?.description.contains(path) == true, "\(server.addresses)")
            let (reader, writer) = try await loop.openUnixConnection(path: path)
            try writer.write("over unix\n")
            #expect(try await reader.readLine() == Array("over unix\n".utf8))
            writer.close()
            server.close()
            try await server.waitClosed()
        }
        // An adopted socket's file is not the server's to remove.
        #expect(FileManager.default.fileExists(atPath: path))
    }

    @Test(.timeLimit(.minutes(1))) func adoptingWhatIsNotAListeningStreamSocketFailsAndLeavesTheDescriptor() throws {
        let (notListening, _) = Self.handMadeSocket(listening: false)
        let (udp, _) = Self.handMadeSocket(type: Int32(SOCK_DGRAM.rawValue), listening: false)
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let pipeEnd = fds[0]
        defer { for fd in [notListening, udp, fds[0], fds[1]] { close(fd) } }
        try onFreshLoop { loop in
            await #expect(throws: UVError.EINVAL) { _ = try await loop.startServer(socket: notListening, echo) }
            await #expect(throws: UVError.EINVAL) { _ = try await loop.startServer(socket: udp, echo) }
            await #expect(throws: UVError.ENOTSOCK) { _ = try await loop.startServer(socket: pipeEnd, echo) }
            await #expect(throws: UVError.EBADF) { _ = try await loop.startServer(socket: 1_000_000, echo) }
            await #expect(throws: EventLoopError.invalidArgument) { _ = try await loop.startServer(socket: notListening, limit: 0, echo) }
        }
        // Every descriptor is still the caller's.
        for fd in [notListening, udp, fds[0], fds[1]] { #expect(fcntl(fd, F_GETFD) >= 0, "fd \(fd) was closed") }
    }

    // MARK: Descriptor exhaustion

    /// Opens `count` connections when told to (a line on stdin), sends one byte on each and
    /// expects it back within 20 s.
    static let patientClients = """
    import socket, sys, time
    port, count = int(sys.argv[1]), int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for s in sockets: s.sendall(b"x")
    print("connected", flush=True)
    ok = 0
    for s in sockets:
        s.settimeout(20)
        try:
            if s.recv(1) == b"x": ok += 1
        except OSError:
            pass
    print("echoed %d of %d" % (ok, count), flush=True)
    """

    @Test(.timeLimit(.minutes(1)), .enabled(if: hasPython))
    func outOfDescriptorsAcceptBacksOffReportsAtMostOnceASecondAndServesTheWaitingClientsLater() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            alarm(30)   // a spinning accept would never let the loop's timers run: fail, never hang
            let loop = try EventLoop()
            try loop.runUntilComplete {
                let reports = Box<[String]>([])
                loop.setExceptionHandler { _, context in reports.mutate { $0.append(context.message) } }
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                    if let byte = try? await reader.read(1) { try? writer.write(byte) }
                    try? await writer.drain()
                    writer.close()
                }
                let python = Process()
                python.executableURL = URL(fileURLWithPath: executableOnPath("python3")!)
                python.arguments = ["-c", ServerAdmissionTests.patientClients, String(server.port), "20"]
                let input = Pipe(), output = Pipe()
                python.standardInput = input
                python.standardOutput = output
                try python.run()
                // Blocking reads of the client's progress (this process is the test's own): the
                // window out of descriptors starts once all 20 wait in the backlog, however slowly
                // a loaded machine started python.
                func readLine() -> String {
                    var line: [UInt8] = []
                    var byte: UInt8 = 0
                    while read(output.fileHandleForReading.fileDescriptor, &byte, 1) == 1, byte != 10 { line.append(byte) }
                    return String(decoding: line, as: UTF8.self)
                }
                if readLine() != "ready" { print("the client did not start") }
                let saved = leaveFreeDescriptors(0)
                input.fileHandleForWriting.write(Data("go\n".utf8))
                if readLine() != "connected" { print("the client did not connect") }
                // 1.5 s out of descriptors: CPU time must stay low (no spinning on accept).
                var before = rusage(), after = rusage()
                getrusage(RUSAGE_SELF.rawValue, &before)
                await loopSleep(loop, 1.5)
                getrusage(RUSAGE_SELF.rawValue, &after)
                let cpu = Double(after.ru_utime.tv_sec - before.ru_utime.tv_sec + after.ru_stime.tv_sec - before.ru_stime.tv_sec)
                    + Double(after.ru_utime.tv_usec - before.ru_utime.tv_usec + after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1e6
                restoreDescriptors(saved)
                if cpu > 0.5 { print("accept spun: \(cpu) s of CPU in 1.5 s") }
                let seen = reports.value
                if seen.isEmpty { print("no report reached the exception handler") }
                if seen.count > 3 { print("\(seen.count) reports in 1.5 s: not rate-limited") }
                if let first = seen.first, !first.contains("accept") { print("report: \(first)") }
                if !server.isServing { print("the listener was closed") }
                // Descriptors are back: the clients that waited in the backlog are served.
                let text = try await loop.runInExecutor { () -> String in
                    python.waitUntilExit()
                    return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                }
                if !text.contains("echoed 20 of 20") { print("clients: \(text)") }
                server.close()
                try await server.waitClosed()
            }
            try loop.close()
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }
}
