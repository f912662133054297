import Foundation
import Testing
@testable import UVLoop

/// The first line a child prints, as a pid (a shell's `echo $!`).
private func readPid(_ child: ChildProcess) async throws -> pid_t {
    let line = String(decoding: try await child.stdout!.readLine(), as: UTF8.self)
    return pid_t(line.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
}

/// A shell that starts a `sleep` grandchild, prints its pid and waits for it.
private let shellWithGrandchild = "sleep 30 & echo $!; wait"
/// The same, ignoring SIGTERM (the grandchild inherits the ignored disposition).
private let stubbornShell = "trap '' TERM; sleep 30 & echo $!; wait"

/// `Termination`, `leadsProcessGroup`, `wait(timeout:)`, `terminate(gracePeriod:)`, under
/// posix_spawn (reaper-checked signals) and uv_spawn (pidfd and loop-checked signals). The
/// descriptor and zombie accounting of the same paths under every watcher is in the conformance
/// helper (a process of its own, where counting descriptors means something).
extension ProcessWide {
@Suite("Subprocess: termination, deadlines and teardown")
struct TerminationTests {
    static let spawners: [String] = ["posix_spawn", "uv_spawn"]

    func watcher(_ spawner: String) -> (any ChildWatcher)? { spawner == "uv_spawn" ? LibuvChildWatcher() : nil }

    @Test(.timeLimit(.minutes(1))) func terminationSaysHowTheChildEnded() throws {
        let ends = try onPolicyLoop { () async throws -> [Termination?] in
            let exited = try await createSubprocessShell("exit 3")
            let before = exited.termination
            _ = try await exited.wait()
            let killed = try await createSubprocessExec("/bin/sleep", ["30"])
            try killed.kill()
            _ = try await killed.wait()
            return [before, exited.termination, killed.termination]
        }
        #expect(ends == [nil, .exited(3), .signaled(SIGKILL, coreDumped: false)])
        #expect(Termination.exited(3).returnCode == 3 && Termination.signaled(9, coreDumped: true).returnCode == -9)
        #expect("\(Termination.signaled(11, coreDumped: true))" == "signaled(11, core dumped)")
    }

    @Test(.timeLimit(.minutes(1))) func leadsProcessGroupFollowsTheSpawnOptions() throws {
        let leads = try onPolicyLoop { () async throws -> [Bool] in
            var leads: [Bool] = []
            let plain = try await createSubprocessExec("/bin/sleep", ["30"])
            let session = try await createSubprocessExec("/bin/sleep", ["30"], startNewSession: true)
            let group = try await createSubprocessExec("/bin/sleep", ["30"], processGroup: 0)
            let member = try await createSubprocessExec("/bin/sleep", ["30"], processGroup: group.pid)
            for child in [plain, session, group, member] {
                leads.append(child.leadsProcessGroup)
                try child.kill()
                _ = try await child.wait()
            }
            return leads
        }
        #expect(leads == [false, true, true, false])
    }

    @Test(.timeLimit(.minutes(1)), arguments: spawners)
    func terminateReachesTheWholeGroupTheChildLeads(_ spawner: String) throws {
        let (code, grandchildGone) = try onPolicyLoop(watcher: watcher(spawner)) { () async throws -> (Int32, Bool) in
            let child = try await createSubprocessShell(shellWithGrandchild, stdout: .pipe, startNewSession: true)
            let grandchild = try await readPid(child)
            let code = try await child.terminate(gracePeriod: 5)
            _ = try await child.stdout!.read()   // end of file: nobody holds the pipe any more
            return (code, processHasEnded(grandchild))
        }
        #expect(code == -SIGTERM)
        #expect(grandchildGone)
    }

    @Test(.timeLimit(.minutes(1)))
    func withoutAGroupTerminateReachesOnlyTheChild() throws {
        let grandchildRan = try onPolicyLoop { () async throws -> Bool in
            let child = try await createSubprocessShell(shellWithGrandchild, stdout: .pipe)
            let grandchild = try await readPid(child)
            let code = try await child.terminate(gracePeriod: 5)
            #expect(code == -SIGTERM)
            let ran = kill(grandchild, 0) == 0
            kill(grandchild, SIGKILL)   // ours to clean up: that is the point of a group
            _ = try await child.stdout!.read()
            return ran
        }
        #expect(grandchildRan)
    }

    @Test(.timeLimit(.minutes(1)), arguments: spawners)
    func aGroupThatIgnoresSIGTERMIsKilledAfterTheGracePeriod(_ spawner: String) throws {
        let (code, grandchildGone, waited, reaped) = try onPolicyLoop(watcher: watcher(spawner)) { () async throws -> (Int32, Bool, Double, Bool) in
            let loop = try getRunningLoop()
            let child = try await createSubprocessShell(stubbornShell, stdout: .pipe, startNewSession: true)
            let grandchild = try await readPid(child)
            let start = loop.time()
            let code = try await child.terminate(gracePeriod: 0.2)
            let waited = loop.time() - start
            let reaped = child.termination != nil
            _ = try await child.stdout!.read()
            return (code, processHasEnded(grandchild), waited, reaped)
        }
        #expect(code == -SIGKILL)
        #expect(grandchildGone)
        #expect(waited >= 0.2, "SIGKILL came only after the grace period (\(waited) s)")
        #expect(reaped, "terminate returns after the reap")
    }

    @Test(.timeLimit(.minutes(1)))
    func terminateCompletesEvenWhenItsTaskIsCancelled() throws {
        let (code, reaped) = try onPolicyLoop { () async throws -> (Int32, Bool) in
            let child = try await createSubprocessShell(stubbornShell, stdout: .pipe, startNewSession: true)
            _ = try await readPid(child)
            let teardown = Task { try await child.terminate(gracePeriod: 0.1) }
            teardown.cancel()
            let code = try await teardown.value
            _ = try await child.stdout!.read()
            return (code, child.termination != nil)
        }
        #expect(code == -SIGKILL)
        #expect(reaped)
    }

    @Test(.timeLimit(.minutes(1)))
    func anExitedChildIsNeverSignalledAgain() throws {
        let (codes, groupError) = try onPolicyLoop { () async throws -> ([Int32], UVError?) in
            let child = try await createSubprocessShell("exit 4", startNewSession: true)
            _ = try await child.wait()
            let first = try await child.terminate(gracePeriod: 1)
            let second = try await child.terminate(gracePeriod: 0)
            // The group's id died with its leader: the reaper refuses to signal it.
            var groupError: UVError?
            do { try Reaper.system.signalGroup(child.pid, 0) } catch let error as UVError { groupError = error }
            return ([first, second], groupError)
        }
        #expect(codes == [4, 4])
        #expect(groupError == .ESRCH)
    }

    @Test(.timeLimit(.minutes(1)), arguments: spawners)
    func waitWithATimeoutLeavesTheChildRunning(_ spawner: String) throws {
        let outcome = try onPolicyLoop(watcher: watcher(spawner)) { () async throws -> [String] in
            var outcome: [String] = []
            let child = try await createSubprocessExec("/bin/sleep", ["30"])
            for timeout in [0.05, 0, -1] {
                do {
                    _ = try await child.wait(timeout: timeout)
                    outcome.append("returned")
                } catch is TimeoutError {
                    outcome.append(child.returnCode == nil ? "timeout, running" : "timeout, exited")
                }
            }
            try child.kill()
            outcome.append("\(try await child.wait(timeout: 10))")
            outcome.append("\(try await child.wait(timeout: 0))")   // known: no waiting needed
            outcome.append("\(try await child.wait(timeout: .infinity))")
            return outcome
        }
        #expect(outcome == ["timeout, running", "timeout, running", "timeout, running", "-9", "-9", "-9"])
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellingATimedWaitLeavesTheChildUntouched() throws {
        let (outcome, running) = try onPolicyLoop { () async throws -> (String, Bool) in
            let child = try await createSubprocessExec("/bin/sleep", ["30"])
            let waiter = Task { try await child.wait(timeout: 30) }
            try await getRunningLoop().sleep(0.05)
            waiter.cancel()
            var outcome = "returned"
            do { _ = try await waiter.value } catch is CancellationError { outcome = "cancelled" }
            let running = child.returnCode == nil
            _ = try await child.terminate(gracePeriod: 1)
            return (outcome, running)
        }
        #expect(outcome == "cancelled")
        #expect(running)
    }

    @Test(.timeLimit(.minutes(1)))
    func badDurationsThrowAndSendNothing() throws {
        let running = try onPolicyLoop { () async throws -> Bool in
            let child = try await createSubprocessExec("/bin/sleep", ["30"])
            await #expect(throws: EventLoopError.invalidArgument) { try await child.terminate(gracePeriod: -1) }
            await #expect(throws: EventLoopError.invalidArgument) { try await child.terminate(gracePeriod: .nan) }
            await #expect(throws: EventLoopError.invalidArgument) { try await child.wait(timeout: .nan) }
            try await getRunningLoop().sleep(0.05)
            let running = child.returnCode == nil
            #expect(try await child.terminate(gracePeriod: 1) == -SIGTERM)
            return running
        }
        #expect(running)
    }
}
}
