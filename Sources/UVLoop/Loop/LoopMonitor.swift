import CoreMetrics
import Logging
import Synchronization

/// One thread for the whole process that watches the loops that asked for it: the stall detector
/// (`EventLoop.stallThreshold`) and the swift-metrics reports. It starts with the first loop to
/// register and sleeps between rounds; the loops themselves only publish atomics
/// (`LoopHealth`), so what it costs them is a ping per stall-check period.
///
/// `@unchecked Sendable`: `loops` and `threadStarted` are read and written under `condition`'s lock.
final class LoopMonitor: @unchecked Sendable {
    static let shared = LoopMonitor()

    /// Seconds between two metrics reports of a loop.
    static let metricsInterval = 1.0

    private let condition = Condition()
    private var loops: [ObjectIdentifier: MonitoredLoop] = [:]
    private var threadStarted = false

    /// Watches `loop` (again: its settings changed).
    func watch(_ loop: MonitoredLoop) {
        let start = condition.withLock { () -> Bool in
            loops[loop.id] = loop
            condition.signal()
            defer { threadStarted = true }
            return !threadStarted
        }
        guard start else { return }
        do {
            try Threads.startDetached(stackSize: 256 * 1024) { [self] in run() }
        } catch {
            condition.withLock { threadStarted = false }
            loop.logger.error("Cannot start the loop monitor thread (stall detection, metrics): \(error)")
        }
    }

    /// Stops watching the loop `id` (closed, or nothing to watch any more).
    func unwatch(_ id: ObjectIdentifier) {
        let removed = condition.withLock { loops.removeValue(forKey: id) }
        removed?.destroyMetrics()
    }

    private func run() {
        while true {
            let watched = condition.withLock { () -> [MonitoredLoop] in
                while loops.isEmpty { condition.wait() }
                let period = loops.values.map(\.period).min() ?? Self.metricsInterval
                condition.wait(seconds: min(period, Self.metricsInterval))
                return Array(loops.values)
            }
            let now = UVRunLoop.hrtime()
            for loop in watched { loop.tick(now: now) }
        }
    }
}

/// One loop as the monitor sees it: its published figures, how to reach it (without keeping it
/// alive), its stall threshold, its metrics.
final class MonitoredLoop: Sendable {
    let id: ObjectIdentifier
    let health: LoopHealth
    let logger: Logger
    /// Posts a ping to the loop; false when it is gone or closed.
    private let post: @Sendable (@escaping @Sendable () -> Void) -> Bool
    /// Nanoseconds; 0: stall detection off.
    let stallThreshold = Atomic<UInt64>(0)
    let metrics: LoopMetrics?

    /// The ping in flight: its number (0: none) and when it was sent.
    private let pingNumber = Atomic<UInt64>(0)
    private let pingSentAt = Atomic<UInt64>(0)
    private let stallReported = Atomic<Bool>(false)
    private let nextPing = Atomic<UInt64>(0)

    init(id: ObjectIdentifier, health: LoopHealth, logger: Logger, label: String, metricsFactory: (any MetricsFactory)?,
         post: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool) {
        self.id = id
        self.health = health
        self.logger = logger
        self.post = post
        metrics = metricsFactory.map { LoopMetrics(label: label, factory: $0, health: health) }
    }

    /// How often the monitor should look at this loop.
    var period: Double {
        let threshold = stallThreshold.load(ordering: .relaxed)
        let stallPeriod = threshold == 0 ? Double.infinity : max(0.001, Double(threshold) / 4e9)
        return min(stallPeriod, metrics == nil ? .infinity : LoopMonitor.metricsInterval)
    }

    func tick(now: UInt64) {
        checkForStall(now: now)
        metrics?.reportIfDue(now: now)
    }

    /// A ping answered late means the loop's thread was busy (a callback or job that does not
    /// return): logged once per stall, with how long it has lasted.
    private func checkForStall(now: UInt64) {
        let threshold = stallThreshold.load(ordering: .relaxed)
        guard threshold > 0, health.runStartedAt.load(ordering: .relaxed) != 0 else {
            pingNumber.store(0, ordering: .relaxed)
            return
        }
        if pingNumber.load(ordering: .acquiring) != 0 {
            let blocked = now &- pingSentAt.load(ordering: .relaxed)
            if blocked > threshold && !stallReported.exchange(true, ordering: .relaxed) {
                health.stalls.add(1, ordering: .relaxed)
                logger.warning("Event loop blocked for \(Double(blocked) / 1e9) s (stallThreshold \(Double(threshold) / 1e9) s): a callback or job has not returned")
            }
            return
        }
        let number = nextPing.add(1, ordering: .relaxed).newValue
        pingSentAt.store(now, ordering: .relaxed)
        pingNumber.store(number, ordering: .releasing)
        let posted = post { [self] in
            // Answered: the loop is responsive (again).
            if pingNumber.compareExchange(expected: number, desired: 0, ordering: .acquiringAndReleasing).exchanged {
                stallReported.store(false, ordering: .relaxed)
            }
        }
        if !posted { pingNumber.store(0, ordering: .relaxed) }
    }

    func destroyMetrics() { metrics?.destroy() }
}

