import BenchSupport
import Glibc
import UVLoop

/// B4: an echo server with UVLoop's streams, the asyncio way: `read(65536)`, `write`, `drain()`.
/// Serves on 127.0.0.1 (any port) until SIGTERM; the shared client does the measuring.
func echoServer(loops: Int) throws -> [Measurement] {
    try serveEcho(maxConnections: nil, idleTimeout: nil)
}

/// B4's "UVLoop+limits" column (run.py runs it as `bench-uvloop B4-limits 1`): the same server with
/// `maxConnections: 10_000, idleTimeout: 60`, so that what the cap and the idle sweep cost shows
/// against the plain server (issue 13: within 3%).
func echoServerWithLimits(loops: Int) throws -> [Measurement] {
    try serveEcho(maxConnections: 10_000, idleTimeout: 60)
}

private func serveEcho(maxConnections: Int?, idleTimeout: Double?) throws -> [Measurement] {
    let loop = try newEventLoop()
    try loop.runUntilComplete {
        let server = try await loop.startServer(host: "127.0.0.1", port: 0, maxConnections: maxConnections,
                                                idleTimeout: idleTimeout) { reader, writer in
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
        announceListening(port: server.port)
        let stop = AsyncStream<Void>.makeStream()
        try loop.addSignalHandler(SIGTERM) { stop.continuation.finish() }
        for await _ in stop.stream {}
        server.close()
        server.abortClients()
    }
    try loop.close()
    return []
}
