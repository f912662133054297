import BenchSupport
import UVLoop

/// B1: from inside the running loop, `callSoon` n trivial callbacks; the last one stops the loop.
func callSoonThroughput(n: Int) throws -> [Measurement] {
    let loop = try newEventLoop()
    let counter = CallbackCounter(target: n)
    // One callback object scheduled n times, as the Python and C programs do.
    let callback: () throws -> Void = { if counter.increment() { loop.stop() } }
    loop.callSoon {
        counter.startClock()
        for _ in 0..<n { loop.callSoon(callback) }
    }
    try loop.runForever()
    try loop.close()
    return counter.throughput
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

/// B3: 4 producer threads `callSoonThreadsafe` n callbacks in total to the loop running here.
func crossThreadThroughput(n: Int) throws -> [Measurement] {
    let loop = try newEventLoop()
    let counter = CallbackCounter(target: n)
    let callback: @Sendable () throws -> Void = { if counter.increment() { loop.stop() } }
    let (producers, openGate) = startProducers(total: n) { share in
        for _ in 0..<share { loop.callSoonThreadsafe(callback) }
    }
    loop.callSoon {
        counter.startClock()
        openGate()
    }
    try loop.runForever()
    for producer in producers { producer.join() }
    try loop.close()
    return counter.throughput
}
