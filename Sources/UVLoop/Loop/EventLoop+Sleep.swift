/// Sleeping and deadlines on the loop's own timers (asyncio's `sleep` and `timeout`).
///
/// Swift 6.3's standard library lets a custom executor time `Task.sleep` itself only through
/// `SchedulingExecutor`, which is still SPI there (`@_spi(ExperimentalScheduling)`); so
/// `Task.sleep` inside a loop task is timed by libdispatch (its own timer thread, then a
/// cross-thread wake-up). `EventLoop.sleep` and `withTimeout` use the loop's timers instead.
extension EventLoop {
    /// Suspends the calling task for `seconds` on this loop's timers (asyncio's `sleep`).
    ///
    /// Zero or a negative duration yields once: the task resumes after the callbacks already
    /// queued. `.infinity` sleeps until the task is cancelled. Callable from any task; the timer
    /// is this loop's, wherever the task runs.
    /// - Throws: `CancellationError` at once when the task is cancelled (before or during the
    ///   sleep); `EventLoopError.invalidArgument` for NaN; `EventLoopError.loopClosed` when the loop
    ///   is closed, or closes during the sleep.
    public func sleep(_ seconds: Double) async throws {
        guard !seconds.isNaN else { throw EventLoopError.invalidArgument }
        try Task.checkCancellation()
        if isClosed { throw EventLoopError.loopClosed }
        let sleeper = Sleeper()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let timer = scheduleTimer(at: time() + max(seconds, 0), onLoopClose: {
                    sleeper.finish(.failure(EventLoopError.loopClosed))
                }) {
                    sleeper.finish(.success(()))
                }
                sleeper.wait(continuation, timer: timer)
            }
        } onCancel: {
            sleeper.finish(.failure(CancellationError()))
        }
    }
}

/// One `sleep`: its continuation and timer, resumed exactly once by whichever comes first (the
/// timer, the task's cancellation, the loop's close).
private final class Sleeper: Sendable {
    private enum State: Sendable {
        case starting
        case waiting(CheckedContinuation<Void, any Error>, TimerHandle)
        case finished(Result<Void, any Error>)
        case done
    }

    private let state = LockedValue(State.starting)

    /// The continuation and timer exist now; resumes at once when the outcome came first.
    func wait(_ continuation: CheckedContinuation<Void, any Error>, timer: TimerHandle) {
        let early = state.withLock { state -> Result<Void, any Error>? in
            if case .finished(let result) = state {
                state = .done
                return result
            }
            // A timer dropped by a closed loop comes back cancelled and never fires.
            if timer.isCancelled {
                state = .done
                return .failure(EventLoopError.loopClosed)
            }
            state = .waiting(continuation, timer)
            return nil
        }
        if let early {
            timer.cancel()
            continuation.resume(with: early)
        }
    }

    /// The timer fired, the task was cancelled, or the loop closed.
    func finish(_ result: Result<Void, any Error>) {
        let waiting = state.withLock { state -> (CheckedContinuation<Void, any Error>, TimerHandle)? in
            switch state {
            case .starting:
                state = .finished(result)
                return nil
            case .waiting(let continuation, let timer):
                state = .done
                return (continuation, timer)
            case .finished, .done:
                return nil
            }
        }
        guard let (continuation, timer) = waiting else { return }
        timer.cancel()   // a cancelled sleep's timer leaves the heap at the next sweep
        continuation.resume(with: result)
    }
}
