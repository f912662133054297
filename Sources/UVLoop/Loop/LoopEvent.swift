/// Something that happens once (a child's outputs closed, a run finished), which tasks wait for,
/// each with an optional deadline on a loop's clock. Thread-safe; waits are not cancellable (the
/// teardown paths that use it must finish), so a caller that must react to cancellation fires
/// the event from its cancellation handler.
final class LoopEvent: Sendable {
    private typealias Waiter = CheckedContinuation<Bool, Never>

    private struct State: Sendable {
        var happened = false
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = LockedValue(State())

    /// Whether the event has happened.
    var happened: Bool { state.withLock { $0.happened } }

    /// Makes it happen: every waiter returns true, and later waits return at once. Idempotent.
    func fire() {
        let waiters = state.withLock { state -> [Waiter] in
            guard !state.happened else { return [] }
            state.happened = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: true) }
    }

    /// Waits until it happens (true) or, with a deadline, until `loop`'s clock reaches it
    /// (false; also when the loop closes first).
    func wait(until deadline: Double? = nil, on loop: EventLoop) async -> Bool {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        let giveUp: @Sendable () -> Void = { [state] in
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: false)
        }
        let timer = LockedValue<TimerHandle?>(nil)
        defer { timer.withLock { $0 }?.cancel() }
        return await withCheckedContinuation { (continuation: Waiter) in
            let waiting = state.withLock { state -> Bool in
                if state.happened { return false }
                state.waiters[id] = continuation
                return true
            }
            guard waiting else { return continuation.resume(returning: true) }
            guard let deadline else { return }
            let handle = loop.scheduleTimer(at: deadline, onLoopClose: giveUp) { giveUp() }
            timer.withLock { $0 = handle }
            if handle.isCancelled { giveUp() }   // a closed loop: no timer will fire
        }
    }
}
