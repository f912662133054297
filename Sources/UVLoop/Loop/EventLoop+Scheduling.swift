/// The ready queue: `callSoon`, `callSoonThreadsafe`, the cross-thread inbox, and running work in
/// batches (ARCHITECTURE fact 7).
extension EventLoop {
    /// Schedules `callback` to run on the next loop iteration (asyncio's `call_soon`).
    ///
    /// From another thread it is routed like `callSoonThreadsafe`.
    /// - Returns: a `Handle` that can cancel the callback. On a closed loop the callback is
    ///   dropped and the handle is already cancelled (logged once per loop).
    @discardableResult
    public func callSoon(_ callback: consuming @escaping () throws -> Void) -> Handle {
        // `consume`: the handle takes the caller's reference to the closure context; without it
        // the compiler retains the context here and releases it on return (two contended atomics
        // per call when every thread posts the same closure).
        let handle = Handle(consume callback)
        if inLoopThread {
            appendReady(.handle(handle))
        } else {
            if debug { logger.warning("callSoon called from a thread that does not run this loop; routed thread-safely") }
            submitOrDrop(.handle(handle), handle, "callSoon")
        }
        return handle
    }

    /// Schedules `callback` from any thread and wakes the loop (asyncio's `call_soon_threadsafe`).
    ///
    /// Safe against a `close()` on another thread at the same moment: the callback then either
    /// runs before the loop closes or is dropped.
    /// - Returns: a `Handle` that can cancel the callback. On a closed loop the callback is
    ///   dropped and the handle is already cancelled (logged once per loop).
    @discardableResult
    public func callSoonThreadsafe(_ callback: consuming @escaping @Sendable () throws -> Void) -> Handle {
        let handle = Handle(consume callback)
        if inLoopThread {
            appendReady(.handle(handle))
        } else {
            submitOrDrop(.handle(handle), handle, "callSoonThreadsafe")
        }
        return handle
    }

    @inline(__always)
    func appendReady(_ work: Work) {
        ready.append(work)
        if !drainerActive {
            drainerActive = true
            // libuv's iteration clock (milliseconds, no system call): the lag is a coarse figure.
            readySince = uvLoop.now &* 1_000_000
            drainer.start()
        }
    }

    /// Submits `work` from another thread; on a closed loop cancels `handle` (the work is
    /// dropped) and logs it, once per loop.
    func submitOrDrop(_ work: consuming Work, _ handle: some Cancellable, _ operation: String) {
        if !submitExternal(work) {
            handle.cancel()
            warnDropped(operation)
        }
    }

    /// Logs, once per loop, that work scheduled on it after `close()` was dropped.
    func warnDropped(_ operation: String) {
        if !droppedWarningLogged.exchange(true, ordering: .relaxed) {
            logger.warning("\(operation) on a closed event loop: the callback is dropped and its handle cancelled (logged once per loop)")
        }
    }

    /// Queues `work` from any thread. Returns false when the loop is closed.
    func submitExternal(_ work: consuming Work) -> Bool {
        inboxLock.lock()
        defer { inboxLock.unlock() }
        if inboxClosed { return false }
        inbox.append(work)
        // Wake only on the empty -> non-empty transition; uv_async_send runs under the lock so
        // that close() cannot free the handle in between.
        if inbox.count == 1 {
            inboxSince = UVRunLoop.hrtime()
            // A spinning loop sees the flag; a sleeping one needs the wake-up (a system call).
            if inboxWatched {
                inboxFilled.store(true, ordering: .releasing)
            } else {
                wakeup.send()
            }
        }
        return true
    }

    /// Moves cross-thread submissions into the ready queue. Loop thread.
    func moveInbox() {
        let since = inboxLock.withLock { () -> UInt64 in
            incoming.swapContents(with: inbox)
            return inboxSince
        }
        guard !incoming.isEmpty else { return }
        if !spinnerActive {
            spinnerActive = true
            spinner.start()
        }
        if ready.isEmpty {
            ready.swapContents(with: incoming)
        } else {
            ready.append(movingFrom: incoming)
        }
        if !drainerActive {
            drainerActive = true
            readySince = since
            drainer.start()
        } else if since < readySince {
            readySince = since
        }
    }

