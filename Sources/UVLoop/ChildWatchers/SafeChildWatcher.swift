import Glibc

/// Polls every registered child on SIGCHLD, on the main thread's running loop
/// (asyncio.SafeChildWatcher).
///
/// - Active only while attached (`attachLoop`, or `setEventLoop` on the main thread) to a loop
///   running on the main thread. Loops on other threads can spawn only while it is active;
///   otherwise spawning throws `EventLoopError.childWatcherNotActive` before anything starts.
/// - Reaps only the pids registered with it (`waitpid(pid, WNOHANG)` for each: O(n) per
///   SIGCHLD), so other code's children are left alone.
/// - `addChildHandler` polls the pid at once: a child that already exited is reported
///   synchronously, on the calling thread. Other exits are reported on the attached loop.
/// - `addChildHandler` with no attached loop throws `EventLoopError.childWatcherHasNoLoop`.
public final class SafeChildWatcher: ChildWatcher, @unchecked Sendable {
    private let core = MainLoopSIGCHLD()

    /// Creates a watcher; attach it to the main thread's loop (`setEventLoop` on the main thread does).
    public init() {
        core.onSIGCHLD = { [weak self] in self?.pollAll() }
    }

    /// Registers `callback` for `pid`'s exit and polls the pid at once: a child that already
    /// exited is reported synchronously, on the calling thread; later exits on the attached loop.
    /// - Throws: `EventLoopError.childWatcherHasNoLoop` when no loop is attached.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        try core.register(pid, callback)
        core.deliver(poll([pid]))
    }

    /// Removes the handler for `pid`: true if one was pending, false otherwise. The removed callback never runs.
    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool { core.removeChildHandler(pid) }
    /// Attaches the watcher to `loop` (see the type's documentation for what it does with it).
    public func attachLoop(_ loop: EventLoop?) { core.attachLoop(loop) }
    /// True when the watcher can report exits now; spawning with an inactive watcher throws `EventLoopError.childWatcherNotActive`.
    public func isActive() -> Bool { core.isActive() }
    /// Releases the watcher; pending children are handed to a waiting thread that still reports them.
    public func close() { core.close() }

    private func pollAll() {
        core.deliver(poll(nil))
    }

    /// Reaps `pids` (nil: every registered pid) that have exited and unregisters them.
    private func poll(_ pids: [pid_t]?) -> [(ChildRegistration, pid_t, Int32)] {
        let logger = core.logger
        return core.state.withLock { Reaper.reapRegistered(pids, in: &$0.handlers, logger: logger) }
    }
}
