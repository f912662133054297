// hello-loop: the smallest UVLoop program. Callbacks, timers, a task on the loop, a thread-safe
// call from another thread, and a clean close.
import Foundation
import UVLoop

let loop = try getEventLoop()        // on the main thread: created on first use
let start = loop.time()
func stamp() -> String { String(format: "%6.1f ms", (loop.time() - start) * 1000) }

loop.callSoon { print("\(stamp())  callSoon: hello from the loop thread") }
loop.callLater(0.05) { print("\(stamp())  callLater(0.05): a timer fired") }

Thread.detachNewThread {
    loop.callSoonThreadsafe { print("\(stamp())  callSoonThreadsafe: scheduled from another thread") }
}

let answer = try loop.runUntilComplete {
    try await loop.sleep(0.1)                        // a task on the loop, sleeping on its timers
    let squared = try await loop.runInExecutor { 6 * 7 }  // blocking work off the loop thread
    print("\(stamp())  runUntilComplete: task finished on the loop, computed \(squared) in the executor")
    return squared
}
print("answer = \(answer)")
try loop.close()
print("loop closed: \(loop.isClosed)")
