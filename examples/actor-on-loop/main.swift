// actor-on-loop: an actor whose executor is an EventLoop. Its methods run on the loop's thread,
// interleaved with the loop's callbacks and timers, and callers on other loops hop to it.
import Foundation
import UVLoop

/// A counter owned by one loop: every access runs on that loop's thread.
actor Counter {
    let loop: EventLoop
    private(set) var value = 0
    private(set) var onLoopThread = true

    init(loop: EventLoop) { self.loop = loop }

    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    func increment(by amount: Int) -> Int {
        onLoopThread = onLoopThread && loop.inLoopThread
        value += amount
        return value
    }
}

let home = try newEventLoop()
let counter = Counter(loop: home)

// The home loop runs on its own thread.
let homeThread = Thread { try? home.runForever() }
homeThread.start()

// Two other loops, on two other threads, call the actor concurrently.
let callers = (0..<2).map { index in
    Thread {
        let loop = try! newEventLoop()
        let last = try! loop.runUntilComplete { () async -> Int in
            var last = 0
            for _ in 0..<1000 { last = await counter.increment(by: index + 1) }
            return last
        }
        print("caller \(index) finished; last value it saw: \(last)")
        try? loop.close()
    }
}
callers.forEach { $0.start() }
while callers.contains(where: { !$0.isFinished }) { usleep(1000) }

// Synchronous access on the home loop's own thread, without await: assumeIsolated.
home.callSoonThreadsafe {
    let value = counter.assumeIsolated { $0.value }
    print("on the home loop's thread: value = \(value) (expected \(1000 * 1 + 1000 * 2))")
    home.stop()
}
while !homeThread.isFinished { usleep(1000) }
let allOnLoop = try home.runUntilComplete { await counter.onLoopThread }
print("every increment ran on the home loop's thread: \(allOnLoop)")
try home.close()
