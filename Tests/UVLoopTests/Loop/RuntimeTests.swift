import Foundation
import Testing
@testable import UVLoop

/// Runs `body` as a task on a new loop on this thread; closes the loop afterwards.
private func onLoop<T: Sendable>(_ body: sending @escaping (EventLoop) async throws -> T) throws -> T {
    let loop = try EventLoop()
    defer { try? loop.close() }
    return try loop.runUntilComplete { try await body(loop) }
}

/// The exception handler's reports on one loop.
private func recordExceptions(_ loop: EventLoop) -> Box<[String]> {
    let reports = Box<[String]>([])
    loop.setExceptionHandler { _, context in reports.mutate { $0.append(context.description) } }
    return reports
}

@Suite("Runtime: a closed loop drops work instead of trapping")
struct ClosedLoopTests {
    @Test func schedulingOnAClosedLoopReturnsCancelledHandles() async throws {
        let loop = try EventLoop()
        try loop.close()
        #expect(loop.callSoon {}.isCancelled)
        #expect(loop.callSoonThreadsafe {}.isCancelled)
        #expect(loop.callLater(1) {}.isCancelled)
        #expect(loop.callAt(loop.time()) {}.isCancelled)
        #expect(loop.callLater(.nan) {}.isCancelled)
        await #expect(throws: EventLoopError.loopClosed) { try await loop.createTask { 42 }.value }
        await #expect(throws: EventLoopError.loopClosed) { try await loop.sleep(0.01) }
        await #expect(throws: EventLoopError.loopClosed) { try await loop.runInExecutor { 1 } }
    }

    /// Regression: posting from threads while another thread closed the loop killed the process
    /// (SIGILL after a few hundred posts).
    @Test(.timeLimit(.minutes(1))) func postingWhileAnotherThreadClosesTheLoopNeverCrashes() async throws {
        try await offTheCooperativePool { try Self.postWhileClosing() }
    }

    private static func postWhileClosing() throws {
        for _ in 0..<20 {
            let loop = try EventLoop()
            let ran = Box(0)
            let posters = (0..<4).map { _ in
                startThread {
                    for _ in 0..<2_000 {
                        loop.callSoonThreadsafe { ran.mutate { $0 += 1 } }
                        loop.callLater(0) { ran.mutate { $0 += 1 } }
                    }
                }
            }
            loop.callLater(0.001) { loop.stop() }
            try loop.runForever()
            try loop.close()
            posters.forEach { $0() }
            #expect(ran.value <= 16_000)
        }
    }
}

@Suite("Runtime: the loop's brief spin for cross-thread work")
struct SpinTests {
    /// Regression guard for the spin before the poll: a producer that posts while the loop spins
    /// sends no wake-up, one that posts just after must; either way nothing is lost. Ping-pong
    /// with delays around the 50 µs spin window: a lost wake-up would hang (time limit).
    @Test(.timeLimit(.minutes(1))) func pingPongAcrossTheSpinWindowLosesNothing() async throws {
        try await offTheCooperativePool {
            let loop = try EventLoop()
            let answered = DispatchSemaphore(value: 0)
            let runner = startThread { try? loop.runForever() }
            let delays: [UInt32] = [0, 10, 40, 49, 50, 51, 60, 100, 200]
            for round in 0..<3_000 {
                loop.callSoonThreadsafe { answered.signal() }
                answered.wait()
                usleep(delays[round % delays.count])
            }
            loop.stop()
            runner()
            try loop.close()
        }
    }
}

@Suite("Runtime: sleep and withTimeout on the loop's timers")
struct SleepAndTimeoutTests {
    @Test(.timeLimit(.minutes(1))) func sleepWaitsOnTheLoopsClockAndNeverReturnsEarly() throws {
        let (elapsed, onLoop) = try onLoop { loop -> (Double, Bool) in
            let start = loop.time()
            try await loop.sleep(0.05)
            return (loop.time() - start, loop.inLoopThread)
        }
        #expect(elapsed >= 0.05)
        #expect(elapsed < 1)
        #expect(onLoop)
    }

    @Test(.timeLimit(.minutes(1))) func cancellingASleepEndsItAtOnce() throws {
        let elapsed = try onLoop { loop -> Double in
            let start = loop.time()
            let sleeper = loop.createTask { try await loop.sleep(3600) }
            try await loop.sleep(0.01)
            sleeper.cancel()
            await #expect(throws: CancellationError.self) { try await sleeper.value }
            return loop.time() - start
        }
        #expect(elapsed < 1)
    }

