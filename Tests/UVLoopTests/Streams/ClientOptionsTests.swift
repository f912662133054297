import Foundation
import Testing
@testable import UVLoop

// Client-side stream features of issue 13 (part 2a): Happy Eyeballs, connectTimeout,
// localAddress and limit of openConnection; openConnection(socket:); and the writer's
// fileDescriptor, setNoDelay, setKeepAlive and sendfile. Real sockets on 127.0.0.1 and ::1, real
// peers (python3's socket module where the peer must not be UVLoop), no mocks.
//
// Tests that run for long (a Python peer, megabytes through small buffers) run their loop off the
// cooperative pool; an expectation checked on such a thread is not attributed to the test, so they
// hand their findings back and check them in the test itself.

// MARK: - Plain sockets

private let streamType = Int32(SOCK_STREAM.rawValue)
private let datagramType = Int32(SOCK_DGRAM.rawValue)
private let seqpacketType = Int32(SOCK_SEQPACKET.rawValue)
private let closeOnExecFlag = Int32(SOCK_CLOEXEC.rawValue)
private let nonBlockingFlag = Int32(SOCK_NONBLOCK.rawValue)
private let tcpLevel = Int32(IPPROTO_TCP)
/// Never open: above any descriptor limit (a number just closed may be reused at once by a test
/// running beside this one).
private let neverOpenDescriptor: Int32 = 1_000_000
private let notASocketError = UVError(code: -ENOTSOCK)
private let familyNotSupportedError = UVError(code: -EAFNOSUPPORT)
private let pythonPath = executableOnPath("python3")
private let pythonAvailable = pythonPath != nil
private let megabyte = 1 << 20

private func loopbackAddress(_ family: Int32, port: Int = 0) -> UVSocketAddress {
    UVSocketAddress(numericHost: family == AF_INET6 ? "::1" : "127.0.0.1", port: port)!
}

private func loopbackSocketAddress(_ family: Int32, port: Int) -> SocketAddress {
    SocketAddress(loopbackAddress(family, port: port))
}

private func openSocket(_ family: Int32, _ type: Int32 = streamType) -> Int32 {
    socket(family, type | closeOnExecFlag, 0)
}

private func bindSocket(_ fd: Int32, to address: UVSocketAddress) -> Bool {
    address.withSockaddr { Glibc.bind(fd, $0, socklen_t(address.length)) } == 0
}

/// connect(2): 0, or -1 with errno set.
private func connectSocket(_ fd: Int32, to address: UVSocketAddress) -> Int32 {
    address.withSockaddr { Glibc.connect(fd, $0, socklen_t(address.length)) }
}

private func localPort(_ fd: Int32) -> Int { UVSocketAddress(boundTo: fd)?.port ?? -1 }

private func intOption(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32 {
    var value: Int32 = -1
    var length = socklen_t(MemoryLayout<Int32>.size)
    return getsockopt(fd, level, name, &value, &length) == 0 ? value : -1
}

@discardableResult
private func setIntOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) -> Bool {
    var value = value
    return setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0
}

private func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) >= 0 }
private func isNonBlocking(_ fd: Int32) -> Bool { fcntl(fd, F_GETFL) & O_NONBLOCK != 0 }
private func isCloseOnExec(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) & FD_CLOEXEC != 0 }

/// Whether ::1 can be bound here (some containers have no IPv6 loopback).
private let loopbackIPv6Available: Bool = {
    let fd = openSocket(AF_INET6)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return bindSocket(fd, to: loopbackAddress(AF_INET6))
}()

/// Whether 127.0.0.2 can be bound (Linux routes all of 127/8 to the loopback).
private let secondLoopbackAvailable: Bool = {
    let fd = openSocket(AF_INET)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return bindSocket(fd, to: UVSocketAddress(numericHost: "127.0.0.2", port: 0)!)
}()

/// Whether this kernel makes AF_VSOCK stream sockets (a stream family UVLoop does not take).
private let vsockAvailable: Bool = {
    let fd = socket(40 /* AF_VSOCK */, streamType | closeOnExecFlag, 0)
    guard fd >= 0 else { return false }
    close(fd)
    return true
}()

/// A loopback port that refuses connections for as long as the returned socket is open: bound
/// (so nothing else can take the port) and not listening (so a SYN gets a reset).
private func refusingPort(_ family: Int32) throws -> (fd: Int32, port: Int) {
    let fd = openSocket(family)
    guard fd >= 0, bindSocket(fd, to: loopbackAddress(family)) else {
        if fd >= 0 { close(fd) }
        throw SetupFailure("cannot bind a loopback socket of family \(family)")
    }
    return (fd, localPort(fd))
}

/// A listening socket made by hand, bound to 127.0.0.1, with a small receive buffer (inherited
/// by the connections it accepts), so that a peer that does not read stops a sender quickly.
private func smallBufferListener(backlog: Int32 = 16) throws -> (fd: Int32, port: Int) {
    let fd = openSocket(AF_INET)
    guard fd >= 0, setIntOption(fd, SOL_SOCKET, SO_RCVBUF, 16 * 1024),
          bindSocket(fd, to: loopbackAddress(AF_INET)), listen(fd, backlog) == 0 else {
        if fd >= 0 { close(fd) }
        throw SetupFailure("cannot make a listening socket")
    }
    return (fd, localPort(fd))
}

private func unixSocketPair(_ type: Int32 = streamType) throws -> (Int32, Int32) {
    var fds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, type | closeOnExecFlag, 0, &fds) == 0 else {
        throw SetupFailure("socketpair failed: errno \(errno)")
    }
    return (fds[0], fds[1])
}

private func plainPipe() throws -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw SetupFailure("pipe failed: errno \(errno)") }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (fds[0], fds[1])
}

/// Writes all of `bytes` to a blocking descriptor.
private func writePlain(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
        if written <= 0 { return false }
        offset += written
    }
    return true
}

/// Reads from `fd` until `count` bytes came or end of file; gives up after `timeout` seconds with
/// nothing new. Returns the bytes and whether end of file was seen.
private func readPlain(_ fd: Int32, upTo count: Int, timeout: Double = 5) -> (bytes: [UInt8], eof: Bool) {
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while result.count < count {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, Int32(timeout * 1000)) == 1 else { return (result, false) }
        let got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, min($0.count, count - result.count)) }
        if got == 0 { return (result, true) }
        if got < 0 { return (result, false) }
        result += buffer[..<got]
    }
    return (result, false)
}

/// A loopback address nothing answers: a listener with backlog 0 whose accept queue is full
/// (one plain socket connects to it and is never accepted), so Linux drops further SYNs and a
/// connect to it hangs for the SYN retry time (minutes). Checked with a probe. (A second filler,
/// left in SYN_SENT, changed state under the tests' count of connecting sockets: a flake.)
private struct BlackHole: Sendable {
    let family: Int32
    let port: Int
    private let descriptors: [Int32]

    init(family: Int32) throws {
        self.family = family
        let listener = openSocket(family)
        guard listener >= 0 else { throw SetupFailure("no socket of family \(family)") }
        var descriptors = [listener]
        guard bindSocket(listener, to: loopbackAddress(family)), listen(listener, 0) == 0 else {
            Glibc.close(listener)
            throw SetupFailure("cannot listen on the loopback of family \(family)")
        }
        port = localPort(listener)
        let filler = openSocket(family, streamType | nonBlockingFlag)
        _ = connectSocket(filler, to: loopbackAddress(family, port: port))
        descriptors.append(filler)
        // Established (in the accept queue) before the probe: only then is the queue full.
        var established = pollfd(fd: filler, events: Int16(POLLOUT), revents: 0)
        guard poll(&established, 1, 2000) == 1 else {
            descriptors.forEach { Glibc.close($0) }
            throw SetupFailure("the filler did not connect to the listener")
        }
        self.descriptors = descriptors
        // A probe must not connect: its SYN is dropped.
        let probe = openSocket(family, streamType | nonBlockingFlag)
        defer { Glibc.close(probe) }
        _ = connectSocket(probe, to: loopbackAddress(family, port: port))
        var entry = pollfd(fd: probe, events: Int16(POLLOUT), revents: 0)
        if poll(&entry, 1, 150) != 0 {
            descriptors.forEach { Glibc.close($0) }
            throw SetupFailure("the full accept queue did not drop the probe's SYN: no black hole here")
        }
    }

