import Foundation
import Testing
@testable import UVLoop

/// The first executable named `name` on PATH.
func executableOnPath(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

@Suite("Streams: real client processes")
struct ExternalClientTests {
    /// A python3 program using only its socket module: sends lines, half-closes, reads the echo.
    static let pythonClient = """
    import socket, sys
    port = int(sys.argv[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        payload = b"".join(b"line %d\\n" % i for i in range(1000))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    print("ok" if received == payload else "mismatch %d/%d" % (len(received), len(payload)))
    """

    @Test(.timeLimit(.minutes(1)), .enabled(if: executableOnPath("python3") != nil))
    func pythonSocketClientAgainstAnEchoServer() throws {
        let python = executableOnPath("python3")!
        let output = try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, echo)
            let port = server.port
            // The client blocks in its own process; the loop keeps serving meanwhile.
            let result = try await loop.runInExecutor { try runProgram(python, ["-c", Self.pythonClient, String(port)]) }
            server.close()
            try await server.waitClosed()
            return result
        }
        #expect(output.status == 0)
        #expect(output.output.trimmingCharacters(in: .whitespacesAndNewlines) == "ok", "\(output.output)")
    }

    @Test(.timeLimit(.minutes(1)), .enabled(if: executableOnPath("curl") != nil))
    func curlAgainstAMinimalHTTPServer() throws {
        let curl = executableOnPath("curl")!
        let output = try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                do {
                    while true {
                        let head = try await reader.readUntil(Array("\r\n\r\n".utf8))
                        let requestLine = String(decoding: head.prefix { $0 != 13 }, as: UTF8.self)
                        let body = "you asked for \(requestLine.split(separator: " ").dropFirst().first ?? "?")\n"
                        try writer.write("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\nContent-Type: text/plain\r\n\r\n\(body)")
                        try await writer.drain()
                    }
                } catch {}
                writer.close()
            }
            let url = "http://127.0.0.1:\(server.port)"
            let result = try await loop.runInExecutor {
                try runProgram(curl, ["-s", "--max-time", "20", "\(url)/first", "\(url)/second"])
            }
            server.close()
            server.closeClients()
            try await server.waitClosed()
            return result
        }
        #expect(output.status == 0)
        // curl reuses the keep-alive connection for the second URL.
        #expect(output.output == "you asked for /first\nyou asked for /second\n", "\(output.output)")
    }
}

/// Descriptor counts are process-wide: exit tests.
@Suite("Streams: nothing left behind")
struct StreamResourceTests {
    @Test(.timeLimit(.minutes(1))) func closingALoopWithLiveConnectionsReleasesEveryDescriptor() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            try EventLoop().close()
            let before = openDescriptors()
            let directory = temporaryDirectory()
            for round in 0..<3 {
                let loop = try EventLoop()
                try loop.runUntilComplete {
                    let server = try await loop.startServer(host: "127.0.0.1", port: 0, echo)
                    let unix = try await loop.startUnixServer(path: directory + "/s\(round)", echo)
                    let udp = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 0))
                    var clients: [(StreamReader, StreamWriter)] = []
                    for _ in 0..<10 {
                        clients.append(try await loop.openConnection(host: "127.0.0.1", port: server.port))
                        clients.append(try await loop.openUnixConnection(path: directory + "/s\(round)"))
                    }
                    for (reader, writer) in clients {
                        try writer.write([1, 2, 3])
                        _ = try await reader.readExactly(3)
                    }
                    // Left open on purpose: a pending read, a pending drain, live servers.
                    let (reader, writer) = clients[0]
                    loop.createTask { _ = try? await reader.read() }
                    try writer.write([UInt8](repeating: 0, count: 8 << 20))
                    loop.createTask { try? await writer.drain() }
                    _ = (unix, udp)
                    await Task.yield()
                }
                try loop.close()
            }
            rmdir(directory)
            reportDescriptorChanges(since: before, "after close()")
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }
}
