import Glibc
import Logging

/// Reaps every exited child with `waitpid(-1, WNOHANG)` on SIGCHLD, on the main thread's running
/// loop (asyncio.FastChildWatcher).
///
/// O(1) per exit, but it takes the status of every child of the process, also those other code
/// waits for. Exits of pids not registered yet are kept (at most `storedExitLimit`, the oldest
/// dropped with a warning) and delivered when `addChildHandler` is called for them, on the
/// calling thread. A registered pid whose status someone else took reports 255 with a warning
/// instead of hanging.
///
/// Active only while attached to a loop running on the main thread, as SafeChildWatcher; `close()`
/// detaches, forgets the stored exits, and hands children still pending to a waiting thread that
/// still reports them.
public final class FastChildWatcher: ChildWatcher, TerminationReporting {
    /// How many exits of unregistered pids are kept.
    public static let storedExitLimit = MainLoopSIGCHLD.storedExitLimit

    private let sigchld: MainLoopSIGCHLD

    /// Creates a watcher; attach it to the main thread's loop (`setEventLoop` on the main thread does).
    /// - Parameter logger: where the watcher logs (statuses taken by another reaper, children it
    ///   hands to a waiting thread); by default the label `uvloop.watcher`.
    public convenience init(logger: Logger = Logger(label: "uvloop.watcher")) {
        self.init(reaper: Reaper.system.logging(to: logger))
    }

    /// A watcher over `reaper`'s kernel (tests use a fake one).
    init(reaper: Reaper) { sigchld = MainLoopSIGCHLD(reaping: .everyChild, reaper: reaper) }

    /// Registers `callback`, or calls it at once with a stored exit.
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
