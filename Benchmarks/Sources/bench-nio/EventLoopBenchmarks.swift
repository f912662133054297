import BenchSupport
import Dispatch
import NIOCore
import NIOPosix

/// Runs `body` with the only event loop of a fresh one-thread group, then shuts the group down.
func withEventLoop<Result>(_ body: (any EventLoop) throws -> Result) throws -> Result {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    return try body(group.next())
}

/// B1: from inside the event loop, `execute` n trivial tasks; the last one completes a promise.
/// One task closure executed n times (as the Python and C programs do), then a closure written
/// inside the loop (a context allocated per call).
func executeThroughput(n: Int) throws -> [Measurement] {
    func run(perCall: Bool) throws -> [Measurement] {
        try withEventLoop { eventLoop in
            let counter = CallbackCounter(target: n)
            let done = eventLoop.makePromise(of: Void.self)
            let task: @Sendable () -> Void = { if counter.increment() { done.succeed() } }
            eventLoop.execute {
                counter.startClock()
                if perCall {
                    for _ in 0..<n { eventLoop.execute { if counter.increment() { done.succeed() } } }
                } else {
                    for _ in 0..<n { eventLoop.execute(task) }
                }
            }
            try done.futureResult.wait()
            return counter.throughput(perCall ? "closure per call" : nil)
        }
    }
    return try run(perCall: false) + run(perCall: true)
}

/// B2: n `scheduleTask` timers with the shared 0...100 ms delays; the last one completes a promise.
func scheduledTasks(n: Int) throws -> [Measurement] {
    try withEventLoop { eventLoop in
        let counter = CallbackCounter(target: n)
        let delays = timerDelaysMilliseconds(count: n)
        let done = eventLoop.makePromise(of: Void.self)
        eventLoop.execute {
            counter.startClock()
            for delay in delays {
                eventLoop.scheduleTask(in: .milliseconds(Int64(delay))) {
                    if counter.increment() { done.succeed() }
                }
            }
        }
        try done.futureResult.wait()
        return counter.timerMeasurements(delaysMilliseconds: delays)
    }
}

/// B3: 4 producer threads `execute` n tasks in total on the event loop's thread: one task
/// closure, then a closure written inside the producers' loop.
func crossThreadThroughput(n: Int) throws -> [Measurement] {
    func run(perCall: Bool) throws -> [Measurement] {
        try withEventLoop { eventLoop in
            let counter = CallbackCounter(target: n)
            let done = eventLoop.makePromise(of: Void.self)
            let task: @Sendable () -> Void = { if counter.increment() { done.succeed() } }
            let (producers, openGate) = startProducers(total: n) { share in
                if perCall {
                    for _ in 0..<share { eventLoop.execute { if counter.increment() { done.succeed() } } }
                } else {
                    for _ in 0..<share { eventLoop.execute(task) }
                }
            }
            eventLoop.execute {
                counter.startClock()
                openGate()
            }
            try done.futureResult.wait()
            for producer in producers { producer.join() }
            return counter.throughput(perCall ? "closure per call" : nil)
        }
    }
    return try run(perCall: false) + run(perCall: true)
}

/// B8: executor hops. A task on the global executor awaits an actor whose executor is the event
/// loop (`eventLoop.executor`), n times; then a task isolated to that actor creates n tasks (which
/// inherit the isolation, so they run on the event loop) one after another and awaits each.
func executorHops(n: Int) throws -> [Measurement] {
    try withEventLoop { eventLoop in
        let actor = EventLoopActor(eventLoop: eventLoop)
        let done = DispatchSemaphore(value: 0)
        let hopsStart = monotonicSeconds()
        Task.detached {
            for _ in 0..<n { await actor.ping() }
            done.signal()
        }
        done.wait()
        let hops = Double(n) / (monotonicSeconds() - hopsStart)
        let tasksStart = monotonicSeconds()
        Task.detached {
            await actor.createTasks(n)
            done.signal()
        }
        done.wait()
        let tasks = Double(n) / (monotonicSeconds() - tasksStart)
        return [Measurement("hops/s [\(hopsVariantNames[0])]", hops), Measurement("tasks/s [\(hopsVariantNames[1])]", tasks)]
    }
}

actor EventLoopActor {
    let eventLoop: any EventLoop
    var count = 0
    init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { eventLoop.executor.asUnownedSerialExecutor() }
    func ping() { count += 1 }
    func createTasks(_ n: Int) async {
        for index in 0..<n { _ = await Task { index }.value }
    }
}
