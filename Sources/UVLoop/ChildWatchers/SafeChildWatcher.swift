import Glibc
import Logging

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
/// - `close()` detaches; children still pending are handed to a waiting thread that still
///   reports them.
public final class SafeChildWatcher: ChildWatcher, TerminationReporting {
    private let sigchld: MainLoopSIGCHLD

    /// Creates a watcher; attach it to the main thread's loop (`setEventLoop` on the main thread does).
    /// - Parameter logger: where the watcher logs (statuses taken by another reaper, children it
    ///   hands to a waiting thread); by default the label `uvloop.watcher`.
    public convenience init(logger: Logger = Logger(label: "uvloop.watcher")) {
        self.init(reaper: Reaper.system.logging(to: logger))
    }

    /// A watcher over `reaper`'s kernel (tests use a fake one).
    init(reaper: Reaper) { sigchld = MainLoopSIGCHLD(reaping: .registered, reaper: reaper) }

    /// Registers `callback` for `pid`'s exit and polls the pid at once: a child that already
    /// exited is reported synchronously, on the calling thread; later exits on the attached loop.
    /// - Throws: `EventLoopError.childWatcherHasNoLoop` when no loop is attached.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        try addTerminationHandler(pid, returnCodeCallback(callback))
    }

    /// `addChildHandler`, with the whole termination.
    func addTerminationHandler(_ pid: pid_t, _ callback: @escaping TerminationCallback) throws {
        try sigchld.register(pid, callback)
    }

    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool { sigchld.removeChildHandler(pid) }
    public func attachLoop(_ loop: EventLoop?) { sigchld.attachLoop(loop) }
    public func isActive() -> Bool { sigchld.isActive() }
    public func close() { sigchld.close() }

    /// What a SIGCHLD on the attached loop runs (tests call it directly).
    func reapPass() { sigchld.reapPass() }
}
