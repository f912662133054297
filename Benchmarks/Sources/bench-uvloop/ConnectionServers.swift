import BenchSupport
import Glibc
import UVLoop

/// B10: connection churn. Every connection is one cycle of the shared client (`c/conn_client.c`):
/// connect, send 1 KiB, read the echo, close. The handler reads 1 KiB at a time and echoes it
/// (`write`, `drain()`) until EOF. Serves on 127.0.0.1 (any port) until SIGTERM.
func churnServer(loops: Int) throws -> [Measurement] {
    try serveUntilSIGTERM { reader, writer in
        do {
            while true {
                let chunk = try await reader.read(1024)
                if chunk.isEmpty { break }
                try writer.write(chunk)
                try await writer.drain()
            }
        } catch {}
        writer.close()
    }
}

/// B11: idle connections. Each connection's handler task waits in one `read` the client never
/// answers (it sends nothing); run.py measures the server's memory with 10,000 of them.
/// RLIMIT_NOFILE is raised to its hard limit first.
func idleServer(loops: Int) throws -> [Measurement] {
    raiseDescriptorLimit()
    return try serveUntilSIGTERM { reader, _ in
        _ = try? await reader.read(1024)
    }
}

/// One loop, one `startServer` with `handler` on 127.0.0.1 (any port); announces the port and
/// serves until SIGTERM, then closes the server and aborts the connections still open.
private func serveUntilSIGTERM(_ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) throws -> [Measurement] {
    let loop = try newEventLoop()
    try loop.runUntilComplete {
        let server = try await loop.startServer(host: "127.0.0.1", port: 0, handler)
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
