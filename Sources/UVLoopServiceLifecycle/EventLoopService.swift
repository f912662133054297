import Foundation
import Logging
import ServiceLifecycle
import UVLoop

/// Runs event loops as a swift-service-lifecycle `Service`: one OS thread per loop, each loop set
/// as its thread's loop in the policy, until graceful shutdown (SIGTERM through a `ServiceGroup`)
/// or cancellation; then the servers it manages shut down (`Server.shutdown(gracePeriod:)`), the
/// loops stop, their threads end, and the loops close.
///
/// Serving one port on every loop is one call (`startServers`): each loop gets its own listening
/// socket on the port (SO_REUSEPORT), and the kernel spreads the connections over them.
/// ```swift
/// let service = try EventLoopService(loops: 2, gracePeriod: 10)
/// let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint],
///                          logger: Logger(label: "server"))
/// try await withThrowingDiscardingTaskGroup { tasks in
///     tasks.addTask { try await group.run() }
///     let servers = try await service.startServers(host: "127.0.0.1", port: 8080, maxConnections: 10_000,
///                                                  idleTimeout: 60) { loopIndex, reader, writer in
///         while let chunk = try? await reader.read(65536), !chunk.isEmpty { try? writer.write(chunk) }
///     }
///     print("listening on port", servers[0].port)
/// }
/// ```
///
/// The loops exist from `init` on, so other services can schedule work on them before `run()`
/// starts them (`callSoonThreadsafe`, `createTask`); that work runs once the loops run.
public final class EventLoopService: Service, Sendable {
    /// The loops this service runs, one thread each.
    public let loops: [EventLoop]
    /// Seconds the managed servers' handlers get to finish on graceful shutdown.
    public let gracePeriod: Double
    private let logger: Logger
    private let servers = Guarded<[Server]>([])

    /// Creates `count` new loops (through the policy's `newEventLoop()`).
    /// - Parameter gracePeriod: what `Server.shutdown(gracePeriod:)` gets for each managed
    ///   server on graceful shutdown.
    /// - Throws: `UVError` when a loop cannot be created.
    public init(loops count: Int = 1, gracePeriod: Double = 10, logger: Logger = Logger(label: "uvloop.service")) throws {
        self.loops = try (0..<max(count, 1)).map { _ in try newEventLoop() }
        self.gracePeriod = gracePeriod
        self.logger = logger
    }

    /// Runs existing loops (not running, not closed).
    public init(running loops: [EventLoop], gracePeriod: Double = 10, logger: Logger = Logger(label: "uvloop.service")) {
        self.loops = loops
        self.gracePeriod = gracePeriod
        self.logger = logger
    }

    /// Shuts `server` down (with `gracePeriod`) on graceful shutdown, before the loops stop.
    /// `startServers` calls it for the servers it starts.
    public func manage(_ server: Server) {
        servers.withLock { $0.append(server) }
    }

    /// Serves `host`/`port` on every loop: one server per loop, each listening on the port with
    /// SO_REUSEPORT (when there is more than one loop), so the kernel spreads connections over
    /// the loops' threads; with port 0, the first loop's server picks the port and the others
    /// join it. The servers are managed: graceful shutdown shuts them down with `gracePeriod`.
    /// Call it once `run()` has started (from another task of the service group), or before it:
    /// it then completes once the loops run.
    /// - Parameters:
    ///   - maxConnections: the cap for all loops together: each loop's server takes its share
    ///     (rounded up).
    ///   - handler: runs once per connection, on the loop that accepted it (`loopIndex` in
    ///     `loops`).
    /// - Returns: the servers, in the order of `loops`.
    /// - Throws: what `EventLoop.startServer` throws; servers already started are closed then.
    @discardableResult
    public func startServers(host: String, port: Int, backlog: Int32 = 511, limit: Int = 65_536,
                             maxConnections: Int? = nil, idleTimeout: Double? = nil,
                             _ handler: @escaping @Sendable (_ loopIndex: Int, StreamReader, StreamWriter) async -> Void)
        async throws -> [Server] {
        let share = try shareOf(maxConnections)
        var boundPort = port
        return try await startOnEveryLoop { index, loop in
            let server = try await loop.startServer(host: host, port: boundPort, backlog: backlog,
                                                    reusePort: loops.count > 1, limit: limit,
                                                    maxConnections: share, idleTimeout: idleTimeout) { reader, writer in
                await handler(index, reader, writer)
            }
            boundPort = server.port
            return server
        }
    }

    /// Each loop's share of a cap for all loops together (rounded up).
    private func shareOf(_ maxConnections: Int?) throws -> Int? {
        try maxConnections.map { total in
            guard total >= 1 else { throw EventLoopError.invalidArgument }
            return (total + loops.count - 1) / loops.count
        }
    }

    /// Starts one server per loop, in order, with `start`; closes those started when one fails;
    /// manages them all once every loop has one.
    private func startOnEveryLoop(_ start: (Int, EventLoop) async throws -> Server) async throws -> [Server] {
        var started: [Server] = []
        do {
            for (index, loop) in loops.enumerated() { started.append(try await start(index, loop)) }
        } catch {
            for server in started { server.close() }
            throw error
        }
        for server in started { manage(server) }
        return started
    }

