import Foundation
import Testing
@testable import UVLoop

@Suite("Streams: flow control and half-close")
struct FlowControlTests {
    static let sixteenMiB = 16 * 1024 * 1024

    @Test(.timeLimit(.minutes(1))) func sixteenMiBEachWayThroughAnEchoServer() throws {
        let (received, maxBuffered) = try onFreshLoop { loop in
            let maxBuffered = Box(0)
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                do {
                    while true {
                        let chunk = try await reader.read(65536)
                        if chunk.isEmpty { break }
                        try writer.write(chunk)
                        try await writer.drain()
                        // drain() returned: the buffer is under the high-water mark or was brought
                        // down to the low one.
                        let buffered = try await writer.writeBufferSize()
                        maxBuffered.mutate { $0 = max($0, buffered) }
                    }
                    try writer.writeEOF()
                } catch {
                    Issue.record("server: \(error)")
                }
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            let payload = patternBytes(Self.sixteenMiB)
            let sender = loop.createTask {
                var offset = 0
                while offset < payload.count {
                    let end = min(offset + 256 * 1024, payload.count)
                    try writer.write(Array(payload[offset..<end]))
                    try await writer.drain()
                    offset = end
                }
                try writer.writeEOF()
            }
            let received = try await reader.read()
            try await sender.value
            writer.close()
            server.close()
            try await server.waitClosed()
            return (received, maxBuffered.value)
        }
        #expect(received.count == Self.sixteenMiB)
        #expect(received == patternBytes(Self.sixteenMiB))
        #expect(maxBuffered <= 64 * 1024)
    }

    @Test(.timeLimit(.minutes(1))) func aSlowReaderPausesTheSocketAndBlocksTheWritersDrain() throws {
        try onFreshLoop { loop in
            let serverReader = Box<StreamReader?>(nil)
            let release = AsyncStream<Void>.makeStream()
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                serverReader.value = reader
                // Read nothing until released.
                for await _ in release.stream { break }
                let all = try? await reader.read()
                try? writer.write(Array("\(all?.count ?? -1)\n".utf8))
                writer.close()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            // More than the kernel's socket buffers hold: the send buffer stops at tcp_wmem's
            // maximum (4 MiB here), and the receive buffer grows only while the peer reads.
            let total = 32 * 1024 * 1024
            let drained = Box(false)
            let sender = loop.createTask {
                try writer.write(patternBytes(total))
                try await writer.drain()
                drained.value = true
                try writer.writeEOF()
            }
            // The server reads nothing: its reader pauses at 2 x 64 KiB, the kernel buffers fill,
            // and the client's drain() cannot return.
            let deadline = ContinuousClock.now + .seconds(20)
            while serverReader.value.map({ !$0.transport.readingPaused }) ?? true, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await Task.sleep(for: .milliseconds(100))
            #expect(!drained.value)
            let transport = try #require(serverReader.value).transport
            #expect(transport.readingPaused)
            #expect(transport.received.count <= 2 * transport.limit + 65536)
            #expect(try await writer.writeBufferSize() > 64 * 1024)
            release.continuation.yield()
            try await sender.value
            #expect(drained.value)
            let reply = try await reader.readLine()
            #expect(reply == Array("\(total)\n".utf8))
            writer.close()
            server.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func halfCloseLetsThePeerReplyAfterEOF() throws {
        let reply = try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                // Read the whole request (to EOF), then answer on the still-open write side.
                let request = (try? await reader.read()) ?? []
                try? writer.write(Array("got \(request.count) bytes".utf8))
                writer.close()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            try writer.write(patternBytes(300_000))
            try writer.writeEOF()
            try writer.writeEOF()     // idempotent
            #expect(throws: StreamError.closed) { try writer.write([1]) }
            let reply = try await reader.read()
            #expect(reader.atEOF)
            writer.close()
            try await writer.waitClosed()
            server.close()
            return String(decoding: reply, as: UTF8.self)
        }
        #expect(reply == "got 300000 bytes")
    }

    @Test(.timeLimit(.minutes(1))) func writeBufferLimitsAreAdjustable() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                _ = try? await reader.read()
                writer.close()
            }
            let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            try await writer.setWriteBufferLimits(high: 0)
            // With a high-water mark of 0, drain waits for everything to be handed to the kernel.
            try writer.write(patternBytes(4 * 1024 * 1024))
            let drained = loop.createTask { try await writer.drain() }
            try await Task.sleep(for: .milliseconds(100))
            writer.abort()
            // The aborted connection's drain ends (with an error or normally), never hangs.
            _ = try? await drained.value
            server.close()
        }
    }
}
