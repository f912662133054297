import Foundation
import Logging
import ServiceLifecycle
import UVLoop

/// Runs event loops as a swift-service-lifecycle `Service`: one OS thread per loop, each loop set
/// as its thread's loop in the policy, until graceful shutdown (SIGTERM through a `ServiceGroup`)
/// or cancellation; then the loops stop, their threads end, and the loops close.
///
/// ```swift
/// let loops = try EventLoopService(loops: 2)
/// let server = try await loops.loops[0] ... // schedule work on the loops
/// let group = ServiceGroup(services: [loops], gracefulShutdownSignals: [.sigterm, .sigint],
///                          logger: logger)
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
private final class Finished: @unchecked Sendable {
    private let lock = DispatchSemaphore(value: 1)
    private var remaining: Int
    private var error: (any Error)?
    private var waiter: CheckedContinuation<Void, any Error>?

    init(expected: Int) { remaining = expected }

    func record(_ error: any Error) {
        lock.wait()
        if self.error == nil { self.error = error }
        lock.signal()
    }

    func arrive() {
        lock.wait()
        remaining -= 1
        let resume = remaining == 0 ? waiter : nil
        if resume != nil { waiter = nil }
        let error = self.error
        lock.signal()
        if let resume {
            if let error { resume.resume(throwing: error) } else { resume.resume() }
        }
    }

    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            lock.wait()
            if remaining == 0 {
                let error = self.error
                lock.signal()
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
                return
            }
            waiter = continuation
            lock.signal()
        }
    }
}
