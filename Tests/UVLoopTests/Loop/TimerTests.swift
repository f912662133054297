import Foundation
import Testing
@testable import UVLoop

@Suite("EventLoop: callLater and callAt")
struct TimerTests {
    @Test func timersFireInDeadlineOrderAndNeverEarly() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let fired = Box<[(Int, Double)]>([])
        let delays = [0.03, 0.01, 0.02, 0.0, 0.015]
        let start = loop.time()
        for (index, delay) in delays.enumerated() {
            loop.callLater(delay) { fired.mutate { $0.append((index, loop.time() - start)) } }
        }
        loop.callLater(0.05) { loop.stop() }
        try loop.runForever()
        #expect(fired.value.map(\.0) == [3, 1, 4, 2, 0])
        for (index, elapsed) in fired.value {
            #expect(elapsed >= delays[index], "timer \(index) fired early: \(elapsed) < \(delays[index])")
        }
    }

    @Test func equalDeadlinesKeepSchedulingOrder() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let order = Box<[Int]>([])
        let when = loop.time() + 0.01
        for i in 0..<100 { loop.callAt(when) { order.mutate { $0.append(i) } } }
        loop.callAt(when + 0.005) { loop.stop() }
        try loop.runForever()
        #expect(order.value == Array(0..<100))
    }

    @Test func whenIsTheDueTimeOnTheLoopClock() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let before = loop.time()
        let handle = loop.callLater(2.5) {}
        #expect(handle.when >= before + 2.5)
        #expect(handle.when < loop.time() + 2.5 + 0.001)
        let at = loop.callAt(1234.5) {}
        #expect(at.when == 1234.5)
    }

    @Test func cancelledTimerDoesNotFire() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let fired = Box<[String]>([])
        let cancelled = loop.callLater(0.005) { fired.mutate { $0.append("cancelled") } }
        loop.callLater(0.001) { cancelled.cancel() }
        loop.callLater(0.02) { fired.mutate { $0.append("kept") }; loop.stop() }
        try loop.runForever()
        #expect(fired.value == ["kept"])
        #expect(cancelled.isCancelled)
    }

    @Test func negativeDelayAndPastDeadlineRunAsSoonAsPossible() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let fired = Box<[String]>([])
        loop.callLater(-5) { fired.mutate { $0.append("negative") } }
        loop.callAt(loop.time() - 100) { fired.mutate { $0.append("past") } }
        loop.callAt(-1) { fired.mutate { $0.append("negative-at") } }
        loop.callLater(0.01) { loop.stop() }
        try loop.runForever()
        #expect(fired.value == ["negative-at", "past", "negative"] || Set(fired.value) == ["negative", "past", "negative-at"])
        #expect(fired.value.count == 3)
    }

    @Test func nanDelayIsReportedAndNeverRuns() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let reported = Box<[String]>([])
        loop.setExceptionHandler { _, context in
            if let error = context.error as? EventLoopError { reported.mutate { $0.append("\(error)") } }
        }
        let ran = Box(false)
        let handle = loop.callLater(.nan) { ran.value = true }
        let handleAt = loop.callAt(.nan) { ran.value = true }
        #expect(handle.isCancelled)
        #expect(handleAt.isCancelled)
        loop.callLater(0.01) { loop.stop() }
        try loop.runForever()
        #expect(!ran.value)
        #expect(reported.value.count == 2)
        #expect(reported.value.allSatisfy { $0 == "\(EventLoopError.invalidDelay)" })
    }

    @Test func infiniteDelayNeverFiresAndDoesNotBlockOthers() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let ran = Box<[String]>([])
        let never = loop.callLater(.infinity) { ran.mutate { $0.append("infinite") } }
        loop.callLater(1e300) { ran.mutate { $0.append("huge") } }
        loop.callLater(0.01) { ran.mutate { $0.append("soon") }; loop.stop() }
        try loop.runForever()
        #expect(ran.value == ["soon"])
        #expect(never.when == .infinity)
        never.cancel()
    }

    @Test func manyRandomTimersAllFireInOrder() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        var generator = SystemRandomNumberGenerator()
        let count = 10_000
        let deadlines = Box<[Double]>([])
        let start = loop.time()
        for _ in 0..<count {
            let delay = Double.random(in: 0..<0.05, using: &generator)
            let handle = loop.callLater(delay) {}
            _ = handle
            loop.callAt(start + delay) { deadlines.mutate { $0.append(start + delay) } }
        }
        loop.callLater(0.06) { loop.stop() }
        try loop.runForever()
        #expect(deadlines.value.count == count)
        let values = deadlines.value
        let firstDisorder = zip(values, values.dropFirst()).enumerated().first { $0.element.0 > $0.element.1 + 1e-9 }   // deadlines are kept in whole nanoseconds
        #expect(firstDisorder == nil, "out of order at \(firstDisorder.map { "\($0.offset): \($0.element)" } ?? "")")
    }

    @Test func cancelledTimersAreCompacted() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let pending = Box<[Int]>([])
        loop.callSoon {
            let handles = (0..<1000).map { _ in loop.callLater(3600) {} }
            pending.mutate { $0.append(loop.pendingTimerCount) }
            handles.prefix(900).forEach { $0.cancel() }
            // The heap sweeps cancelled timers when it grows past its threshold.
            for _ in 0..<100 { loop.callLater(3600) {} }
            pending.mutate { $0.append(loop.pendingTimerCount) }
            // A schedule-and-cancel loop never grows the heap without bound.
            for _ in 0..<100_000 { loop.callLater(3600) {}.cancel() }
            pending.mutate { $0.append(loop.pendingTimerCount) }
            loop.stop()
        }
        try loop.runForever()
        #expect(pending.value[0] == 1000)
        #expect(pending.value[1] <= 300)
        #expect(pending.value[2] <= 2 * EventLoop.minimumCompactionThreshold + 200)
    }

    @Test(.timeLimit(.minutes(1))) func callLaterFromAnotherThreadWhileRunning() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let onLoop = Box(false)
        let joins = Box<[@Sendable () -> Void]>([])
        loop.callSoon {
            let join = startThread {
                loop.callLater(0.01) { onLoop.value = loop.inLoopThread; loop.stop() }
            }
            joins.mutate { $0.append(join) }
        }
        try loop.runForever()
        joins.value.forEach { $0() }
        #expect(onLoop.value)
    }

    /// The deadline timer is armed right before the poll; a timer scheduled by an I/O callback
    /// (which runs inside the poll phase) must still be armed before the loop blocks again.
    @Test(.timeLimit(.minutes(1))) func timersScheduledFromAnIOCallbackFire() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let (mine, theirs) = socketPair()
        defer { close(mine); close(theirs) }
        let order = Box<[String]>([])
        try loop.addReader(mine) {
            var byte: UInt8 = 0
            _ = read(mine, &byte, 1)
            loop.removeReader(mine)
            order.mutate { $0.append("readable") }
            loop.callLater(0.02) { order.mutate { $0.append("later") }; loop.stop() }
            loop.callLater(0) { order.mutate { $0.append("now") } }
        }
        _ = write(theirs, "x", 1)
        // Were the timers never armed, the loop would block for good: a watchdog stops it.
        let done = Box(false)
        let joinWatchdog = startThread {
            for _ in 0..<1000 where !done.value { usleep(10_000) }
            loop.stop()
        }
        try loop.runForever()
        done.value = true
        joinWatchdog()
        #expect(order.value == ["readable", "now", "later"])
    }

    @Test func timerCallbacksCanScheduleTimers() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let ticks = Box(0)
        func tick() {
            if ticks.mutate({ $0 += 1; return $0 }) == 20 { loop.stop() } else { loop.callLater(0.001, tick) }
        }
        loop.callLater(0.001, tick)
        try loop.runForever()
        #expect(ticks.value == 20)
    }
}
