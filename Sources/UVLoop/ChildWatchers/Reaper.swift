import Glibc
import Logging

/// The reaping logic every child watcher shares, over one kernel (`ChildKernel`).
///
/// One lock covers every reap and every signal UVLoop sends to a child, and a signal is sent only
/// after checking (with `WNOWAIT`, which reaps nothing) that the pid is still an unreaped child.
/// So "reaped" and "signal sent" are mutually exclusive: a pid whose number may already belong to
/// another process is never signalled (asyncio's gh-127049).
///
/// `Reaper.system` is the process's one reaper over the real kernel; every public watcher uses
/// it. Tests build others over a fake kernel, so each watcher's reaping also runs against the
/// cases a real kernel cannot produce on demand.
///
/// A value: copies share the kernel and the lock; `logging(to:)` gives a watcher its own logger.
struct Reaper: Sendable {
    /// The process's reaper: the real kernel, the `uvloop.watcher` logger.
    static let system = Reaper(kernel: LinuxChildKernel(), logger: Logger(label: "uvloop.watcher"))

    let kernel: any ChildKernel
    /// Taken around every reap and every signal (and by watchers, after their own state's lock).
    let lock: Lock
    /// Where the reaping logic logs (stolen statuses, orphans it cannot adopt).
    let logger: Logger
    /// Whether `pidfd_open` works here (probed once, on this process's own pid, which also catches
    /// a seccomp filter). `UVLOOP_DISABLE_PIDFD=1` makes it false, to exercise the fallbacks.
    let pidfdSupported: Bool

    /// Stack of each waiting thread. Small: the thread only waits, reaps and hands off.
    static let waiterStackSize = 64 * 1024

    init(kernel: any ChildKernel, logger: Logger) {
        self.kernel = kernel
        self.logger = logger
        lock = Lock()
        let disabled = System.environment("UVLOOP_DISABLE_PIDFD").map { !$0.isEmpty && $0 != "0" } ?? false
        let probe = disabled ? -ENOSYS : kernel.pidfdOpen(kernel.processID)
        if probe >= 0 { kernel.close(probe) }
        pidfdSupported = probe >= 0
    }

    private init(_ other: Reaper, logger: Logger) {
        kernel = other.kernel
        lock = other.lock
        pidfdSupported = other.pidfdSupported
        self.logger = logger
    }

    /// The same reaper (kernel, lock), logging to `logger`.
    func logging(to logger: Logger) -> Reaper { Reaper(self, logger: logger) }

    // MARK: Reaping

    enum Outcome: Equatable {
        /// Reaped now.
        case exited(Termination)
        /// Still running.
        case running
        /// Not a child of this process, or its status was already taken (ECHILD).
        case notAChild
    }

    /// Reaps `pid` if it has exited (`waitpid(pid, WNOHANG)`).
    func reap(_ pid: pid_t) -> Outcome {
        lock.withLock { reapLocked(pid) }
    }

    /// `reap` for a caller that already holds `lock`.
    func reapLocked(_ pid: pid_t) -> Outcome {
        var status: Int32 = 0
        while true {
            let result = kernel.waitpid(pid, &status, WNOHANG)
            if result == pid { return .exited(Termination(waitStatus: status)) }
            if result == 0 { return .running }
            if result == -EINTR { continue }
            return .notAChild
        }
    }

    enum AnyOutcome: Equatable {
        case exited(pid: pid_t, Termination)
        /// Children exist, none has exited.
        case none
        /// This process has no children at all.
        case noChildren
    }

    /// Reaps any exited child (`waitpid(-1, WNOHANG)`). Only FastChildWatcher calls this: it takes
    /// every child's status, also those of other code. The caller holds `lock`.
    func reapAnyLocked() -> AnyOutcome {
        var status: Int32 = 0
        while true {
            let result = kernel.waitpid(-1, &status, WNOHANG)
            if result > 0 { return .exited(pid: result, Termination(waitStatus: status)) }
            if result == 0 { return .none }
            if result == -EINTR { continue }
            return .noChildren
        }
    }

