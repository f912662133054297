import Foundation
import Testing
@testable import UVLoop

/// An actor pinned to an event loop: its methods run on the loop's thread.
actor LoopBoundCounter {
    let loop: EventLoop
    var count = 0
    init(loop: EventLoop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    func increment() -> (Int, Bool) {
        count += 1
        return (count, loop.inLoopThread)
    }
}

@Suite("Concurrency: the loop as an executor")
struct ExecutorTests {
    struct Oops: Error {}

    @Test func runUntilCompleteReturnsTheValue() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let value = try loop.runUntilComplete { 42 }
        #expect(value == 42)
        #expect(!loop.isRunning)
    }

    @Test func runUntilCompleteRethrows() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        #expect(throws: Oops.self) { try loop.runUntilComplete { () async throws -> Int in throw Oops() } }
        // The loop is usable afterwards.
        #expect(try loop.runUntilComplete { "again" } == "again")
    }

    @Test func asyncCodeAndItsResumptionsRunOnTheLoopThread() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let checks = try loop.runUntilComplete { () async throws -> [Bool] in
            var results = [loop.inLoopThread]
            await Task.yield()
            results.append(loop.inLoopThread)
            try await Task.sleep(for: .milliseconds(5))
            results.append(loop.inLoopThread)
            let fromOtherThread = try await loop.runInExecutor { 7 }
            results.append(loop.inLoopThread && fromOtherThread == 7)
            return results
        }
        #expect(checks == [true, true, true, true])
    }

    @Test func getRunningLoopInsideAndOutside() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        #expect(throws: EventLoopError.noRunningEventLoop) { try getRunningLoop() }
        let same = try loop.runUntilComplete { try getRunningLoop() === loop }
        #expect(same)
        let fromCallback = Box(false)
        loop.callSoon {
            fromCallback.value = (try? getRunningLoop()) === loop
            loop.stop()
        }
        try loop.runForever()
        #expect(fromCallback.value)
        #expect(throws: EventLoopError.noRunningEventLoop) { try getRunningLoop() }
    }

    @Test func getEventLoopReturnsTheRunningLoop() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        // On a test thread (not main) the policy would throw; the running loop wins.
        #expect(try loop.runUntilComplete { try getEventLoop() === loop })
    }

    @Test func createTaskRunsOnTheLoop() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let result = try loop.runUntilComplete { () async throws -> [Bool] in
            let tasks = (0..<10).map { i in
                loop.createTask { () async throws -> Bool in
                    await Task.yield()
                    return loop.inLoopThread && i >= 0
                }
            }
            var values: [Bool] = []
            for task in tasks { values.append(try await task.value) }
            return values
        }
        #expect(result == Array(repeating: true, count: 10))
    }

    @Test func createTaskBeforeRunningStartsWhenTheLoopRuns() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let ran = Box(false)
        loop.createTask {
            ran.value = loop.inLoopThread
            loop.stop()
        }
        #expect(!ran.value)
        try loop.runForever()
        #expect(ran.value)
    }

    @Test func anActorCanUseTheLoopAsItsExecutor() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let counter = LoopBoundCounter(loop: loop)
        let results = try loop.runUntilComplete { () async -> [Bool] in
            var flags: [Bool] = []
            for _ in 0..<5 {
                let (_, onLoop) = await counter.increment()
                flags.append(onLoop)
            }
            return flags
        }
        #expect(results == Array(repeating: true, count: 5))
        // From a task on another loop (another thread), the actor's work still hops to its loop.
        // (Not Task.detached: test bodies block cooperative-pool threads, and on a 2-core
        // machine a task needing that pool could wait behind them.)
        let join = startThread { try? loop.runForever() }
        let hop = try onNewThread { () throws -> Bool in
            let other = try EventLoop()
            defer { try? other.close() }
            return try other.runUntilComplete { await counter.increment().1 && !loop.inLoopThread }
        }
        loop.stop()
        join()
        #expect(hop)
    }

    @Test func assumeIsolatedWorksOnTheLoopThread() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let counter = LoopBoundCounter(loop: loop)
        let count = Box(0)
        loop.callSoon {
            count.value = counter.assumeIsolated { counter in
                counter.count += 10
                return counter.count
            }
            loop.stop()
        }
        try loop.runForever()
        #expect(count.value == 10)
    }

    @Test func runInExecutorRunsOffTheLoopThreadAndPropagatesErrors() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let (offLoop, failed) = try loop.runUntilComplete { () async throws -> (Bool, Bool) in
            let offLoop = try await loop.runInExecutor { !loop.inLoopThread }
            var failed = false
            do { _ = try await loop.runInExecutor { () throws -> Int in throw Oops() } } catch is Oops { failed = true }
            return (offLoop, failed)
        }
        #expect(offLoop)
        #expect(failed)
    }

    @Test func blockingWorkDoesNotBlockTheLoop() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let ticks = Box(0)
        let ticked = try loop.runUntilComplete { () async throws -> Int in
            let timer = loop.callLater(0.01) { ticks.value += 1 }
            _ = timer
            _ = try await loop.runInExecutor { usleep(50_000); return 0 }
            return ticks.value
        }
        #expect(ticked == 1)
    }

    @Test func stopBeforeTheOperationCompletesThrows() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        loop.callLater(0.01) { loop.stop() }
        #expect(throws: EventLoopError.stoppedBeforeComplete) {
            try loop.runUntilComplete { () async throws -> Int in
                try await Task.sleep(for: .seconds(5))
                return 1
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func aTaskSuspendedWhenItsLoopClosesStillFinishes() async throws {
        let loop = try EventLoop()
        let task = try loop.runUntilComplete {
            loop.createTask { () async throws -> Int in
                try await Task.sleep(for: .milliseconds(50))
                return loop.inLoopThread ? -1 : 5    // resumes on the fallback queue, not a loop thread
            }
        }
        try loop.close()
        #expect(try await task.value == 5)
    }

    /// Regression: a task's executor held its loop unowned, and a task that outlived its closed and
    /// released loop crashed when it resumed.
    @Test(.timeLimit(.minutes(1))) func aTaskOutlivingItsReleasedLoopStillFinishes() async throws {
        /// Runs a loop that starts a sleeping task, closes the loop and drops it.
        func startTaskOnAShortLivedLoop(_ released: WeakLoop) throws -> Task<Int, any Error> {
            let loop = try EventLoop()
            released.loop = loop
            let task = try loop.runUntilComplete { () -> Task<Int, any Error> in
                try getRunningLoop().createTask { () async throws -> Int in
                    try await Task.sleep(for: .milliseconds(500))
                    return 9
                }
            }
            try loop.close()
            return task
        }
        let released = WeakLoop()
        let task = try startTaskOnAShortLivedLoop(released)
        // Another thread may hold the loop for a moment (the closed loop hands the task's job to
        // the fallback queue); it must be gone well before the task wakes up.
        for _ in 0..<40 where released.loop != nil { usleep(5_000) }
        #expect(released.loop == nil)
        #expect(try await task.value == 9)
    }

    @Test func jobsRunInterleavedWithCallbacksInFIFOOrder() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let order = Box<[String]>([])
        try loop.runUntilComplete {
            loop.callSoon { order.mutate { $0.append("callback-1") } }
            await Task.yield()   // the task's job goes behind callback-1
            order.mutate { $0.append("task") }
            loop.callSoon { order.mutate { $0.append("callback-2") } }
            await Task.yield()
            order.mutate { $0.append("task-again") }
        }
        #expect(order.value == ["callback-1", "task", "callback-2", "task-again"])
    }
}
