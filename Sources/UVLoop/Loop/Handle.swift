import Synchronization

/// What the loop runs: `Handle` and `TimerHandle`.
protocol ScheduledCallback: AnyObject {
    /// Calls the callback. Loop thread only.
    func runCallback() throws
}

/// A callback scheduled with `callSoon` or `callSoonThreadsafe` (asyncio.Handle).
///
/// `cancel()` may be called from any thread; a callback cancelled before the loop reaches it never runs.
///
/// `@unchecked Sendable`: `callback` (not `@Sendable` for `callSoon`) is immutable and only ever
/// called on the loop's thread; `cancelled` is atomic.
public final class Handle: ScheduledCallback, @unchecked Sendable {
    /// Run on the loop thread only. Immutable after init.
    let callback: () throws -> Void
    private let cancelled = Atomic<Bool>(false)

    init(_ callback: consuming @escaping () throws -> Void) {
        self.callback = callback
    }

    /// Cancels the callback. Harmless when it already ran or was cancelled.
    public func cancel() { cancelled.store(true, ordering: .relaxed) }

    @inline(__always) func runCallback() throws { try callback() }

    /// True once `cancel()` was called.
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }
}

/// A callback scheduled with `callLater` or `callAt` (asyncio.TimerHandle).
///
/// `@unchecked Sendable`: as `Handle` (an immutable callback called on the loop's thread only,
/// an atomic flag, immutable times).
public final class TimerHandle: ScheduledCallback, @unchecked Sendable {
    /// Run on the loop thread only. Immutable after init.
    let callback: () throws -> Void
    /// Due time on the loop's clock, in nanoseconds (`UInt64.max`: never).
    let deadline: UInt64
    private let cancelled = Atomic<Bool>(false)

    /// The due time on the loop's clock (`EventLoop.time()`), in seconds.
    public let when: Double

    init(deadline: UInt64, when: Double, _ callback: consuming @escaping () throws -> Void) {
        self.deadline = deadline
        self.when = when
        self.callback = callback
    }

    /// Cancels the timer. Harmless when it already fired or was cancelled. The loop drops
    /// cancelled timers from its heap when they come due, or earlier when the heap grows.
    public func cancel() { cancelled.store(true, ordering: .relaxed) }

    @inline(__always) func runCallback() throws { try callback() }

    /// True once `cancel()` was called.
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }
}
