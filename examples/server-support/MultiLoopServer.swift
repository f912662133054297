// What the server examples (echo-server, http-hello) share: their command line, and serving on N
// event loops, one per thread, all listening on one port with SO_REUSEPORT, with graceful shutdown.
import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import UVLoop
import UVLoopServiceLifecycle

/// The server examples' options: `[--loops N] [--host HOST] [--port PORT] [--max-connections N]
/// [--idle-timeout S] [--grace S] [--quiet]`.
public struct ServerOptions: ParsableArguments, Sendable {
    @Option(help: "Event loops, one thread each, sharing the port.")
    public var loops = 1

    @Option(help: "The address to listen on.")
    public var host = "127.0.0.1"

    @Option(help: "The port to listen on; 0 picks a free one.")
    public var port: Int?

    @Option(help: "At most this many connections at once (all loops together); the next clients wait in the backlog.")
    public var maxConnections: Int?

    @Option(help: "Seconds a connection may stay without a byte read or written before it is cut.")
    public var idleTimeout = 60.0

    @Option(help: "Seconds the handlers get to finish on SIGINT or SIGTERM before their connections are cut.")
    public var grace = 5.0

    @Flag(help: "Print no live figures.")
    public var quiet = false

    public init() {}

    public func validate() throws {
        if loops < 1 { throw ValidationError("--loops must be at least 1") }
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535") }
        if let maxConnections, maxConnections < 1 { throw ValidationError("--max-connections must be at least 1") }
        if !(idleTimeout > 0) { throw ValidationError("--idle-timeout must be a positive number of seconds") }
        if !(grace >= 0) { throw ValidationError("--grace must be 0 or more seconds") }
    }
}

/// Serves connections on `options.loops` loops until SIGINT or SIGTERM, then shuts down
/// gracefully (stops accepting, gives the handlers `--grace` seconds, cuts the rest), stops and
/// closes every loop, and returns.
///
/// The loops run in an `EventLoopService` (UVLoopServiceLifecycle): one thread each, each its
/// thread's loop in the policy, and one server per loop on the same port
/// (`EventLoopService.startServers`, SO_REUSEPORT). Under systemd socket activation
/// (`LISTEN_FDS`), the first inherited listening socket is served instead of `--host`/`--port`.
///
/// - Parameters:
///   - name: the program's name, for messages.
///   - defaultPort: the port when `--port` is not given.
///   - listening: runs once with the bound port and the first loop.
///   - handler: runs once per connection, as a task on the loop that accepted it; `loop` is that
///     loop's index.
public func serveOnLoops(
    _ name: String, options: ServerOptions, defaultPort: Int,
    listening: @escaping @Sendable (_ port: Int, _ firstLoop: EventLoop) -> Void,
    handler: @escaping @Sendable (_ loop: Int, StreamReader, StreamWriter) async -> Void
) async {
    let inherited = EventLoop.inheritedListeners()
    var logger = Logger(label: name)
    logger.logLevel = .warning
    do {
        let service = try EventLoopService(loops: options.loops, gracePeriod: options.grace, logger: logger)
        let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let servers: [Server]
                if let socket = inherited.first {
                    servers = try await service.startServers(socket: socket, maxConnections: options.maxConnections,
                                                             idleTimeout: options.idleTimeout, handler)
                } else {
                    servers = try await service.startServers(host: options.host, port: options.port ?? defaultPort,
                                                             maxConnections: options.maxConnections,
                                                             idleTimeout: options.idleTimeout, handler)
                }
                listening(servers[0].port, service.loops[0])
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
            try await tasks.waitForAll()
        }
    } catch {
        FileHandle.standardError.write(Data("\(name): \(error)\n".utf8))
        exit(1)
    }
}

/// Runs `body` on `loop` once a second, with the seconds since the previous run. Callable from
/// any thread.
public func everySecond(on loop: EventLoop, _ body: @escaping @Sendable (_ elapsed: Double) -> Void) {
    @Sendable func schedule(from start: Double) {
        loop.callLater(1.0) {
            let now = loop.time()
            body(now - start)
            schedule(from: now)
        }
    }
    loop.callSoonThreadsafe { schedule(from: loop.time()) }
}
