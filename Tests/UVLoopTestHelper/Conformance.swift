// The child-watcher conformance suite, run on the helper process's main thread with one watcher
// installed through the policy: `uvloop-test-helper conformance <watcher>`.
import Foundation
import Glibc
import UVLoop

/// A user-written watcher: one thread per child doing a blocking waitpid, delivering through the
/// registering loop's callSoonThreadsafe. Only the public API.
final class UserWrittenWatcher: ChildWatcher, @unchecked Sendable {
    private let table = Mutex<(handlers: [pid_t: (@Sendable (pid_t, Int32) -> Void, EventLoop)], waiting: Set<pid_t>)>(([:], []))

    func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        let loop = try getRunningLoop()
        let start = table.withLock { table -> Bool in
            table.handlers[pid] = (callback, loop)
            return table.waiting.insert(pid).inserted
        }
        guard start else { return }
        Thread.detachNewThread { [self] in
            var status: Int32 = 0
            let reaped = waitpid(pid, &status, 0) == pid
            let code: Int32 = !reaped ? 255 : (status & 0x7f) == 0 ? (status >> 8) & 0xff : -(status & 0x7f)
            let entry = table.withLock { table in
                table.waiting.remove(pid)
                return table.handlers.removeValue(forKey: pid)
            }
            if let (callback, loop) = entry { loop.callSoonThreadsafe { callback(pid, code) } }
        }
    }
    func removeChildHandler(_ pid: pid_t) -> Bool { table.withLock { $0.handlers.removeValue(forKey: pid) != nil } }
    func attachLoop(_ loop: EventLoop?) {}
    func isActive() -> Bool { true }
    func close() {}
}

func makeWatcher(_ name: String) -> (any ChildWatcher)? {
    switch name {
    case "threaded": return ThreadedChildWatcher()
    case "multiloop": return MultiLoopChildWatcher()
    case "safe": return SafeChildWatcher()
    case "fast": return FastChildWatcher()
    case "pidfd": return PidfdChildWatcher()
    case "libuv": return LibuvChildWatcher()
    case "user": return UserWrittenWatcher()
    default: return nil
    }
}

/// Starts a child without UVLoop (posix_spawn), for the "any child of the process" cases.
func spawnForeign(_ script: String) -> pid_t {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sh"), strdup("-c"), strdup(script), nil]
    defer { argv.forEach { free($0) } }
    let rc = posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ)
    precondition(rc == 0, "posix_spawn failed: \(rc)")
    return pid
}

/// Blocks until `pid` has exited, without reaping it.
func waitUntilZombie(_ pid: pid_t) {
    var info = siginfo_t()
    while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
}

/// Collects callback invocations.
final class Calls: Sendable {
    private let calls = Mutex<[(String, pid_t, Int32)]>([])
    func record(_ tag: String) -> @Sendable (pid_t, Int32) -> Void {
        { pid, code in self.calls.withLock { $0.append((tag, pid, code)) } }
    }
    var all: [(String, pid_t, Int32)] { calls.withLock { $0 } }
    /// Waits (yielding to the loop) until `count` calls arrived, then a little more to catch extras.
    func wait(for count: Int, timeout: Double = 10) async throws -> [(String, pid_t, Int32)] {
        let deadline = Date().addingTimeInterval(timeout)
        while all.count < count && Date() < deadline { try await Task.sleep(for: .milliseconds(5)) }
        try await Task.sleep(for: .milliseconds(150))
        return all
    }
}

/// Open descriptors and their targets (timerfds left out: libdispatch opens one lazily).
func openDescriptors() -> [String: String] {
    var result: [String: String] = [:]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(name)")) ?? "?"
        // A descriptor closed while listing ("?") was transient; timerfds are libdispatch's.
        if target != "anon_inode:[timerfd]" && target != "?" { result[name] = target }
    }
    return result
}

/// True once `pid` no longer runs (gone, or a zombie its new parent has not reaped yet); waits a little.
func isGone(_ pid: pid_t) -> Bool {
    for _ in 0..<200 {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        if stat[stat.index(close, offsetBy: 2)] == "Z" { return true }
        usleep(10_000)
    }
    return false
}

