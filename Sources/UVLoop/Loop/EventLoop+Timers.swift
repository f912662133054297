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
    /// handler receives `EventLoopError.invalidDelay`.
    /// - Warning: Traps with "Event loop is closed" on a closed loop.
    @discardableResult
    public func callLater(_ delay: Double, _ callback: @escaping () throws -> Void) -> TimerHandle {
        scheduleTimer(at: delay.isNaN ? .nan : time() + max(delay, 0), callback)
    }

    /// Schedules `callback` to run at `when`, a time on the loop's clock (`time()`), in seconds
    /// (asyncio's `call_at`). NaN is handled as in `callLater`.
    /// - Warning: Traps with "Event loop is closed" on a closed loop.
    @discardableResult
    public func callAt(_ when: Double, _ callback: @escaping () throws -> Void) -> TimerHandle {
        scheduleTimer(at: when, callback)
    }

    private func scheduleTimer(at when: Double, _ callback: @escaping () throws -> Void) -> TimerHandle {
        guard !when.isNaN else {
            let handle = TimerHandle(deadline: .max, when: when, callback)
            handle.cancel()
            if isClosed { fatalError("Event loop is closed") }
            let report = ExceptionContext(message: "callLater/callAt with a NaN time", error: EventLoopError.invalidDelay)
            if inLoopThread {
                callExceptionHandler(report)
            } else {
                submitOrTrap(.handle(Handle { [unowned self] in self.callExceptionHandler(report) }))
            }
            return handle
        }
        let nanoseconds = when * 1e9
        let deadline: UInt64 = nanoseconds <= 0 ? 0 : (nanoseconds >= 1.8e19 ? .max : UInt64(nanoseconds))
        let handle = TimerHandle(deadline: deadline, when: when, callback)
        if inLoopThread {
            insertTimer(handle)
        } else {
            submitOrTrap(.schedule(handle))
        }
        return handle
    }

    func insertTimer(_ handle: TimerHandle) {
        guard !handle.isCancelled, handle.deadline != .max else { return }
        timerSequence &+= 1
        timers.insert(TimerEntry(deadline: handle.deadline, sequence: timerSequence, handle: handle))
        if timers.count >= compactionThreshold {
            compactTimers()
        }
        if handle.deadline < armedDeadline { requestArming() }
    }

    /// Sweeps cancelled timers out of the heap, so cancelled long timeouts do not pile up. Runs
    /// when the heap doubles past its size after the last sweep: O(1) amortised per insert.
    private func compactTimers() {
        let live = timers.unordered.filter { !$0.handle.isCancelled }
        if live.count != timers.count {
            timers = Heap(live)
        }
        compactionThreshold = max(Self.minimumCompactionThreshold, timers.count * 2)
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
        while let first = timers.min, first.deadline <= now {
            timers.removeMin()
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
