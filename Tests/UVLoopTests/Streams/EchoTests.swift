import Foundation
import Testing
@testable import UVLoop

/// An echo handler: copies everything back until EOF, then closes.
@Sendable func echo(_ reader: StreamReader, _ writer: StreamWriter) async {
    do {
        while true {
            let chunk = try await reader.read(65536)
            if chunk.isEmpty { break }
            try writer.write(chunk)
            try await writer.drain()
        }
    } catch {}
    writer.close()
}

@Suite("Streams: echo over TCP")
struct EchoTests {
    @Test(.timeLimit(.minutes(1))) func oneClientEchoes() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let reply = try loop.runUntilComplete { () async throws -> [UInt8] in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, echo)
            #expect(server.port > 0)
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            try writer.write(Array("hello\n".utf8))
            let line = try await reader.readLine()
            writer.close()
            await writer.waitClosed()
            server.close()
            await server.waitClosed()
            return line
        }
        #expect(reply == Array("hello\n".utf8))
    }

    @Test(.timeLimit(.minutes(1))) func hundredConcurrentClients() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let results = try loop.runUntilComplete { () async throws -> [Bool] in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, echo)
            let port = server.port
            let outcome = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<100 {
                    group.addTask {
                        let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port)
                        var ok = true
                        for round in 0..<20 {
                            let message = Array("client \(index) round \(round)\n".utf8)
                            try writer.write(message)
                            try await writer.drain()
                            let line = try await reader.readLine()
                            ok = ok && line == message
                        }
                        try writer.writeEOF()
                        let rest = try await reader.read()
                        ok = ok && rest.isEmpty
                        writer.close()
                        await writer.waitClosed()
                        return ok
                    }
                }
                var all: [Bool] = []
                for try await ok in group { all.append(ok) }
                return all
            }
            server.close()
            await server.waitClosed()
            return outcome
        }
        #expect(results.count == 100)
        #expect(results.allSatisfy { $0 })
    }
}
