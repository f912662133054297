#if os(Linux)
import Glibc
import Logging

/// Watches each child through a pidfd polled by the registering loop (asyncio.PidfdChildWatcher,
/// with 3.12's per-loop semantics).
///
/// O(1) per exit, no thread, no signal: `pidfd_open(pid)` gives a descriptor that becomes
/// readable when the child exits; the loop then reaps it with `waitpid(pid, WNOHANG)`.
///
/// - `isActive()` is true where `pidfd_open` works (Linux 5.3+, not blocked by seccomp).
/// - `addChildHandler` must be called on a thread running an `EventLoop`; that loop polls the
///   pidfd and runs the callback. Registering a pid again replaces the callback.
/// - `attachLoop` does nothing: each registration uses its own loop, so loops on any thread work.
/// - When a loop closes with children still registered, or the watcher closes, those children
///   are handed to a waiting thread that still reports them: no zombie, no lost exit.
public final class PidfdChildWatcher: ChildWatcher, @unchecked Sendable {
    private struct Watch {
        var registration: ChildRegistration
        let loop: EventLoop
        let poll: LoopBound<UVPoll>
    }

    private let watches = LockedValue<[pid_t: Watch]>([:])
    private let logger = Logger(label: "uvloop.watcher")

    /// Creates a watcher; it needs no attaching.
    public init() {}

    /// Registers `callback` for `pid`'s exit, run on the loop running on this thread.
    /// - Throws: `UVError.ENOSYS` where pidfd_open is unavailable; `EventLoopError.noRunningEventLoop`
    ///   when no loop runs on this thread; `UVError` from pidfd_open (EMFILE) or the poll.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        guard Reaper.pidfdSupported else {
            throw UVError(code: UVError.ENOSYS.code, operation: "PidfdChildWatcher: pidfd_open is unavailable here")
        }
        let loop = try getRunningLoop()
        let registration = ChildRegistration(callback: callback, loop: nil)
        let replaced = watches.withLock { watches -> Bool in
            guard watches[pid] != nil else { return false }
            watches[pid]?.registration = registration
            return true
        }
        if replaced { return }
        guard Reaper.lock.withLock({ Reaper.isUnreapedChild(pid) }) else {
            logger.warning("Unknown child process pid \(pid), will report returncode 255")
            registration.deliver(pid: pid, returnCode: 255, logger: logger)
            return
        }
        let fd = try Reaper.pidfdOpen(pid)
        let poll: UVPoll
        do {
            poll = try UVPoll(loop: loop.core, fileDescriptor: fd) { [self] _, _ in self.exited(pid) }
            try poll.start(.readable)
        } catch {
            System.closeDescriptor(fd)
            throw error
        }
        // Strong captures: the handle's closures are dropped when it closes, which breaks the cycle
        // (a weak capture would give the watcher a side table LeakSanitizer reports at exit).
        poll.whenClosed = { [self] in
            // The descriptor goes with the handle; libuv no longer polls it at this point.
            System.closeDescriptor(fd)
            lost(pid, poll: poll)
        }
        watches.withLock { $0[pid] = Watch(registration: registration, loop: loop, poll: LoopBound(poll)) }
    }

    /// The pidfd is readable (loop thread): reap, unregister, close, report.
    private func exited(_ pid: pid_t) {
        let outcome = Reaper.reap(pid)
        guard let code = Reaper.returnCode(for: outcome, pid: pid, logger: logger) else { return }
        guard let watch = watches.withLock({ $0.removeValue(forKey: pid) }) else { return }
        watch.poll.value.close()
        watch.registration.deliver(pid: pid, returnCode: code, logger: logger)
    }

    /// A poll handle closed while still registered: its loop closed. Hand the child over.
    private func lost(_ pid: pid_t, poll: UVPoll) {
        let watch = watches.withLock { watches -> Watch? in
            guard let watch = watches[pid], watch.poll.value === poll else { return nil }
            watches[pid] = nil
            return watch
        }
        if let watch { OrphanReaper.adopt(pid, watch.registration) }
    }

    /// Removes the handler for `pid`: true if one was pending, false otherwise. The removed callback never runs.
    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool {
        guard let watch = watches.withLock({ $0.removeValue(forKey: pid) }) else { return false }
        let poll = watch.poll
        watch.loop.runOnLoopThread { poll.value.close() }
        return true
    }

    /// Attaches the watcher to `loop` (see the type's documentation for what it does with it).
    public func attachLoop(_ loop: EventLoop?) {}

    /// True when the watcher can report exits now; spawning with an inactive watcher throws `EventLoopError.childWatcherNotActive`.
    public func isActive() -> Bool { Reaper.pidfdSupported }

    /// Stops polling; pending children go to a waiting thread that still reports them.
    public func close() {
        let all = watches.withLock { watches -> [pid_t: Watch] in
            defer { watches = [:] }
            return watches
        }
        for (pid, watch) in all {
            let poll = watch.poll
            watch.loop.runOnLoopThread { poll.value.close() }
            OrphanReaper.adopt(pid, watch.registration)
        }
    }
}
#endif
