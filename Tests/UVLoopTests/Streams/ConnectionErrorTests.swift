import Foundation
import Testing
@testable import UVLoop

@Suite("Streams: connection errors and bad input")
struct ConnectionErrorTests {
    @Test(.timeLimit(.minutes(1))) func connectionRefused() throws {
        try onFreshLoop { loop in
            let port = unusedPort()
            await #expect(throws: UVError.ECONNREFUSED) { try await loop.openConnection(host: "127.0.0.1", port: port) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func peerResetMidWriteIsAnError() throws {
        let error = try onFreshLoop { loop -> (any Error)? in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                _ = try? await reader.read(1)
                writer.abort()   // RST
            }
            let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            var failure: (any Error)?
            do {
                for _ in 0..<400 {
                    try writer.write(patternBytes(256 * 1024))
                    try await writer.drain()
                }
            } catch {
                failure = error
            }
            server.close()
            return failure
        }
        let thrown = try #require(error)
        #expect(isUVError(thrown, .ECONNRESET, .EPIPE), "\(thrown)")
    }

    @Test(.timeLimit(.minutes(1))) func peerResetMidReadIsAnError() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                _ = try? await reader.read(1)
                writer.abort()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            try writer.write([1])
            do {
                let bytes = try await reader.read()
                Issue.record("expected ECONNRESET, read \(bytes.count) bytes")
            } catch {
                #expect(isUVError(error, .ECONNRESET), "\(error)")
            }
            // The failure sticks: writes and drains report it too.
            #expect(throws: UVError.ECONNRESET) { try writer.write([2]) }
            await #expect(throws: UVError.ECONNRESET) { try await writer.drain() }
            server.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func closingTheServerKeepsLiveClients() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, echo)
            let port = server.port
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port)
            try writer.write(Array("before\n".utf8))
            #expect(try await reader.readLine() == Array("before\n".utf8))
            #expect(server.activeConnections == 1)
            server.close()
            #expect(!server.isServing)
            // No new connections ...
            await #expect(throws: UVError.ECONNREFUSED) { try await loop.openConnection(host: "127.0.0.1", port: port) }
            // ... but the live one still works, and waitClosed waits for it.
            let waited = loop.createTask { try await server.waitClosed(); return true }
            try writer.write(Array("after\n".utf8))
            #expect(try await reader.readLine() == Array("after\n".utf8))
            try await Task.sleep(for: .milliseconds(50))
            writer.close()
            #expect(try await waited.value)
            #expect(server.activeConnections == 0)
        }
    }

    @Test(.timeLimit(.minutes(1))) func closeClientsEndsLiveConnections() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, echo)
            var clients: [(StreamReader, StreamWriter)] = []
            for _ in 0..<5 { clients.append(try await loop.openConnection(host: "127.0.0.1", port: server.port)) }
            while server.activeConnections < 5 { try await Task.sleep(for: .milliseconds(5)) }
            server.close()
            server.closeClients()
            try await server.waitClosed()
            for (reader, _) in clients { #expect(try await reader.read() == []) }
            for (_, writer) in clients { writer.close() }
        }
    }

    @Test(.timeLimit(.minutes(1))) func writeAfterCloseAndReadAfterEOF() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { _, writer in
                try? writer.write(Array("bye".utf8))
                writer.close()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            #expect(try await reader.read() == Array("bye".utf8))
            #expect(try await reader.read() == [])
            #expect(try await reader.read(5) == [])
            writer.close()
            #expect(writer.isClosing)
            #expect(throws: StreamError.closed) { try writer.write([1]) }
            #expect(throws: StreamError.closed) { try writer.write("text") }
            try await writer.waitClosed()
            #expect(throws: StreamError.closed) { try writer.write([1]) }
            try await writer.drain()   // nothing buffered, closed cleanly: returns
            server.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func portOutOfRange() throws {
        try onFreshLoop { loop in
            await #expect(throws: UVError.EINVAL) { try await loop.startServer(host: "127.0.0.1", port: 65536, echo) }
            await #expect(throws: UVError.EINVAL) { try await loop.startServer(host: "127.0.0.1", port: -1, echo) }
            await #expect(throws: UVError.EINVAL) { try await loop.openConnection(host: "127.0.0.1", port: 70000) }
            #expect(throws: UVError.EINVAL) { try SocketAddress(host: "127.0.0.1", port: 1 << 16) }
            #expect(throws: UVError.EINVAL) { try SocketAddress(host: "localhost", port: 80) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func unresolvableHost() throws {
        try onFreshLoop { loop in
            do {
                _ = try await loop.openConnection(host: "no-such-host.invalid", port: 80)
                Issue.record("expected a resolver error")
            } catch let error as UVError {
                // EAI_NONAME normally; EAI_AGAIN/EAI_FAIL where no resolver is reachable.
                #expect(error.name.hasPrefix("EAI_"), "\(error)")
            }
            await #expect(throws: UVError.self) { try await loop.getaddrinfo("no-such-host.invalid", port: 80) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func addressInUse() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, echo)
            await #expect(throws: UVError.EADDRINUSE) { try await loop.startServer(host: "127.0.0.1", port: server.port, echo) }
            // With SO_REUSEPORT on both, two servers share the port.
            let first = try await loop.startServer(host: "127.0.0.1", port: 0, reusePort: true, echo)
            let second = try await loop.startServer(host: "127.0.0.1", port: first.port, reusePort: true, echo)
            #expect(second.port == first.port)
            for s in [server, first, second] { s.close() }
        }
    }

    @Test(.timeLimit(.minutes(1))) func getaddrinfoAnswers() throws {
        let (numeric, local) = try onFreshLoop { loop in
            (try await loop.getaddrinfo("127.0.0.1", port: 80, type: .stream),
             try await loop.getaddrinfo("localhost", port: 443, family: .ipv4, type: .stream))
        }
        #expect(numeric.map(\.address) == [try SocketAddress(host: "127.0.0.1", port: 80)])
        #expect(numeric.first?.socketType == .stream)
        #expect(local.contains { $0.address == (try? SocketAddress(host: "127.0.0.1", port: 443)) })
    }

    @Test(.timeLimit(.minutes(1))) func closingTheLoopFailsPendingOperations() throws {
        let loop = try EventLoop()
        let outcome = Box<(any Error)?>(nil)
        let ready = Box(false)
        try loop.runUntilComplete {
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, _ in
                _ = try? await reader.read()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            loop.createTask {
                ready.value = true
                do { _ = try await reader.read() } catch { outcome.value = error }
                _ = writer
            }
            while !ready.value { await Task.yield() }
        }
        // The reader task waits; closing the loop closes its handle and fails the read.
        try loop.close()
        let deadline = Date().addingTimeInterval(5)
        while outcome.value == nil && Date() < deadline { usleep(1000) }
        #expect((outcome.value as? EventLoopError) == .loopClosed)
    }

    @Test(.timeLimit(.minutes(1))) func operationsOnAClosedLoop() async throws {
        let loop = try EventLoop()
        try loop.close()
        await #expect(throws: EventLoopError.loopClosed) { try await loop.openConnection(host: "127.0.0.1", port: 1) }
        await #expect(throws: EventLoopError.loopClosed) { try await loop.startServer(host: "127.0.0.1", port: 0, echo) }
        await #expect(throws: EventLoopError.loopClosed) { try await loop.getaddrinfo("localhost") }
        #expect(throws: EventLoopError.loopClosed) { try StreamReader(loop: loop, pipe: 0) }
    }
}
