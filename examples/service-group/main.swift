// service-group: UVLoop's loops as a swift-service-lifecycle Service. Two loops serve an echo
// server on one port; SIGTERM or SIGINT shuts the group down gracefully: the server closes, the
// loops stop and close.
import Logging
import ServiceLifecycle
import UVLoop
import UVLoopServiceLifecycle

/// Starts an echo server on each loop (sharing one port) and closes them on graceful shutdown.
struct EchoService: Service {
    let loops: [EventLoop]
    let logger: Logger

    func run() async throws {
        var port = 0
        var servers: [Server] = []
        for loop in loops {
            let server = try await loop.startServer(host: "127.0.0.1", port: port, reusePort: true) { reader, writer in
                while let chunk = try? await reader.read(65536), !chunk.isEmpty {
                    try? writer.write(chunk)
                    try? await writer.drain()
                }
                writer.close()
            }
            port = server.port
            servers.append(server)
        }
        logger.info("echo server on 127.0.0.1:\(port) across \(loops.count) loops; send SIGTERM or press Ctrl-C to stop")
        try? await gracefulShutdown()
        for server in servers { server.close() }
        for server in servers { try await server.waitClosed() }
        logger.info("echo servers closed")
    }
}

var logger = Logger(label: "service-group")
logger.logLevel = .info
let loops = try EventLoopService(loops: 2, logger: logger)
let group = ServiceGroup(configuration: ServiceGroupConfiguration(
    services: [
        .init(service: loops),
        .init(service: EchoService(loops: loops.loops, logger: logger)),
    ],
    gracefulShutdownSignals: [.sigterm, .sigint],
    logger: logger))
try await group.run()
print("stopped cleanly: loops closed = \(loops.loops.allSatisfy { $0.isClosed })")