/// One loop's swift-metrics, all with the dimension `loop`:
/// `uvloop_loop_utilization` (gauge, 0...1 over the last interval), `uvloop_loop_lag` (timer:
/// the worst lag of the interval), `uvloop_loop_callbacks` and `uvloop_loop_iterations`
/// (counters), `uvloop_loop_ready_queue_depth` (gauge), `uvloop_loop_stalls` (counter).
///
/// `@unchecked Sendable`: the swift-metrics handles are thread-safe; the `last...` fields are
/// touched by the monitor thread only.
final class LoopMetrics: @unchecked Sendable {
    private let health: LoopHealth
    private let utilization: Gauge
    private let lag: CoreMetrics.Timer
    private let callbacks: Counter
    private let iterations: Counter
    private let readyQueueDepth: Gauge
    private let stalls: Counter
    private var lastReport: UInt64 = 0
    private var lastRunning: UInt64 = 0
    private var lastIdle: UInt64 = 0
    private var lastCallbacks: UInt64 = 0
    private var lastIterations: UInt64 = 0
    private var lastStalls: UInt64 = 0

    init(label: String, factory: any MetricsFactory, health: LoopHealth) {
        self.health = health
        let dimensions = [("loop", label)]
        utilization = Gauge(label: "uvloop_loop_utilization", dimensions: dimensions, factory: factory)
        lag = CoreMetrics.Timer(label: "uvloop_loop_lag", dimensions: dimensions, factory: factory)
        callbacks = Counter(label: "uvloop_loop_callbacks", dimensions: dimensions, factory: factory)
        iterations = Counter(label: "uvloop_loop_iterations", dimensions: dimensions, factory: factory)
        readyQueueDepth = Gauge(label: "uvloop_loop_ready_queue_depth", dimensions: dimensions, factory: factory)
        stalls = Counter(label: "uvloop_loop_stalls", dimensions: dimensions, factory: factory)
    }

    func reportIfDue(now: UInt64) {
        guard Double(now &- lastReport) / 1e9 >= LoopMonitor.metricsInterval * 0.99 else { return }
        lastReport = now
        let running = health.runningTime(now: now)
        let idle = health.idleTime.load(ordering: .relaxed)
        if running > lastRunning {
            let busy = 1 - Double(idle &- lastIdle) / Double(running - lastRunning)
            utilization.record(min(1, max(0, busy)))
        }
        lastRunning = running
        lastIdle = idle
        lag.recordNanoseconds(Int64(clamping: health.windowMaxLag.exchange(0, ordering: .relaxed)))
        let ran = health.callbacksRun.load(ordering: .relaxed)
        callbacks.increment(by: ran &- lastCallbacks)
        lastCallbacks = ran
        let turns = health.iterations.load(ordering: .relaxed)
        iterations.increment(by: turns &- lastIterations)
        lastIterations = turns
        let stalled = health.stalls.load(ordering: .relaxed)
        stalls.increment(by: stalled &- lastStalls)
        lastStalls = stalled
        readyQueueDepth.record(health.readyQueueDepth.load(ordering: .relaxed))
    }

    func destroy() {
        utilization.destroy()
        lag.destroy()
        callbacks.destroy()
        iterations.destroy()
        readyQueueDepth.destroy()
        stalls.destroy()
    }
}

extension EventLoop {
    /// Opt-in stall detection: when set, a process-wide monitor thread pings the running loop
    /// every quarter of this many seconds, and a ping left unanswered for longer than it (a
    /// callback or job that does not return) logs one warning per stall, with how long the loop
    /// has been blocked; `statistics.stalls` counts them. nil (the default) turns it off. A value
    /// that is not positive (or NaN) turns it off too, with a logged warning. Settable from any
    /// thread.
    public var stallThreshold: Double? {
        get {
            let nanoseconds = monitored.withLock { $0?.stallThreshold.load(ordering: .relaxed) } ?? 0
            return nanoseconds == 0 ? nil : Double(nanoseconds) / 1e9
        }
        set {
            var seconds = newValue
            if let value = seconds, !(value > 0) {
                logger.warning("stallThreshold \(value) is not a positive number of seconds: stall detection is off")
                seconds = nil
            }
            let nanoseconds = seconds.map { $0 >= 1.8e10 ? UInt64(1.8e19) : UInt64($0 * 1e9) } ?? 0
            let entry = monitoredLoop(metrics: false)
            entry.stallThreshold.store(nanoseconds, ordering: .relaxed)
            LoopMonitor.shared.watch(entry)
        }
    }

    /// When swift-metrics is bootstrapped, reports this loop's figures from its first run on.
    func startMonitoringIfNeeded() {
        guard monitored.withLock({ $0?.metrics == nil }) else { return }
        let factory = MetricsSystem.factory
        guard !(factory is NOOPMetricsHandler) else { return }
        LoopMonitor.shared.watch(monitoredLoop(metrics: true, factory: factory))
    }

    /// The loop's monitor entry, created (or recreated with metrics) as needed.
    private func monitoredLoop(metrics: Bool, factory: (any MetricsFactory)? = nil) -> MonitoredLoop {
        monitored.withLock { current in
            if let current, !metrics || current.metrics != nil { return current }
            let executor: LoopTaskExecutor = taskExecutor
            let entry = MonitoredLoop(
                id: ObjectIdentifier(self), health: health, logger: logger, label: label,
                metricsFactory: metrics ? factory : nil,
                post: { body in executor.withLoop { $0.schedule(body) } ?? false })
            if let current { entry.stallThreshold.store(current.stallThreshold.load(ordering: .relaxed), ordering: .relaxed) }
            current = entry
            return entry
        }
    }

    /// Stops the monitor watching this loop (it closed).
    func stopMonitoring() {
        if monitored.withLock({ $0 }) != nil { LoopMonitor.shared.unwatch(ObjectIdentifier(self)) }
    }
}
