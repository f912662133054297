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
/// The type is split by concern: running and closing here; `EventLoop+Scheduling.swift` (the
/// ready queue), `+Timers`, `+Exceptions`, `+Executor` (Swift Concurrency), `+LoopThread` (how
/// other code reaches the loop's thread), `+Watchers` (`addReader`, `addSignalHandler`).
///
/// `@unchecked Sendable`: the fields under "shared across threads" are atomics or guarded by
/// `inboxLock`/their own lock; every other stored field is confined to the thread that runs the
/// loop (or, while nothing runs it, to its owner), which `checkLoopThread()` enforces at the
/// entry points that can be reached from elsewhere.
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

    // MARK: Shared across threads

    let state = Atomic<UInt8>(State.idle.rawValue)
    /// `pthread_self()` of the thread running the loop, 0 when not running.
    let owner = Atomic<UInt>(0)
    /// Guards `inbox` and `inboxClosed`: cross-thread submissions.
    let inboxLock = Lock()
    let inbox = WorkBuffer<Work>()
    /// Set by `close()` under `inboxLock` before the wake-up handle is closed, so no thread can
    /// `send()` to a freed handle.
    @exclusivity(unchecked) var inboxClosed = false
    let debugEnabled: Atomic<Bool>
    /// `slowCallbackDuration`'s bit pattern.
    let slowCallbackBits = Atomic<UInt64>((0.1 as Double).bitPattern)
    /// The handler `setExceptionHandler` installed (set from any thread, called on the loop's).
    let exceptionHandler = LockedValue<((EventLoop, ExceptionContext) -> Void)?>(nil)
    /// True while the loop runs on the process's main thread (Safe and Fast watchers need that).
    let runningOnMainThread = Atomic<Bool>(false)
    /// Set once work scheduled after `close()` was dropped and logged.
    let droppedWarningLogged = Atomic<Bool>(false)
    /// `runInExecutor`'s executors (set from any thread).
    let executors = LockedValue(LoopExecutors())
    /// The unfinished tasks of `createTask`.
    let tasks = TaskRegistry()
    /// What the loop publishes about itself (`statistics`, the monitor).
    let health = LoopHealth()
    /// `hrtime` when the inbox last went from empty to non-empty (under `inboxLock`).
    @exclusivity(unchecked) var inboxSince: UInt64 = 0
    /// True while the loop's thread spins for cross-thread work before sleeping (under
    /// `inboxLock`): producers then need no wake-up.
    @exclusivity(unchecked) var inboxWatched = false
    /// Set by producers when the inbox goes non-empty; what a spinning loop watches.
    let inboxFilled = Atomic<Bool>(false)

    // MARK: Confined to the loop's thread (the running thread, or the owner while not running)
    //
    // The hot fields skip Swift's dynamic exclusivity checks (they cost about a tenth of a
    // callSoon round trip): the confinement is the guarantee those checks would look for.

    /// The libuv loop.
    let uvLoop: UVRunLoop
    /// The loop's task-executor face (see `LoopTaskExecutor`).
    private(set) var taskExecutor: LoopTaskExecutor!
    var wakeup: UVAsync!
    /// Runs the ready queue once per iteration while it is not empty (`uv_idle_t`).
    var drainer: UVPhaseHandle!
    var timer: UVDeadlineTimer!
    /// Arms `timer` right before the poll for I/O, once per iteration however many timers came.
    var armer: UVPhaseHandle!
    /// Publishes the loop's statistics right after each poll (`uv_check_t`).
    var publisher: UVPhaseHandle!
    /// Before the poll, after cross-thread work: spins briefly for more (`uv_prepare_t`).
    var spinner: UVPhaseHandle!
    @exclusivity(unchecked) var spinnerActive = false
    let ready = WorkBuffer<Work>()
    /// The batch being run; its contents are swapped with `ready`'s at the start of each batch.
    let running = WorkBuffer<Work>()
    /// Its contents are swapped with the inbox's under the lock.
    let incoming = WorkBuffer<Work>()
    @exclusivity(unchecked) var drainerActive = false
    @exclusivity(unchecked) var stopping = false
    @exclusivity(unchecked) var timers = Heap<TimerEntry>()
    @exclusivity(unchecked) var timerSequence: UInt64 = 0
    /// Deadline the deadline timer is armed for, `.max` when it is not (it disarms itself when it
    /// fires). It may stay armed for a timer that was cancelled: that wake-up finds nothing due.
    @exclusivity(unchecked) var armedDeadline: UInt64 = .max
    @exclusivity(unchecked) var armerActive = false
    /// Cancelled timers still in `timers` (their handles count themselves in and out).
    let timerCancellations = TimerCancellations()
    /// Below this many timers the heap is never swept (a sweep would cost more than it frees).
    static let minimumCompactionThreshold = 1024
    /// The iteration clock (`clock()`) and the libuv tick it was read at.
    @exclusivity(unchecked) var clockNanoseconds: UInt64 = 0
    @exclusivity(unchecked) var clockTick: UInt64 = .max
    /// `addReader`/`addWriter`/`addSignalHandler`'s handles (see `EventLoop+Watchers.swift`).
    var ioCallbacks: IOCallbacks?
    /// Statistics kept on the loop's thread, published by `publisher` (`LoopStatistics.swift`).
    @exclusivity(unchecked) var iterationCount: UInt64 = 0
    @exclusivity(unchecked) var callbacksRunCount: UInt64 = 0
    @exclusivity(unchecked) var lagSinceCheck: UInt64 = 0
    /// About when the oldest work in the ready queue was queued (`hrtime`, 0 when none).
    @exclusivity(unchecked) var readySince: UInt64 = 0

    /// Work run per loop iteration before polling I/O again: a batch always completes, and new
    /// batches start while fewer than this many items ran in this iteration.
    static let iterationBudget = 4096

    /// Where the loop logs (the default exception handler, stall warnings, dropped work), and
    /// what its servers log through.
    public let logger: Logger
    /// The loop's name in logs and metrics (`loop-1`, `loop-2`, ... in creation order).
    public let label: String
    private static let loopNumbers = Atomic<Int>(0)
    /// The loop's entry in the process-wide monitor (stall detection, metrics), once it has one.
    let monitored = LockedValue<MonitoredLoop?>(nil)

    /// Creates a loop. It runs on whichever thread calls `runForever` or `runUntilComplete`.
    ///
    /// Debug mode starts on when the environment variable `UVLOOP_DEBUG` is set to a non-empty
    /// value (asyncio's `PYTHONASYNCIODEBUG`).
    /// - Parameter logger: where the loop logs; by default the label `uvloop.loop`, as
    ///   swift-server libraries take a `Logger` from their user.
    /// - Throws: `UVError` when libuv cannot create the loop (EMFILE when out of descriptors).
    public init(logger: Logger = Logger(label: "uvloop.loop")) throws {
        _ = System.ignoreSIGPIPE
        self.logger = logger
        label = "loop-\(Self.loopNumbers.add(1, ordering: .relaxed).newValue)"
        uvLoop = try UVRunLoop()
        debugEnabled = Atomic(System.environment("UVLOOP_DEBUG").map { !$0.isEmpty } ?? false)
        do {
            wakeup = try UVAsync(loop: uvLoop) { [unowned(unsafe) self] in self.moveInbox() }
            drainer = try UVPhaseHandle(loop: uvLoop, phase: .idle) { [unowned(unsafe) self] in self.runReady() }
            timer = try UVDeadlineTimer(loop: uvLoop) { [unowned(unsafe) self] in self.fireTimers() }
            armer = try UVPhaseHandle(loop: uvLoop, phase: .prepare) { [unowned(unsafe) self] in self.armTimer() }
            publisher = try UVPhaseHandle(loop: uvLoop, phase: .check) { [unowned(unsafe) self] in self.publishStatistics() }
            spinner = try UVPhaseHandle(loop: uvLoop, phase: .prepare) { [unowned(unsafe) self] in self.spinForInbox() }
        } catch {
            uvLoop.close()
            throw error
        }
        taskExecutor = LoopTaskExecutor(loop: self)
        // The timer alone must not keep uv_run going; the wake-up handle does (run forever).
        timer.keepsLoopAlive = false
        armer.keepsLoopAlive = false
        drainer.keepsLoopAlive = false
        publisher.keepsLoopAlive = false
        publisher.start()
        spinner.keepsLoopAlive = false
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
        let tick = uvLoop.now
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

    /// In debug mode, callbacks slower than this many seconds are logged (default 0.1).
    /// Readable and settable from any thread.
    public var slowCallbackDuration: Double {
        get { Double(bitPattern: slowCallbackBits.load(ordering: .relaxed)) }
        set { slowCallbackBits.store(newValue.bitPattern, ordering: .relaxed) }
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
        health.runStartedAt.store(UVRunLoop.hrtime(), ordering: .releasing)
        RunningLoop.current = self
        startMonitoringIfNeeded()
        TaskRegistry.calibrate(on: taskExecutor)
        // Work submitted before the run comes before anything the run itself schedules (FIFO).
        moveInbox()
        // Time spent queued before the loop ran is not lag.
        if drainerActive { readySince = UVRunLoop.hrtime() }
    }

    func runUntilStopped() {
        moveInbox()
        while true {
            uvLoop.run()
            if stopping { break }
        }
        stopping = false
    }

    func endRun() {
        let started = health.runStartedAt.exchange(0, ordering: .acquiringAndReleasing)
        health.runTime.add(UVRunLoop.hrtime() &- started, ordering: .relaxed)
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
            uvLoop.stop()
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
            case .schedule(let timer): if !timer.isCancelled { timer.onLoopClose?() }
            default: break
            }
        }
        // Pending timers are dropped, as in asyncio; those that must hear of it (sleeps) do.
        let pending = timers.unordered
        timers = Heap()
        for entry in pending {
            entry.handle.leaveHeap()
            if !entry.handle.isCancelled { entry.handle.onLoopClose?() }
        }
        exceptionHandler.withLock { $0 = nil }
        let rc = uvLoop.close()
        if rc != 0 {
            logger.error("uv_loop_close failed: \(UVError(code: rc, operation: "uv_loop_close"))")
        }
        ioCallbacks = nil          // their handles closed with all the others above
        // asyncio's close: the built-in pool stops taking work; what runs finishes on its own.
        executors.withLock { $0.builtIn }?.shutdown(wait: false)
        stopMonitoring()
    }
}
