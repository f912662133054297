import Foundation
import Testing

/// Every example runs as a real process, so CI proves it works. Output goes to a file the test
/// watches; servers are driven by real clients and stopped with SIGTERM.
@Suite("Examples run")
struct ExampleTests {
    /// A running example.
    final class Running: @unchecked Sendable {
        let process = Process()
        let outputURL: URL

        convenience init(_ name: String, _ arguments: [String] = []) throws {
            try self.init(executable: productURL(name), name: name, arguments)
        }

        /// Runs `executable` (a wrapper that execs an example, say).
        init(executable: URL, name: String, _ arguments: [String]) throws {
            outputURL = FileManager.default.temporaryDirectory
                .appendingPathComponent("uvloop-example-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log")
            // Close-on-exec (Foundation's FileHandle(forWritingTo:) is not): the example gets it
            // through Process's dup2, and no other child this test process starts meanwhile
            // (an exit test counting its descriptors) inherits it.
            let fd = open(outputURL.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw ExampleError.timeout("open \(outputURL.path)", "") }
            let output = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            process.executableURL = executable
            process.arguments = arguments
            process.standardOutput = output
            process.standardError = output
            try process.run()
        }

        deinit { try? FileManager.default.removeItem(at: outputURL) }

        var output: String { (try? String(contentsOf: outputURL, encoding: .utf8)) ?? "" }

        /// Waits until the output matches `pattern` (a regex with one capture group); returns the capture.
        func waitFor(_ pattern: String, timeout: Double = 20) throws -> String {
            let regex = try NSRegularExpression(pattern: pattern)
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                let text = output
                if let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
                   let range = Range(match.range(at: match.numberOfRanges > 1 ? 1 : 0), in: text) {
                    return String(text[range])
                }
                if !process.isRunning { break }
                usleep(20_000)
            }
            throw ExampleError.timeout(pattern, output)
        }

        /// Waits for the exit (killing it after `timeout`); returns the exit status.
        @discardableResult
        func finish(timeout: Double = 30) -> Int32 {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { process.terminate(); kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    enum ExampleError: Error { case timeout(String, String) }

    /// Runs python3 with `code` and returns its stdout.
    func python(_ code: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", code]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test(.timeLimit(.minutes(2))) func helloLoop() async throws {
        try await asHeavyTest { [self] in try self.helloLoopBlocking() }
    }

    func helloLoopBlocking() throws {
        let run = try Running("hello-loop")
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.contains("callSoon: hello from the loop thread"))
        #expect(run.output.contains("callLater(0.05): a timer fired"))
        #expect(run.output.contains("answer = 42"))
        #expect(run.output.contains("loop closed: true"))
    }

    @Test(.timeLimit(.minutes(2))) func loopHealth() async throws {
        try await asHeavyTest { [self] in try self.loopHealthBlocking() }
    }

    func loopHealthBlocking() throws {
        let run = try Running("loop-health", ["--seconds", "1.2", "--stall-threshold", "0.05"])
        #expect(run.finish() == 0, "\(run.output)")
        let output = run.output
        #expect(output.contains("withTimeout(0.05): timed out"), "\(output)")
        #expect(output.contains("answered 42"), "\(output)")
        #expect(output.contains("Event loop blocked for"), "\(output)")
        #expect(output.contains("stalls 1"), "\(output)")
        #expect(output.contains("utilization"), "\(output)")
        #expect(output.contains("done"), "\(output)")
    }

    @Test(.timeLimit(.minutes(2))) func customPolicy() async throws {
        try await asHeavyTest { [self] in try self.customPolicyBlocking() }
    }

    func customPolicyBlocking() throws {
        let run = try Running("custom-policy")
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.contains("policy: MyEventLoopPolicy"))
        #expect(run.output.contains("same loop both times: true"))
        #expect(run.output.contains("inside the loop, getEventLoop() is the running loop"))
    }

    @Test(.timeLimit(.minutes(2))) func loopPerThread() async throws {
        try await asHeavyTest { [self] in try self.loopPerThreadBlocking() }
    }