    @Test(.timeLimit(.minutes(1))) func sleepBadInput() throws {
        try onLoop { loop in
            await #expect(throws: EventLoopError.invalidArgument) { try await loop.sleep(.nan) }
            // Negative and zero: one turn of the loop.
            let order = Box<[String]>([])
            loop.callSoon { order.mutate { $0.append("callback") } }
            try await loop.sleep(-5)
            order.mutate { $0.append("after sleep") }
            #expect(order.value == ["callback", "after sleep"])
            // Infinite: only a cancellation ends it.
            let forever = loop.createTask { try await loop.sleep(.infinity) }
            try await loop.sleep(0.01)
            forever.cancel()
            await #expect(throws: CancellationError.self) { try await forever.value }
        }
    }

    @Test(.timeLimit(.minutes(1))) func aSleepingTaskLearnsThatItsLoopClosed() async throws {
        let loop = try EventLoop()
        let sleeper = loop.createTask { try await loop.sleep(3600) }
        loop.callLater(0.01) { loop.stop() }
        try loop.runForever()
        try loop.close()
        // The task resumes on the closed loop's fallback queue: awaited here, never blocked on.
        await #expect(throws: EventLoopError.loopClosed) { try await sleeper.value }
    }

    @Test(.timeLimit(.minutes(1))) func theDeadlinePassingCancelsTheOperationAndThrowsTimeoutError() throws {
        let (elapsed, sawCancellation) = try onLoop { loop -> (Double, Bool) in
            let start = loop.time()
            let cancelled = Box(false)
            await #expect(throws: TimeoutError()) {
                try await withTimeout(0.05) {
                    do {
                        try await loop.sleep(10)
                    } catch {
                        cancelled.value = error is CancellationError
                        throw error
                    }
                }
            }
            return (loop.time() - start, cancelled.value)
        }
        #expect(sawCancellation)
        #expect(elapsed >= 0.05 && elapsed < 5)
    }

    @Test(.timeLimit(.minutes(1))) func anOperationThatFinishesInTimeReturnsItsValue() throws {
        let value = try onLoop { loop in
            try await withTimeout(5) {
                try await loop.sleep(0.01)
                return loop.inLoopThread ? 42 : -1   // the operation runs on the loop too
            }
        }
        #expect(value == 42)
    }

    @Test(.timeLimit(.minutes(1))) func nestedTimeoutsTheShorterOneWins() throws {
        let (inner, outer) = try onLoop { loop -> (String, String) in
            // The inner deadline is shorter: its TimeoutError comes out, unchanged by the outer.
            var inner = "none"
            do {
                try await withTimeout(5) { try await withTimeout(0.02) { try await loop.sleep(10) } }
            } catch let error as TimeoutError {
                inner = "\(error)"
            }
            // The outer deadline is shorter: the inner body is cancelled through the inner timeout,
            // which rethrows the cancellation; the outer turns it into its TimeoutError.
            var outer = "none"
            let start = loop.time()
            do {
                try await withTimeout(0.02) { try await withTimeout(5) { try await loop.sleep(10) } }
            } catch is TimeoutError {
                outer = loop.time() - start < 4 ? "outer" : "late"
            }
            return (inner, outer)
        }
        #expect(inner == "\(TimeoutError())")
        #expect(outer == "outer")
    }

    @Test(.timeLimit(.minutes(1))) func aTaskCancelledDuringATimeoutGetsCancellationErrorNotTimeoutError() throws {
        try onLoop { loop in
            let task = loop.createTask { try await withTimeout(10) { try await loop.sleep(10) } }
            try await loop.sleep(0.01)
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
        }
    }

    @Test(.timeLimit(.minutes(1))) func anOperationErrorPassesThrough() throws {
        try onLoop { loop in
            await #expect(throws: UVError.EPIPE) {
                try await withTimeout(5) { () async throws -> Int in throw UVError.EPIPE }
            }
            // Zero: cancelled at the first suspension.
            await #expect(throws: TimeoutError()) { try await withTimeout(0) { try await loop.sleep(1) } }
            // Infinite: never cancelled.
            let unbounded = try await withTimeout(.infinity) { 7 }
            #expect(unbounded == 7)
            await #expect(throws: EventLoopError.invalidArgument) { try await withTimeout(.nan) { 1 } }
        }
    }

    @Test func withTimeoutNeedsARunningLoop() async {
        await #expect(throws: EventLoopError.noRunningEventLoop) { try await withTimeout(1) { 1 } }
    }

    @Test(.timeLimit(.minutes(1))) func theOperationKeepsItsCallersActorIsolation() throws {
        actor Counter {
            var count = 0
            func incrementWithin(_ seconds: Double) async throws -> Int {
                try await withTimeout(seconds) {
                    // Runs isolated to this actor: no await needed to touch its state.
                    self.assertIsolated()
                    count += 1
                    return count
                }
            }
        }
        let count = try onLoop { _ in try await Counter().incrementWithin(5) }
        #expect(count == 1)
    }
}

