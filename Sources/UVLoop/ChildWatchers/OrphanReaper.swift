import Glibc
import Logging

/// Makes this process a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`): descendants orphaned
/// by their parent's exit (a daemon that double-forked, a shell's background job) are
/// re-parented to this process instead of to PID 1, and UVLoop reaps them when they exit, so a
/// supervisor or a container's PID 1 collects no zombies.
///
/// Orphans are reaped by a thread of UVLoop's own on each SIGCHLD. It never takes the status of
/// a child that is someone's: every child UVLoop spawns (from before the spawn until its exit is
/// reported) and every pid registered with a built-in child watcher (`addChildHandler`) is left
/// to its watcher. Children that other code started (Foundation's `Process`, a raw `fork`) and
/// did not register are not told apart from orphans: register them before they can exit.
///
/// Idempotent; there is no way back (orphans re-parented meanwhile would have no reaper).
/// - Throws: `UVError` from prctl (EINVAL on a kernel without subreapers); `UVError` when the
///   reaping thread cannot start (EAGAIN), after which the flag is cleared again.
public func becomeChildSubreaper() throws {
    try OrphanReaper.shared.start()
}

/// Which children are someone's, so that the orphan reaper leaves them to their watcher: a
/// count per pid (a registration replaced by another overlaps it). Spawns hold `spawnLock`'s
/// read side from before the spawn until the child is claimed; the orphan reaper looks with the
/// write side, so no child exists unclaimed while it looks.
///
/// Lock order: `spawnLock`, the reaper's lock, then `counts`; nothing takes an earlier one while
/// holding a later one.
final class ChildClaims: Sendable {
    static let shared = ChildClaims()

    let counts = LockedValue<[pid_t: Int]>([:])
    let spawnLock = ReadWriteLock()

    func claim(_ pid: pid_t) { counts.withLock { $0[pid, default: 0] += 1 } }

    func release(_ pid: pid_t) {
        counts.withLock { counts in
            let count = (counts[pid] ?? 1) - 1
            counts[pid] = count > 0 ? count : nil
        }
    }

    /// Runs `body`, a spawn that claims its child before it returns.
    func spawning<T>(_ body: () throws -> T) rethrows -> T {
        try spawnLock.withReadLock(body)
    }
}

/// A claim on a pid for as long as this object lives (a registration, a `ChildProcess` until
/// its exit is known).
final class ChildClaim: Sendable {
    let pid: pid_t

    init(_ pid: pid_t) {
        self.pid = pid
        ChildClaims.shared.claim(pid)
    }

    deinit { ChildClaims.shared.release(pid) }
}

extension Reaper {
    /// Reaps `pid` if it has exited and nobody claims it, under the lock (so no reap or signal
    /// of another path interleaves) with the claims held still. The caller holds the write side
    /// of `claims.spawnLock`.
    func reapIfOrphan(_ pid: pid_t, claims: ChildClaims) -> Termination? {
        lock.withLock {
            claims.counts.withLock { counts -> Termination? in
                if counts[pid] != nil { return nil }
                var exited: pid_t = 0
                var result: Int32
                repeat { result = kernel.waitid(pid, WEXITED | WNOHANG | WNOWAIT, &exited) } while result == -EINTR
                guard result == 0, exited == pid else { return nil }
                if case .exited(let termination) = reapLocked(pid) { return termination }
                return nil
            }
        }
    }
}

/// The thread that reaps orphans once `becomeChildSubreaper()` was called: a loop of its own
/// with a SIGCHLD handler (libuv's signal handling, shared with the watchers' and libuv's own),
/// which looks at every child of the process on each signal.
final class OrphanReaper: Sendable {
    static let shared = OrphanReaper()

    private let started = LockedValue(false)
    private let logger = Logger(label: "uvloop.watcher")
    /// Orphans reaped so far (for tests and logs).
    let reapedCount = LockedValue(0)

    func start() throws {
        try started.withLock { started in
            guard !started else { return }
            try System.setChildSubreaper(true)
            do {
                try Threads.startDetached(stackSize: 256 * 1024) { [self] in run() }
            } catch {
                try? System.setChildSubreaper(false)
                throw error
            }
            started = true
        }
    }

    private func run() {
        System.unblockOnThisThread(SIGCHLD)
        do {
            let loop = try EventLoop(logger: logger)
            try loop.addSignalHandler(SIGCHLD) { [self] in scan(loop) }
            loop.callSoon { [self] in scan(loop) }   // orphans adopted before the handler
            try loop.runForever()
        } catch {
            logger.error("The orphan reaper stopped: \(error); orphaned descendants will stay zombies")
        }
    }

    /// Reaps every exited orphan (spawns wait meanwhile: their children are claimed by then).
    private func scan(_ loop: EventLoop) {
        let reaped = ChildClaims.shared.spawnLock.withWriteLock {
            System.childProcesses().compactMap { pid in
                Reaper.system.reapIfOrphan(pid, claims: .shared).map { (pid, $0) }
            }
        }
        guard !reaped.isEmpty else { return }
        reapedCount.withLock { $0 += reaped.count }
        for (pid, termination) in reaped {
            logger.debug("Reaped orphaned process \(pid) (return code \(termination.returnCode))")
        }
    }
}
