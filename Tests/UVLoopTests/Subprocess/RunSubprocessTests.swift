import Foundation
import Testing
@testable import UVLoop

/// The first line of `bytes` as a pid.
private func firstPid(_ bytes: [UInt8]) -> pid_t {
    pid_t(String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "") ?? -1
}

/// Whether `body` throws `EventLoopError.invalidArgument`.
private func refused(_ body: () async throws -> CompletedProcess) async -> Bool {
    do { _ = try await body(); return false } catch EventLoopError.invalidArgument { return true } catch { return false }
}

/// `runSubprocessExec`/`runSubprocessShell` with real programs: capture, caps, input, the
/// timeout and cancellation teardowns (whole group, reaped before the call returns).
extension ProcessWide {
@Suite("Subprocess: runSubprocess")
struct RunSubprocessTests {
    @Test(.timeLimit(.minutes(1))) func capturesBothOutputsAndTheStatus() throws {
        let completed = try onPolicyLoop {
            try await runSubprocessShell("echo out; echo err >&2; exit 3")
        }
        #expect(completed.stdout == Array("out\n".utf8) && completed.stderr == Array("err\n".utf8))
        #expect(completed.returnCode == 3 && completed.termination == .exited(3))
        #expect(!completed.stdoutTruncated && !completed.stderrTruncated)
    }

    @Test(.timeLimit(.minutes(1))) func inputIsFedAndWithoutItStdinIsDevNull() throws {
        let big = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let (echoed, noInput) = try onPolicyLoop { () async throws -> (CompletedProcess, CompletedProcess) in
            (try await runSubprocessExec("cat", input: big),
             try await runSubprocessShell("cat; readlink /proc/self/fd/0 >&2"))
        }
        #expect(echoed.stdout == big && echoed.returnCode == 0)
        #expect(noInput.stdout.isEmpty && String(decoding: noInput.stderr, as: UTF8.self) == "/dev/null\n")
    }

    @Test(.timeLimit(.minutes(1))) func capsKeepDrainingSoTheChildNeverBlocks() throws {
        let completed = try onPolicyLoop {
            try await runSubprocessShell("head -c 2000000 /dev/zero; head -c 1000000 /dev/zero >&2; echo done >&2",
                                         maxOutput: 1000)
        }
        #expect(completed.returnCode == 0)
        #expect(completed.stdout.count == 1000 && completed.stdoutTruncated)
        #expect(completed.stderr.count == 1000 && completed.stderrTruncated)
        let uncapped = try onPolicyLoop { try await runSubprocessShell("printf 12345", maxOutput: 5) }
        #expect(uncapped.stdout == Array("12345".utf8) && !uncapped.stdoutTruncated)
    }

    @Test(.timeLimit(.minutes(1))) func aTimeoutTearsTheGroupDownAndReapsBeforeThrowing() throws {
        let (timedOut, elapsed) = try onPolicyLoop { () async throws -> (CompletedProcess?, Double) in
            let start = Date()
            do {
                _ = try await runSubprocessShell("sleep 30 & echo $!; echo started >&2; wait", timeout: 0.3)
                return (nil, 0)
            } catch SubprocessError.timedOut(let completed) {
                return (completed, Date().timeIntervalSince(start))
            }
        }
        let completed = try #require(timedOut)
        #expect(completed.termination == .signaled(SIGTERM, coreDumped: false))
        #expect(completed.stderr == Array("started\n".utf8))
        #expect(processHasEnded(firstPid(completed.stdout)), "the sleep in the shell's group ends too")
        #expect(kill(completed.pid, 0) != 0, "the shell is reaped before the call throws")
        #expect(elapsed >= 0.3 && elapsed < 5)
    }

    @Test(.timeLimit(.minutes(1))) func membersThatOutliveTheLeaderAreKilledAtTheEndOfTheGrace() throws {
        // The shell dies of the SIGTERM; its child ignores SIGTERM and holds the outputs. A pin
        // keeps the group reachable after the shell's reap: SIGKILL still gets the child.
        let (completed, elapsed) = try onPolicyLoop { () async throws -> (CompletedProcess?, Double) in
            let start = Date()
            do {
                _ = try await runSubprocessShell("(trap '' TERM; exec sleep 30) & echo $!; wait",
                                                 timeout: 0.2, gracePeriod: 0.5)
                return (nil, 0)
            } catch SubprocessError.timedOut(let completed) {
                return (completed, Date().timeIntervalSince(start))
            }
        }
        let torn = try #require(completed)
        #expect(torn.termination == .signaled(SIGTERM, coreDumped: false), "the shell obeyed SIGTERM")
        #expect(processHasEnded(firstPid(torn.stdout)), "the straggler that ignored SIGTERM was killed")
        #expect(elapsed >= 0.6 && elapsed < 5, "the grace was given to it (\(elapsed) s)")
    }

