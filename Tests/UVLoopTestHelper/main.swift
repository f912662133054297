// Scenarios that must run on a process's main thread, started by the test suite:
// `uvloop-test-helper <scenario>`. Prints one line per check; exits 0 when every check passed.
import Foundation
import UVLoop

nonisolated(unsafe) var failures = 0
func check(_ condition: @autoclosure () throws -> Bool, _ what: String) {
    let passed = (try? condition()) ?? false
    print(passed ? "ok   \(what)" : "FAIL \(what)")
    if !passed { failures += 1 }
}
func throwsNoCurrentLoop(_ body: () throws -> EventLoop) -> Bool {
    do { _ = try body(); return false } catch let error as EventLoopError { return error == .noCurrentEventLoop } catch { return false }
}

final class CountingPolicy: DefaultEventLoopPolicy, @unchecked Sendable {
    let calls = Mutex<[String]>([])
    override func newEventLoop() throws -> EventLoop { calls.withLock { $0.append("new") }; return try super.newEventLoop() }
    override func setEventLoop(_ loop: EventLoop?) { calls.withLock { $0.append("set") }; super.setEventLoop(loop) }
}

final class RecordingWatcher: ChildWatcher, @unchecked Sendable {
    let attached = Mutex<[EventLoop?]>([])
    func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {}
    func removeChildHandler(_ pid: pid_t) -> Bool { false }
    func attachLoop(_ loop: EventLoop?) { attached.withLock { $0.append(loop) } }
    func isActive() -> Bool { true }
    func close() {}
}

final class MyEventLoopPolicy: DefaultEventLoopPolicy, @unchecked Sendable {
    let seen = Mutex(0)
    override func getEventLoop() throws -> EventLoop {
        let loop = try super.getEventLoop()
        // Do something with loop ...
        seen.withLock { $0 += 1 }
        return loop
    }
}

let scenario = CommandLine.arguments.dropFirst().first ?? ""
switch scenario {
case "main-implicit-loop":
    let policy = DefaultEventLoopPolicy()
    let first = try policy.getEventLoop()
    check(try policy.getEventLoop() === first, "the first getEventLoop on the main thread creates a loop, later calls return it")
    check(!first.isClosed && !first.isRunning, "the implicit loop is open and not running")
    check(try getEventLoop() !== first, "another policy instance has its own slot")
    policy.setEventLoop(nil)
    check(throwsNoCurrentLoop { try policy.getEventLoop() }, "after setEventLoop(nil) the main thread throws instead of creating")
    try first.close()

case "main-set-disables-creation":
    let policy = DefaultEventLoopPolicy()
    let loop = try policy.newEventLoop()
    policy.setEventLoop(loop)
    check(try policy.getEventLoop() === loop, "a loop set on the main thread is returned")
    policy.setEventLoop(nil)
    check(throwsNoCurrentLoop { try policy.getEventLoop() }, "set then cleared: no implicit creation")
    let other = DefaultEventLoopPolicy()
    other.setEventLoop(nil)
    check(throwsNoCurrentLoop { try other.getEventLoop() }, "setEventLoop(nil) before any get also disables creation")
    try loop.close()

case "main-overrides-used":
    let policy = CountingPolicy()
    let loop = try policy.getEventLoop()
    check(policy.calls.withLock { $0 } == ["new", "set"], "implicit creation calls the subclass's newEventLoop then setEventLoop")
    _ = try policy.getEventLoop()
    check(policy.calls.withLock { $0 } == ["new", "set"], "the second call creates nothing")
    try loop.close()

case "main-attaches-watcher":
    let policy = DefaultEventLoopPolicy()
    let watcher = RecordingWatcher()
    policy.setChildWatcher(watcher)
    check(watcher.attached.withLock { $0.isEmpty }, "setChildWatcher does not attach")
    let loop = try policy.getEventLoop()
    check(watcher.attached.withLock { $0.count == 1 && $0[0] === loop }, "implicit creation on the main thread attaches the loop")
    policy.setEventLoop(loop)
    policy.setEventLoop(nil)
    check(watcher.attached.withLock { $0.count == 3 && $0[1] === loop && $0[2] == nil }, "every setEventLoop on the main thread attaches, nil included")
    let worker = Thread {
        let other = try? policy.newEventLoop()
        policy.setEventLoop(other)
        try? other?.close()
    }
    worker.start()
    while !worker.isFinished { usleep(1000) }
    check(watcher.attached.withLock { $0.count == 3 }, "setEventLoop on another thread does not attach")
    try loop.close()

case "custom-policy-example":
    let policy = MyEventLoopPolicy()
    setEventLoopPolicy(policy)
    let loop = try getEventLoop()
    check(try getEventLoop() === loop, "the spec's MyEventLoopPolicy returns the main thread's loop")
    check(policy.seen.withLock { $0 } == 2, "the override runs on every getEventLoop")
    let value = try loop.runUntilComplete { 40 + 2 }
    check(value == 42, "the loop from the custom policy runs async code")
    try loop.close()

case "conformance":
    try runConformance(CommandLine.arguments.dropFirst(2).first ?? "")

case "subreaper":
    try runSubreaper(CommandLine.arguments.dropFirst(2).first ?? "")

default:
    print("unknown scenario '\(scenario)'")
    exit(2)
}
exit(failures == 0 ? 0 : 1)
