// loop-per-thread: the default policy keeps one loop per OS thread. Each worker thread sets its
// own loop, runs async work on it, and the main thread's loop collects the results through
// callSoonThreadsafe.
import Foundation
import Synchronization
import UVLoop

let workers = 4
let mainLoop = try getEventLoop()          // main thread: created on first use
let results = Mutex<[String]>([])

func work(_ index: Int) {
    do {
        // Off the main thread there is no loop until one is set.
        do { _ = try getEventLoop() } catch { print("worker-\(index): getEventLoop() before setEventLoop -> \(error)") }
        let loop = try newEventLoop()
        setEventLoop(loop)
        let sum = try loop.runUntilComplete { () async throws -> Int in
            var total = 0
            for step in 1...10 {
                try await Task.sleep(for: .milliseconds(2))
                total += step * (index + 1)
            }
            return total
        }
        let mine = try getEventLoop() === loop
        let line = "worker-\(index): getEventLoop() \(mine ? "is" : "is NOT") this thread's loop; computed \(sum) on it"
        mainLoop.callSoonThreadsafe {
            let count = results.withLock { $0.append(line); return $0.count }
            if count == workers { mainLoop.stop() }
        }
        setEventLoop(nil)
        try loop.close()
    } catch {
        print("worker-\(index) failed: \(error)")
        mainLoop.callSoonThreadsafe { mainLoop.stop() }
    }
}

for index in 0..<workers { Thread.detachNewThread { work(index) } }
try mainLoop.runForever()
for line in results.withLock({ $0 }).sorted() { print(line) }
print("main loop collected \(results.withLock { $0.count }) results from \(workers) threads, one loop each")
try mainLoop.close()