    /// The termination for a reaping outcome: nil while running; exit status 255 with a warning
    /// when the status was taken by someone else or the pid is not our child (asyncio's rule, D8).
    func termination(for outcome: Outcome, pid: pid_t) -> Termination? {
        switch outcome {
        case .exited(let termination):
            return termination
        case .running:
            return nil
        case .notAChild:
            logger.warning("Unknown child process pid \(pid), will report returncode 255")
            return .exited(255)
        }
    }

    /// Reaps the registered `pids` (nil: every registered pid) that have exited, removes them from
    /// `handlers` and returns what to deliver (outside the caller's lock). For the watchers that
    /// poll each pid on SIGCHLD (Safe, MultiLoop); the caller holds the lock guarding `handlers`.
    func reapRegistered(_ pids: [pid_t]?, in handlers: inout [pid_t: ChildRegistration]) -> [ChildExit] {
        lock.withLock {
            var exits: [ChildExit] = []
            for pid in pids ?? Array(handlers.keys) {
                guard let registration = handlers[pid] else { continue }
                guard let termination = termination(for: reapLocked(pid), pid: pid) else { continue }
                handlers[pid] = nil
                exits.append(ChildExit(registration: registration, pid: pid, termination: termination))
            }
            return exits
        }
    }

    // MARK: Observing an exit without reaping

    /// True when `pid` is a child of this process that nobody has reaped yet (running or a
    /// zombie). The caller holds `lock` (or accepts that the answer may change at once).
    func isUnreapedChildLocked(_ pid: pid_t) -> Bool {
        var childPid: pid_t = 0
        while true {
            let result = kernel.waitid(pid, WEXITED | WNOHANG | WNOWAIT, &childPid)
            if result == -EINTR { continue }
            return result == 0
        }
    }

    /// `isUnreapedChildLocked` under the lock.
    func isUnreapedChild(_ pid: pid_t) -> Bool {
        lock.withLock { isUnreapedChildLocked(pid) }
    }

    /// Blocks until `pid` has exited, without reaping it (`waitid(WEXITED | WNOWAIT)`).
    /// - Returns: true when it exited (it is a zombie now), false when it is not our child.
    func waitUntilExited(_ pid: pid_t) -> Bool {
        var childPid: pid_t = 0
        while true {
            let result = kernel.waitid(pid, WEXITED | WNOWAIT, &childPid)
            if result == 0 { return true }
            if result == -EINTR { continue }
            return false
        }
    }

    /// Blocks until `pid` has exited, without reaping it, preferably by polling its pidfd.
    ///
    /// Many threads blocked in `waitid` slow every exit down: the kernel walks all of them on each
    /// child's exit (measured: 123 µs exit-to-callback with 1 waiting thread, 199 µs with 1000).
    /// A thread polling its child's pidfd is woken alone (flat latency). The pidfd is opened under
    /// the lock while the pid is an unreaped child of ours, so it cannot name a process that
    /// reused the pid. Without pidfds (or descriptors: EMFILE), falls back to `waitid(WNOWAIT)`.
    /// - Returns: true when it exited (it is a zombie now), false when it is not our child.
    func waitUntilExitedPreferringPidfd(_ pid: pid_t) -> Bool {
        guard pidfdSupported else { return waitUntilExited(pid) }
        let fd: Int32? = lock.withLock {
            guard isUnreapedChildLocked(pid) else { return nil }
            let fd = kernel.pidfdOpen(pid)
            return fd >= 0 ? fd : -1
        }
        guard let fd else { return false }                 // not (or no longer) our child
        guard fd >= 0 else { return waitUntilExited(pid) } // EMFILE and the like
        defer { kernel.close(fd) }
        while true {
            let result = kernel.waitReadable(fd)
            if result == -EINTR { continue }
            // Readable, or a poll error on a descriptor we own: look with waitid either way.
            return result == 0 || waitUntilExited(pid)
        }
    }

    /// Waits (blocking) for `pid` to exit, reaps it, and returns how it ended (exit status 255
    /// with a warning when it is not our child or someone else reaped it). A waiting thread's body.
    func waitAndReap(_ pid: pid_t) -> Termination {
        let outcome: Outcome = waitUntilExitedPreferringPidfd(pid) ? reap(pid) : .notAChild
        return termination(for: outcome, pid: pid) ?? .exited(255)
    }