    func loopPerThreadBlocking() throws {
        let run = try Running("loop-per-thread")
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.components(separatedBy: "is this thread's loop").count == 5)
        #expect(run.output.contains("main loop collected 4 results from 4 threads, one loop each"))
    }

    @Test(.timeLimit(.minutes(2))) func subprocessPipeline() async throws {
        try await asHeavyTest { [self] in try self.subprocessPipelineBlocking() }
    }

    func subprocessPipelineBlocking() throws {
        let run = try Running("subprocess-pipeline")
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.contains("consumer -> LISBON OSLO QUITO KYOTO"))
        #expect(run.output.contains("wc -c counted 1000000 bytes, exit 0"))
    }

    @Test(.timeLimit(.minutes(2))) func childWatchers() async throws {
        try await asHeavyTest { [self] in try self.childWatchersBlocking() }
    }

    func childWatchersBlocking() throws {
        let run = try Running("child-watchers", ["40"])
        #expect(run.finish(timeout: 60) == 0)
        for name in ["Threaded", "MultiLoop", "Safe", "Fast", "Pidfd", "Libuv"] {
            #expect(run.output.contains("\(name)ChildWatcher") && !run.output.contains("NOT all 0"), "\(run.output)")
        }
        #expect(run.output.components(separatedBy: "all 0").count == 7, "\(run.output)")
    }

    @Test(.timeLimit(.minutes(2))) func signalsStopsGracefullyOnSIGTERM() async throws {
        try await asHeavyTest { [self] in try self.signalsStopsGracefullyOnSIGTERMBlocking() }
    }

    func signalsStopsGracefullyOnSIGTERMBlocking() throws {
        let run = try Running("signals")
        _ = try run.waitFor("tick (2)")
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.contains("received SIGTERM"))
        #expect(run.output.contains("stopped cleanly after"))
    }

    @Test(.timeLimit(.minutes(2))) func actorOnLoop() async throws {
        try await asHeavyTest { [self] in try self.actorOnLoopBlocking() }
    }

    func actorOnLoopBlocking() throws {
        let run = try Running("actor-on-loop")
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.contains("value = 3000 (expected 3000)"))
        #expect(run.output.contains("every increment ran on the home loop's thread: true"))
    }

    @Test(.timeLimit(.minutes(2)), arguments: [
        (["--loops", "0"], "--loops must be at least 1"),
        (["--port", "70000"], "--port must be in 0...65535"),
        (["--bogus"], "Unknown option '--bogus'"),
    ])
    func serverExamplesRejectBadArguments(arguments: [String], message: String) async throws {
        try await asHeavyTest { [self] in try self.serverExamplesRejectBadArgumentsBlocking(arguments: arguments, message: message) }
    }

    func serverExamplesRejectBadArgumentsBlocking(arguments: [String], message: String) throws {
        for example in ["echo-server", "http-hello"] {
            let run = try Running(example, arguments)
            #expect(run.finish() == 64, "\(example) \(arguments)")       // EX_USAGE
            #expect(run.output.contains(message), "\(example): \(run.output)")
            #expect(!run.output.contains("listening"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func echoServerOnTwoLoops() async throws {
        try await asHeavyTest { [self] in try self.echoServerOnTwoLoopsBlocking() }
    }

    func echoServerOnTwoLoopsBlocking() throws {
        let run = try Running("echo-server", ["--loops", "2", "--port", "0"])
        let port = try run.waitFor("listening on 127\\.0\\.0\\.1:([0-9]+)")
        let reply = try python("""
            import socket
            s = socket.create_connection(("127.0.0.1", \(port)), timeout=5)
            s.sendall(b"hello, loops")
            print(s.recv(100).decode())
            """)
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.finish() == 0, "\(run.output)")
        #expect(reply.trimmingCharacters(in: .whitespacesAndNewlines) == "hello, loops")
        #expect(run.output.contains("echo-server stopped"))
    }

    @Test(.timeLimit(.minutes(2))) func httpHelloOnTwoLoops() async throws {
        try await asHeavyTest { [self] in try self.httpHelloOnTwoLoopsBlocking() }
    }

    func httpHelloOnTwoLoopsBlocking() throws {
        let run = try Running("http-hello", ["--loops", "2", "--port", "0"])
        let port = try run.waitFor("listening on http://127\\.0\\.0\\.1:([0-9]+)/")
        let body = try python("""
            import urllib.request
            print(urllib.request.urlopen("http://127.0.0.1:\(port)/", timeout=5).read().decode())
            """)
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.finish() == 0, "\(run.output)")
        #expect(!body.isEmpty)
        #expect(run.output.contains("http-hello stopped"))
    }

    @Test(.timeLimit(.minutes(2))) func httpHelloServesHTTPSToCurl() async throws {
        try await asHeavyTest { [self] in try self.httpHelloServesHTTPSToCurlBlocking() }
    }

    func httpHelloServesHTTPSToCurlBlocking() throws {
        // A CA and a certificate it signs for localhost, made with the openssl command line.
        let directory = NSTemporaryDirectory() + "uvloop-https-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, made) = try runProgram("/bin/sh", ["-c", """
            set -e; cd '\(directory)'
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj /CN=Test-CA -days 2
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -subj /CN=localhost -out req.csr
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext
            openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out cert.pem
            """])
        try #require(status == 0, "\(made)")
        let curl = try #require(executableOnPath("curl"))
        // Files that do not fit stop it before it listens.
        let mismatched = try Running("http-hello", ["--port", "0", "--tls-cert", "\(directory)/cert.pem", "--tls-key", "\(directory)/ca.key"])
        #expect(mismatched.finish() == 1)
        #expect(mismatched.output.contains("does not match"), "\(mismatched.output)")
        let run = try Running("http-hello", ["--port", "0", "--quiet", "--tls-cert", "\(directory)/cert.pem",
                                             "--tls-key", "\(directory)/key.pem"])
        let port = try run.waitFor("listening on https://127\\.0\\.0\\.1:([0-9]+)/")
        let (ok, body) = try runProgram(curl, ["-sS", "--max-time", "20", "--cacert", "\(directory)/ca.pem",
                                               "https://localhost:\(port)/", "https://127.0.0.1:\(port)/"])
        // Without the CA, curl refuses the certificate (and the server serves on).
        let (refused, _) = try runProgram(curl, ["-sS", "--max-time", "20", "https://localhost:\(port)/"])
        let (plain, _) = try runProgram(curl, ["-sS", "--max-time", "20", "http://127.0.0.1:\(port)/"])
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.finish() == 0, "\(run.output)")
        #expect(ok == 0 && body == "Hello, World!Hello, World!", "\(body)")
        #expect(refused == 60)   // CURLE_PEER_FAILED_VERIFICATION
        #expect(plain != 0)      // plain HTTP on the TLS port gets no answer
        #expect(run.output.contains("http-hello stopped after 2 requests"))
    }

    @Test(.timeLimit(.minutes(2))) func httpHelloCutsSlowHeadsAndCapsItsConnections() async throws {
        try await asHeavyTest { [self] in try self.httpHelloCutsSlowHeadsAndCapsItsConnectionsBlocking() }
    }

    func httpHelloCutsSlowHeadsAndCapsItsConnectionsBlocking() throws {
        let run = try Running("http-hello", ["--port", "0", "--quiet", "--header-timeout", "1",
                                             "--max-connections", "2", "--grace", "0.5"])
        let port = try run.waitFor("listening on http://127\\.0\\.0\\.1:([0-9]+)/")
        let report = try python("""
            import select, socket, time
            port = \(port)
            def request(s):
                s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
                return s.recv(1000).split(b"\\r\\n")[0].decode()
            # A slowloris client: one header byte every 0.2 s, never a whole head in time.
            slow = socket.create_connection(("127.0.0.1", port), timeout=10)
            start, ended, first = time.monotonic(), None, ""
            for byte in b"GET / HTTP/1.1\\r\\nHost: a-very-slow-client\\r\\nAccept: */*\\r\\n\\r\\n":
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    ended = time.monotonic() - start; break
                if select.select([slow], [], [], 0.2)[0]:
                    try:
                        first = slow.recv(1000).split(b"\\r\\n")[0].decode()
                    except OSError as error:
                        first = type(error).__name__
                    ended = time.monotonic() - start; break
            print("slow: %r after %s s" % (first, None if ended is None else round(ended, 1)))
            slow.close()
            # The cap: two idle connections hold both slots; a third waits in the backlog.
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
            time.sleep(0.2)
            third = socket.create_connection(("127.0.0.1", port), timeout=0.7)
            try:
                print("third while capped:", request(third))
            except socket.timeout:
                print("third while capped: waits")
            idle[0].close()
            third.settimeout(5)
            print("third after a slot freed:", third.recv(1000).split(b"\\r\\n")[0].decode())
            """)
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.finish() == 0, "\(run.output)")
        let lines = report.split(separator: "\n").map(String.init)
        // 408 (or the cut itself) about a second after the connection, long before the head's 49 bytes.
        let slow = lines.first { $0.hasPrefix("slow:") } ?? report
        #expect(slow.contains("408") || slow.contains("ConnectionResetError") || slow.contains("''"), "\(report)")
        if let seconds = slow.split(separator: " ").dropLast().last.flatMap({ Double($0) }) {
            #expect(seconds >= 0.9 && seconds < 4, "\(report)")
        } else {
            Issue.record("the slow client was never cut: \(report)")
        }
        #expect(lines.contains("third while capped: waits"), "\(report)")
        #expect(lines.contains("third after a slot freed: HTTP/1.1 200 OK"), "\(report)")
        #expect(run.output.contains("http-hello stopped"))
    }

    @Test(.timeLimit(.minutes(2))) func httpHelloServesASocketPassedBySocketActivation() async throws {
        try await asHeavyTest { [self] in try self.httpHelloServesASocketPassedBySocketActivationBlocking() }
    }

    func httpHelloServesASocketPassedBySocketActivationBlocking() throws {
        // A systemd stand-in: binds and listens, passes the socket as descriptor 3 with LISTEN_FDS
        // and LISTEN_PID (its own pid, which exec keeps), then becomes http-hello.
        let manager = """
            import os, socket, sys
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            print("manager bound", s.getsockname()[1], flush=True)
            if s.fileno() != 3:
                os.dup2(s.fileno(), 3)                  # inheritable
            os.set_inheritable(3, True)
            os.environ["LISTEN_FDS"] = "1"
            os.environ["LISTEN_PID"] = str(os.getpid())
            os.execv(sys.argv[1], [sys.argv[1], "--loops", "2", "--port", "1", "--quiet"])
            """
        let run = try Running(executable: URL(fileURLWithPath: "/usr/bin/env"), name: "socket-activation",
                              ["python3", "-c", manager, productURL("http-hello").path])
        let bound = try run.waitFor("manager bound ([0-9]+)")
        let port = try run.waitFor("listening on http://127\\.0\\.0\\.1:([0-9]+)/")
        #expect(port == bound, "\(run.output)")
        let body = try python("""
            import urllib.request
            print(urllib.request.urlopen("http://127.0.0.1:\(bound)/", timeout=5).read().decode())
            """)
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.finish() == 0, "\(run.output)")
        #expect(body.contains("Hello, World!"), "\(body)")
    }

    @Test(.timeLimit(.minutes(2))) func jobRunnerStreamsTimesOutKillsOnLeaveAndStopsGracefully() async throws {
        try await asHeavyTest { [self] in try self.jobRunnerStreamsTimesOutKillsOnLeaveAndStopsGracefullyBlocking() }
    }

    func jobRunnerStreamsTimesOutKillsOnLeaveAndStopsGracefullyBlocking() throws {
        let run = try Running("job-runner", ["--port", "0", "--grace", "0.5"])
        let port = try run.waitFor("listening on 127\\.0\\.0\\.1:([0-9]+)")
        let replies = try python("""
            import os, socket, time
            def job(request, leave_after=None):
                s = socket.create_connection(("127.0.0.1", \(port)), timeout=20)
                s.sendall(request.encode() + b"\\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk: break
                    data += chunk
                    if leave_after and leave_after in data: break
                s.close()
                return data.decode()
            print(repr(job("run 10 for i in 1 2 3; do echo line $i; done; echo oops >&2; exit 3")))
            print(repr(job("run 0.3 sleep 30")))
            # Leave while the job runs: the job (a shell and its sleep) must be gone soon after.
            reply = job("run 30 echo $$; sleep 30 & wait", leave_after=b"\\n")
            pid = int(reply.split()[1])
            for _ in range(300):
                try:
                    os.kill(pid, 0)
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().split(")")[1].split()[0] == "Z": raise ProcessLookupError
                    time.sleep(0.01)
                except (ProcessLookupError, FileNotFoundError):
                    print("left: gone")
                    break
            else:
                print("left: still running")
            r = job("capture 5 head -c 100000 /dev/zero | tr '\\\\0' x; echo; exit 4")
            print(len(r.split("\\n")[0]), repr(r.split("\\n", 1)[1]))
            print(repr(job("bogus request")))
            """)
        let lines = replies.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "\(replies)\n\(run.output)")
        #expect(lines.first == "'out: line 1\\nout: line 2\\nout: line 3\\nout: oops\\nexit: 3\\n'", "\(replies)")
        #expect(lines.dropFirst(1).first == "'timeout: -15\\n'", "\(replies)")
        #expect(lines.dropFirst(2).first == "left: gone", "\(replies)")
        #expect(lines.dropFirst(3).first == "65536 'truncated: 65536 bytes kept\\nexit: 4\\n'", "\(replies)")
        #expect(lines.dropFirst(4).first?.contains("error: send 'run SECONDS COMMAND'") == true, "\(replies)")
        _ = try run.waitFor("(its client left)")

        // SIGTERM while a job runs: its client still gets the job's end, the server exits 0.
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        client.arguments = ["python3", "-c", """
            import socket
            s = socket.create_connection(("127.0.0.1", \(port)), timeout=20)
            s.sendall(b"run 30 sleep 31\\n")
            data = b""
            while True:
                chunk = s.recv(1000)
                if not chunk: break
                data += chunk
            print(repr(data.decode()))
            """]
        let clientOutput = Pipe()
        client.standardOutput = clientOutput
        try client.run()
        _ = try run.waitFor("job ([0-9]+) started: sleep 31")
        kill(run.process.processIdentifier, SIGTERM)
        let clientData = clientOutput.fileHandleForReading.readDataToEndOfFile()
        client.waitUntilExit()
        #expect(run.finish() == 0, "\(run.output)")
        #expect(String(decoding: clientData, as: UTF8.self) == "'exit: -15\\n'\n", "\(run.output)")
        #expect(run.output.contains("signal 15: stopping; 1 job(s) running"), "\(run.output)")
        #expect(run.output.contains("job-runner stopped"))
    }

    @Test(.timeLimit(.minutes(3))) func stressShortFormLeaksNothing() async throws {
        try await asHeavyTest { [self] in try self.stressShortFormLeaksNothingBlocking() }
    }

    func stressShortFormLeaksNothingBlocking() throws {
        let run = try Running("uvloop-stress")
        #expect(run.finish(timeout: 150) == 0, "\(run.output)")
        #expect(run.output.contains("OK: nothing leaked"), "\(run.output)")
    }

    @Test(.timeLimit(.minutes(2))) func serviceGroupShutsDownOnSIGTERM() async throws {
        try await asHeavyTest { [self] in try self.serviceGroupShutsDownOnSIGTERMBlocking() }
    }

    func serviceGroupShutsDownOnSIGTERMBlocking() throws {
        let run = try Running("service-group")
        let port = try run.waitFor("echo server on 127\\.0\\.0\\.1:([0-9]+)")
        let reply = try python("""
            import socket
            s = socket.create_connection(("127.0.0.1", \(port)), timeout=5)
            s.sendall(b"lifecycle")
            print(s.recv(100).decode())
            """)
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.finish() == 0, "\(run.output)")
        #expect(reply.trimmingCharacters(in: .whitespacesAndNewlines) == "lifecycle")
        #expect(run.output.contains("stopped cleanly: loops closed = true"))
    }
}
