import HeapModule
import Logging
import Synchronization

/// An event loop owning one libuv loop (asyncio.AbstractEventLoop in Swift form).
///
/// A loop is bound to the thread that runs it: callbacks, timers and Swift jobs run there, in FIFO
/// order for `callSoon`, by due time for timers. Other threads reach a loop only through
/// `callSoonThreadsafe`, `stop()` and the executor's `enqueue`; `callSoon` and `callLater` called
/// from another thread are routed the same way, so they never corrupt anything.
///
/// The loop is a `SerialExecutor` and a `TaskExecutor` (see `EventLoop+Executor.swift`).
public final class EventLoop: @unchecked Sendable {
    /// One unit of work in the ready queue. Jobs need no closure allocation.
    enum Work {
        case handle(Handle)
        case timer(TimerHandle)
        /// A job isolated to the loop (an actor whose executor is the loop).
        case job(UnownedJob)
        /// A job of a task that prefers the loop as its task executor (no serial isolation).
        case taskJob(UnownedJob)
        /// Insert the timer into the heap (a `callLater` made off the loop thread).
        case schedule(TimerHandle)
        /// `stop()` made off the loop thread.
        case stop
    }

    /// The lifecycle, readable from any thread.
    enum State: UInt8 { case idle, running, closed }


    /// Keeps every field off the cache line of the object header: closures on any thread retain
    /// the loop, so its reference count changes constantly, and the hot fields below must not share
    /// that line (with it, and the adaptive lock, B3 cross-thread throughput rose by about 20%).
    private let headerPadding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)

    // MARK: State shared across threads

    private let state = Atomic<UInt8>(State.idle.rawValue)
    /// `pthread_self()` of the thread running the loop, 0 when not running.
    private let owner = Atomic<UInt>(0)
    /// Guards `inbox` and `inboxClosed`: cross-thread submissions.
    private let inboxLock = Lock()
    private let inbox = WorkBuffer<Work>()
    /// Set by `close()` under the lock before the wake-up handle is closed, so no thread can
    /// `send()` to a freed handle.
    @exclusivity(unchecked) private var inboxClosed = false
    private let debugEnabled: Atomic<Bool>
    /// True while the loop runs on the process's main thread (Safe and Fast watchers need that).
    private let runningOnMainThread = Atomic<Bool>(false)

    // MARK: Loop-thread state (the running thread, or the owner while not running)
    //
    // Confined to one thread by design, so the hot fields skip Swift's dynamic exclusivity
    // checks (they cost about a tenth of a callSoon round trip).

    let core: UVRunLoop
    /// The loop's task-executor face (see `LoopTaskExecutor`).
    private(set) var taskExecutor: LoopTaskExecutor!
    private var wakeup: UVAsync!
    private var drainer: UVIdle!
    private var timer: UVDeadlineTimer!
    /// Arms `timer` right before the poll for I/O, once per iteration however many timers came.
    private var armer: UVPrepare!
    private let ready = WorkBuffer<Work>()
    /// The batch being run; its contents are swapped with `ready`'s at the start of each batch.
    private let running = WorkBuffer<Work>()
    /// Its contents are swapped with the inbox's under the lock.
    private let incoming = WorkBuffer<Work>()
    @exclusivity(unchecked) private var drainerActive = false
    @exclusivity(unchecked) private var stopping = false
    @exclusivity(unchecked) private var timers = Heap<TimerEntry>()
    @exclusivity(unchecked) private var timerSequence: UInt64 = 0
    /// Deadline the deadline timer is armed for, `.max` when it is not (it disarms itself when it
    /// fires). It may stay armed for a timer that was cancelled: that wake-up finds nothing due.
    @exclusivity(unchecked) private var armedDeadline: UInt64 = .max
    @exclusivity(unchecked) private var armerActive = false
    /// Heap size at which cancelled timers are next swept out (amortised O(1) per insert).
    private var compactionThreshold = EventLoop.minimumCompactionThreshold
    static let minimumCompactionThreshold = 1024
    /// The iteration clock (`clock()`) and the libuv tick it was read at.
    @exclusivity(unchecked) private var clockNanoseconds: UInt64 = 0
    @exclusivity(unchecked) private var clockTick: UInt64 = .max
    private var exceptionHandler: ((EventLoop, ExceptionContext) -> Void)?
    /// `addReader`/`addWriter`/`addSignalHandler`'s handles (see `EventLoop+Watchers.swift`).
    var loopWatchers: LoopWatchers?

    /// Work run per loop iteration before polling I/O again: a batch always completes, and new
    /// batches start while fewer than this many items ran in this iteration.
    static let iterationBudget = 4096

    /// In debug mode, callbacks slower than this many seconds are logged.
    public var slowCallbackDuration: Double = 0.1

    let logger = Logger(label: "uvloop.loop")

    /// Creates a loop. It runs on whichever thread calls `runForever` or `runUntilComplete`.
    ///
    /// Debug mode starts on when the environment variable `UVLOOP_DEBUG` is set to a non-empty
    /// value (asyncio's `PYTHONASYNCIODEBUG`).
    /// - Throws: `UVError` when libuv cannot create the loop (EMFILE when out of descriptors).
    public init() throws {
        _ = System.ignoreSIGPIPE
        core = try UVRunLoop()
        debugEnabled = Atomic(System.environment("UVLOOP_DEBUG").map { !$0.isEmpty } ?? false)
        do {
            wakeup = try UVAsync(loop: core) { [unowned(unsafe) self] in self.moveInbox() }
            drainer = try UVIdle(loop: core) { [unowned(unsafe) self] in self.runReady() }
            timer = try UVDeadlineTimer(loop: core) { [unowned(unsafe) self] in self.fireTimers() }
            armer = try UVPrepare(loop: core) { [unowned(unsafe) self] in self.armTimer() }
        } catch {
            core.close()
            throw error
        }
        taskExecutor = LoopTaskExecutor(loop: self)
        // The timer alone must not keep uv_run going; the wake-up handle does (run forever).
        timer.keepsLoopAlive = false
        armer.keepsLoopAlive = false
        drainer.keepsLoopAlive = false
    }

    deinit {
        taskExecutor?.loopIsGone()
        if State(rawValue: state.load(ordering: .acquiring)) != .closed {
            releaseResources()
        }
    }

    // MARK: State

    /// True while `runForever` or `runUntilComplete` runs the loop.
    public var isRunning: Bool { state.load(ordering: .acquiring) == State.running.rawValue }

    /// True once `close()` has run.
    public var isClosed: Bool { state.load(ordering: .acquiring) == State.closed.rawValue }

    /// True while the loop runs on the process's main thread.
    var isRunningOnMainThread: Bool { runningOnMainThread.load(ordering: .acquiring) }

    /// True when called on the thread currently running this loop.
    @inline(__always)
    public var inLoopThread: Bool { owner.load(ordering: .relaxed) == System.currentThreadID }

    /// The loop's monotonic clock, in seconds (asyncio's `loop.time()`).
    ///
    /// On the thread running the loop this is the loop's iteration clock, as in libuv and uvloop:
    /// it is read at the start of each iteration and after each poll for I/O, and does not advance
    /// while a batch of callbacks runs, so `callLater` delays count from the current iteration.
    /// Elsewhere it is the current monotonic time. Nanosecond resolution either way.
    public func time() -> Double { Double(clock()) / 1e9 }

    /// The loop's clock in nanoseconds (see `time()`).
    @inline(__always)
    func clock() -> UInt64 {
        guard inLoopThread else { return UVRunLoop.hrtime() }
        // libuv refreshes its millisecond clock at each iteration start and after each poll;
        // re-read the precise clock only when that tick moved.
        let tick = core.now
        if tick != clockTick {
            clockTick = tick
            clockNanoseconds = UVRunLoop.hrtime()
        }
        return clockNanoseconds
    }

    /// Debug mode: slow callbacks are logged, and loop-only calls made from another thread are
    /// logged before they are routed through the thread-safe queue.
    public var debug: Bool {
        get { debugEnabled.load(ordering: .relaxed) }
        set { debugEnabled.store(newValue, ordering: .relaxed) }
    }

    // MARK: Running

    /// Runs the loop until `stop()` is called.
    ///
    /// `stop()` called before `runForever` makes it run one iteration (poll with no timeout, run
    /// the callbacks already scheduled) and return.
    /// - Throws: `EventLoopError.loopClosed`, `.loopAlreadyRunning`, or `.anotherLoopIsRunning`.
    public func runForever() throws {
        try beginRun()
        defer { endRun() }
        runUntilStopped()
    }

    /// Marks the loop running on this thread. Shared by `runForever` and `runUntilComplete`.
    func beginRun() throws {
        // asyncio's order: a closed loop first, then a loop already running here.
        if isClosed { throw EventLoopError.loopClosed }
        if let current = RunningLoop.current {
            throw current === self ? EventLoopError.loopAlreadyRunning : EventLoopError.anotherLoopIsRunning
        }
        let (exchanged, original) = state.compareExchange(
            expected: State.idle.rawValue, desired: State.running.rawValue, ordering: .acquiringAndReleasing)
        if !exchanged {
            throw original == State.closed.rawValue ? EventLoopError.loopClosed : EventLoopError.loopAlreadyRunning
        }
        owner.store(System.currentThreadID, ordering: .releasing)
        runningOnMainThread.store(System.isMainThread, ordering: .releasing)
        RunningLoop.current = self
        // Work submitted before the run comes before anything the run itself schedules (FIFO).
        moveInbox()
    }

    func runUntilStopped() {
        moveInbox()
        while true {
            core.run(.default)
            if stopping { break }
        }
        stopping = false
    }

    func endRun() {
        RunningLoop.current = nil
        runningOnMainThread.store(false, ordering: .releasing)
        owner.store(0, ordering: .releasing)
        state.store(State.idle.rawValue, ordering: .releasing)
    }

    /// Stops the loop: the callbacks of the current iteration run, then `runForever` returns.
    /// Callable from any thread; harmless on a closed loop.
    public func stop() {
        if inLoopThread {
            stopping = true
            core.stop()
        } else {
            _ = submitExternal(.stop)
        }
    }

    /// Closes the loop: drops pending callbacks and timers, closes every libuv handle and the
    /// libuv loop itself. Idempotent.
    ///
    /// Swift jobs still queued, or enqueued later, run on a process-wide serial fallback queue so
    /// their tasks can finish; a task that then uses this loop gets `EventLoopError.loopClosed`.
    /// - Throws: `EventLoopError.loopIsRunning` while the loop runs.
    public func close() throws {
        let (exchanged, original) = state.compareExchange(
            expected: State.idle.rawValue, desired: State.closed.rawValue, ordering: .acquiringAndReleasing)
        if !exchanged {
            if original == State.closed.rawValue { return }
            throw EventLoopError.loopIsRunning
        }
        releaseResources()
    }

    private func releaseResources() {
        state.store(State.closed.rawValue, ordering: .releasing)
        inboxLock.withLock {
            inboxClosed = true
            ready.append(movingFrom: inbox)
        }
        // Callbacks are dropped, as in asyncio; Swift jobs move to the fallback executor so their
        // tasks can still finish.
        ready.drain { work in
            switch work {
            case .job(let job), .taskJob(let job): ClosedLoopExecutor.shared.enqueue(job)
            default: break
            }
        }
        timers = Heap()
        exceptionHandler = nil
        let rc = core.close()
        if rc != 0 {
            logger.error("uv_loop_close failed: \(UVError(code: rc, operation: "uv_loop_close"))")
        }
        loopWatchers = nil          // their handles closed with all the others above
    }

    // MARK: Scheduling

    /// Schedules `callback` to run on the next loop iteration (asyncio's `call_soon`).
    ///
    /// From another thread it is routed like `callSoonThreadsafe`.
    /// - Returns: a `Handle` that can cancel the callback.
    /// - Warning: Traps with "Event loop is closed" on a closed loop.
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
            submitOrTrap(.handle(handle))
        }
        return handle
    }

    /// Schedules `callback` from any thread and wakes the loop (asyncio's `call_soon_threadsafe`).
    /// - Returns: a `Handle` that can cancel the callback.
    /// - Warning: Traps with "Event loop is closed" on a closed loop.
    @discardableResult
    public func callSoonThreadsafe(_ callback: consuming @escaping @Sendable () throws -> Void) -> Handle {
        let handle = Handle(consume callback)
        if inLoopThread {
            appendReady(.handle(handle))
        } else {
            submitOrTrap(.handle(handle))
        }
        return handle
    }

    /// Like `callSoonThreadsafe`, but returns false instead of trapping when the loop is closed.
    /// For deliveries that may race with `close()` (child watchers, worker threads).
    @discardableResult
    func trySubmit(_ callback: consuming @escaping @Sendable () -> Void) -> Bool {
        let handle = Handle(consume callback)
        if inLoopThread {
            appendReady(.handle(handle))
            return true
        }
        return submitExternal(.handle(handle))
    }

    /// Runs `body` on the loop's thread: now when called there, else queued. On a closed loop it
    /// does nothing (the loop has closed its handles already).
    func runOnLoopThread(_ body: @escaping @Sendable () -> Void) {
        if inLoopThread {
            body()
        } else {
            _ = trySubmit(body)
        }
    }

    @inline(__always)
    func appendReady(_ work: Work) {
        ready.append(work)
        if !drainerActive {
            drainerActive = true
            drainer.start()
        }
    }

    private func submitOrTrap(_ work: consuming Work) {
        if !submitExternal(work) {
            preconditionFailure("Event loop is closed")
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
        if inbox.count == 1 { wakeup.send() }
        return true
    }

    /// Moves cross-thread submissions into the ready queue. Loop thread.
    private func moveInbox() {
        inboxLock.withLock { incoming.swapContents(with: inbox) }
        guard !incoming.isEmpty else { return }
        if ready.isEmpty {
            ready.swapContents(with: incoming)
        } else {
            ready.append(movingFrom: incoming)
        }
        if !drainerActive {
            drainerActive = true
            drainer.start()
        }
    }

    /// Runs the ready queue in batches (the idle handle's callback). Loop thread.
    private func runReady() {
        let debugging = debug
        var budget = Self.iterationBudget
        repeat {
            running.swapContents(with: ready)
            budget -= running.count
            running.drain { work in run(work, debugging: debugging) }
        } while !ready.isEmpty && !stopping && budget > 0
        if ready.isEmpty {
            drainerActive = false
            drainer.stop()
        }
    }

    @inline(__always)
    private func run(_ work: consuming Work, debugging: Bool) {
        switch work {
        case .handle(let handle):
            if !handle.isCancelled { invoke(handle, debugging: debugging) }
        case .timer(let timer):
            if !timer.isCancelled { invoke(timer, debugging: debugging) }
        case .job(let job):
            job.runSynchronously(on: asUnownedSerialExecutor())
        case .taskJob(let job):
            job.runSynchronously(on: taskExecutor.asUnownedTaskExecutor())
        case .schedule(let timer):
            insertTimer(timer)
        case .stop:
            stopping = true
            core.stop()
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

    // MARK: Timers

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
        schedule(at: delay.isNaN ? .nan : time() + max(delay, 0), callback)
    }

    /// Schedules `callback` to run at `when`, a time on the loop's clock (`time()`), in seconds
    /// (asyncio's `call_at`). NaN is handled as in `callLater`.
    /// - Warning: Traps with "Event loop is closed" on a closed loop.
    @discardableResult
    public func callAt(_ when: Double, _ callback: @escaping () throws -> Void) -> TimerHandle {
        schedule(at: when, callback)
    }

    private func schedule(at when: Double, _ callback: @escaping () throws -> Void) -> TimerHandle {
        guard !when.isNaN else {
            let handle = TimerHandle(deadline: .max, when: when, callback)
            handle.cancel()
            if isClosed { preconditionFailure("Event loop is closed") }
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

    private func insertTimer(_ handle: TimerHandle) {
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
    private func armTimer() {
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
    private func fireTimers() {
        let now = UVRunLoop.hrtime()
        clockNanoseconds = now
        clockTick = core.now
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

    // MARK: Errors

    /// Sets the handler that receives errors thrown by callbacks and other failures the loop
    /// cannot throw to anyone; nil restores the default, which logs through swift-log.
    public func setExceptionHandler(_ handler: ((EventLoop, ExceptionContext) -> Void)?) {
        exceptionHandler = handler
    }

    /// The handler set with `setExceptionHandler`, if any.
    public func getExceptionHandler() -> ((EventLoop, ExceptionContext) -> Void)? {
        exceptionHandler
    }

    /// Passes `context` to the exception handler, or to `defaultExceptionHandler`.
    public func callExceptionHandler(_ context: ExceptionContext) {
        if let exceptionHandler {
            exceptionHandler(self, context)
        } else {
            defaultExceptionHandler(context)
        }
    }

    /// Logs `context` at error level with the label `uvloop.loop`.
    public func defaultExceptionHandler(_ context: ExceptionContext) {
        if let error = context.error {
            logger.error("\(context.message)", metadata: ["error": "\(error)"])
        } else {
            logger.error("\(context.message)")
        }
    }
}