    // MARK: Signalling

    /// Sends `signal` to `pid`, a child of this process, unless it has been reaped.
    /// - Throws: `UVError.ESRCH` when the child was reaped (or is not ours); `UVError.EINVAL` for
    ///   an invalid signal number.
    func signal(_ pid: pid_t, _ signal: Int32) throws {
        try lock.withLock {
            guard isUnreapedChildLocked(pid) else {
                throw UVError(errno: ESRCH, operation: "kill(\(pid)): the process has been reaped")
            }
            let result = kernel.kill(pid, signal)
            if result < 0 { throw UVError(code: result, operation: "kill(\(pid), \(signal))") }
        }
    }

    /// Sends `signal` to the process group `leader` leads, unless the leader has been reaped.
    ///
    /// While the leader is an unreaped child (running or a zombie), its pid, which is the group's
    /// id, cannot be given to anyone else, so the group signalled is the child's own. Once it is
    /// reaped the group's id could be recycled: this throws instead of signalling.
    /// - Throws: `UVError.ESRCH` once the leader was reaped; `UVError` from `kill`.
    func signalGroup(_ leader: pid_t, _ signal: Int32) throws {
        try signalGroup(leader, pinnedBy: leader, signal)
    }

    /// Sends `signal` to process group `group` while `member`, a child of this process in that
    /// group, is unreaped: the group's id is in use as long as it has a member, so it cannot have
    /// been recycled. With `member` a process parked in the group for the purpose (a group pin),
    /// the group stays reachable after its leader is reaped.
    /// - Throws: `UVError.ESRCH` once `member` was reaped; `UVError` from `kill`.
    func signalGroup(_ group: pid_t, pinnedBy member: pid_t, _ signal: Int32) throws {
        try lock.withLock {
            guard isUnreapedChildLocked(member) else {
                throw UVError(errno: ESRCH, operation: "kill(-\(group)): process \(member), which kept the group's id in use, has been reaped")
            }
            let result = kernel.kill(-group, signal)
            if result < 0 { throw UVError(code: result, operation: "kill(-\(group), \(signal))") }
        }
    }

    /// Opens a pidfd for `pid`.
    /// - Throws: `UVError` (ESRCH when no such process, ENOSYS where unsupported, EMFILE).
    func pidfdOpen(_ pid: pid_t) throws(UVError) -> Int32 {
        guard pidfdSupported else { throw UVError(errno: ENOSYS, operation: "pidfd_open") }
        let fd = kernel.pidfdOpen(pid)
        if fd < 0 { throw UVError(code: fd, operation: "pidfd_open(\(pid))") }
        return fd
    }

    /// Sends `signal` through a pidfd (nil: the pidfd is closed, the child reaped).
    /// - Throws: `UVError.ESRCH` once the process has been reaped.
    func pidfdSignal(_ pidfd: Int32?, _ signal: Int32, pid: pid_t) throws(UVError) {
        guard let pidfd else {
            throw UVError(errno: ESRCH, operation: "kill(\(pid)): the process has been reaped")
        }
        let result = kernel.pidfdSendSignal(pidfd, signal)
        if result < 0 { throw UVError(code: result, operation: "pidfd_send_signal(\(pid), \(signal))") }
    }

    // MARK: Orphans

    /// Reaps a child nobody watches any more (its loop closed, or its watcher was closed or
    /// replaced) on a waiting thread of its own, so it is never left a zombie, and still reports
    /// its exit when a registration is known.
    func adopt(_ pid: pid_t, _ registration: ChildRegistration? = nil) {
        let claim = ChildClaim(pid)
        do {
            try Threads.startDetached(stackSize: Self.waiterStackSize) { [self] in
                defer { withExtendedLifetime(claim) {} }
                let termination = waitAndReap(pid)
                registration?.deliver(pid: pid, termination: termination, logger: logger)
            }
        } catch {
            logger.error("Cannot start a thread to reap orphaned child \(pid): \(error)")
        }
    }
}