    var address: UVSocketAddress { loopbackAddress(family, port: port) }
    var socketAddress: SocketAddress { SocketAddress(address) }

    /// Sockets of this process's network namespace still trying to connect here (SYN_SENT), from
    /// /proc/net/tcp(6): every attempt not closed yet (the filler is established).
    var connectingSockets: Int {
        let table = family == AF_INET6 ? "/proc/net/tcp6" : "/proc/net/tcp"
        let host = family == AF_INET6 ? "00000000000000000000000001000000" : "0100007F"
        let remote = host + ":" + String(format: "%04X", port)
        guard let text = wholeFile(table) else { return -1 }
        return text.split(separator: "\n").dropFirst().filter { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return fields.count > 3 && fields[2] == remote && fields[3] == "02"
        }.count
    }

    func close() { descriptors.forEach { Glibc.close($0) } }
}

/// The whole text of a file, read to its end (Foundation reads a /proc file's first page only: it
/// reports a size of 0).
private func wholeFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var content: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
        if got < 0 { return nil }
        if got == 0 { return String(decoding: content, as: UTF8.self) }
        content += buffer[..<got]
    }
}

private struct SetupFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Waits on the loop's timers (up to 2 s) for `condition` to hold.
private func eventually(_ loop: EventLoop, _ condition: () -> Bool) async -> Bool {
    for _ in 0..<200 {
        if condition() { return true }
        await loopSleep(loop, 0.01)
    }
    return condition()
}

private func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = start.duration(to: .now)
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
}

/// The contract's error for a bad limit, delay, timeout, offset or count (the `word` names the
/// argument for the reader of the test; `EventLoopError` carries no message).
private func isInvalidArgument(_ error: (any Error)?, mentioning word: String) -> Bool {
    error as? EventLoopError == .invalidArgument
}

/// A TCP server on `host` that counts its connections and the peers it saw, greets each with
/// "hi\n", then echoes until end of file.
private func startCountingServer(_ loop: EventLoop, host: String) async throws
    -> (server: Server, accepted: Box<Int>, peers: Box<[SocketAddress]>) {
    let accepted = Box(0)
    let peers = Box<[SocketAddress]>([])
    let server = try await loop.startServer(host: host, port: 0) { reader, writer in
        accepted.mutate { $0 += 1 }
        if let peer = writer.peerAddress { peers.mutate { $0.append(peer) } }
        try? writer.write("hi\n")
        await echo(reader, writer)
    }
    return (server, accepted, peers)
}

// MARK: - Bytes and files

/// 8 MiB of pseudo-random bytes (xorshift64*, fixed seed): loss, reordering or duplication shows.
private let fileBytes: [UInt8] = {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    var words = [UInt64](repeating: 0, count: (8 * megabyte) / 8)
    for index in words.indices {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        words[index] = state &* 0x2545_F491_4F6C_DD1D
    }
    return words.withUnsafeBytes { Array($0) }
}()

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    guard !a.isEmpty else { return true }
    return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, a.count) == 0 } }
}

/// Records an issue unless `received` is `expected`, naming the sizes and where they first differ
/// (an `#expect` on the arrays would print the megabytes).
private func expectSameBytes(_ received: [UInt8], _ expected: [UInt8], _ what: String = "",
                             sourceLocation: SourceLocation = #_sourceLocation) {
    if !sameBytes(received, expected) {
        Issue.record("\(what)\(difference(received, expected))", sourceLocation: sourceLocation)
    }
}