    @Test(.timeLimit(.minutes(1))) func aGroupThatEndsOnSIGTERMIsNotKeptWaitingForTheGrace() throws {
        let elapsed = try onPolicyLoop { () async throws -> Double in
            let start = Date()
            do { _ = try await runSubprocessShell("sleep 30 & wait", timeout: 0.1, gracePeriod: 20) } catch SubprocessError.timedOut {}
            return Date().timeIntervalSince(start)
        }
        #expect(elapsed < 5, "\(elapsed) s")
    }

    @Test(.timeLimit(.minutes(1))) func cancellingTheAwaitingTaskTearsDownAndThrowsCancellation() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("uvloop-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { unlink(path) }
        let (cancelled, grandchild) = try onPolicyLoop { () async throws -> (Bool, pid_t) in
            let run = try getRunningLoop().createTask {
                try await runSubprocessShell("sleep 30 & echo $! > \(path); wait", gracePeriod: 1)
            }
            var grandchild: pid_t = -1
            for _ in 0..<500 where grandchild <= 0 {
                try await Task.sleep(nanoseconds: 10_000_000)
                grandchild = pid_t((try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
            }
            run.cancel()
            do {
                _ = try await run.value
                return (false, grandchild)
            } catch is CancellationError {
                return (true, grandchild)
            }
        }
        #expect(cancelled)
        #expect(processHasEnded(grandchild))
    }

    @Test(.timeLimit(.minutes(1))) func aZeroTimeoutTearsDownAtOnce() throws {
        let outcome = try onPolicyLoop { () async throws -> String in
            do {
                let completed = try await runSubprocessExec("sleep", ["30"], timeout: 0)
                return "returned \(completed)"
            } catch SubprocessError.timedOut(let completed) {
                return "timed out \(completed.returnCode)"
            }
        }
        #expect(outcome == "timed out -15")
    }

    @Test(.timeLimit(.minutes(1))) func underTheLibuvWatcherTheChildStillLeadsAGroupAndTheTeardownReachesIt() throws {
        let (completed, grandchildEnded) = try onPolicyLoop(watcher: LibuvChildWatcher()) { () async throws -> (CompletedProcess?, Bool) in
            let ok = try await runSubprocessShell("cut -d' ' -f5 /proc/$$/stat")   // the process group
            #expect(Int32(String(decoding: ok.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) == ok.pid)
            do {
                _ = try await runSubprocessShell("(trap '' TERM; exec sleep 30) & echo $!; wait", timeout: 0.2, gracePeriod: 0.2)
                return (nil, false)
            } catch SubprocessError.timedOut(let completed) {
                return (completed, processHasEnded(firstPid(completed.stdout)))
            }
        }
        #expect(completed?.termination == .signaled(SIGTERM, coreDumped: false))
        #expect(grandchildEnded)
    }

    // MARK: Bad input

    @Test(.timeLimit(.minutes(1))) func badArgumentsAreRefusedBeforeAnythingStarts() throws {
        try onPolicyLoop { () async throws in
            #expect(await refused { try await runSubprocessExec("true", timeout: -1) })
            #expect(await refused { try await runSubprocessExec("true", timeout: .nan) })
            #expect(await refused { try await runSubprocessExec("true", gracePeriod: -0.5) })
            #expect(await refused { try await runSubprocessExec("true", gracePeriod: .nan) })
            #expect(await refused { try await runSubprocessExec("true", maxOutput: -1) })
            await #expect(throws: UVError.ENOENT) { _ = try await runSubprocessExec("/no/such/program") }
        }
    }

    @Test(.timeLimit(.minutes(1))) func withoutARunningLoopItThrowsNoRunningEventLoop() async {
        await #expect(throws: EventLoopError.noRunningEventLoop) { _ = try await runSubprocessExec("true") }
    }
}
}
