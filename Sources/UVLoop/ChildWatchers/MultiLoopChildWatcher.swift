import Glibc
import Logging

/// Watches SIGCHLD on a private loop thread and polls every registered child
/// (asyncio.MultiLoopChildWatcher).
///
/// - Active from the first `attachLoop` call (whatever its argument) until `close()`: the
///   private thread starts there. Loops on any thread can spawn while it is active.
/// - `addChildHandler` must be called on a thread running an `EventLoop`; the callback runs on
///   that loop, never synchronously. The pid is polled at once, so a child that exited before
///   registration is reported too.
/// - Reaps only registered pids (`waitpid(pid, WNOHANG)` for each: O(n) per SIGCHLD).
/// - SIGCHLD reaches it through libuv (`uv_signal_t` on the private loop), so delivery never
///   depends on which thread the kernel picked for the signal (asyncio's bpo-38323).
public final class MultiLoopChildWatcher: ChildWatcher, @unchecked Sendable {
    private struct State {
        var handlers: [pid_t: ChildRegistration] = [:]
        var privateLoop: EventLoop?
        var thread: JoinableThread?
        /// The SIGCHLD handle, kept alive here; touched only on the private loop's thread.
        var signal: LoopBound<UVSignal>?
    }

    /// Lock order: `state`, then `Reaper.lock`.
    private let state = LockedValue(State())
    private let logger = Logger(label: "uvloop.watcher")

    /// Creates a watcher; it becomes active at its first `attachLoop`.
    public init() {}

    /// Starts the private SIGCHLD thread if it is not running; the argument is ignored.
    public func attachLoop(_ loop: EventLoop?) {
        state.withLock { state in
            guard state.privateLoop == nil else { return }
            do {
                let privateLoop = try EventLoop()
                privateLoop.callSoon { [weak self, privateLoop] in self?.installSIGCHLD(on: privateLoop) }
                state.thread = try JoinableThread {
                    try? privateLoop.runForever()
                    try? privateLoop.close()
                }
                state.privateLoop = privateLoop
            } catch {
                logger.error("MultiLoopChildWatcher cannot start its SIGCHLD thread: \(error)")
            }
        }
    }

    /// On the private loop's thread.
    private func installSIGCHLD(on loop: EventLoop) {
        do {
            let signal = try UVSignal(loop: loop.core) { [weak self] _ in self?.pollAll() }
            state.withLock { $0.signal = LoopBound(signal) }
            try signal.start(SIGCHLD)
        } catch {
            logger.error("MultiLoopChildWatcher cannot watch SIGCHLD: \(error)")
        }
        pollAll()   // exits that happened before the handler was installed
    }

    /// True when the watcher can report exits now; spawning with an inactive watcher throws `EventLoopError.childWatcherNotActive`.
    public func isActive() -> Bool { state.withLock { $0.privateLoop != nil } }

    /// Registers `callback`, delivered on the loop running on this thread.
    /// - Throws: `EventLoopError.noRunningEventLoop` when no loop runs on this thread;
    ///   `EventLoopError.childWatcherNotActive` before the first `attachLoop` or after `close()`.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        let loop = try getRunningLoop()
        try state.withLock { state in
            guard state.privateLoop != nil else { throw EventLoopError.childWatcherNotActive }
            state.handlers[pid] = ChildRegistration(callback: callback, loop: loop)
        }
        deliver(poll([pid]))
    }

    /// Removes the handler for `pid`: true if one was pending, false otherwise. The removed callback never runs.
    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool {
        state.withLock { $0.handlers.removeValue(forKey: pid) != nil }
    }

    /// Stops the private thread. Children still pending are handed to a waiting thread that still
    /// reports them.
    public func close() {
        let (loop, thread, signal, pending) = state.withLock { state in
            defer { state = State() }
            return (state.privateLoop, state.thread, state.signal, state.handlers)
        }
        loop?.stop()
        if let loop, !loop.inLoopThread {
            // The private thread closes its loop, which closes the signal handle; keep the wrapper
            // alive until then.
            thread?.join()
            withExtendedLifetime(signal) {}
        }
        for (pid, registration) in pending { OrphanReaper.adopt(pid, registration) }
    }

    private func pollAll() { deliver(poll(nil)) }

    /// Reaps `pids` (nil: every registered pid) that have exited and unregisters them.
    private func poll(_ pids: [pid_t]?) -> [(ChildRegistration, pid_t, Int32)] {
        let logger = self.logger
        return state.withLock { Reaper.reapRegistered(pids, in: &$0.handlers, logger: logger) }
    }

    private func deliver(_ exits: [(ChildRegistration, pid_t, Int32)]) {
        for (registration, pid, code) in exits { registration.deliver(pid: pid, returnCode: code, logger: logger) }
    }
}