/// For a failed comparison: the sizes and where they first differ (never the megabytes).
private func difference(_ received: [UInt8], _ expected: [UInt8]) -> String {
    let first = zip(received, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        ?? min(received.count, expected.count)
    return "received \(received.count) bytes, expected \(expected.count); first difference at byte \(first)"
}

/// A regular file for sendfile, unlinked at once: only its descriptor (read-only) keeps it.
private struct SourceFile: Sendable {
    let fd: Int32

    /// A file holding `content`.
    init(_ content: [UInt8]) throws {
        let (writable, readable) = try SourceFile.create()
        defer { Glibc.close(writable) }
        guard writePlain(writable, content) else {
            Glibc.close(readable)
            throw SetupFailure("cannot write the test file")
        }
        fd = readable
    }

    /// A sparse file of `size` zero bytes (no disk used): more than any socket buffers hold.
    init(sparseSize size: Int) throws {
        let (writable, readable) = try SourceFile.create()
        defer { Glibc.close(writable) }
        guard ftruncate(writable, off_t(size)) == 0 else {
            Glibc.close(readable)
            throw SetupFailure("cannot size the test file")
        }
        fd = readable
    }

    private static func create() throws -> (writable: Int32, readable: Int32) {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("uvloop-sendfile-\(getpid())-\(UInt64.random(in: 0...UInt64.max))").path
        let writable = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard writable >= 0 else { throw SetupFailure("cannot create \(path): errno \(errno)") }
        let readable = open(path, O_RDONLY | O_CLOEXEC)
        unlink(path)
        guard readable >= 0 else {
            Glibc.close(writable)
            throw SetupFailure("cannot open \(path): errno \(errno)")
        }
        return (writable, readable)
    }

    /// The file's own offset (lseek(fd, 0, SEEK_CUR)).
    var offset: Int64 { Int64(lseek(fd, 0, SEEK_CUR)) }

    func close() { Glibc.close(fd) }
}

/// Reads `reader` to end of file in chunks; what came before an error, if one ends it.
private func readToEnd(_ reader: StreamReader) async -> [UInt8] {
    var all: [UInt8] = []
    while let chunk = try? await reader.read(megabyte), !chunk.isEmpty { all += chunk }
    return all
}

/// A server that reads each connection to its end (after `delay` seconds without reading), then
/// answers with the byte count and a newline; what each connection sent arrives on `received`.
private func startCollector(_ loop: EventLoop, socket: Int32? = nil, limit: Int = 65_536, delay: Double = 0)
    async throws -> (server: Server, received: AsyncStream<[UInt8]>) {
    let (received, continuation) = AsyncStream.makeStream(of: [UInt8].self)
    let handler: @Sendable (StreamReader, StreamWriter) async -> Void = { reader, writer in
        if delay > 0 { await loopSleep(loop, delay) }
        let all = await readToEnd(reader)
        continuation.yield(all)
        try? writer.write("\(all.count)\n")
        writer.close()
    }
    let server = if let socket {
        try await loop.startServer(socket: socket, limit: limit, handler)
    } else {
        try await loop.startServer(host: "127.0.0.1", port: 0, limit: limit, handler)
    }
    return (server, received)
}

private func firstDelivery(_ stream: AsyncStream<[UInt8]>) async -> [UInt8] {
    var iterator = stream.makeAsyncIterator()
    return await iterator.next() ?? []
}

private func runPython(_ script: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    try runProgram(pythonPath!, ["-c", script] + arguments)
}

// MARK: - Happy Eyeballs and connectTimeout

@Suite("Streams: openConnection races its addresses (Happy Eyeballs)")
struct ClientOptionsHappyEyeballsTests {
    @Test(.timeLimit(.minutes(1))) func aSilentFirstAddressIsOvertakenByTheNextOneAfterTheDelay() throws {
        try onFreshLoop { loop in
            let hole = try BlackHole(family: AF_INET)
            defer { hole.close() }
            let (server, accepted, _) = try await startCountingServer(loop, host: "127.0.0.1")
            defer { server.close() }
            let baseline = hole.connectingSockets
            let start = ContinuousClock.now
            // connectTimeout: without the stagger this fails in 10 s instead of hanging for minutes.
            let (reader, writer) = try await loop.openConnection(
                addresses: [hole.address, loopbackAddress(AF_INET, port: server.port)],
                operation: "connect(test)", happyEyeballsDelay: 0.05, connectTimeout: 10)
            let elapsed = seconds(since: start)
            // After the delay (not at once, not after the SYN retries).
            #expect(elapsed >= 0.03 && elapsed < 2, "connected after \(elapsed) s")
            #expect(writer.peerAddress == loopbackSocketAddress(AF_INET, port: server.port))
            #expect(try await reader.readLine() == bytes("hi\n"))
            try writer.write("still connected\n")
            #expect(try await reader.readLine() == bytes("still connected\n"))
            #expect(accepted.value == 1)
            // The losing attempt was closed with the race: no socket of ours still sends SYNs there.
            #expect(await eventually(loop) { hole.connectingSockets == baseline },
                    "\(hole.connectingSockets) connecting, \(baseline) before")
            writer.close()
            try await writer.waitClosed()
        }
    }

    @Test(.timeLimit(.minutes(1))) func oneAddressAfterAnotherTimesOutOnTheSilentOne() async throws {
        struct Findings: Sendable {
            var error: (any Error)?
            var elapsed = 0.0
            var attemptsWhileWaiting = 0
            var acceptedByTheSecond = -1
            var attemptClosed = false
            var holeAddress = ""
            var publicError: (any Error)?
            var publicPort = 0
        }
        let findings = try await offTheCooperativePool {
            try onFreshLoop { loop -> Findings in
                var findings = Findings()
                let hole = try BlackHole(family: AF_INET)
                defer { hole.close() }
                findings.holeAddress = hole.socketAddress.description
                let (server, accepted, _) = try await startCountingServer(loop, host: "127.0.0.1")
                defer { server.close() }
                let working = loopbackAddress(AF_INET, port: server.port)
                let hidden = hole.address
                let baseline = hole.connectingSockets
                let start = ContinuousClock.now
                let race = loop.createTask {
                    try await loop.openConnection(addresses: [hidden, working], operation: "connect(sequential test)",
                                                  happyEyeballsDelay: nil, connectTimeout: 0.3)
                }
                // The attempt shows in SYN_SENT while it waits (looked for until just before its
                // 0.3 s deadline: on a loaded machine it may start late; a fixed 0.1 s flaked).
                for _ in 0..<28 where findings.attemptsWhileWaiting == 0 {
                    await loopSleep(loop, 0.01)
                    findings.attemptsWhileWaiting = hole.connectingSockets - baseline
                }
                if case .failure(let error) = await race.result { findings.error = error }
                findings.elapsed = seconds(since: start)
                findings.attemptClosed = await eventually(loop) { hole.connectingSockets == baseline }
                // Had the second address been tried, it would have connected at once.
                await loopSleep(loop, 0.05)
                findings.acceptedByTheSecond = accepted.value
                // The public form names the host and port it was asked for.
                findings.publicPort = hole.port
                do {
                    _ = try await loop.openConnection(host: "127.0.0.1", port: hole.port, connectTimeout: 0.3)
                } catch {
                    findings.publicError = error
                }
                return findings
            }
        }
        let error = findings.error as? UVError
        #expect(error == UVError.ETIMEDOUT, "\(String(describing: findings.error))")
        #expect(findings.elapsed >= 0.25 && findings.elapsed < 2, "timed out after \(findings.elapsed) s")
        #expect(findings.attemptsWhileWaiting == 1)
        #expect(findings.attemptClosed, "the timed-out attempt is still connecting")
        #expect(findings.acceptedByTheSecond == 0, "one after another: the second address is never tried meanwhile")
        let text = error?.description ?? ""
        #expect(text.contains("connect(sequential test)") && text.contains("0.3"), "\(text)")
        // The attempt still waiting at the deadline is named (a bug of the first version).
        #expect(text.contains(findings.holeAddress), "\(text)")
        let publicError = findings.publicError as? UVError
        #expect(publicError == UVError.ETIMEDOUT, "\(String(describing: findings.publicError))")
        #expect(publicError?.description.contains("connect(127.0.0.1 port \(findings.publicPort))") == true,
                "\(publicError?.description ?? "")")
    }

    @Test(.timeLimit(.minutes(1)), .enabled(if: loopbackIPv6Available))
    func theFamiliesTakeTurnsSoTheOtherFamilyIsTheSecondAttempt() async throws {
        // [silent A1, live A2, live B] of families A and B is tried as A1, B, A2: B connects after
        // one delay and wins; A2, which would connect at once too, is never tried.
        struct Round: Sendable {
            var peer: SocketAddress?
            var expectedPeer: SocketAddress?
            var greeting: [UInt8] = []
            var acceptedByOtherFamily = -1
            var acceptedBySameFamily = -1
            var attemptClosed = false
        }
        let rounds = try await offTheCooperativePool {
            try onFreshLoop { loop -> [Round] in
                var rounds: [Round] = []
                for first in [AF_INET6, AF_INET] {
                    let other = first == AF_INET6 ? AF_INET : AF_INET6
                    var round = Round()
                    let hole = try BlackHole(family: first)
                    defer { hole.close() }
                    let same = try await startCountingServer(loop, host: first == AF_INET6 ? "::1" : "127.0.0.1")
                    let otherFamily = try await startCountingServer(loop, host: other == AF_INET6 ? "::1" : "127.0.0.1")
                    let baseline = hole.connectingSockets
                    let (reader, writer) = try await loop.openConnection(
                        addresses: [hole.address, loopbackAddress(first, port: same.server.port),
                                    loopbackAddress(other, port: otherFamily.server.port)],
                        operation: "connect(interleave test)", happyEyeballsDelay: 0.25, connectTimeout: 10)
                    round.peer = writer.peerAddress
                    round.expectedPeer = loopbackSocketAddress(other, port: otherFamily.server.port)
                    round.greeting = try await reader.readLine()
                    // Past the next stagger point: nothing else was tried after the win.
                    await loopSleep(loop, 0.3)
                    round.acceptedByOtherFamily = otherFamily.accepted.value
                    round.acceptedBySameFamily = same.accepted.value
                    round.attemptClosed = await eventually(loop) { hole.connectingSockets == baseline }
                    writer.close()
                    same.server.close()
                    otherFamily.server.close()
                    rounds.append(round)
                }
                return rounds
            }
        }
        #expect(rounds.count == 2)
        for round in rounds {
            #expect(round.peer != nil && round.peer == round.expectedPeer)
            #expect(round.greeting == bytes("hi\n"))
            #expect(round.acceptedByOtherFamily == 1)
            #expect(round.acceptedBySameFamily == 0)
            #expect(round.attemptClosed)
        }
    }

    @Test(.timeLimit(.minutes(1))) func theInterleavedOrderStartsWithTheFirstAddresssFamily() {
        let v6 = (1...3).map { UVSocketAddress(numericHost: "::1", port: $0)! }
        let v4 = (1...2).map { UVSocketAddress(numericHost: "127.0.0.1", port: $0)! }
        func order(_ addresses: [UVSocketAddress]) -> [String] {
            ConnectRace.interleaved(addresses).map { SocketAddress($0).description }
        }
        func names(_ addresses: [UVSocketAddress]) -> [String] { addresses.map { SocketAddress($0).description } }
        #expect(order([v6[0], v6[1], v6[2], v4[0]]) == names([v6[0], v4[0], v6[1], v6[2]]))
        #expect(order([v4[0], v6[0], v6[1], v4[1], v6[2]]) == names([v4[0], v6[0], v4[1], v6[1], v6[2]]))
        #expect(order([v4[1], v4[0]]) == names([v4[1], v4[0]]))
        #expect(order([]).isEmpty)
    }

    @Test(.timeLimit(.minutes(1))) func whenEveryAddressRefusesTheErrorIsECONNREFUSEDNamingEach() throws {
        let first = try refusingPort(AF_INET)
        let second = try refusingPort(AF_INET)
        defer { close(first.fd); close(second.fd) }
        try onFreshLoop { loop in
            let addresses = [loopbackAddress(AF_INET, port: first.port), loopbackAddress(AF_INET, port: second.port)]
            // 5 s of stagger: a failed attempt starts the next one at once, not after the delay.
            for delay in [5.0, nil] as [Double?] {
                let start = ContinuousClock.now
                let error = await #expect(throws: UVError.ECONNREFUSED) {
                    _ = try await loop.openConnection(addresses: addresses, operation: "connect(refusal test)",
                                                      happyEyeballsDelay: delay, connectTimeout: nil)
                }
                let elapsed = seconds(since: start)
                #expect(elapsed < 2, "delay \(String(describing: delay)): failed after \(elapsed) s")
                let text = error?.description ?? ""
                #expect(text.hasPrefix("connect(refusal test)"), "\(text)")
                #expect(text.contains("127.0.0.1:\(first.port): ECONNREFUSED"), "\(text)")
                #expect(text.contains("127.0.0.1:\(second.port): ECONNREFUSED"), "\(text)")
            }
            let error = await #expect(throws: UVError.ECONNREFUSED) {
                _ = try await loop.openConnection(host: "127.0.0.1", port: first.port)
            }
            let text = error?.description ?? ""
            #expect(text.contains("connect(127.0.0.1 port \(first.port))"), "\(text)")
            #expect(text.contains("127.0.0.1:\(first.port): ECONNREFUSED"), "\(text)")
        }
    }

    @Test(.timeLimit(.minutes(1)), .enabled(if: loopbackIPv6Available))
    func theErrorListsTheFailuresInTheOrderTheAttemptsWereMade() throws {
        let v6a = try refusingPort(AF_INET6)
        let v6b = try refusingPort(AF_INET6)
        let v4 = try refusingPort(AF_INET)
        defer { close(v6a.fd); close(v6b.fd); close(v4.fd) }
        try onFreshLoop { loop in
            for delay in [nil, 0.25] as [Double?] {
                let error = await #expect(throws: UVError.ECONNREFUSED) {
                    _ = try await loop.openConnection(
                        addresses: [loopbackAddress(AF_INET6, port: v6a.port), loopbackAddress(AF_INET6, port: v6b.port),
                                    loopbackAddress(AF_INET, port: v4.port)],
                        operation: "connect(order test)", happyEyeballsDelay: delay, connectTimeout: nil)
                }
                let text = error?.description ?? ""
                let positions = ["[::1]:\(v6a.port):", "127.0.0.1:\(v4.port):", "[::1]:\(v6b.port):"].map {
                    text.range(of: $0)?.lowerBound
                }
                #expect(positions.allSatisfy { $0 != nil }, "\(text)")
                if let a = positions[0], let b = positions[1], let c = positions[2] {
                    #expect(a < b && b < c, "attempted in another order than v6, v4, v6: \(text)")
                }
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancellingTheRaceEndsItAtOnceAndClosesTheAttempt() throws {
        try onFreshLoop { loop in
            let hole = try BlackHole(family: AF_INET)
            defer { hole.close() }
            let hidden = hole.address
            let baseline = hole.connectingSockets
            let race = loop.createTask {
                try await loop.openConnection(addresses: [hidden], operation: "connect(cancel test)",
                                              happyEyeballsDelay: nil, connectTimeout: nil)
            }
            await loopSleep(loop, 0.1)
            #expect(hole.connectingSockets == baseline + 1)
            let start = ContinuousClock.now
            race.cancel()
            let result = await race.result
            let elapsed = seconds(since: start)
            guard case .failure(let error) = result else {
                Issue.record("a connection to the black hole was made")
                return
            }
            #expect(error is CancellationError, "\(error)")
            #expect(elapsed < 1, "cancelled after \(elapsed) s")
            #expect(await eventually(loop) { hole.connectingSockets == baseline })
        }
    }

    @Test(.timeLimit(.minutes(1))) func aConnectTimeoutNotReachedLeavesTheConnectionAlone() throws {
        try onFreshLoop { loop in
            let (server, _, _) = try await startCountingServer(loop, host: "127.0.0.1")
            defer { server.close() }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port, connectTimeout: 0.15)
            #expect(try await reader.readLine() == bytes("hi\n"))
            // Past the deadline: its timer was cancelled with the race, nothing cuts the connection.
            await loopSleep(loop, 0.3)
            try writer.write("after the deadline\n")
            #expect(try await reader.readLine() == bytes("after the deadline\n"))
            writer.close()
        }
    }
}