@Suite("Runtime: ThreadPoolExecutor and runInExecutor")
struct ExecutorPoolTests {
    @Test func badArguments() throws {
        #expect(throws: EventLoopError.invalidArgument) { try ThreadPoolExecutor(maxWorkers: 0) }
        #expect(throws: EventLoopError.invalidArgument) { try ThreadPoolExecutor(maxWorkers: -3) }
    }

    @Test(.timeLimit(.minutes(1))) func atMostMaxWorkersRunAtOnce() throws {
        let pool = try ThreadPoolExecutor(maxWorkers: 3)
        defer { pool.shutdown() }
        let running = Box((now: 0, most: 0))
        let results = try onLoop { loop in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<12 {
                    group.addTask {
                        try await loop.runInExecutor(pool) {
                            running.mutate { $0.now += 1; $0.most = max($0.most, $0.now) }
                            usleep(20_000)
                            running.mutate { $0.now -= 1 }
                            return index
                        }
                    }
                }
                var all: [Int] = []
                for try await value in group { all.append(value) }
                return all.sorted()
            }
        }
        #expect(results == Array(0..<12))
        #expect(running.value.most == 3)
    }

    @Test(.timeLimit(.minutes(1))) func submittingAfterShutdownThrows() throws {
        let pool = try ThreadPoolExecutor(maxWorkers: 2)
        try onLoop { loop in
            let five = try await loop.runInExecutor(pool) { 5 }
            #expect(five == 5)
            pool.shutdown(wait: true)
            #expect(pool.isShutDown)
            await #expect(throws: EventLoopError.executorShutDown) { try await loop.runInExecutor(pool) { 6 } }
        }
    }

    @Test(.timeLimit(.minutes(1))) func shutdownWaitsForQueuedWork() throws {
        let pool = try ThreadPoolExecutor(maxWorkers: 1)
        let done = Box(0)
        for _ in 0..<5 { try pool.submit { usleep(5_000); done.mutate { $0 += 1 } } }
        pool.shutdown(wait: true)
        #expect(done.value == 5)
    }

    @Test(.timeLimit(.minutes(1))) func cancellingTheAwaitingTaskReturnsAtOnce() throws {
        let pool = try ThreadPoolExecutor(maxWorkers: 1)
        let finished = Box(false)
        let elapsed = try onLoop { loop -> Double in
            let start = loop.time()
            let waiter = loop.createTask {
                try await loop.runInExecutor(pool) { usleep(500_000); finished.value = true }
            }
            try await loop.sleep(0.01)
            waiter.cancel()
            await #expect(throws: CancellationError.self) { try await waiter.value }
            return loop.time() - start
        }
        #expect(elapsed < 0.4)
        pool.shutdown(wait: true)   // the work itself finished in the background
        #expect(finished.value)
    }

    @Test(.timeLimit(.minutes(1))) func theDefaultExecutorCanBeReplacedAndRestored() throws {
        let pool = try ThreadPoolExecutor(maxWorkers: 1)
        defer { pool.shutdown() }
        let marker = Box<UInt>(0)
        try onLoop { loop in
            try await loop.runInExecutor(pool) { marker.value = UInt(pthread_self()) }
            let poolThread = marker.value
            loop.setDefaultExecutor(pool)
            let chosen = try await loop.runInExecutor { UInt(pthread_self()) }
            #expect(chosen == poolThread)
            loop.setDefaultExecutor(nil)
            let builtIn = try await loop.runInExecutor { UInt(pthread_self()) }
            #expect(builtIn != poolThread)
            await #expect(throws: UVError.EPIPE) { try await loop.runInExecutor { () throws -> Int in throw UVError.EPIPE } }
        }
    }
}

