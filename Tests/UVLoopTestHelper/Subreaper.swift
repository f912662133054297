import Foundation
import UVLoop

/// The parent pid of `pid` (field 4 of /proc/PID/stat), or nil once it is gone.
private func parentOf(_ pid: pid_t) -> pid_t? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    return fields.count > 1 ? pid_t(fields[1]) : nil
}

/// True once `pid` is gone altogether (reaped, not a zombie); waits up to `seconds`.
private func isReaped(_ pid: pid_t, within seconds: Double = 5) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if !FileManager.default.fileExists(atPath: "/proc/\(pid)") { return true }
        usleep(10_000)
    }
    return false
}

/// `uvloop-test-helper subreaper WATCHER`: becomeChildSubreaper() with that watcher. Orphans are
/// re-parented here and reaped when they exit; registered children, UVLoop's and foreign ones,
/// keep their own statuses while orphans are reaped around them; nothing is left at the end.
func runSubreaper(_ name: String) throws {
    guard let watcher = makeWatcher(name) else {
        print("unknown watcher '\(name)'")
        exit(2)
    }
    setEventLoopPolicy(DefaultEventLoopPolicy())
    setChildWatcher(watcher)
    let loop = try newEventLoop()
    setEventLoop(loop)
    try becomeChildSubreaper()
    try becomeChildSubreaper()   // idempotent
    check(true, "becomeChildSubreaper succeeds twice")

    try loop.runUntilComplete {
        // A shell that leaves a background sleep behind: the sleep becomes ours, then is reaped.
        let shell = try await createSubprocessShell("sleep 0.3 & echo $!", stdout: .pipe)
        let orphan = pid_t(String(decoding: try await shell.stdout!.readLine(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        let shellCode = try await shell.wait()
        check(shellCode == 0, "the shell exits 0")
        var adopted = false
        for _ in 0..<100 where !adopted {
            adopted = parentOf(orphan) == getpid()
            if !adopted { usleep(5_000) }
        }
        check(adopted, "the orphaned sleep \(orphan) is re-parented to this process")
        check(isReaped(orphan), "the orphan is reaped when it exits, not left a zombie")

        // 60 children, each leaving an orphan that exits at about the same time it does: every
        // registered child still reports its own status (none is taken as an orphan's).
        let codes = try await withThrowingTaskGroup(of: (Int, Int32).self) { group in
            for index in 0..<60 {
                group.addTask {
                    let child = try await createSubprocessShell("(sleep 0.0\(index % 5); exit 9) & sleep 0.0\(index % 3); exit \(index % 40)")
                    return (index, try await child.wait())
                }
            }
            var codes: [Int: Int32] = [:]
            for try await (index, code) in group { codes[index] = code }
            return codes
        }
        check(codes.count == 60 && codes.allSatisfy { $0.value == Int32($0.key % 40) },
              "60 registered children keep their own codes among 60 exiting orphans")

        // A child started without UVLoop, registered with a built-in watcher before it exits,
        // keeps its status too. (A watcher of the user's own cannot tell the orphan reaper which
        // pids it watches: documented, not checked.)
        if name != "user" {
        let calls = Calls()
        let foreign = spawnForeign("sleep 0.2; exit 5")
        try watcher.addChildHandler(foreign, calls.record("foreign"))
        let result = try await calls.wait(for: 1)
        check(result.count == 1 && result[0].2 == 5, "a registered foreign child reports 5 (\(result.map { $0.2 }))")
        }

        // The teardown of runSubprocess, its pin included, under a subreaper. (0.5 s: within 0.1 s a
        // loaded machine had not always started the shell far enough to print the straggler's pid.)
        do {
            _ = try await runSubprocessShell("(trap '' TERM; exec sleep 30) & echo $!; wait", timeout: 0.5, gracePeriod: 0.2)
            check(false, "runSubprocessShell times out")
        } catch SubprocessError.timedOut(let completed) {
            let straggler = pid_t(String(decoding: completed.stdout, as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            check(completed.returnCode == -SIGTERM && straggler > 0 && isReaped(straggler),
                  "a timed-out run's straggler is killed and, adopted, reaped (\(completed))")
        }
    }
    let deadline = Date().addingTimeInterval(5)
    while !hasNoChildren() && Date() < deadline { usleep(10_000) }
    check(hasNoChildren(), "no zombie or child is left")
    setEventLoop(nil)
    setChildWatcher(nil)
    try loop.close()
}
