// child-watchers: the same workload under each child watcher, with a small timing table.
// Runs on the main thread, so SafeChildWatcher and FastChildWatcher (which need the main
// thread's running loop) work too.
import ArgumentParser
import Foundation
import UVLoop

struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "child-watchers")

    @Argument(help: "Children to spawn under each watcher.")
    var children = 200

    func validate() throws {
        if children < 1 { throw ValidationError("children must be at least 1") }
    }
}

let children = Options.parseOrExit().children
let inFlight = 16

let watchers: [(String, () -> any ChildWatcher)] = [
    ("ThreadedChildWatcher", { ThreadedChildWatcher() }),
    ("MultiLoopChildWatcher", { MultiLoopChildWatcher() }),
    ("SafeChildWatcher", { SafeChildWatcher() }),
    ("FastChildWatcher", { FastChildWatcher() }),
    ("PidfdChildWatcher", { PidfdChildWatcher() }),
    ("LibuvChildWatcher", { LibuvChildWatcher() }),
]

print("spawn and reap /bin/true x\(children), \(inFlight) in flight, per watcher:\n")
print("watcher                  active  seconds  spawns/s  exit codes")
let loop = try newEventLoop()
for (name, make) in watchers {
    let watcher = make()
    setChildWatcher(watcher)        // closes the previous watcher
    setEventLoop(loop)              // main thread: attaches the loop to the watcher
    let (seconds, allZero, active) = try loop.runUntilComplete { () async throws -> (Double, Bool, Bool) in
        let active = watcher.isActive()
        guard active else { return (0, false, false) }
        let start = loop.time()
        var allZero = true
        try await withThrowingTaskGroup(of: Int32.self) { group in
            var started = 0
            func startOne() {
                group.addTask { try await createSubprocessExec("/bin/true").wait() }
                started += 1
            }
            while started < min(inFlight, children) { startOne() }
            for try await code in group {
                allZero = allZero && code == 0
                if started < children { startOne() }
            }
        }
        return (loop.time() - start, allZero, true)
    }
    let rate = seconds > 0 ? Double(children) / seconds : 0
    print(name.padding(toLength: 25, withPad: " ", startingAt: 0)
          + (active ? "yes   " : "no    ")
          + String(format: "%7.3f  %8.0f  ", seconds, rate)
          + (active ? (allZero ? "all 0" : "NOT all 0") : "-"))
}
setChildWatcher(nil)
setEventLoop(nil)
try loop.close()
