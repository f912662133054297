import Foundation
import Logging
import ServiceLifecycle
import UVLoop

/// Runs event loops as a swift-service-lifecycle `Service`: one OS thread per loop, each loop set
/// as its thread's loop in the policy, until graceful shutdown (SIGTERM through a `ServiceGroup`)
/// or cancellation; then the loops stop, their threads end, and the loops close.
///
/// ```swift
/// let service = try EventLoopService(loops: 2)
/// for loop in service.loops {
///     // Work scheduled before `run()` starts once the loops run.
///     loop.createTask {
///         let server = try await loop.startServer(host: "127.0.0.1", port: 8080, reusePort: true) { reader, writer in
///             while let chunk = try? await reader.read(65536), !chunk.isEmpty { try? writer.write(chunk) }
///         }
///         await server.waitClosed()
///     }
/// }
/// let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint],
///                          logger: Logger(label: "server"))
/// try await group.run()
/// ```
///
/// The loops exist from `init` on, so other services can schedule work on them before `run()`
/// starts them (`callSoonThreadsafe`, `createTask`); that work runs once the loops run.
public final class EventLoopService: Service, Sendable {
    /// The loops this service runs, one thread each.
    public let loops: [EventLoop]
    private let logger: Logger

    /// Creates `count` new loops (through the policy's `newEventLoop()`).
    /// - Throws: `UVError` when a loop cannot be created.
    public init(loops count: Int = 1, logger: Logger = Logger(label: "uvloop.service")) throws {
        self.loops = try (0..<max(count, 1)).map { _ in try newEventLoop() }
        self.logger = logger
    }

    /// Runs existing loops (not running, not closed).
    public init(running loops: [EventLoop], logger: Logger = Logger(label: "uvloop.service")) {
        self.loops = loops
        self.logger = logger
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