@Suite("Runtime: cancelled timers and unretrieved task errors")
struct ReclamationTests {
    @Test(.timeLimit(.minutes(1))) func aMillionCancelledTimersLeaveTheHeap() async throws {
        try await offTheCooperativePool { try Self.cancelAMillionTimers() }
    }

    private static func cancelAMillionTimers() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let counts = Box<[Int]>([])
        loop.callSoon {
            let handles = (0..<1_000_000).map { _ in loop.callLater(3600) {} }
            counts.mutate { $0.append(loop.pendingTimerCount) }
            loop.callSoon {
                for handle in handles { handle.cancel() }
            }
        }
        loop.callLater(0.01) { loop.stop() }
        try loop.runForever()
        #expect(counts.value == [1_000_000])
        // Swept at the end of the batch that cancelled them (asyncio: more than half cancelled).
        #expect(loop.pendingTimerCount < EventLoop.minimumCompactionThreshold + 1)
        #expect(loop.timerCancellations.count.load(ordering: .relaxed) <= loop.pendingTimerCount)
    }

    @Test func liveTimersSurviveASweepAndStillFire() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let fired = Box(0)
        let cancelled = (0..<5_000).map { _ in loop.callLater(3600) { fired.mutate { $0 += 1000 } } }
        for _ in 0..<100 { loop.callLater(0.01) { fired.mutate { $0 += 1 } } }
        cancelled.forEach { $0.cancel() }
        loop.callLater(0.05) { loop.stop() }
        try loop.runForever()
        #expect(fired.value == 100)
        #expect(loop.pendingTimerCount == 0)
    }

    @Test(.timeLimit(.minutes(1))) func aFireAndForgetTaskThatThrowsIsReported() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let reports = recordExceptions(loop)
        loop.createTask { throw UVError.EPIPE }
        loop.createTask { throw CancellationError() }        // a cancellation is not reported
        loop.createTask { 1 }
        let kept = loop.createTask { () async throws -> Int in throw UVError.ECONNRESET }
        loop.callLater(0.05) { loop.stop() }
        try loop.runForever()
        #expect(reports.value.count == 1)
        #expect(reports.value.first?.contains("Task exception was never retrieved") == true)
        #expect(reports.value.first?.contains("EPIPE") == true)
        withExtendedLifetime(kept) {}   // held: its error may still be read, so not reported
    }
}

extension ProcessWide {
@Suite("Runtime: EventLoop.run")
struct RunTests {
    @Test(.timeLimit(.minutes(1))) func runSetsTheLoopRunsCleansUpAndRestores() throws {
        setEventLoopPolicy(nil)
        defer { setEventLoopPolicy(nil) }
        let previous = try EventLoop()
        defer { try? previous.close() }
        setEventLoop(previous)
        let leftoverCancelled = Box(false)
        let (value, loopDuringRun) = try EventLoop.run { () async throws -> (Int, ObjectIdentifier) in
            let loop = try getRunningLoop()
            #expect(try getEventLoopPolicy().getEventLoop() === loop)
            // A task left running: cancelled and awaited when the operation is done.
            loop.createTask {
                do { try await loop.sleep(3600) } catch { leftoverCancelled.value = error is CancellationError }
            }
            try await loop.sleep(0.01)
            return (42, ObjectIdentifier(loop))
        }
        #expect(value == 42)
        #expect(leftoverCancelled.value)
        #expect(ObjectIdentifier(previous) != loopDuringRun)
        #expect(try getEventLoopPolicy().getEventLoop() === previous)
    }

    @Test func runRethrowsTheOperationsError() throws {
        setEventLoopPolicy(nil)
        defer { setEventLoopPolicy(nil) }
        #expect(throws: UVError.EPIPE) { try EventLoop.run { () async throws -> Int in throw UVError.EPIPE } }
    }

    @Test(.timeLimit(.minutes(1))) func runInsideARunningLoopThrows() throws {
        setEventLoopPolicy(nil)
        defer { setEventLoopPolicy(nil) }
        let loop = try EventLoop()
        defer { try? loop.close() }
        try loop.runUntilComplete {
            #expect(throws: EventLoopError.anotherLoopIsRunning) { try EventLoop.run { 1 } }
            return ()
        }
    }
}
}
