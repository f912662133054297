import Glibc
import Logging

/// The default watcher: one small waiting thread per child (asyncio.ThreadedChildWatcher).
///
/// Works with loops on any thread, needs no signal and no main-thread loop, and costs O(1) per
/// exit; each pending child costs one thread with a 64 KiB stack (a few KiB resident).
///
/// - `addChildHandler` must be called on a thread running an `EventLoop`; the callback runs on
///   that loop. Registering a pid again replaces its callback (one waiting thread per pid).
/// - `removeChildHandler` really removes: the removed callback never runs (the child is still
///   reaped when it exits, so it never stays a zombie).
/// - `isActive()` is always true; `attachLoop` and `close` do nothing (waiting threads finish
///   when their child exits).
///
/// The waiting thread observes the exit by polling the child's pidfd where pidfds work (so many
/// waiting threads do not slow each exit down), else with `waitid(WNOWAIT)`; then it reaps under
/// the reaper's lock, so a `ChildProcess` never signals a reaped pid.
public final class ThreadedChildWatcher: ChildWatcher, TerminationReporting {
    private struct Table {
        var handlers: [pid_t: ChildRegistration] = [:]
        /// Pids with a waiting thread.
        var waiting: Set<pid_t> = []
    }

    private let table = LockedValue(Table())
    let reaper: Reaper

    /// Creates a watcher; it needs no attaching.
    /// - Parameter logger: where the watcher logs (statuses taken by another reaper, children it
    ///   hands to a waiting thread); by default the label `uvloop.watcher`.
    public convenience init(logger: Logger = Logger(label: "uvloop.watcher")) {
        self.init(reaper: Reaper.system.logging(to: logger))
    }

    /// A watcher over `reaper`'s kernel (tests use a fake one).
    init(reaper: Reaper) { self.reaper = reaper }

    /// Registers `callback` for `pid`'s exit, delivered on the loop running on this thread.
    /// - Throws: `EventLoopError.noRunningEventLoop` when no loop runs on this thread;
    ///   `UVError.EAGAIN` when no thread can be started. Nothing is registered then.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        try addTerminationHandler(pid, returnCodeCallback(callback))
    }

    /// `addChildHandler`, with the whole termination.
    func addTerminationHandler(_ pid: pid_t, _ callback: @escaping TerminationCallback) throws {
        let loop = try getRunningLoop()
        let registration = ChildRegistration(pid: pid, callback: callback, loop: loop)
        let needsWaiter = table.withLock { table -> Bool in
            table.handlers[pid] = registration
            return table.waiting.insert(pid).inserted
        }
        guard needsWaiter else { return }
        do {
            try Threads.startDetached(stackSize: Reaper.waiterStackSize) { [self] in wait(for: pid) }
        } catch {
            table.withLock { table in
                table.handlers[pid] = nil
                table.waiting.remove(pid)
            }
            throw error
        }
    }

    /// The waiting thread's body.
    private func wait(for pid: pid_t) {
        let termination = reaper.waitAndReap(pid)
        let registration = table.withLock { table -> ChildRegistration? in
            table.waiting.remove(pid)
            return table.handlers.removeValue(forKey: pid)
        }
        registration?.deliver(pid: pid, termination: termination, logger: reaper.logger)
    }

    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool {
        table.withLock { $0.handlers.removeValue(forKey: pid) != nil }
    }

    /// Does nothing: each registration uses the loop running on its thread.
    public func attachLoop(_ loop: EventLoop?) {}

    /// Always true.
    public func isActive() -> Bool { true }

    /// Does nothing: waiting threads finish when their child exits, and still report it.
    public func close() {}
}
