import Foundation
import Logging
import Metrics
import MetricsTestKit
import Testing
@testable import UVLoop

@Suite("Runtime: statistics, stall detection, metrics, loggers")
struct HealthTests {
    @Test(.timeLimit(.minutes(1))) func statisticsCountWorkAndMeasureLag() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        #expect(loop.statistics.iterations == 0)
        let ran = Box(0)
        for _ in 0..<1000 { loop.callSoon { ran.mutate { $0 += 1 } } }
        // A timer that falls due while the callback that armed it blocks the loop for 60 ms
        // runs at least 50 ms late, however slowly the loop got going.
        loop.callSoon {
            loop.callLater(0.01) {}
            usleep(60_000)
        }
        loop.callLater(0.1) { loop.stop() }
        try loop.runForever()
        let statistics = loop.statistics
        #expect(ran.value == 1000)
        #expect(statistics.callbacksRun >= 1003)   // 1000, the blocker, its timer, the stop
        #expect(statistics.iterations > 0)
        #expect(statistics.readyQueueDepth == 0)
        #expect(statistics.maxLag >= 0.04, "\(statistics)")
        #expect(statistics.maxLag < 5)
        #expect(statistics.utilization > 0 && statistics.utilization <= 1)
    }

    @Test(.timeLimit(.minutes(1))) func utilizationIsHighWhenBusyAndLowWhenIdle() async throws {
        try await offTheCooperativePool { try Self.busyAndIdleLoops() }
    }

    private static func busyAndIdleLoops() throws {
        let busy = try EventLoop()
        defer { try? busy.close() }
        busy.callSoon {
            let end = UVRunLoop.hrtime() + 200_000_000
            while UVRunLoop.hrtime() < end {}
        }
        busy.callLater(0.21) { busy.stop() }
        try busy.runForever()
        #expect(busy.statistics.utilization > 0.6, "\(busy.statistics)")

        let idle = try EventLoop()
        defer { try? idle.close() }
        idle.callLater(0.2) { idle.stop() }
        try idle.runForever()
        #expect(idle.statistics.utilization < 0.4, "\(idle.statistics)")
    }

    @Test(.timeLimit(.minutes(1))) func statisticsAreReadableFromAnotherThreadWhileTheLoopRuns() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let seen = Box<[UInt64]>([])
        let reader = startThread {
            for _ in 0..<50 {
                seen.mutate { $0.append(loop.statistics.iterations) }
                usleep(2_000)
            }
        }
        func tick(_ left: Int) { if left > 0 { loop.callLater(0.001) { tick(left - 1) } } else { loop.stop() } }
        tick(100)
        try loop.runForever()
        reader()
        #expect(seen.value == seen.value.sorted())   // monotonic
        #expect(loop.statistics.iterations >= 100)
    }

    @Test(.timeLimit(.minutes(1))) func aStallIsLoggedOnceWithItsLength() async throws {
        try await offTheCooperativePool { try Self.twoStalls() }
    }

    private static func twoStalls() throws {
        let log = CapturedLog()
        let loop = try EventLoop(logger: log.logger)
        defer { try? loop.close() }
        #expect(loop.stallThreshold == nil)
        loop.stallThreshold = 0.1
        #expect(loop.stallThreshold == 0.1)
        // Two stalls of 400 ms, separated by a responsive moment.
        loop.callLater(0.05) { usleep(400_000) }
        loop.callLater(0.6) { usleep(400_000) }
        loop.callLater(1.2) { loop.stop() }
        try loop.runForever()
        let warnings = log.messages.filter { $0.contains("Event loop blocked for") }
        // Each 400 ms stall is logged once (a watchdog that logged on every check would log about
        // four times each); a loaded machine may add one short stall of its own (the loop's thread
        // descheduled past the threshold). The length, at least the threshold, is in each message.
        let lengths = warnings.compactMap { $0.split(separator: " ").compactMap({ Double($0) }).first }
        #expect((2...3).contains(warnings.count), "\(log.messages)")
        #expect(lengths.count == warnings.count && lengths.allSatisfy { $0 >= 0.1 }, "\(log.messages)")
        #expect(loop.statistics.stalls == warnings.count)
        loop.stallThreshold = nil
        #expect(loop.stallThreshold == nil)
    }

    @Test func aThresholdThatIsNotPositiveTurnsDetectionOffWithAWarning() throws {
        let log = CapturedLog()
        let loop = try EventLoop(logger: log.logger)
        defer { try? loop.close() }
        for bad in [0, -1, Double.nan] {
            loop.stallThreshold = bad
            #expect(loop.stallThreshold == nil)
        }
        #expect(log.messages.filter { $0.contains("stall detection is off") }.count == 3)
    }

    @Test func theLoopLogsThroughTheLoggerItWasGiven() throws {
        let log = CapturedLog()
        let loop = try EventLoop(logger: log.logger)
        defer { try? loop.close() }
        loop.callSoon { throw UVError.EPIPE }
        loop.callLater(0.01) { loop.stop() }
        try loop.runForever()
        #expect(log.contains("Exception in callback"))
        try loop.close()
        loop.callSoonThreadsafe {}
        #expect(log.contains("on a closed event loop"))
    }

    /// swift-metrics' bootstrap is process-wide and once only: in a process of its own.
    @Test(.timeLimit(.minutes(1))) func metricsAreReportedOnceSwiftMetricsIsBootstrapped() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let metrics = TestMetrics()
            MetricsSystem.bootstrap(metrics)
            let loop = try! EventLoop()
            let dimensions = [("loop", loop.label)]
            // A timer that falls due while the callback that armed it blocks the loop for 30 ms
            // runs at least 25 ms late, however slowly the loop got going.
            loop.callSoon {
                loop.callLater(0.005) {}
                usleep(30_000)
            }
            for _ in 0..<500 { loop.callSoon {} }
            loop.callLater(2.2) { loop.stop() }
            try! loop.runForever()
            func fail(_ message: String) { print("FAIL \(message)") }
            let callbacks = metrics.counterTotal(label: "uvloop_loop_callbacks", dimensions: dimensions)
            if callbacks < 500 { fail("callbacks \(callbacks)") }
            if metrics.counterTotal(label: "uvloop_loop_iterations", dimensions: dimensions) <= 0 { fail("iterations") }
            if let utilization = try? metrics.expectGauge("uvloop_loop_utilization", dimensions).lastValue {
                if !(0...1).contains(utilization) { fail("utilization \(utilization)") }
            } else {
                fail("no utilization gauge")
            }
            if let lag = try? metrics.expectTimer("uvloop_loop_lag", dimensions) {
                if (lag.values.max() ?? 0) < 20_000_000 { fail("lag \(lag.values)") }
            } else {
                fail("no lag timer")
            }
            if (try? metrics.expectGauge("uvloop_loop_ready_queue_depth", dimensions)) == nil { fail("no depth gauge") }
            try! loop.close()
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }
}
