// loop-health: what an operator sees of a loop. Statistics (utilization, lag, callbacks,
// iterations), the stall detector, a deadline with withTimeout, blocking work on a bounded
// ThreadPoolExecutor, all inside EventLoop.run (asyncio.run).
import ArgumentParser
import Foundation
import Logging
import UVLoop

struct Options: ParsableArguments {
    @Option(help: "How long the simulated service runs, in seconds.")
    var seconds: Double = 2

    @Option(help: "Stall threshold, in seconds: a callback blocking the loop longer is logged.")
    var stallThreshold: Double = 0.1

    func validate() throws {
        guard seconds > 0, seconds.isFinite else { throw ValidationError("--seconds must be a positive number") }
        guard stallThreshold > 0, stallThreshold.isFinite else {
            throw ValidationError("--stall-threshold must be a positive number")
        }
    }
}
let options = Options.parseOrExit()

func show(_ statistics: LoopStatistics) {
    print(String(format: "utilization %4.0f%%  max lag %6.1f ms  callbacks %7d  iterations %6d  stalls %d",
                 statistics.utilization * 100, statistics.maxLag * 1000, statistics.callbacksRun,
                 statistics.iterations, statistics.stalls))
}

let pool = try ThreadPoolExecutor(maxWorkers: 2)
try EventLoop.run {
    let loop = try getRunningLoop()
    loop.stallThreshold = options.stallThreshold

    // Some steady work: a burst of callbacks every 10 ms.
    let end = loop.time() + options.seconds
    func tick() {
        for _ in 0..<100 { loop.callSoon {} }
        if loop.time() < end { loop.callLater(0.01) { tick() } }
    }
    tick()

    // A stall: one callback that blocks the loop three times the threshold.
    loop.callLater(options.seconds / 2) {
        print(String(format: "blocking the loop for %.2f s ...", options.stallThreshold * 3))
        Thread.sleep(forTimeInterval: options.stallThreshold * 3)
    }

    // A deadline on the loop's timers: the slow part is cancelled, the fast one finishes.
    do {
        try await withTimeout(0.05) { try await loop.sleep(10) }
    } catch is TimeoutError {
        print("withTimeout(0.05): timed out, the sleep was cancelled")
    }
    let fast = try await withTimeout(1) { try await loop.runInExecutor(pool) { 6 * 7 } }
    print("withTimeout(1): runInExecutor on a 2-worker pool answered \(fast)")

    // The statistics, twice a second, until the end.
    while loop.time() < end {
        try await loop.sleep(0.5)
        show(loop.statistics)
    }
}
pool.shutdown()
print("done")
