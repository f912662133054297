import BenchSupport
import Dispatch
import Metrics
import MetricsTestKit
import UVLoop

/// B1: from inside the running loop, `callSoon` n trivial callbacks; the last one stops the loop.
/// Three runs: one callback object scheduled n times (as the Python and C programs do); a closure
/// written inside the loop (a context allocated per call, as most Swift code writes it); and the
/// first again with swift-metrics bootstrapped and the stall detector on.
func callSoonThroughput(n: Int) throws -> [Measurement] {
    func oneObject(_ variant: String?, configure: (EventLoop) -> Void = { _ in }) throws -> [Measurement] {
        let loop = try newEventLoop()
        configure(loop)
        let counter = CallbackCounter(target: n)
        let callback: () throws -> Void = { if counter.increment() { loop.stop() } }
        loop.callSoon {
            counter.startClock()
            for _ in 0..<n { loop.callSoon(callback) }
        }
        try loop.runForever()
        try loop.close()
        return counter.throughput(variant)
    }
    func closurePerCall() throws -> [Measurement] {
        let loop = try newEventLoop()
        let counter = CallbackCounter(target: n)
        loop.callSoon {
            counter.startClock()
            for _ in 0..<n { loop.callSoon { if counter.increment() { loop.stop() } } }
        }
        try loop.runForever()
        try loop.close()
        return counter.throughput("closure per call")
    }
    let plain = try oneObject(nil)
    let perCall = try closurePerCall()
    // The health comparison: a warm run with monitoring off, then one with it on (the first run
    // of a process is slower: its heap is cold).
    let off = try oneObject("second run, monitoring off")
    MetricsSystem.bootstrap(TestMetrics())
    let monitored = try oneObject("stall detector and metrics on") { $0.stallThreshold = 0.1 }
    return plain + perCall + off + monitored
}

/// B2: n `callLater` timers with the shared 0...100 ms delays; the last one to fire stops the loop.
func timers(n: Int) throws -> [Measurement] {
    let loop = try newEventLoop()
    let counter = CallbackCounter(target: n)
    let delays = timerDelaysMilliseconds(count: n)
    loop.callSoon {
        counter.startClock()
        for delay in delays {
            loop.callLater(Double(delay) / 1000) {
                if counter.increment() { loop.stop() }
            }
        }
    }
    try loop.runForever()
    try loop.close()
    return counter.timerMeasurements(delaysMilliseconds: delays)
}

/// B3: 4 producer threads `callSoonThreadsafe` n callbacks in total to the loop running here:
/// one callback object, then a closure written inside the producers' loop.
func crossThreadThroughput(n: Int) throws -> [Measurement] {
    func run(perCall: Bool) throws -> [Measurement] {
        let loop = try newEventLoop()
        let counter = CallbackCounter(target: n)
        let callback: @Sendable () throws -> Void = { if counter.increment() { loop.stop() } }
        let (producers, openGate) = startProducers(total: n) { share in
            if perCall {
                for _ in 0..<share { loop.callSoonThreadsafe { if counter.increment() { loop.stop() } } }
            } else {
                for _ in 0..<share { loop.callSoonThreadsafe(callback) }
            }
        }
        loop.callSoon {
            counter.startClock()
            openGate()
        }
        try loop.runForever()
        for producer in producers { producer.join() }
        try loop.close()
        return counter.throughput(perCall ? "closure per call" : nil)
    }
    return try run(perCall: false) + run(perCall: true)
}

/// B8: executor hops. A task on the global executor awaits an actor whose executor is the loop, n
/// times; then a loop task creates n tasks on the loop one after another and awaits each.
func executorHops(n: Int) throws -> [Measurement] {
    let loop = try newEventLoop()
    let done = DispatchSemaphore(value: 0)
    let actor = LoopActor(loop: loop)
    let thread = ProducerThread { try? loop.runForever() }
    let hopsStart = monotonicSeconds()
    Task.detached {
        for _ in 0..<n { await actor.ping() }
        done.signal()
    }
    done.wait()
    let hops = Double(n) / (monotonicSeconds() - hopsStart)
    let tasksStart = monotonicSeconds()
    loop.createTask {
        for index in 0..<n { _ = try await loop.createTask { index }.value }
        done.signal()
    }
    done.wait()
    let tasks = Double(n) / (monotonicSeconds() - tasksStart)
    loop.stop()
    thread.join()
    try loop.close()
    return [Measurement("hops/s [\(hopsVariantNames[0])]", hops), Measurement("tasks/s [\(hopsVariantNames[1])]", tasks)]
}

actor LoopActor {
    let loop: EventLoop
    var count = 0
    init(loop: EventLoop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    func ping() { count += 1 }
}
