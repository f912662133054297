import Glibc

/// A process of ours parked in a child's process group, so that the group's id stays in use
/// (a group has an id as long as it has a member) after the leader is reaped: the group can then
/// still be signalled as a whole without any chance of reaching a recycled group.
///
/// The pin is `sleep` with every signal blocked (only SIGKILL ends it), stdio on /dev/null and
/// no other descriptor; it is registered with the policy's child watcher like any child, so it
/// is reaped by whatever reaps the others.
final class GroupPin: Sendable {
    let pid: pid_t
    let group: pid_t
    /// Fired when the watcher reported the pin's exit (it has been reaped).
    let reaped = LoopEvent()
    /// Keeps the orphan reaper away from the pin, whatever watcher reaps it.
    private let claim: ChildClaim

    private init(pid: pid_t, group: pid_t) {
        self.pid = pid
        self.group = group
        claim = ChildClaim(pid)
    }

    /// Starts a pin in `group`, or returns nil when that is not possible: the group is gone or
    /// belongs to another session (EPERM), no `sleep` program, no process or descriptor left.
    /// Loop thread of a running loop whose policy's watcher is active.
    static func start(joining group: pid_t) -> GroupPin? {
        guard let executable = ["/bin/sleep", "/usr/bin/sleep"].first(where: { System.checkExecutable($0) == .executable })
        else { return nil }
        var plan = SpawnPlan(executable: executable, arguments: ["sleep", "2147483647"], environment: [],
                             workingDirectory: "/")
        plan.stdin = .null
        plan.stdout = .null
        plan.stderr = .null
        plan.processGroup = group
        plan.blockAllSignals = true
        return ChildClaims.shared.spawning { () -> GroupPin? in
            guard let pid = try? PosixSpawn.spawn(plan) else { return nil }
            let pin = GroupPin(pid: pid, group: group)
            do {
                try getChildWatcher().addChildHandler(pid) { [pin] _, _ in pin.reaped.fire() }
            } catch {
                try? Reaper.system.signal(pid, SIGKILL)
                Reaper.system.adopt(pid)
                return nil
            }
            return pin
        }
    }

    /// Sends `signal` to the whole group, while the pin holds its id.
    /// - Throws: `UVError.ESRCH` once the pin is reaped.
    func signalGroup(_ signal: Int32) throws {
        try Reaper.system.signalGroup(group, pinnedBy: pid, signal)
    }
}

extension ChildProcess {
    /// Ends the child and, when it leads a process group, every process still in that group,
    /// then waits for the child's reap: SIGTERM to the group; then, once the child has exited
    /// and `quiet` has happened (its outputs closed), or after `gracePeriod` seconds, SIGKILL to
    /// the group. A group pin keeps the group's id in use meanwhile, so members that outlive the
    /// leader (a shell killed by SIGTERM whose children ignore it) are killed too, and no
    /// recycled group ever is. Without a pin (the leader was reaped already, or the group is in
    /// a session of its own, as under `LibuvChildWatcher`): `terminate(gracePeriod:)`.
    ///
    /// Not cancellable, like `terminate(gracePeriod:)`. Loop thread.
    /// - Throws: `UVError` from `kill` other than ESRCH (EPERM).
    func tearDownGroup(gracePeriod: Double, quiet: LoopEvent) async throws -> Termination {
        guard leadsProcessGroup, termination == nil, let pin = GroupPin.start(joining: pid) else {
            _ = try await terminate(gracePeriod: gracePeriod)
            return termination ?? .exited(255)
        }
        do {
            try pin.signalGroup(SIGTERM)
            let deadline = gracePeriod == .infinity ? nil : loop.time() + gracePeriod
            _ = try? await awaitTermination(deadline: deadline, cancellable: false)
            if termination != nil { _ = await quiet.wait(until: deadline, on: loop) }
            // Stragglers, the leader if it is still there, and the pin itself.
            try pin.signalGroup(SIGKILL)
        } catch {
            // The pin must not outlive the teardown, whatever failed.
            try? Reaper.system.signal(pin.pid, SIGKILL)
            _ = await pin.reaped.wait(on: loop)
            throw error
        }
        let ended = try await awaitTermination(deadline: nil, cancellable: false)
        _ = await pin.reaped.wait(on: loop)
        return ended
    }
}
