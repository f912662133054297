import Synchronization

/// What the loop runs: `Handle` and `TimerHandle`.
protocol ScheduledCallback: AnyObject {
    /// Calls the callback. Loop thread only.
    func runCallback() throws
}

/// What can be cancelled: `Handle` and `TimerHandle`.
protocol Cancellable {
    func cancel()
}

extension Handle: Cancellable {}
extension TimerHandle: Cancellable {}

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
/// atomic state, immutable times).
public final class TimerHandle: ScheduledCallback, @unchecked Sendable {
    /// Run on the loop thread only. Immutable after init.
    let callback: () throws -> Void
    /// Due time on the loop's clock, in nanoseconds (`UInt64.max`: never).
    let deadline: UInt64
    /// `cancelledBit` and `inHeapBit`, changed atomically together so that the loop's count of
    /// cancelled timers still in its heap stays exact whatever thread cancels.
    private let bits = Atomic<UInt8>(0)
    private static let cancelledBit: UInt8 = 1
    private static let inHeapBit: UInt8 = 2
    /// The loop's count of cancelled timers in its heap (nil: never scheduled).
    private let cancellations: TimerCancellations?
    /// Called by `EventLoop.close()` when the loop closes with this timer pending (a sleep then
    /// throws `EventLoopError.loopClosed` instead of never returning).
    let onLoopClose: (@Sendable () -> Void)?

    /// The due time on the loop's clock (`EventLoop.time()`), in seconds.
    public let when: Double

    init(deadline: UInt64, when: Double, cancellations: TimerCancellations?,
         onLoopClose: (@Sendable () -> Void)? = nil, _ callback: consuming @escaping () throws -> Void) {
        self.deadline = deadline
        self.when = when
        self.cancellations = cancellations
        self.onLoopClose = onLoopClose
        self.callback = callback
    }

    /// Cancels the timer. Harmless when it already fired or was cancelled. The loop drops
    /// cancelled timers from its heap when more than half of it is cancelled, so a cancelled
    /// timer costs no memory long before its deadline.
    public func cancel() {
        let before = bits.bitwiseOr(Self.cancelledBit, ordering: .relaxed).oldValue
        if before & Self.cancelledBit == 0 && before & Self.inHeapBit != 0 {
            cancellations?.count.add(1, ordering: .relaxed)
        }
    }

    @inline(__always) func runCallback() throws { try callback() }

    /// True once `cancel()` was called.
    public var isCancelled: Bool { bits.load(ordering: .relaxed) & Self.cancelledBit != 0 }

    /// The loop puts the timer in its heap; false (and nothing changes) when it was cancelled.
    /// Loop thread.
    func enterHeap() -> Bool {
        let before = bits.bitwiseOr(Self.inHeapBit, ordering: .relaxed).oldValue
        if before & Self.cancelledBit != 0 {
            bits.bitwiseAnd(~Self.inHeapBit, ordering: .relaxed)
            return false
        }
        return true
    }

    /// The loop took the timer out of its heap (fired, swept, or the loop closed). Loop thread.
    func leaveHeap() {
        let before = bits.bitwiseAnd(~Self.inHeapBit, ordering: .relaxed).oldValue
        if before & Self.cancelledBit != 0 && before & Self.inHeapBit != 0 {
            cancellations?.count.subtract(1, ordering: .relaxed)
        }
    }
}

/// A loop's count of cancelled timers still in its heap, shared with its `TimerHandle`s (which
/// may be cancelled from any thread).
final class TimerCancellations: Sendable {
    let count = Atomic<Int>(0)
}
