import Synchronization

/// A snapshot of one loop's health (`EventLoop.statistics`), readable from any thread.
///
/// The same figures go to swift-metrics once it is bootstrapped (one set of metrics per loop,
/// dimension `loop`), reported every second by a process-wide monitor thread.
public struct LoopStatistics: Sendable, Equatable, CustomStringConvertible {
    /// Loop iterations (polls for I/O) so far.
    public var iterations: UInt64
    /// Callbacks, timers and Swift jobs run so far (cancelled ones are not counted).
    public var callbacksRun: UInt64
    /// Work waiting in the ready queue at the end of the last iteration.
    public var readyQueueDepth: Int
    /// Share of the loop's running time not spent idle in the poll for I/O, from 0 (idle) to 1
    /// (saturated), since the loop was created (libuv's `uv_metrics_idle_time`).
    public var utilization: Double
    /// The worst lateness so far, in seconds: how long after its deadline a due timer, or after
    /// it was queued a callback or job, started to run.
    public var maxLag: Double
    /// Stalls detected so far (`EventLoop.stallThreshold`).
    public var stalls: UInt64

    public var description: String {
        "iterations \(iterations), callbacks run \(callbacksRun), ready queue \(readyQueueDepth), "
            + "utilization \(utilization), max lag \(maxLag) s, stalls \(stalls)"
    }
}

/// What a loop publishes about itself for other threads: the statistics and the monitor read
/// these atomics; only the loop's thread writes them (but `windowMaxLag`, which the monitor
/// takes, and `stalls`, which it counts).
final class LoopHealth: Sendable {
    let iterations = Atomic<UInt64>(0)
    let callbacksRun = Atomic<UInt64>(0)
    let readyQueueDepth = Atomic<Int>(0)
    /// Nanoseconds idle in the poll (libuv's count).
    let idleTime = Atomic<UInt64>(0)
    let maxLag = Atomic<UInt64>(0)
    /// The worst lag since the monitor last took it (it swaps in 0).
    let windowMaxLag = Atomic<UInt64>(0)
    /// Nanoseconds the loop ran, runs before the current one.
    let runTime = Atomic<UInt64>(0)
    /// `hrtime` when the current run started; 0 while not running.
    let runStartedAt = Atomic<UInt64>(0)
    let stalls = Atomic<UInt64>(0)

    /// Raises `windowMaxLag` to at least `lag` (the monitor may swap it to 0 meanwhile).
    func raiseWindowLag(to lag: UInt64) {
        var current = windowMaxLag.load(ordering: .relaxed)
        while lag > current {
            let (exchanged, original) = windowMaxLag.compareExchange(expected: current, desired: lag, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// Nanoseconds of running so far, the current run included.
    func runningTime(now: UInt64) -> UInt64 {
        let started = runStartedAt.load(ordering: .acquiring)
        return runTime.load(ordering: .relaxed) &+ (started == 0 ? 0 : now &- started)
    }

    var snapshot: LoopStatistics {
        let running = runningTime(now: UVRunLoop.hrtime())
        let idle = idleTime.load(ordering: .relaxed)
        let utilization = running == 0 ? 0 : min(1, max(0, 1 - Double(idle) / Double(running)))
        return LoopStatistics(
            iterations: iterations.load(ordering: .relaxed),
            callbacksRun: callbacksRun.load(ordering: .relaxed),
            readyQueueDepth: readyQueueDepth.load(ordering: .relaxed),
            utilization: utilization,
            maxLag: Double(maxLag.load(ordering: .relaxed)) / 1e9,
            stalls: stalls.load(ordering: .relaxed))
    }
}

extension EventLoop {
    /// A snapshot of the loop's health: iterations, callbacks run, ready-queue depth,
    /// utilization, worst lag, stalls. Readable from any thread, also after `close()` (the last
    /// figures published).
    public var statistics: LoopStatistics { health.snapshot }

    /// Records how late work started: `nanoseconds` after it was due or queued. Loop thread.
    @inline(__always)
    func recordLag(_ nanoseconds: UInt64) {
        if nanoseconds > lagSinceCheck { lagSinceCheck = nanoseconds }
    }

    /// The check phase, right after each poll: publishes the loop's figures.
    func publishStatistics() {
        iterationCount &+= 1
        health.iterations.store(iterationCount, ordering: .relaxed)
        health.callbacksRun.store(callbacksRunCount, ordering: .relaxed)
        health.readyQueueDepth.store(ready.count, ordering: .relaxed)
        health.idleTime.store(uvLoop.idleTime, ordering: .relaxed)
        if lagSinceCheck > 0 {
            if lagSinceCheck > health.maxLag.load(ordering: .relaxed) {
                health.maxLag.store(lagSinceCheck, ordering: .relaxed)
            }
            health.raiseWindowLag(to: lagSinceCheck)
            lagSinceCheck = 0
        }
    }
}
