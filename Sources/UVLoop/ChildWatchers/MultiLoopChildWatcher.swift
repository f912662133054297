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
/// - `close()` stops the private thread; children still pending are handed to a waiting thread
///   that still reports them.
public final class MultiLoopChildWatcher: ChildWatcher, TerminationReporting {
    private struct State: Sendable {
        var handlers: [pid_t: ChildRegistration] = [:]
        var privateLoop: EventLoop?
        var thread: JoinableThread?
        /// The SIGCHLD handle on the private loop.
        var signal: LoopBound<UVSignal>?
    }

    /// Lock order: `state`, then the reaper's lock.
    private let state = LockedValue(State())
    let reaper: Reaper

    /// Creates a watcher; it becomes active at its first `attachLoop`.
    /// - Parameter logger: where the watcher logs (statuses taken by another reaper, children it
    ///   hands to a waiting thread); by default the label `uvloop.watcher`.
    public convenience init(logger: Logger = Logger(label: "uvloop.watcher")) {
        self.init(reaper: Reaper.system.logging(to: logger))
    }

    /// A watcher over `reaper`'s kernel (tests use a fake one).
    init(reaper: Reaper) { self.reaper = reaper }

    /// Starts the private SIGCHLD thread if it is not running; the argument is ignored.
    public func attachLoop(_ loop: EventLoop?) {
        state.withLock { state in
            guard state.privateLoop == nil else { return }
            do {
                let privateLoop = try EventLoop()
                privateLoop.schedule { [weak self] in self?.installSIGCHLD(on: privateLoop) }
                state.thread = try JoinableThread {
                    try? privateLoop.runForever()
                    try? privateLoop.close()
                }
                state.privateLoop = privateLoop
            } catch {
                reaper.logger.error("MultiLoopChildWatcher cannot start its SIGCHLD thread: \(error)")
            }
        }
    }

    /// On the private loop's thread.
    private func installSIGCHLD(on loop: EventLoop) {
        do {
            let signal = try UVSignal(loop: loop.uvLoop) { [weak self] _ in self?.reapPass() }
            state.withLock { $0.signal = LoopBound(signal, loop: loop) }
            try signal.start(SIGCHLD)
        } catch {
            reaper.logger.error("MultiLoopChildWatcher cannot watch SIGCHLD: \(error)")
        }
        reapPass()   // exits that happened before the handler was installed
    }

    /// True from the first `attachLoop` until `close()`.
    public func isActive() -> Bool { state.withLock { $0.privateLoop != nil } }

    /// Registers `callback`, delivered on the loop running on this thread.
    /// - Throws: `EventLoopError.noRunningEventLoop` when no loop runs on this thread;
    ///   `EventLoopError.childWatcherNotActive` before the first `attachLoop` or after `close()`.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        try addTerminationHandler(pid, returnCodeCallback(callback))
    }

    /// `addChildHandler`, with the whole termination.
    func addTerminationHandler(_ pid: pid_t, _ callback: @escaping TerminationCallback) throws {
        let loop = try getRunningLoop()
        let reaper = self.reaper
        let exits = try state.withLock { state -> [ChildExit] in
            guard state.privateLoop != nil else { throw EventLoopError.childWatcherNotActive }
            state.handlers[pid] = ChildRegistration(pid: pid, callback: callback, loop: loop)
            return reaper.reapRegistered([pid], in: &state.handlers)
        }
        ChildExit.deliver(exits, logger: reaper.logger)
    }

    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool {
        state.withLock { $0.handlers.removeValue(forKey: pid) != nil }
    }

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
        for (pid, registration) in pending { reaper.adopt(pid, registration) }
    }

    /// Answers one SIGCHLD: reaps every registered pid that has exited (tests call it directly).
    func reapPass() {
        let reaper = self.reaper
        let exits = state.withLock { reaper.reapRegistered(nil, in: &$0.handlers) }
        ChildExit.deliver(exits, logger: reaper.logger)
    }
}
