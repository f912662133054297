import Glibc
import Logging

/// Lets libuv watch the children it starts: `uv_spawn` keeps a process handle whose exit
/// callback reports the exit, as uvloop does.
///
/// libuv reaps on SIGCHLD by calling `waitpid(pid, WNOHANG)` for every live process handle of
/// the loop (O(n) per signal), and `uv_spawn` forks (its cost grows with the parent's memory).
///
/// - Children spawned by `createSubprocessExec` on a loop are watched by that loop; the
///   callback runs there. Signals go through a pidfd where available, so a reaped pid is never
///   signalled.
/// - `addChildHandler` for a pid this watcher did not spawn (any child of the process) falls
///   back to a waiting thread, as ThreadedChildWatcher; it must then be called on a thread
///   running an `EventLoop`.
/// - `isActive()` is always true; `attachLoop` and `close` do nothing.
/// - A loop that closes with children still running hands them to a waiting thread.
public final class LibuvChildWatcher: ChildWatcher, TerminationReporting, SpawningChildWatcher {
    private struct Child: Sendable {
        /// The process handle, on the loop that spawned the child.
        let process: LoopBound<UVProcess>
        var registration: ChildRegistration?
        /// The exit, when it came before any registration.
        var termination: Termination?
    }

    private let children = LockedValue<[pid_t: Child]>([:])
    private let fallback: ThreadedChildWatcher
    let reaper: Reaper

    /// Creates a watcher; it needs no attaching.
    /// - Parameter logger: where the watcher logs (statuses taken by another reaper, children it
    ///   hands to a waiting thread); by default the label `uvloop.watcher`.
    public convenience init(logger: Logger = Logger(label: "uvloop.watcher")) {
        self.init(reaper: Reaper.system.logging(to: logger))
    }

    /// A watcher whose signals and fallback waits go through `reaper`'s kernel (libuv's own
    /// reaping always uses the real one).
    init(reaper: Reaper) {
        self.reaper = reaper
        fallback = ThreadedChildWatcher(reaper: reaper)
    }

    func spawn(_ plan: SpawnPlan, on loop: EventLoop) throws -> SpawnedChild {
        // The exit callback is set below: libuv reports the exit from the loop, later.
        let process = try UVProcess(loop: loop.uvLoop, plan: plan) { _ in }
        let pid = process.pid
        // Strong captures: the closures go with the handle when it closes (see PidfdChildWatcher).
        process.exitCallback = { [self] termination in exited(pid, termination) }
        // Opened before control returns to the loop, so before libuv can reap the child.
        let pidfd = PidfdSignaller(pid: pid, reaper: reaper)
        process.whenClosed = { [self] in
            pidfd.close()
            handleClosed(pid, exited: process.hasExited)
        }
        let bound = LoopBound(process, loop: loop)
        children.withLock { $0[pid] = Child(process: bound) }
        let reaper = self.reaper
        return SpawnedChild(pid: pid, signaller: { pid, signal in try pidfd.send(signal, to: pid) },
                            groupSignaller: { leader, signal in
            // libuv reaps on the loop's thread, without UVLoop's reaper lock: checked and sent
            // there, the leader cannot be reaped in between.
            try await loop.onLoop {
                try loop.checkLoopThread()
                guard !bound.value.hasExited, !bound.value.isClosing else {
                    throw UVError(errno: ESRCH, operation: "kill(-\(leader)): the group's leader has been reaped")
                }
                let result = reaper.kernel.kill(-leader, signal)
                if result < 0 { throw UVError(code: result, operation: "kill(-\(leader), \(signal))") }
            }
        })
    }

    /// libuv reported the exit (loop thread).
    private func exited(_ pid: pid_t, _ termination: Termination) {
        let (registration, process) = children.withLock { children -> (ChildRegistration?, LoopBound<UVProcess>?) in
            guard var child = children[pid] else { return (nil, nil) }
            if let registration = child.registration {
                children[pid] = nil
                return (registration, child.process)
            }
            child.termination = termination
            children[pid] = child
            return (nil, nil)
        }
        process?.value.close()
        registration?.deliver(pid: pid, termination: termination, logger: reaper.logger)
    }

    /// The process handle closed: after the exit, or because its loop closed first.
    private func handleClosed(_ pid: pid_t, exited: Bool) {
        let child = children.withLock { $0.removeValue(forKey: pid) }
        guard !exited else { return }
        // The loop closed under a running child: libuv no longer reaps it (ARCHITECTURE fact 1).
        reaper.adopt(pid, child?.registration)
    }

    /// Registers `callback` for `pid`. For a child spawned by this watcher the callback runs on
    /// the loop that spawned it; for any other pid, on the loop running on this thread.
    /// - Throws: `EventLoopError.noRunningEventLoop` for a pid it did not spawn when no loop runs here.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        try addTerminationHandler(pid, returnCodeCallback(callback))
    }

    /// `addChildHandler`, with the whole termination.
    func addTerminationHandler(_ pid: pid_t, _ callback: @escaping TerminationCallback) throws {
        let registration = ChildRegistration(pid: pid, callback: callback, loop: nil)
        enum Found { case registered, exited(Termination, LoopBound<UVProcess>), notOurs }
        let found = children.withLock { children -> Found in
            guard var child = children[pid] else { return .notOurs }
            if let termination = child.termination {
                children[pid] = nil
                return .exited(termination, child.process)
            }
            child.registration = registration
            children[pid] = child
            return .registered
        }
        switch found {
        case .registered:
            return
        case .exited(let termination, let process):
            process.loop.execute { process.value.close() }
            registration.deliver(pid: pid, termination: termination, logger: reaper.logger)
        case .notOurs:
            try fallback.addTerminationHandler(pid, callback)
        }
    }

    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool {
        let removed = children.withLock { children -> Bool in
            guard children[pid]?.registration != nil else { return false }
            children[pid]?.registration = nil
            return true
        }
        return removed || fallback.removeChildHandler(pid)
    }

    /// Does nothing: each child is watched by the loop that spawned it.
    public func attachLoop(_ loop: EventLoop?) {}

    /// Always true.
    public func isActive() -> Bool { true }

    /// Does nothing: children go on being watched by their loops (or, once a loop closes, by a
    /// waiting thread), and their callbacks still run.
    public func close() {}
}

/// Sends signals to one child through its pidfd, which refers to that process only: once the
/// child is reaped, sending fails with ESRCH instead of reaching a process that reused the pid.
/// Without pidfds, falls back to the reaper's checked kill.
final class PidfdSignaller: Sendable {
    private enum Descriptor: Sendable { case unavailable, open(Int32), closed }

    private let fd: LockedValue<Descriptor>
    private let reaper: Reaper

    init(pid: pid_t, reaper: Reaper) {
        self.reaper = reaper
        let fd = reaper.pidfdSupported ? try? reaper.pidfdOpen(pid) : nil
        self.fd = LockedValue(fd.map(Descriptor.open) ?? .unavailable)
    }

    func send(_ signal: Int32, to pid: pid_t) throws {
        try fd.withLock { fd in
            switch fd {
            case .unavailable: try reaper.signal(pid, signal)
            case .open(let pidfd): try reaper.pidfdSignal(pidfd, signal, pid: pid)
            case .closed: try reaper.pidfdSignal(nil, signal, pid: pid)
            }
        }
    }

    /// The handle closed (the child was reaped, or its loop closed): later signals throw ESRCH.
    func close() {
        fd.withLock { fd in
            if case .open(let pidfd) = fd { reaper.kernel.close(pidfd) }
            fd = .closed
        }
    }
}