/// True when this process has no child at all (running or zombie).
func hasNoChildren() -> Bool {
    var info = siginfo_t()
    return waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == -1 && errno == ECHILD
}

/// Runs a worker thread with its own loop that spawns /bin/true; returns "rc=N" or the error.
func spawnFromWorkerThread() -> String {
    let result = Mutex<String>("not run")
    let thread = Thread {
        do {
            let loop = try newEventLoop()
            defer { try? loop.close() }
            let text = try loop.runUntilComplete { () async -> String in
                do {
                    let process = try await createSubprocessExec("/bin/true")
                    return "rc=\(try await process.wait())"
                } catch {
                    return "\(error)"
                }
            }
            result.withLock { $0 = text }
        } catch {
            result.withLock { $0 = "\(error)" }
        }
    }
    thread.start()
    while !thread.isFinished { usleep(1000) }
    return result.withLock { $0 }
}

func runConformance(_ name: String) throws {
    guard let watcher = makeWatcher(name) else {
        print("unknown watcher '\(name)'")
        exit(2)
    }
    let needsMainLoop = name == "safe" || name == "fast"
    setEventLoopPolicy(DefaultEventLoopPolicy())
    setChildWatcher(watcher)
    check(getChildWatcher() === watcher, "the policy holds the watcher")

    // Worker-thread loop while the main thread runs no loop.
    let loop = try newEventLoop()
    setEventLoop(loop)                       // main thread: attaches the watcher
    let beforeMainRuns = spawnFromWorkerThread()
    if needsMainLoop {
        check(beforeMainRuns == "\(EventLoopError.childWatcherNotActive)", "worker-thread spawn throws before the main loop runs (\(beforeMainRuns))")
        check(hasNoChildren(), "nothing was spawned")
    } else {
        check(beforeMainRuns == "rc=0", "worker-thread spawn works without a main loop (\(beforeMainRuns))")
    }

    // Warm up (libuv's signal pipe, the pidfd probe, libdispatch's own epoll and eventfd behind
    // Task.sleep and runInExecutor, the descriptor libuv keeps in reserve for EMFILE from the
    // loop's first stream on), then take the descriptor baseline.
    _ = try loop.runUntilComplete {
        try await Task.sleep(for: .milliseconds(1))
        _ = try await loop.runInExecutor { 0 }
        _ = try await createSubprocessExec("/bin/true", stdout: .pipe).communicate()
        return try await createSubprocessExec("/bin/true").wait()
    }
    let descriptorsBefore = openDescriptors()

    try loop.runUntilComplete {
        check(watcher.isActive(), "active while the main loop runs")

        // Exit codes.
        for (script, expected) in [("true", 0), ("false", 1), ("exit 7", 7), ("exit 255", 255)] as [(String, Int32)] {
            let process = try await createSubprocessShell(script)
            let code = try await process.wait()
            check(code == expected && process.returnCode == expected, "'\(script)' returns \(expected) (got \(code))")
            check(process.termination == .exited(expected), "'\(script)' terminates as exited(\(expected)) (\(String(describing: process.termination)))")
        }

        // Signals: minus the signal number.
        let sleeper = try await createSubprocessExec("sleep", ["30"])
        try sleeper.terminate()
        let terminated = try await sleeper.wait()
        check(terminated == -SIGTERM, "terminate() gives -15 (\(terminated))")
        let killed = try await createSubprocessExec("sleep", ["30"])
        try killed.kill()
        let killedCode = try await killed.wait()
        check(killedCode == -SIGKILL, "kill() gives -9 (\(killedCode))")
        let hungUp = try await createSubprocessExec("sleep", ["30"])
        try hungUp.sendSignal(SIGHUP)
        let hungUpCode = try await hungUp.wait()
        check(hungUpCode == -SIGHUP, "sendSignal(SIGHUP) gives -1 (\(hungUpCode))")
        let segv = try await createSubprocessShell("kill -SEGV $$")
        let segvCode = try await segv.wait()
        check(segvCode == -SIGSEGV, "a child killed by SIGSEGV gives -11 (\(segvCode))")
        if case .signaled(SIGSEGV, _) = segv.termination {} else {
            check(false, "a child killed by SIGSEGV terminates as signaled(11) (\(String(describing: segv.termination)))")
        }
        check(killed.termination == .signaled(SIGKILL, coreDumped: false), "kill() terminates as signaled(9) (\(String(describing: killed.termination)))")

        // Deadlines and teardown, with this watcher's reaping and signalling.
        let slow = try await createSubprocessExec("sleep", ["30"])
        var timedOut = false
        do { _ = try await slow.wait(timeout: 0.05) } catch is TimeoutError { timedOut = true }
        check(timedOut && slow.returnCode == nil, "wait(timeout:) throws TimeoutError and leaves the child running")
        let slowCode = try await slow.terminate(gracePeriod: 5)
        check(slowCode == -SIGTERM && slow.termination == .signaled(SIGTERM, coreDumped: false),
              "terminate(gracePeriod:) ends a child that obeys SIGTERM with it (\(slowCode))")
        let stubborn = try await createSubprocessShell("trap '' TERM; sleep 30 & echo $!; wait", stdout: .pipe,
                                                       startNewSession: true)
        let grandchild = pid_t(String(decoding: try await stubborn.stdout!.readLine(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let stubbornCode = try await stubborn.terminate(gracePeriod: 0.1)
        check(stubbornCode == -SIGKILL, "terminate(gracePeriod:) kills a group that ignores SIGTERM (\(stubbornCode))")
        check(grandchild > 0 && isGone(grandchild), "the group's grandchild \(grandchild) is killed with its leader")
        _ = try await stubborn.stdout!.read()
        do {
            try killed.kill()
            check(false, "kill() after the exit throws")
        } catch let error as UVError {
            check(error == .ESRCH, "kill() after the exit throws ESRCH (\(error))")
        }

        // A pseudo-terminal: the child's controlling terminal, read to its end (EIO there is end
        // of file), the exit status kept; refused by libuv's spawn. The descriptor count at the
        // end covers the terminal's master and its copies.
        do {
            let terminal = try await createSubprocessShell("stty size < /dev/tty; exit 5", stdin: .pty, stdout: .pty, stderr: .pty)
            let output = String(decoding: try await terminal.stdout!.read(), as: UTF8.self)
            let code = try await terminal.wait()
            terminal.stdin!.close()
            check(name != "libuv" && output == "24 80\r\n" && code == 5 && terminal.termination == .exited(5),
                  "a .pty child reads its size from its controlling terminal and exits with 5 (\(output.debugDescription), \(code))")
        } catch let error as UVError {
            check(name == "libuv" && error == .ENOTSUP, "only the libuv watcher refuses .pty, with ENOTSUP (\(error))")
        }

        // runSubprocess: capture, and a timeout teardown that reaches a member outliving its
        // leader (through the group pin this watcher reaps), reaped before the call throws.
        let ran = try await runSubprocessShell("echo hi; echo there >&2", timeout: 10)
        check(ran.stdout == Array("hi\n".utf8) && ran.stderr == Array("there\n".utf8) && ran.returnCode == 0,
              "runSubprocessShell captures both outputs (\(ran))")
        do {
            _ = try await runSubprocessShell("(trap '' TERM; exec sleep 30) & echo $!; wait", timeout: 0.1, gracePeriod: 0.2)
            check(false, "runSubprocessShell times out")
        } catch SubprocessError.timedOut(let completed) {
            let straggler = pid_t(String(decoding: completed.stdout, as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            check(completed.termination == .signaled(SIGTERM, coreDumped: false) && straggler > 0 && isGone(straggler),
                  "a timeout tears the group down, a member that ignores SIGTERM included (\(completed))")
        }

        // Never signal a reaped pid; the real exit code wins (asyncio 13.1 / gh-127049).
        let three = try await createSubprocessShell("exit 3")
        waitUntilZombie(three.pid)           // exited, the watcher has not reported it yet
        do { try three.terminate() } catch let error as UVError where error == .ESRCH {}
        let threeCode = try await three.wait()
        check(threeCode == 3, "an exited child signalled before its exit was reported still gives its real code (\(threeCode))")

        // 100 concurrent children.
        let codes = try await withThrowingTaskGroup(of: (Int, Int32).self) { group in
            for index in 0..<100 {
                group.addTask {
                    let process = try await createSubprocessShell("exit \(index % 50)")
                    return (index, try await process.wait())
                }
            }
            var codes: [Int: Int32] = [:]
            for try await (index, code) in group { codes[index] = code }
            return codes
        }
        check(codes.count == 100 && codes.allSatisfy { $0.value == Int32($0.key % 50) }, "100 concurrent children report their own codes")

        // Any child of the process, not only UVLoop's.
        let foreignCalls = Calls()
        let foreign = spawnForeign("sleep 0.05; exit 5")
        try watcher.addChildHandler(foreign, foreignCalls.record("foreign"))
        let foreignResult = try await foreignCalls.wait(for: 1)
        check(foreignResult.count == 1 && foreignResult[0].1 == foreign && foreignResult[0].2 == 5,
              "a child not spawned by UVLoop is reported once with its code (\(foreignResult.map { $0.2 }))")

        // A pid that is not our child reports 255.
        let strangerCalls = Calls()
        try watcher.addChildHandler(1, strangerCalls.record("pid1"))
        let strangerResult = try await strangerCalls.wait(for: 1)
        if name == "user" {
            check(strangerResult.count == 1 && strangerResult[0].2 == 255, "pid 1 (not a child) reports 255")
        } else {
            check(strangerResult.count == 1 && strangerResult[0].2 == 255, "pid 1 (not a child) reports 255 (\(strangerResult.map { $0.2 }))")
        }

        // Exits before registration.
        let early = spawnForeign("exit 4")
        waitUntilZombie(early)
        let earlyCalls = Calls()
        try watcher.addChildHandler(early, earlyCalls.record("early"))
        let earlyResult = try await earlyCalls.wait(for: 1)
        check(earlyResult.count == 1 && earlyResult[0].2 == 4, "a child that exited before registration is reported (\(earlyResult.map { $0.2 }))")

        // Remove, and re-add.
        let calls = Calls()
        let removed = spawnForeign("sleep 0.2; exit 6")
        try watcher.addChildHandler(removed, calls.record("first"))
        check(watcher.removeChildHandler(removed), "removeChildHandler returns true for a pending pid")
        check(!watcher.removeChildHandler(removed), "removing again returns false")
        check(!watcher.removeChildHandler(999_999), "removing an unknown pid returns false")
        try watcher.addChildHandler(removed, calls.record("second"))
        try watcher.addChildHandler(removed, calls.record("third"))   // replaces "second"
        let reAdded = try await calls.wait(for: 1)
        check(reAdded.count == 1 && reAdded[0].0 == "third" && reAdded[0].2 == 6,
              "after remove and re-add, only the newest callback fires, once, with the code (\(reAdded.map { "\($0.0):\($0.2)" }))")

        // Worker-thread loop while the main loop runs.
        let whileRunning = try await loop.runInExecutor { spawnFromWorkerThread() }
        check(whileRunning == "rc=0", "worker-thread spawn works while the main loop runs (\(whileRunning))")
    }

    // Afterwards: no zombie, no child, no new descriptor.
    let deadline = Date().addingTimeInterval(5)
    while !hasNoChildren() && Date() < deadline { usleep(10_000) }
    check(hasNoChildren(), "no zombie or child is left")
    let leaked = openDescriptors().filter { descriptorsBefore[$0.key] != $0.value }
    check(leaked.isEmpty, "no descriptor leaked (\(leaked))")

    setEventLoop(nil)
    setChildWatcher(nil)
    try loop.close()
}
