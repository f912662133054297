/// Thrown by `withTimeout` when its deadline passes first (asyncio's `TimeoutError`).
public struct TimeoutError: Error, Sendable, Equatable, CustomStringConvertible {
    public init() {}
    public var description: String { "The operation timed out" }
}

/// Runs `operation` with a deadline on the running loop's timers (asyncio's `timeout`): when
/// `seconds` pass first, `operation` is cancelled and, once it has ended, `TimeoutError` is thrown.
///
/// Timeouts nest: each has its own deadline, and the one that passes first wins (an inner
/// timeout that is shorter throws its `TimeoutError` through the outer one). If `operation`
/// handles the cancellation and returns a value anyway, that value is returned, as in asyncio.
/// The calling task's own cancellation is not a timeout: it ends `operation` and is rethrown as
/// `CancellationError`. Zero or a negative duration cancels `operation` at its first suspension;
/// `.infinity` never does.
///
/// `operation` runs as a child task with the caller's isolation (and, in a loop task, on the
/// loop) while the caller waits for it: it never runs concurrently with the caller.
/// - Throws: `TimeoutError`; what `operation` throws; `EventLoopError.noRunningEventLoop` when no
///   loop runs on this thread (nothing runs then); `EventLoopError.invalidArgument` for NaN.
public func withTimeout<T>(_ seconds: Double, isolation: isolated (any Actor)? = #isolation,
                           _ operation: () async throws -> T) async throws -> T {
    guard !seconds.isNaN else { throw EventLoopError.invalidArgument }
    let loop = try getRunningLoop()
    if seconds == .infinity { return try await operation() }
    return try await withoutActuallyEscaping(operation) { operation in
        let body = TimeoutBody(operation)
        return try await withThrowingTaskGroup(of: TimeoutBody<T>.Finished.self, isolation: isolation) { group in
            group.addTask {
                _ = isolation   // runs with the caller's isolation
                try await body.run()
                return .operation
            }
            group.addTask {
                try await loop.sleep(seconds)
                return .deadline
            }
            // A child that throws first ends the group with its error: the operation's own, or
            // the sleep's (CancellationError when this task is cancelled, loopClosed).
            if try await group.next() == .operation {
                group.cancelAll()
                return body.take()
            }
            // The deadline passed: cancel the operation and wait for it to end.
            group.cancelAll()
            do {
                _ = try await group.next()
            } catch is CancellationError {
                throw TimeoutError()
            }
            return body.take()   // it handled the cancellation and finished anyway
        }
    }
}

/// The operation of one `withTimeout` and its result, carried into its child task and back.
///
/// `@unchecked Sendable`: the child task is the only one to call `run()`, while the task that
/// created it waits in the task group (never concurrently); `take()` is called after the child
/// has finished.
private final class TimeoutBody<T>: @unchecked Sendable {
    enum Finished: Sendable { case operation, deadline }

    private let operation: () async throws -> T
    private var result: T?

    init(_ operation: @escaping () async throws -> T) { self.operation = operation }

    func run() async throws { result = try await operation() }

    func take() -> T {
        guard let result else { fatalError("withTimeout: the operation finished without a result") }
        return result
    }
}