// MARK: - Bad arguments

@Suite("Streams: openConnection refuses bad arguments")
struct ClientOptionsArgumentTests {
    @Test(.timeLimit(.minutes(1))) func badDelaysTimeoutsAndLimitsAreInvalidArguments() throws {
        try onFreshLoop { loop in
            // A live server: an argument that slipped through would connect instead of throwing.
            let (server, accepted, _) = try await startCountingServer(loop, host: "127.0.0.1")
            defer { server.close() }
            let port = server.port
            for delay in [Double.nan, -0.001, -Double.infinity] {
                let error = await #expect(throws: EventLoopError.self) {
                    _ = try await loop.openConnection(host: "127.0.0.1", port: port, happyEyeballsDelay: delay)
                }
                #expect(isInvalidArgument(error, mentioning: "happyEyeballsDelay"), "\(delay): \(String(describing: error))")
            }
            for timeout in [Double.nan, -1, -Double.infinity] {
                let error = await #expect(throws: EventLoopError.self) {
                    _ = try await loop.openConnection(host: "127.0.0.1", port: port, connectTimeout: timeout)
                }
                #expect(isInvalidArgument(error, mentioning: "connectTimeout"), "\(timeout): \(String(describing: error))")
            }
            for limit in [0, -1] {
                let error = await #expect(throws: EventLoopError.self) {
                    _ = try await loop.openConnection(host: "127.0.0.1", port: port, limit: limit)
                }
                #expect(isInvalidArgument(error, mentioning: "limit"), "\(limit): \(String(describing: error))")
            }
            await loopSleep(loop, 0.05)
            #expect(accepted.value == 0)
        }
    }

    @Test(.timeLimit(.minutes(1))) func aNulByteInTheHostOrTheLocalAddressIsEINVAL() throws {
        try onFreshLoop { loop in
            let (server, accepted, _) = try await startCountingServer(loop, host: "127.0.0.1")
            defer { server.close() }
            await #expect(throws: UVError.EINVAL) {
                _ = try await loop.openConnection(host: "127.0.0.1\0.evil.example", port: server.port)
            }
            await #expect(throws: UVError.EINVAL) {
                _ = try await loop.openConnection(host: "127.0.0.1", port: server.port, localAddress: "127.0.0.1\0junk")
            }
            await loopSleep(loop, 0.05)
            #expect(accepted.value == 0)
        }
    }

    @Test(.timeLimit(.minutes(1))) func aZeroOrEndlessDelayAndAnEndlessTimeoutAreFine() throws {
        let refused = try refusingPort(AF_INET)
        defer { close(refused.fd) }
        try onFreshLoop { loop in
            let (server, accepted, _) = try await startCountingServer(loop, host: "127.0.0.1")
            defer { server.close() }
            for (delay, timeout) in [(0.0, nil), (0.25, Double.infinity), (Double.infinity, nil)] as [(Double, Double?)] {
                // A refusing first address: the next attempt starts when it fails, whatever the delay.
                let (reader, writer) = try await loop.openConnection(
                    addresses: [loopbackAddress(AF_INET, port: refused.port), loopbackAddress(AF_INET, port: server.port)],
                    operation: "connect(test)", happyEyeballsDelay: delay, connectTimeout: timeout)
                #expect(try await reader.readLine() == bytes("hi\n"))
                writer.close()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port,
                                                                 happyEyeballsDelay: 0, connectTimeout: .infinity)
            #expect(try await reader.readLine() == bytes("hi\n"))
            writer.close()
            #expect(accepted.value == 4)
        }
    }
}

// MARK: - localAddress and limit

