import HeapModule

/// Timers: one heap of deadlines under one kernel timer (`UVDeadlineTimer`), armed once per
/// iteration right before the poll for I/O.
extension EventLoop {
    struct TimerEntry: Comparable {
        let deadline: UInt64
        let sequence: UInt64
        let handle: TimerHandle

        static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
            lhs.deadline != rhs.deadline ? lhs.deadline < rhs.deadline : lhs.sequence < rhs.sequence
        }
        static func == (lhs: TimerEntry, rhs: TimerEntry) -> Bool { lhs.sequence == rhs.sequence }
    }

    /// Schedules `callback` to run after `delay` seconds (asyncio's `call_later`).
    ///
    /// A negative delay means "as soon as possible"; an infinite one never fires. A NaN delay
    /// schedules nothing: the returned handle is already cancelled and the loop's exception
    /// handler receives `EventLoopError.invalidDelay`. On a closed loop nothing is scheduled and
    /// the handle is already cancelled (logged once per loop).
    @discardableResult
    public func callLater(_ delay: Double, _ callback: @escaping () throws -> Void) -> TimerHandle {
        scheduleTimer(at: delay.isNaN ? .nan : time() + max(delay, 0), onLoopClose: nil, callback)
    }

    /// Schedules `callback` to run at `when`, a time on the loop's clock (`time()`), in seconds
    /// (asyncio's `call_at`). NaN and a closed loop are handled as in `callLater`.
    @discardableResult
    public func callAt(_ when: Double, _ callback: @escaping () throws -> Void) -> TimerHandle {
        scheduleTimer(at: when, onLoopClose: nil, callback)
    }

    /// `callAt`, plus `onLoopClose`: called by `close()` if the loop closes while the timer is
    /// pending (such a timer is kept even with an infinite deadline).
    func scheduleTimer(at when: Double, onLoopClose: (@Sendable () -> Void)?,
                       _ callback: @escaping () throws -> Void) -> TimerHandle {
        guard !when.isNaN else {
            let handle = TimerHandle(deadline: .max, when: when, cancellations: nil, callback)
            handle.cancel()
            let report = ExceptionContext(message: "callLater/callAt with a NaN time", error: EventLoopError.invalidDelay)
            if inLoopThread {
                callExceptionHandler(report)
            } else if !schedule({ [unowned self] in self.callExceptionHandler(report) }) {
                warnDropped("callLater")
            }
            return handle
        }
        let nanoseconds = when * 1e9
        let deadline: UInt64 = nanoseconds <= 0 ? 0 : (nanoseconds >= 1.8e19 ? .max : UInt64(nanoseconds))
        let handle = TimerHandle(deadline: deadline, when: when, cancellations: timerCancellations,
                                 onLoopClose: onLoopClose, callback)
        if inLoopThread {
            insertTimer(handle)
        } else {
            submitOrDrop(.schedule(handle), handle, "callLater")
        }
        return handle
    }

    func insertTimer(_ handle: TimerHandle) {
        // A timer that never fires needs no heap entry, unless it must hear of the loop's close.
        guard handle.deadline != .max || handle.onLoopClose != nil, handle.enterHeap() else { return }
        timerSequence &+= 1
        timers.insert(TimerEntry(deadline: handle.deadline, sequence: timerSequence, handle: handle))
        compactTimersIfMostlyCancelled()
        if handle.deadline < armedDeadline { requestArming() }
    }

    /// Sweeps cancelled timers out of the heap once more than half of it is cancelled (asyncio's
    /// rule), so a million cancelled long timeouts do not stay until their deadlines. Checked after
    /// each insert and each batch of callbacks; a sweep halves the heap at least, so it costs O(1)
    /// amortised per cancellation.
    @inline(__always)
    func compactTimersIfMostlyCancelled() {
        guard timers.count >= Self.minimumCompactionThreshold,
              timerCancellations.count.load(ordering: .relaxed) * 2 > timers.count else { return }
        compactTimers()
    }

    private func compactTimers() {
        var live: [TimerEntry] = []
        live.reserveCapacity(timers.count - timerCancellations.count.load(ordering: .relaxed))
        for entry in timers.unordered {
            if entry.handle.isCancelled {
                entry.handle.leaveHeap()
            } else {
                live.append(entry)
            }
        }
        timers = Heap(live)
    }

    /// Has the deadline timer armed before the next poll for I/O: all the timers a batch of
    /// callbacks schedules cost one `timerfd_settime` at most.
    @inline(__always)
    private func requestArming() {
        if !armerActive {
            armerActive = true
            armer.start()
        }
    }

    /// Arms the deadline timer for the earliest deadline (the prepare handle's callback, right
    /// before the poll). A deadline already passed needs no kernel timer: its timers move to the
    /// ready queue now and run in the next iteration. Timers never fire early: a timer due by the
    /// timerfd is due by the loop's clock too.
    func armTimer() {
        armerActive = false
        armer.stop()
        guard let first = timers.min, first.deadline < armedDeadline else { return }
        if first.deadline <= UVRunLoop.hrtime() {
            fireTimers()
        } else {
            armedDeadline = first.deadline
            timer.arm(at: first.deadline)
        }
    }

    /// Moves every due timer to the ready queue: the deadline timer's callback, or `armTimer`
    /// for deadlines already passed.
    func fireTimers() {
        let now = UVRunLoop.hrtime()
        clockNanoseconds = now
        clockTick = uvLoop.now
        if let first = timers.min, first.deadline <= now { recordLag(now &- first.deadline) }
        while let first = timers.min, first.deadline <= now {
            timers.removeMin()
            first.handle.leaveHeap()
            if !first.handle.isCancelled {
                appendReady(.timer(first.handle))
            }
        }
        // A timerfd that fired is disarmed; one armed for a later deadline is re-armed anyway.
        armedDeadline = .max
        if !timers.isEmpty { requestArming() }
    }

    /// Number of timers waiting in the heap (cancelled ones not yet dropped included).
    var pendingTimerCount: Int { timers.count }
}
