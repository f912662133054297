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
public final class LibuvChildWatcher: ChildWatcher, SpawningChildWatcher, @unchecked Sendable {
    private struct Child {
        let process: LoopBound<UVProcess>
        /// The loop that spawned it and owns the handle.
        let loop: EventLoop
        var registration: ChildRegistration?
        /// The exit, when it came before any registration.
        var returnCode: Int32?
    }

    private let children = LockedValue<[pid_t: Child]>([:])
    private let fallback = ThreadedChildWatcher()
    private let logger = Logger(label: "uvloop.watcher")

    /// Creates a watcher; it needs no attaching.
    public init() {}

    func spawn(path: String, request: SpawnRequest, actions: [Spawner.FileAction],
               on loop: EventLoop) throws -> (pid: pid_t, signaller: @Sendable (pid_t, Int32) throws -> Void) {
        let pidBox = LockedValue<pid_t>(0)
        let process = try UVProcess(loop: loop.core, path: path, arguments: request.arguments,
                                    environment: request.environment, workingDirectory: request.workingDirectory,
                                    actions: actions) { [self] code in
            // Strong: the closure goes with the handle when it closes (see PidfdChildWatcher).
            exited(pidBox.withLock { $0 }, code)
        }
        let pid = process.pid
        pidBox.withLock { $0 = pid }
        // Opened before control returns to the loop, so before libuv can reap the child.
        let pidfd = PidfdSignaller(pid: pid)
        process.whenClosed = { [self] in
            pidfd.close()
            handleClosed(pid, exited: process.hasExited)
        }
        children.withLock { $0[pid] = Child(process: LoopBound(process), loop: loop) }
        return (pid, { pid, signal in try pidfd.send(signal, to: pid) })
    }

    /// libuv reported the exit (loop thread).
    private func exited(_ pid: pid_t, _ code: Int32) {
        let (registration, process) = children.withLock { children -> (ChildRegistration?, LoopBound<UVProcess>?) in
            guard var child = children[pid] else { return (nil, nil) }
            if let registration = child.registration {
                children[pid] = nil
                return (registration, child.process)
            }
            child.returnCode = code
            children[pid] = child
            return (nil, nil)
        }
        process?.value.close()
        registration?.deliver(pid: pid, returnCode: code, logger: logger)
    }

    /// The process handle closed: after the exit, or because its loop closed first.
    private func handleClosed(_ pid: pid_t, exited: Bool) {
        let child = children.withLock { $0.removeValue(forKey: pid) }
        guard !exited else { return }
        // The loop closed under a running child: libuv no longer reaps it (ARCHITECTURE fact 1).
        OrphanReaper.adopt(pid, child?.registration)
    }

    /// Registers `callback` for `pid`. For a child spawned by this watcher the callback runs on
    /// the loop that spawned it; for any other pid, on the loop running on this thread.
    /// - Throws: `EventLoopError.noRunningEventLoop` for a pid it did not spawn when no loop runs here.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        let registration = ChildRegistration(callback: callback, loop: nil)
        enum Found { case registered, exited(Int32, LoopBound<UVProcess>, EventLoop), notOurs }
        let found = children.withLock { children -> Found in
            guard var child = children[pid] else { return .notOurs }
            if let code = child.returnCode {
                children[pid] = nil
                return .exited(code, child.process, child.loop)
            }
            child.registration = registration
            children[pid] = child
            return .registered
        }
        switch found {
        case .registered:
            return
        case .exited(let code, let process, let loop):
            loop.runOnLoopThread { process.value.close() }
            registration.deliver(pid: pid, returnCode: code, logger: logger)
        case .notOurs:
            try fallback.addChildHandler(pid, callback)
        }
    }

    /// Removes the handler for `pid`: true if one was pending, false otherwise. The removed callback never runs.
    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool {
        let removed = children.withLock { children -> Bool in
            guard children[pid]?.registration != nil else { return false }
            children[pid]?.registration = nil
            return true
        }
        return removed || fallback.removeChildHandler(pid)
    }

    /// Attaches the watcher to `loop` (see the type's documentation for what it does with it).
    public func attachLoop(_ loop: EventLoop?) {}
    /// True when the watcher can report exits now; spawning with an inactive watcher throws `EventLoopError.childWatcherNotActive`.
    public func isActive() -> Bool { true }
    /// Releases the watcher; pending children are handed to a waiting thread that still reports them.
    public func close() {}
}

/// Sends signals to one child through its pidfd, which refers to that process only: once the
/// child is reaped, sending fails with ESRCH instead of reaching a process that reused the pid.
/// Without pidfds, falls back to the reaper's checked kill.
final class PidfdSignaller: Sendable {
    private let fd: LockedValue<Int32?>

    init(pid: pid_t) {
        fd = LockedValue(Reaper.pidfdSupported ? try? Reaper.pidfdOpen(pid) : nil)
    }

    func send(_ signal: Int32, to pid: pid_t) throws {
        try fd.withLock { fd in
            guard let pidfd = fd else {
                try Reaper.signal(pid, signal)
                return
            }
            try Reaper.pidfdSignal(pidfd, signal, pid: pid)
        }
    }

    func close() {
        fd.withLock { fd in
            if let pidfd = fd { System.closeDescriptor(pidfd) }
            fd = -1
        }
    }
}