@Suite("Streams: openConnection's localAddress and limit")
struct ClientOptionsLocalAddressTests {
    @Test(.timeLimit(.minutes(1))) func theConnectionComesFromTheLocalAddressAndTheServerSeesIt() throws {
        let sources = secondLoopbackAvailable ? ["127.0.0.1", "127.0.0.2"] : ["127.0.0.1"]
        try onFreshLoop { loop in
            let (server, _, peers) = try await startCountingServer(loop, host: "127.0.0.1")
            defer { server.close() }
            for source in sources {
                let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port, localAddress: source)
                #expect(try await reader.readLine() == bytes("hi\n"))
                #expect(writer.localAddress?.host == source)
                #expect(peers.value.last?.host == source)
                #expect(peers.value.last == writer.localAddress)
                writer.close()
            }
            #expect(peers.value.count == sources.count)
        }
    }

    @Test(.timeLimit(.minutes(1)), .enabled(if: loopbackIPv6Available))
    func aLocalAddressOfAnotherFamilyFailsNamingTheFamilyProblem() throws {
        try onFreshLoop { loop in
            let (server, accepted, _) = try await startCountingServer(loop, host: "127.0.0.1")
            defer { server.close() }
            let error = await #expect(throws: familyNotSupportedError) {
                _ = try await loop.openConnection(host: "127.0.0.1", port: server.port, localAddress: "::1")
            }
            let text = error?.description ?? ""
            #expect(text.contains("127.0.0.1:\(server.port): EAFNOSUPPORT"), "\(text)")
            await loopSleep(loop, 0.05)
            #expect(accepted.value == 0)

            // The same family works.
            let (server6, _, peers6) = try await startCountingServer(loop, host: "::1")
            defer { server6.close() }
            let (reader, writer) = try await loop.openConnection(host: "::1", port: server6.port, localAddress: "::1")
            #expect(try await reader.readLine() == bytes("hi\n"))
            #expect(writer.localAddress?.family == .ipv6 && writer.localAddress?.host == "::1")
            #expect(peers6.value == [writer.localAddress].compactMap { $0 })
            writer.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func limitIsTheReadersLimit() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { _, writer in
                try? writer.write(String(repeating: "x", count: 150) + "\nshort\n")
                writer.close()
            }
            defer { server.close() }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port, limit: 100)
            #expect(reader.limit == 100)
            // A 150-byte line is over the limit; with the default limit it would be read.
            let overrun = await #expect(throws: StreamError.self) { _ = try await reader.readLine() }
            if case .limitOverrun? = overrun {} else { Issue.record("expected limitOverrun, got \(String(describing: overrun))") }
            #expect(try await reader.readLine() == bytes("short\n"))
            writer.close()
            let (defaultReader, defaultWriter) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            #expect(defaultReader.limit == 65_536)
            #expect(try await defaultReader.readLine().count == 151)
            defaultWriter.close()
        }
    }
}

// MARK: - openConnection(socket:)

@Suite("Streams: openConnection(socket:) adopts a connected socket")
struct ClientOptionsAdoptedSocketTests {
    @Test(.timeLimit(.minutes(1))) func oneEndOfASocketpairTalksWithAPlainPeer() throws {
        let (mine, theirs) = try unixSocketPair()
        defer { close(theirs) }
        try onFreshLoop { loop in
            let (reader, writer) = try await loop.openConnection(socket: mine, limit: 1000)
            #expect(reader.limit == 1000)
            #expect(writer.fileDescriptor == mine)
            #expect(isNonBlocking(mine) && isCloseOnExec(mine))

            #expect(writePlain(theirs, bytes("ping from a plain socket\n")))
            #expect(try await reader.readLine() == bytes("ping from a plain socket\n"))
            try writer.write("pong from UVLoop\n")
            try await writer.drain()
            #expect(try await loop.runInExecutor { readPlain(theirs, upTo: 17).bytes } == bytes("pong from UVLoop\n"))

            // End of file from the plain side; this side can still write (a half-close).
            #expect(shutdown(theirs, Int32(SHUT_WR)) == 0)
            #expect(try await reader.read() == [])
            #expect(reader.atEOF)
            try writer.write("after your end\n")
            try writer.writeEOF()
            // Read on another thread: the loop must run to send the end of file.
            let rest = try await loop.runInExecutor { readPlain(theirs, upTo: 1000) }
            #expect(rest.bytes == bytes("after your end\n") && rest.eof)
            writer.close()
            try await writer.waitClosed()
        }
    }

    @Test(.timeLimit(.minutes(1))) func bothEndsOfASocketpairAdoptedCarryAMegabyteEachWay() throws {
        let (left, right) = try unixSocketPair()
        let toRight = patternBytes(megabyte, seed: 1)
        let toLeft = patternBytes(megabyte, seed: 2)
        try onFreshLoop { loop in
            let (leftReader, leftWriter) = try await loop.openConnection(socket: left)
            let (rightReader, rightWriter) = try await loop.openConnection(socket: right)
            async let atRight = readToEnd(rightReader)
            async let atLeft = readToEnd(leftReader)
            try leftWriter.write(toRight)
            try rightWriter.write(toLeft)
            try await leftWriter.drain()
            try await rightWriter.drain()
            try leftWriter.writeEOF()
            try rightWriter.writeEOF()
            let (receivedRight, receivedLeft) = await (atRight, atLeft)
            expectSameBytes(receivedRight, toRight)
            expectSameBytes(receivedLeft, toLeft)
            leftWriter.close()
            rightWriter.close()
            try await leftWriter.waitClosed()
            try await rightWriter.waitClosed()
        }
    }