    /// Serves a listening socket made elsewhere (`EventLoop.inheritedListeners()`, systemd's
    /// `LISTEN_FDS`) on every loop: the first loop takes `socket`, each other loop a duplicate of
    /// it (they share the socket's one backlog). Managed as `startServers(host:port:)`'s.
    /// - Throws: what `EventLoop.startServer(socket:)` throws; on failure `socket` is closed
    ///   unless the first loop refused it (then it stays the caller's).
    @discardableResult
    public func startServers(socket: Int32, limit: Int = 65_536, maxConnections: Int? = nil, idleTimeout: Double? = nil,
                             _ handler: @escaping @Sendable (_ loopIndex: Int, StreamReader, StreamWriter) async -> Void)
        async throws -> [Server] {
        let share = try shareOf(maxConnections)
        // The duplicates first: the first loop's server owns `socket` from then on.
        var descriptors = [socket]
        for _ in 1..<max(loops.count, 1) {
            let copy = fcntl(socket, F_DUPFD_CLOEXEC, 0)
            if copy < 0 {
                descriptors.dropFirst().forEach { _ = close($0) }
                throw POSIXErrorCode(rawValue: errno).map { POSIXError($0) } ?? POSIXError(.EBADF)
            }
            descriptors.append(copy)
        }
        var adopted = 0
        do {
            return try await startOnEveryLoop { index, loop in
                let server = try await loop.startServer(socket: descriptors[index], limit: limit,
                                                        maxConnections: share, idleTimeout: idleTimeout) { reader, writer in
                    await handler(index, reader, writer)
                }
                adopted += 1
                return server
            }
        } catch {
            // The ones no server took: the duplicates, and `socket` itself once it was adopted.
            (adopted == 0 ? descriptors.dropFirst() : descriptors.dropFirst(adopted)).forEach { _ = close($0) }
            throw error
        }
    }

    /// Runs every loop on its own thread until graceful shutdown or cancellation, then stops them,
    /// waits for their threads and closes them.
    /// - Throws: the first error a loop's `runForever` threw (a closed loop, for instance).
    public func run() async throws {
        let finished = Finished(expected: loops.count)
        for (index, loop) in loops.enumerated() {
            let logger = self.logger
            let thread = Thread {
                setEventLoop(loop)
                do {
                    try loop.runForever()
                } catch {
                    logger.error("Event loop \(index) could not run: \(error)")
                    finished.record(error)
                }
                setEventLoop(nil)
                finished.arrive()
            }
            thread.name = "uvloop-service-\(index)"
            thread.start()
        }
        logger.info("Running \(loops.count) event loop(s)")
        // Returns on graceful shutdown; throws CancellationError when the task is cancelled.
        try? await gracefulShutdown()
        let managed = servers.withLock { servers in
            defer { servers = [] }
            return servers
        }
        if !managed.isEmpty {
            // Cancellation (rather than graceful shutdown) cuts at once: shutdown sees the cancelled task.
            logger.info("Shutting \(managed.count) server(s) down with a grace of \(gracePeriod) s")
            let grace = gracePeriod
            await withDiscardingTaskGroup { group in
                for server in managed { group.addTask { await server.shutdown(gracePeriod: grace) } }
            }
        }
        logger.info("Stopping \(loops.count) event loop(s)")
        for loop in loops { loop.stop() }
        try await finished.wait()
        for loop in loops { try? loop.close() }
    }
}

/// Counts loop threads that have finished and wakes `run()` when all have.
private final class Finished: Sendable {
    private struct State {
        var remaining: Int
        var error: (any Error)?
        var waiter: CheckedContinuation<Void, any Error>?
    }

    private let state: Guarded<State>

    init(expected: Int) { state = Guarded(State(remaining: expected)) }

    func record(_ error: any Error) {
        state.withLock { if $0.error == nil { $0.error = error } }
    }

    func arrive() {
        let (waiter, error) = state.withLock { state -> (CheckedContinuation<Void, any Error>?, (any Error)?) in
            state.remaining -= 1
            guard state.remaining == 0, let waiter = state.waiter else { return (nil, nil) }
            state.waiter = nil
            return (waiter, state.error)
        }
        guard let waiter else { return }
        if let error { waiter.resume(throwing: error) } else { waiter.resume() }
    }

    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let finished = state.withLock { state -> Result<Void, any Error>? in
                guard state.remaining == 0 else {
                    state.waiter = continuation
                    return nil
                }
                return state.error.map { .failure($0) } ?? .success(())
            }
            if let finished { continuation.resume(with: finished) }
        }
    }
}

/// A value and the `NSLock` that guards it: a pthread mutex, which ThreadSanitizer sees, rather
/// than `Synchronization.Mutex`, whose futexes it cannot see (it reported the accesses made
/// under one as races).
///
/// `@unchecked Sendable`: `lock` guards `value`.
private final class Guarded<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value   // guarded by `lock`

    init(_ value: Value) { self.value = value }

    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
