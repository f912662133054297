import BenchSupport
import Glibc
import UVLoop
import UVLoopTLS

/// B12 and B12b: a TLS echo server with UVLoopTLS, on one loop: `startServer(host:port:tls:)`
/// with the certificate and key run.py made (ECDSA P-256), TLS 1.3 at least, and B4's handler on
/// the decrypted streams (`read(65536)`, `write`, `drain()` until EOF, then `close()`, which sends
/// close_notify). B12b is the same server: the client makes a new connection per handshake.
/// Serves on 127.0.0.1 (any port) until SIGTERM; c/tls_client.c does the measuring.
func tlsEchoServer(loops: Int) throws -> [Measurement] {
    let files = try TLSFiles.fromEnvironment()
    var tls = try TLSConfiguration.server(certificateChainFile: files.certificateChain,
                                          privateKeyFile: files.privateKey)
    tls.minimumVersion = .tls13
    let loop = try newEventLoop()
    try loop.runUntilComplete {
        let server = try await loop.startServer(host: "127.0.0.1", port: 0, tls: tls) { reader, writer in
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
