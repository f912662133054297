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

        init(_ name: String, _ arguments: [String] = []) throws {
            outputURL = FileManager.default.temporaryDirectory
                .appendingPathComponent("uvloop-example-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log")
            _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
            let output = try FileHandle(forWritingTo: outputURL)
            process.executableURL = productURL(name)
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

    @Test(.timeLimit(.minutes(2))) func helloLoop() throws {
        let run = try Running("hello-loop")
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.contains("callSoon: hello from the loop thread"))
        #expect(run.output.contains("callLater(0.05): a timer fired"))
        #expect(run.output.contains("answer = 42"))
        #expect(run.output.contains("loop closed: true"))
    }

    @Test(.timeLimit(.minutes(2))) func loopHealth() throws {
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

    @Test(.timeLimit(.minutes(2))) func customPolicy() throws {
        let run = try Running("custom-policy")
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.contains("policy: MyEventLoopPolicy"))
        #expect(run.output.contains("same loop both times: true"))
        #expect(run.output.contains("inside the loop, getEventLoop() is the running loop"))
    }

    @Test(.timeLimit(.minutes(2))) func loopPerThread() throws {
        let run = try Running("loop-per-thread")
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.components(separatedBy: "is this thread's loop").count == 5)
        #expect(run.output.contains("main loop collected 4 results from 4 threads, one loop each"))
    }

    @Test(.timeLimit(.minutes(2))) func subprocessPipeline() throws {
        let run = try Running("subprocess-pipeline")
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.contains("consumer -> LISBON OSLO QUITO KYOTO"))
        #expect(run.output.contains("wc -c counted 1000000 bytes, exit 0"))
    }

    @Test(.timeLimit(.minutes(2))) func childWatchers() throws {
        let run = try Running("child-watchers", ["40"])
        #expect(run.finish(timeout: 60) == 0)
        for name in ["Threaded", "MultiLoop", "Safe", "Fast", "Pidfd", "Libuv"] {
            #expect(run.output.contains("\(name)ChildWatcher") && !run.output.contains("NOT all 0"), "\(run.output)")
        }
        #expect(run.output.components(separatedBy: "all 0").count == 7, "\(run.output)")
    }

    @Test(.timeLimit(.minutes(2))) func signalsStopsGracefullyOnSIGTERM() throws {
        let run = try Running("signals")
        _ = try run.waitFor("tick (2)")
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.finish() == 0, "\(run.output)")
        #expect(run.output.contains("received SIGTERM"))
        #expect(run.output.contains("stopped cleanly after"))
    }

    @Test(.timeLimit(.minutes(2))) func actorOnLoop() throws {
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
    func serverExamplesRejectBadArguments(arguments: [String], message: String) throws {
        for example in ["echo-server", "http-hello"] {
            let run = try Running(example, arguments)
            #expect(run.finish() == 64, "\(example) \(arguments)")       // EX_USAGE
            #expect(run.output.contains(message), "\(example): \(run.output)")
            #expect(!run.output.contains("listening"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func echoServerOnTwoLoops() throws {
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

    @Test(.timeLimit(.minutes(2))) func httpHelloOnTwoLoops() throws {
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

    @Test(.timeLimit(.minutes(3))) func stressShortFormLeaksNothing() throws {
        let run = try Running("uvloop-stress")
        #expect(run.finish(timeout: 150) == 0, "\(run.output)")
        #expect(run.output.contains("OK: nothing leaked"), "\(run.output)")
    }

    @Test(.timeLimit(.minutes(2))) func serviceGroupShutsDownOnSIGTERM() throws {
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
