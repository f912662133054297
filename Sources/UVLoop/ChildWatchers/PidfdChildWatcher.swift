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
public final class PidfdChildWatcher: ChildWatcher, TerminationReporting {
    private struct Watch: Sendable {
        var registration: ChildRegistration
        /// The pidfd's poll handle, on the registering loop.
        let poll: LoopBound<UVPoll>
    }

    private let watches = LockedValue<[pid_t: Watch]>([:])
    let reaper: Reaper

    /// Creates a watcher; it needs no attaching.
    /// - Parameter logger: where the watcher logs (statuses taken by another reaper, children it
    ///   hands to a waiting thread); by default the label `uvloop.watcher`.
    public convenience init(logger: Logger = Logger(label: "uvloop.watcher")) {
        self.init(reaper: Reaper.system.logging(to: logger))
    }

    /// A watcher over `reaper`'s kernel (tests use a fake one).
    init(reaper: Reaper) { self.reaper = reaper }

    /// Registers `callback` for `pid`'s exit, run on the loop running on this thread.
    /// - Throws: `UVError.ENOSYS` where pidfd_open is unavailable; `EventLoopError.noRunningEventLoop`
    ///   when no loop runs on this thread; `UVError` from pidfd_open (EMFILE) or the poll.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        try addTerminationHandler(pid, returnCodeCallback(callback))
    }

    /// `addChildHandler`, with the whole termination.
    func addTerminationHandler(_ pid: pid_t, _ callback: @escaping TerminationCallback) throws {
        guard reaper.pidfdSupported else {
            throw UVError(errno: ENOSYS, operation: "PidfdChildWatcher: pidfd_open is unavailable here")
        }
        let loop = try getRunningLoop()
        let registration = ChildRegistration(pid: pid, callback: callback, loop: nil)
        let replaced = watches.withLock { watches -> Bool in
            guard watches[pid] != nil else { return false }
            watches[pid]?.registration = registration
            return true
        }
        if replaced { return }
        guard reaper.isUnreapedChild(pid) else {
            reaper.logger.warning("Unknown child process pid \(pid), will report returncode 255")
            registration.deliver(pid: pid, termination: .exited(255), logger: reaper.logger)
            return
        }
        let fd = try reaper.pidfdOpen(pid)
        let poll: UVPoll
        do {
            poll = try UVPoll(loop: loop.uvLoop, fileDescriptor: fd) { [self] _, _ in self.exited(pid) }
            try poll.start(.readable)
        } catch {
            reaper.kernel.close(fd)
            throw error
        }
        let bound = LoopBound(poll, loop: loop)
        // Strong captures: the handle's closures are dropped when it closes, which breaks the cycle
        // (a weak capture would give the watcher a side table LeakSanitizer reports at exit).
        poll.whenClosed = { [self] in
            // The descriptor goes with the handle; libuv no longer polls it at this point.
            reaper.kernel.close(fd)
            lost(pid, poll: bound)
        }
        watches.withLock { $0[pid] = Watch(registration: registration, poll: bound) }
    }

    /// The pidfd is readable (loop thread): reap, unregister, close, report.
    ///
    /// Reaping and unregistering happen under one lock: a `close()` that took the watch (and
    /// handed the child to a waiting thread) first leaves the status to that thread.
    private func exited(_ pid: pid_t) {
        let reaper = self.reaper
        let reaped = watches.withLock { watches -> (Watch, Termination)? in
            guard let watch = watches[pid],
                  let termination = reaper.termination(for: reaper.reap(pid), pid: pid) else { return nil }
            watches[pid] = nil
            return (watch, termination)
        }
        guard let (watch, termination) = reaped else { return }
        watch.poll.value.close()
        watch.registration.deliver(pid: pid, termination: termination, logger: reaper.logger)
    }

    /// A poll handle closed while still registered: its loop closed. Hand the child over.
    private func lost(_ pid: pid_t, poll: LoopBound<UVPoll>) {
        let watch = watches.withLock { watches -> Watch? in
            guard let watch = watches[pid], watch.poll === poll else { return nil }
            watches[pid] = nil
            return watch
        }
        if let watch { reaper.adopt(pid, watch.registration) }
    }

    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool {
        guard let watch = watches.withLock({ $0.removeValue(forKey: pid) }) else { return false }
        let poll = watch.poll
        poll.loop.execute { poll.value.close() }
        return true
    }

    /// Does nothing: each registration uses the loop running on its thread.
    public func attachLoop(_ loop: EventLoop?) {}

    /// True where `pidfd_open` works.
    public func isActive() -> Bool { reaper.pidfdSupported }

    /// Stops polling; pending children go to a waiting thread that still reports them.
    public func close() {
        let all = watches.withLock { watches -> [pid_t: Watch] in
            defer { watches = [:] }
            return watches
        }
        for (pid, watch) in all {
            let poll = watch.poll
            poll.loop.execute { poll.value.close() }
            reaper.adopt(pid, watch.registration)
        }
    }
}
#endif
