import BenchSupport
import NIOCore
import NIOPosix

/// Runs `body` with the only event loop of a fresh one-thread group, then shuts the group down.
func withEventLoop<Result>(_ body: (any EventLoop) throws -> Result) throws -> Result {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    return try body(group.next())
}

/// B1: from inside the event loop, `execute` n trivial tasks; the last one completes a promise.
func executeThroughput(n: Int) throws -> [Measurement] {
    try withEventLoop { eventLoop in
        let counter = CallbackCounter(target: n)
        let done = eventLoop.makePromise(of: Void.self)
        // One task closure executed n times, as the Python and C programs do.
        let task: @Sendable () -> Void = { if counter.increment() { done.succeed() } }
        eventLoop.execute {
            counter.startClock()
            for _ in 0..<n { eventLoop.execute(task) }
        }
        try done.futureResult.wait()
        return counter.throughput
    }
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

/// B3: 4 producer threads `execute` n tasks in total on the event loop's thread.
func crossThreadThroughput(n: Int) throws -> [Measurement] {
    try withEventLoop { eventLoop in
        let counter = CallbackCounter(target: n)
        let done = eventLoop.makePromise(of: Void.self)
        let task: @Sendable () -> Void = { if counter.increment() { done.succeed() } }
        let (producers, openGate) = startProducers(total: n) { share in
            for _ in 0..<share { eventLoop.execute(task) }
        }
        eventLoop.execute {
            counter.startClock()
            openGate()
        }
        try done.futureResult.wait()
        for producer in producers { producer.join() }
        return counter.throughput
    }
}