    @Test(.timeLimit(.minutes(1))) func aTCPSocketConnectedByHandIsAdoptedWithNagleOff() throws {
        let families = loopbackIPv6Available ? [AF_INET, AF_INET6] : [AF_INET]
        try onFreshLoop { loop in
            for family in families {
                let (server, _, peers) = try await startCountingServer(loop, host: family == AF_INET6 ? "::1" : "127.0.0.1")
                defer { server.close() }
                let fd = openSocket(family)
                #expect(connectSocket(fd, to: loopbackAddress(family, port: server.port)) == 0)
                #expect(intOption(fd, tcpLevel, TCP_NODELAY) == 0)
                let ownPort = localPort(fd)
                let (reader, writer) = try await loop.openConnection(socket: fd, limit: 4096)
                #expect(reader.limit == 4096)
                #expect(intOption(fd, tcpLevel, TCP_NODELAY) == 1)
                #expect(writer.fileDescriptor == fd)
                #expect(writer.peerAddress == loopbackSocketAddress(family, port: server.port))
                #expect(writer.localAddress == loopbackSocketAddress(family, port: ownPort))
                #expect(try await reader.readLine() == bytes("hi\n"))
                try writer.write("adopted\n")
                #expect(try await reader.readLine() == bytes("adopted\n"))
                #expect(peers.value.last == writer.localAddress)
                writer.close()
                try await writer.waitClosed()
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func descriptorsItRefusesStayOpenUntouchedAndTheCallers() throws {
        var refused: [(what: String, fd: Int32, expected: UVError)] = []
        let listening = openSocket(AF_INET)
        _ = bindSocket(listening, to: loopbackAddress(AF_INET))
        _ = listen(listening, 4)
        refused.append(("a listening socket", listening, .EINVAL))
        refused.append(("a TCP socket never connected", openSocket(AF_INET), .ENOTCONN))
        let bound = openSocket(AF_INET)
        _ = bindSocket(bound, to: loopbackAddress(AF_INET))
        refused.append(("a bound TCP socket not connected", bound, .ENOTCONN))
        refused.append(("a UDP socket", openSocket(AF_INET, datagramType), .EINVAL))
        let connectedUDP = openSocket(AF_INET, datagramType)
        _ = connectSocket(connectedUDP, to: loopbackAddress(AF_INET, port: 9))
        refused.append(("a connected UDP socket", connectedUDP, .EINVAL))
        let (packetA, packetB) = try unixSocketPair(seqpacketType)
        refused.append(("a SOCK_SEQPACKET socketpair end", packetA, .EINVAL))
        let pipeEnds = try plainPipe()
        refused.append(("a pipe's read end", pipeEnds.read, notASocketError))
        refused.append(("a pipe's write end", pipeEnds.write, notASocketError))
        let file = try SourceFile(bytes("a regular file"))
        refused.append(("a regular file", file.fd, notASocketError))
        defer {
            for entry in refused { close(entry.fd) }
            close(packetB)
        }
        let entries = refused
        let before = entries.map { (fcntl($0.fd, F_GETFL), fcntl($0.fd, F_GETFD)) }
        #expect(entries.allSatisfy { $0.fd >= 0 })
        try onFreshLoop { loop in
            for entry in entries {
                let error = await #expect(throws: entry.expected, "\(entry.what)") {
                    _ = try await loop.openConnection(socket: entry.fd)
                }
                let text = error?.description ?? ""
                #expect(text.contains("fd \(entry.fd)") || text.contains("socket: \(entry.fd)"), "\(entry.what): \(text)")
            }
            await #expect(throws: UVError.EBADF) { _ = try await loop.openConnection(socket: neverOpenDescriptor) }
            await #expect(throws: UVError.EBADF) { _ = try await loop.openConnection(socket: -1) }
        }
        // Still open, flags untouched (not made non-blocking), and still what they were.
        for (entry, flags) in zip(entries, before) {
            #expect(isOpen(entry.fd), "\(entry.what)")
            #expect(fcntl(entry.fd, F_GETFL) == flags.0 && fcntl(entry.fd, F_GETFD) == flags.1, "\(entry.what)")
        }
        #expect(intOption(listening, SOL_SOCKET, SO_ACCEPTCONN) == 1)
        #expect(writePlain(pipeEnds.write, [42]) && readPlain(pipeEnds.read, upTo: 1).bytes == [42])
    }

    @Test(.timeLimit(.minutes(1))) func aLimitBelowOneIsRefusedAndTheSocketStaysTheCallers() throws {
        let (mine, theirs) = try unixSocketPair()
        defer { close(theirs) }
        try onFreshLoop { loop in
            for limit in [0, -1] {
                let error = await #expect(throws: EventLoopError.self) { _ = try await loop.openConnection(socket: mine, limit: limit) }
                #expect(isInvalidArgument(error, mentioning: "limit"))
            }
            #expect(isOpen(mine) && !isNonBlocking(mine))
            // Then it can still be adopted.
            let (reader, writer) = try await loop.openConnection(socket: mine, limit: 1)
            #expect(reader.limit == 1)
            #expect(writePlain(theirs, [7]))
            #expect(try await reader.readExactly(1) == [7])
            writer.close()
        }
    }

    @Test(.timeLimit(.minutes(1)), .enabled(if: vsockAvailable))
    func aStreamSocketOfAnotherFamilyIsEAFNOSUPPORT() throws {
        let fd = socket(40 /* AF_VSOCK */, streamType | closeOnExecFlag, 0)
        defer { close(fd) }
        try onFreshLoop { loop in
            await #expect(throws: familyNotSupportedError) { _ = try await loop.openConnection(socket: fd) }
        }
        #expect(isOpen(fd) && !isNonBlocking(fd))
    }

    @Test(.timeLimit(.minutes(1))) func aDescriptorTheLoopAlreadyWatchesIsEEXISTAndTheFirstStreamGoesOn() throws {
        let (mine, theirs) = try unixSocketPair()
        defer { close(theirs) }
        try onFreshLoop { loop in
            let (reader, writer) = try await loop.openConnection(socket: mine)
            await #expect(throws: UVError.EEXIST) { _ = try await loop.openConnection(socket: mine) }
            #expect(writer.fileDescriptor == mine)
            #expect(writePlain(theirs, bytes("still mine\n")))
            #expect(try await reader.readLine() == bytes("still mine\n"))
            try writer.write("and back\n")
            #expect(try await loop.runInExecutor { readPlain(theirs, upTo: 9).bytes } == bytes("and back\n"))
            writer.close()
            try await writer.waitClosed()
        }
    }
}

// MARK: - fileDescriptor, setNoDelay, setKeepAlive

@Suite("Streams: a writer's socket options")
struct ClientOptionsSocketOptionTests {
    @Test(.timeLimit(.minutes(1))) func noDelayIsOnByDefaultAndBothOptionsReachTheSocket() throws {
        try onFreshLoop { loop in
            let serverSide = Box<[Int32]>([])
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                serverSide.mutate { $0.append(writer.fileDescriptor.map { intOption($0, tcpLevel, TCP_NODELAY) } ?? -1) }
                await echo(reader, writer)
            }
            defer { server.close() }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            let fd = try #require(writer.fileDescriptor)
            // It is this connection's socket.
            #expect(intOption(fd, SOL_SOCKET, SO_TYPE) == streamType)
            #expect(localPort(fd) == writer.localAddress?.port)

            #expect(intOption(fd, tcpLevel, TCP_NODELAY) == 1)
            try writer.setNoDelay(false)
            #expect(intOption(fd, tcpLevel, TCP_NODELAY) == 0)
            try writer.setNoDelay(true)
            #expect(intOption(fd, tcpLevel, TCP_NODELAY) == 1)

            #expect(intOption(fd, SOL_SOCKET, SO_KEEPALIVE) == 0)
            try writer.setKeepAlive(true, idleSeconds: 30)
            #expect(intOption(fd, SOL_SOCKET, SO_KEEPALIVE) == 1)
            #expect(intOption(fd, tcpLevel, TCP_KEEPIDLE) == 30)
            try writer.setKeepAlive(true)
            #expect(intOption(fd, tcpLevel, TCP_KEEPIDLE) == 60)
            try writer.setKeepAlive(true, idleSeconds: 32767)
            #expect(intOption(fd, tcpLevel, TCP_KEEPIDLE) == 32767)
            try writer.setKeepAlive(false)
            #expect(intOption(fd, SOL_SOCKET, SO_KEEPALIVE) == 0)
            for idle in [0, -1, 32768] {
                let error = #expect(throws: EventLoopError.self) { try writer.setKeepAlive(true, idleSeconds: idle) }
                #expect(isInvalidArgument(error, mentioning: "idleSeconds"), "\(idle)")
            }
            #expect(intOption(fd, SOL_SOCKET, SO_KEEPALIVE) == 0)

            // From another thread too (the writer is Sendable; the options are plain setsockopt).
            let elsewhere = try await loop.runInExecutor { () throws -> (Int32?, Int32) in
                try writer.setNoDelay(false)
                return (writer.fileDescriptor, intOption(fd, tcpLevel, TCP_NODELAY))
            }
            #expect(elsewhere.0 == fd && elsewhere.1 == 0)

            try writer.write("options set\n")
            #expect(try await reader.readLine() == bytes("options set\n"))
            #expect(serverSide.value == [1])
            writer.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func unixSocketsAndPipesHaveADescriptorButNoTCPOptions() throws {
        let directory = temporaryDirectory()
        defer { rmdir(directory) }
        let (mine, theirs) = try unixSocketPair()
        defer { close(theirs) }
        let pipeEnds = try plainPipe()
        defer { close(pipeEnds.read) }
        try onFreshLoop { loop in
            let server = try await loop.startUnixServer(path: directory + "/s", echo)
            defer { server.close() }
            let (_, unixWriter) = try await loop.openUnixConnection(path: directory + "/s")
            let (_, adoptedWriter) = try await loop.openConnection(socket: mine)
            let pipeWriter = try loop.connectWritePipe(pipeEnds.write)
            #expect(adoptedWriter.fileDescriptor == mine)
            #expect(pipeWriter.fileDescriptor == pipeEnds.write)
            for (what, writer) in [("unix", unixWriter), ("adopted unix", adoptedWriter), ("pipe", pipeWriter)] {
                let fd = try #require(writer.fileDescriptor, "\(what)")
                #expect(isOpen(fd))
                #expect(throws: UVError.ENOTSUP, "\(what)") { try writer.setNoDelay(true) }
                #expect(throws: UVError.ENOTSUP, "\(what)") { try writer.setKeepAlive(true, idleSeconds: 30) }
                writer.close()
            }
            try await server.waitClosedAfterClose()
        }
    }

    @Test(.timeLimit(.minutes(1))) func onceClosedThereIsNoDescriptorAndTheOptionsThrowClosed() throws {
        let file = try SourceFile(bytes("content"))
        defer { file.close() }
        try onFreshLoop { loop in
            let (server, _, _) = try await startCountingServer(loop, host: "127.0.0.1")
            defer { server.close() }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            #expect(try await reader.readLine() == bytes("hi\n"))
            #expect(writer.fileDescriptor != nil)
            writer.close()
            // Nothing was buffered: closing at once.
            #expect(writer.fileDescriptor == nil)
            try await writer.waitClosed()
            #expect(writer.fileDescriptor == nil)
            #expect(throws: StreamError.closed) { try writer.setNoDelay(true) }
            #expect(throws: StreamError.closed) { try writer.setKeepAlive(true) }
            await #expect(throws: StreamError.closed) { _ = try await writer.sendfile(file.fd) }

            // After writeEOF the socket is still open (for reading) but sendfile is refused.
            let (halfReader, halfWriter) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            try halfWriter.writeEOF()
            await #expect(throws: StreamError.closed) { _ = try await halfWriter.sendfile(file.fd) }
            #expect(halfWriter.fileDescriptor != nil)
            try halfWriter.setNoDelay(false)
            #expect(try await halfReader.readLine() == bytes("hi\n"))
            halfWriter.close()
        }
    }
}

private extension Server {
    func waitClosedAfterClose() async throws {
        close()
        try await waitClosed()
    }
}

// MARK: - sendfile

@Suite("Streams: StreamWriter.sendfile")
struct ClientOptionsSendfileTests {
    /// Reads to end of file and saves what came at argv[2].
    static let savingClient = """
    import socket, sys
    port, path = int(sys.argv[1]), sys.argv[2]
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    total = 0
    with open(path, "wb") as f:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            f.write(chunk)
            total += len(chunk)
    print(total)
    """

    /// Through a small receive buffer, reads 1 MiB, then resets the connection (SO_LINGER 0).
    static let resettingClient = """
    import socket, struct, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.settimeout(30)
    s.connect(("127.0.0.1", int(sys.argv[1])))
    total = 0
    while total < (1 << 20):
        chunk = s.recv(65536)
        if not chunk:
            break
        total += len(chunk)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print(total)
    """

    @Test(.timeLimit(.minutes(1)), .enabled(if: pythonAvailable))
    func headTheFileAndTailArriveInOrderAtAPythonPeer() async throws {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("uvloop-received-\(getpid())-\(UInt64.random(in: 0...UInt64.max))").path
        defer { unlink(path) }
        let (sent, offsetAfter, python) = try await asHeavyTest {
            let file = try SourceFile(fileBytes)
            defer { file.close() }
            return try onFreshLoop { loop -> (Result<Int, any Error>?, Int64, (status: Int32, output: String)) in
                let sent = Box<Result<Int, any Error>?>(nil)
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { _, writer in
                    do {
                        try writer.write("HEAD")
                        let count = try await writer.sendfile(file.fd)
                        try writer.write("TAIL")
                        sent.value = .success(count)
                    } catch {
                        sent.value = .failure(error)
                    }
                    writer.close()
                }
                let port = server.port
                let python = try await loop.runInExecutor { try runPython(Self.savingClient, [String(port), path]) }
                server.close()
                return (sent.value, file.offset, python)
            }
        }
        let expected = bytes("HEAD") + fileBytes + bytes("TAIL")
        let received = [UInt8](FileManager.default.contents(atPath: path) ?? Data())
        #expect(python.status == 0, "\(python.output)")
        #expect(python.output.trimmingCharacters(in: .whitespacesAndNewlines) == String(expected.count))
        expectSameBytes(received, expected)
        #expect(try sent?.get() == fileBytes.count)
        #expect(offsetAfter == 0, "sendfile moved the file's own offset")
    }

    @Test(.timeLimit(.minutes(1))) func offsetAndCountSelectWhatIsSentAndTheFileOffsetStays() async throws {
        let size = Int64(fileBytes.count)
        let (counts, received, offsetAfter) = try await offTheCooperativePool {
            let file = try SourceFile(fileBytes)
            defer { file.close() }
            // The file's own offset is elsewhere: sendfile reads from `offset`, not from it.
            lseek(file.fd, 777, SEEK_SET)
            return try onFreshLoop { loop -> ([Int], [UInt8], Int64) in
                let (server, collected) = try await startCollector(loop)
                defer { server.close() }
                let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
                var counts: [Int] = []
                try writer.write("A")
                counts.append(try await writer.sendfile(file.fd, offset: 1000, count: 5000))
                try writer.write("B")
                counts.append(try await writer.sendfile(file.fd, offset: size - 100, count: 1000))   // past the end
                try writer.write("C")
                counts.append(try await writer.sendfile(file.fd, offset: size + 10))                 // beyond the end
                counts.append(try await writer.sendfile(file.fd, offset: 0, count: 0))
                try writer.write("D")
                counts.append(try await writer.sendfile(file.fd, offset: size - 3 * Int64(megabyte)))  // to the end
                writer.close()
                return (counts, await firstDelivery(collected), file.offset)
            }
        }
        let end = fileBytes.count
        var expected = bytes("A") + fileBytes[1000..<6000]
        expected += bytes("B") + fileBytes[(end - 100)...]
        expected += bytes("CD") + fileBytes[(end - 3 * megabyte)...]
        #expect(counts == [5000, 100, 0, 0, 3 * megabyte])
        expectSameBytes(received, expected)
        #expect(offsetAfter == 777)
    }

    @Test(.timeLimit(.minutes(1))) func overAUnixSocketToo() throws {
        let (left, right) = try unixSocketPair()
        let file = try SourceFile(fileBytes)
        defer { file.close() }
        try onFreshLoop { loop in
            let (_, writer) = try await loop.openConnection(socket: left)
            let (reader, otherWriter) = try await loop.openConnection(socket: right)
            async let received = readToEnd(reader)
            let sent = try await writer.sendfile(file.fd, offset: 12_345, count: megabyte)
            try writer.writeEOF()
            let got = await received
            #expect(sent == megabyte)
            let expected = Array(fileBytes[12_345..<(12_345 + megabyte)])
            expectSameBytes(got, expected)
            writer.close()
            otherWriter.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func sourcesThatAreNotRegularFilesAndBadArgumentsAreRefused() throws {
        let file = try SourceFile(fileBytes)
        let pipeEnds = try plainPipe()
        let (socketA, socketB) = try unixSocketPair()
        let directory = open(NSTemporaryDirectory(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { [file.fd, pipeEnds.read, pipeEnds.write, socketA, socketB, directory].forEach { close($0) } }
        try onFreshLoop { loop in
            let (server, collected) = try await startCollector(loop)
            defer { server.close() }
            let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            for (what, fd) in [("a pipe", pipeEnds.read), ("a socket", socketA), ("a directory", directory)] {
                await #expect(throws: UVError.EINVAL, "\(what)") { _ = try await writer.sendfile(fd) }
            }
            await #expect(throws: UVError.EBADF) { _ = try await writer.sendfile(neverOpenDescriptor) }
            let negativeOffset = await #expect(throws: EventLoopError.self) { _ = try await writer.sendfile(file.fd, offset: -1) }
            #expect(isInvalidArgument(negativeOffset, mentioning: "offset"))
            let negativeCount = await #expect(throws: EventLoopError.self) { _ = try await writer.sendfile(file.fd, count: -1) }
            #expect(isInvalidArgument(negativeCount, mentioning: "count"))
            // None of it harmed the connection, nor the descriptors.
            try writer.write("ok:")
            #expect(try await writer.sendfile(file.fd, offset: 64, count: 64) == 64)
            writer.close()
            let received = await firstDelivery(collected)
            #expect(received == bytes("ok:") + fileBytes[64..<128])
        }
        #expect([file.fd, pipeEnds.read, pipeEnds.write, socketA, directory].allSatisfy(isOpen))
        #expect(file.offset == 0)
    }

    @Test(.timeLimit(.minutes(1)), .enabled(if: pythonAvailable))
    func aPeerThatResetsMidTransferFailsTheSendfile() async throws {
        let (outcome, writeAfter, python) = try await asHeavyTest {
            let file = try SourceFile(sparseSize: 64 * megabyte)
            defer { file.close() }
            return try onFreshLoop { loop -> (Result<Int, any Error>, Result<Void, any Error>, (status: Int32, output: String)) in
                let (outcomes, continuation) = AsyncStream.makeStream(of: (Result<Int, any Error>, Result<Void, any Error>).self)
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { _, writer in
                    if let fd = writer.fileDescriptor { setIntOption(fd, SOL_SOCKET, SO_SNDBUF, 32 * 1024) }
                    var sent: Result<Int, any Error>
                    do { sent = .success(try await writer.sendfile(file.fd)) } catch { sent = .failure(error) }
                    let writeAfter = Result<Void, any Error> { try writer.write("after") }
                    continuation.yield((sent, writeAfter))
                    writer.close()
                }
                defer { server.close() }
                let port = server.port
                let python = try await loop.runInExecutor { try runPython(Self.resettingClient, [String(port)]) }
                var iterator = outcomes.makeAsyncIterator()
                guard let outcome = await iterator.next() else { throw SetupFailure("no outcome") }
                return (outcome.0, outcome.1, python)
            }
        }
        #expect(python.status == 0, "\(python.output)")
        #expect((Int(python.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) >= megabyte, "\(python.output)")
        switch outcome {
        case .success(let count): Issue.record("sendfile returned \(count) to a peer that reset the connection")
        case .failure(let error): #expect(isUVError(error, .EPIPE, .ECONNRESET), "\(error)")
        }
        if case .failure(let error) = writeAfter {
            #expect(isUVError(error, .EPIPE, .ECONNRESET), "\(error)")
        } else {
            Issue.record("a write after the failed sendfile succeeded")
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancellingASendfileToAPeerThatDoesNotReadEndsItPromptly() async throws {
        struct Findings: Sendable {
            var runningBeforeCancel = false
            var result: Result<Int, any Error>?
            var elapsed = 0.0
            var writeAfter: Result<Void, any Error>?
            var descriptorAfter: Int32?
        }
        let findings = try await offTheCooperativePool {
            let file = try SourceFile(sparseSize: 64 * megabyte)
            defer { file.close() }
            // Connections complete in the kernel and are never accepted: nothing reads.
            let listener = try smallBufferListener(backlog: 4)
            defer { close(listener.fd) }
            return try onFreshLoop { loop -> Findings in
                var findings = Findings()
                let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: listener.port)
                if let fd = writer.fileDescriptor { setIntOption(fd, SOL_SOCKET, SO_SNDBUF, 16 * 1024) }
                let finished = Box(false)
                let sending = loop.createTask { () async throws -> Int in
                    defer { finished.value = true }
                    return try await writer.sendfile(file.fd)
                }
                await loopSleep(loop, 0.2)
                findings.runningBeforeCancel = !finished.value
                let start = ContinuousClock.now
                sending.cancel()
                findings.result = await sending.result
                findings.elapsed = seconds(since: start)
                // The stream stays open (in the middle of the file): writes are still accepted.
                findings.writeAfter = Result { try writer.write("x") }
                findings.descriptorAfter = writer.fileDescriptor
                writer.abort()
                try await writer.waitClosed()
                return findings
            }
        }
        #expect(findings.runningBeforeCancel)
        switch findings.result {
        case .failure(let error): #expect(error is CancellationError, "\(error)")
        case .success(let count): Issue.record("sendfile returned \(count) to a peer that never reads")
        case nil: Issue.record("no result")
        }
        #expect(findings.elapsed < 1, "cancelled after \(findings.elapsed) s")
        #expect((try? findings.writeAfter?.get()) != nil, "\(String(describing: findings.writeAfter))")
        #expect(findings.descriptorAfter != nil)
    }

    @Test(.timeLimit(.minutes(1))) func writesAndACloseIssuedWhileItRunsComeAfterTheFile() async throws {
        for ending in [SendfileRun.Ending.close, .writeEOF] {
            let run = try await SendfileRun.perform(head: bytes("HEAD"), slices: [(0, nil)], tail: bytes("TAIL"), ending: ending)
            let expected = bytes("HEAD") + fileBytes + bytes("TAIL")
            #expect(run.runningWhenIssued, "\(ending): the sendfile was over before the test could write meanwhile")
            #expect(run.sent.map { try? $0.get() } == [fileBytes.count], "\(ending): \(run.sent)")
            expectSameBytes(run.received, expected, "\(ending): ")
            switch ending {
            case .close: #expect(run.sendfileOverWhenClosed == true, "waitClosed returned before the sendfile")
            case .writeEOF: #expect(run.reply == bytes("\(expected.count)\n"), "the server saw no EOF after the file")
            case .closeWhenSent: break
            }
        }
    }

    // The three tests below start the sendfile while a large write is still in flight: the
    // sendfile then waits for it to be handed to the kernel (`flushWaiters`) before it marks the
    // write side busy with its sentinel chunk. While it waits, nothing stands "in flight" for it:
    //
    // Bytes written while it waits its turn follow the file (a bug of the first version sent them
    // first).
    @Test(.timeLimit(.minutes(1))) func writesIssuedWhileItWaitsBehindALargeWriteComeAfterTheFile() async throws {
        let head = patternBytes(megabyte, seed: 9)
        let run = try await SendfileRun.perform(head: head, slices: [(0, nil)], tail: bytes("TAIL"), ending: .closeWhenSent)
        let expected = head + fileBytes + bytes("TAIL")
        #expect(run.runningWhenIssued)
        #expect(run.sent.map { try? $0.get() } == [fileBytes.count], "\(run.sent)")
        expectSameBytes(run.received, expected)
    }

    // A close() issued while it waits its turn waits for the file (a bug of the first version
    // closed as soon as the earlier write was out, and the file was never sent).
    @Test(.timeLimit(.minutes(1))) func aCloseIssuedWhileItWaitsBehindALargeWriteWaitsForTheFile() async throws {
        let head = patternBytes(megabyte, seed: 10)
        let run = try await SendfileRun.perform(head: head, slices: [(0, nil)], tail: [], ending: .close)
        let expected = head + fileBytes
        #expect(run.runningWhenIssued)
        #expect(run.sent.map { try? $0.get() } == [fileBytes.count], "\(run.sent)")
        expectSameBytes(run.received, expected)
    }

    // Two sendfiles waiting together both send their slice, in order (the first version's second
    // one returned 0 without sending).
    @Test(.timeLimit(.minutes(1))) func twoSendfilesWaitingBehindALargeWriteBothSendTheirSlice() async throws {
        let head = patternBytes(megabyte, seed: 11)
        let half = Int64(fileBytes.count / 2)
        let run = try await SendfileRun.perform(head: head, slices: [(0, Int(half)), (half, nil)], tail: [],
                                                ending: .closeWhenSent)
        let expected = head + fileBytes
        #expect(run.runningWhenIssued)
        #expect(run.sent.map { try? $0.get() } == [Int(half), Int(half)], "\(run.sent)")
        expectSameBytes(run.received, expected)
    }
}

/// A client writes `head`, then starts one sendfile of the 8 MiB file per slice, each in a task
/// of its own; 0.1 s later it writes `tail` and ends (`close()` or `writeEOF()` at once, or
/// `close()` once every sendfile returned). The server reads only after 0.3 s, through small
/// buffers on both sides, so the sendfiles still run when the rest is issued.
private struct SendfileRun: Sendable {
    enum Ending: Sendable, CustomStringConvertible {
        case close, writeEOF, closeWhenSent
        var description: String {
            switch self {
            case .close: "close()"
            case .writeEOF: "writeEOF()"
            case .closeWhenSent: "close() once sent"
            }
        }
    }

    var sent: [Result<Int, any Error>] = []
    var runningWhenIssued = false
    /// For `.close`: whether every sendfile had returned when `waitClosed()` did.
    var sendfileOverWhenClosed: Bool?
    /// For `.writeEOF`: the server's answer (the byte count it read before end of file).
    var reply: [UInt8]?
    var received: [UInt8] = []

    static func perform(head: [UInt8], slices: [(offset: Int64, count: Int?)], tail: [UInt8],
                        ending: Ending) async throws -> SendfileRun {
        try await offTheCooperativePool {
            let file = try SourceFile(fileBytes)
            defer { file.close() }
            let listener = try smallBufferListener()
            return try onFreshLoop { loop -> SendfileRun in
                var run = SendfileRun()
                let (server, collected) = try await startCollector(loop, socket: listener.fd, limit: 4096, delay: 0.3)
                defer { server.close() }
                let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: listener.port)
                if let fd = writer.fileDescriptor { setIntOption(fd, SOL_SOCKET, SO_SNDBUF, 16 * 1024) }
                try writer.write(head)
                let finished = Box(0)
                var sending: [Task<Int, any Error>] = []
                for slice in slices {
                    sending.append(loop.createTask {
                        defer { finished.mutate { $0 += 1 } }
                        return try await writer.sendfile(file.fd, offset: slice.offset, count: slice.count)
                    })
                }
                await loopSleep(loop, 0.1)
                run.runningWhenIssued = finished.value == 0
                if !tail.isEmpty { try writer.write(tail) }
                switch ending {
                case .close:
                    writer.close()
                    try await writer.waitClosed()
                    run.sendfileOverWhenClosed = finished.value == slices.count
                case .writeEOF:
                    try writer.writeEOF()
                    run.reply = try? await reader.readLine()
                case .closeWhenSent:
                    break
                }
                for task in sending { run.sent.append(await task.result) }
                if case .closeWhenSent = ending { writer.close() }
                run.received = await firstDelivery(collected)
                return run
            }
        }
    }
}