    /// How long the loop spins for cross-thread work before it sleeps in the poll.
    static let spinNanoseconds: UInt64 = 50_000

    /// The spinner's callback, right before the poll, in iterations after cross-thread work: when
    /// nothing is ready, watches the inbox for a moment instead of sleeping at once. A reply to
    /// work the loop just handed to another thread (an actor hop back, a pool's result) usually
    /// comes within tens of microseconds; caught here, it costs neither the producer's wake-up
    /// system call nor the loop's sleep and wake. Nothing caught: the spinner stops until the next
    /// cross-thread work, so an idle loop never spins.
    func spinForInbox() {
        guard !drainerActive else { return }   // work is ready: the poll will not block anyway
        let watching = inboxLock.withLock { () -> Bool in
            guard inbox.isEmpty else { return false }
            inboxWatched = true
            inboxFilled.store(false, ordering: .relaxed)
            return true
        }
        if watching {
            let deadline = UVRunLoop.hrtime() &+ Self.spinNanoseconds
            while !inboxFilled.load(ordering: .acquiring) && UVRunLoop.hrtime() < deadline {}
            inboxLock.withLock { inboxWatched = false }
        }
        let caught = inboxLock.withLock { !inbox.isEmpty }
        if caught {
            moveInbox()
        } else {
            spinnerActive = false
            spinner.stop()
        }
    }

    /// Runs the ready queue in batches (the idle handle's callback). Loop thread.
    func runReady() {
        let debugging = debug
        let start = UVRunLoop.hrtime()
        if start > readySince { recordLag(start &- readySince) }
        var budget = Self.iterationBudget
        repeat {
            running.swapContents(with: ready)
            budget -= running.count
            running.drain { work in run(work, debugging: debugging) }
        } while !ready.isEmpty && !stopping && budget > 0
        compactTimersIfMostlyCancelled()
        if ready.isEmpty {
            drainerActive = false
            drainer.stop()
        } else {
            readySince = start   // what is left was queued during this batch
        }
    }

    @inline(__always)
    private func run(_ work: consuming Work, debugging: Bool) {
        switch work {
        case .handle(let handle):
            if !handle.isCancelled {
                callbacksRunCount &+= 1
                invoke(handle, debugging: debugging)
            }
        case .timer(let timer):
            if !timer.isCancelled {
                callbacksRunCount &+= 1
                invoke(timer, debugging: debugging)
            }
        case .job(let job):
            callbacksRunCount &+= 1
            job.runSynchronously(on: asUnownedSerialExecutor())
        case .taskJob(let job):
            callbacksRunCount &+= 1
            job.runSynchronously(on: taskExecutor.asUnownedTaskExecutor())
        case .schedule(let timer):
            insertTimer(timer)
        case .stop:
            stopping = true
            uvLoop.stop()
        }
    }

    /// Runs a handle's callback; what it throws goes to the exception handler. Generic over the
    /// two handle classes so that the callback is called in place, without copying the closure
    /// (a retain and a release of its context per callback).
    @inline(__always)
    private func invoke(_ handle: some ScheduledCallback, debugging: Bool) {
        if debugging {
            let start = UVRunLoop.hrtime()
            invokeCatching(handle)
            let seconds = Double(UVRunLoop.hrtime() - start) / 1e9
            if seconds >= slowCallbackDuration {
                logger.warning("Executing a callback took \(seconds) seconds")
            }
        } else {
            invokeCatching(handle)
        }
    }

    @inline(__always)
    private func invokeCatching(_ handle: some ScheduledCallback) {
        do {
            try handle.runCallback()
        } catch {
            callExceptionHandler(ExceptionContext(message: "Exception in callback", error: error))
        }
    }
}
