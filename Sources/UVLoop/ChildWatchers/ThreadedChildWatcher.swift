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
public final class ThreadedChildWatcher: ChildWatcher, @unchecked Sendable {
    /// Stack of each waiting thread. Small: the thread only waits, reaps and hands off.
    static let waiterStackSize = 64 * 1024

    private struct Table {
        var handlers: [pid_t: ChildRegistration] = [:]
        /// Pids with a waiting thread.
        var waiting: Set<pid_t> = []
    }

    private let table = LockedValue(Table())
    private let logger = Logger(label: "uvloop.watcher")

    /// Creates a watcher; it needs no attaching.
    public init() {}

    /// Registers `callback` for `pid`'s exit, delivered on the loop running on this thread.
    /// - Throws: `EventLoopError.noRunningEventLoop` when no loop runs on this thread;
    ///   `UVError.EAGAIN` when no thread can be started. Nothing is registered then.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        let loop = try getRunningLoop()
        try adopt(pid, ChildRegistration(callback: callback, loop: loop))
    }

    /// Watches `pid` with a waiting thread and delivers to `registration` (nil: just reap it).
    /// Other watchers hand their pending children here when they can no longer watch them (their
    /// loop or the watcher closed), so no exit is lost and no zombie is left.
    /// - Throws: `UVError.EAGAIN` when no thread can be started.
    func adopt(_ pid: pid_t, _ registration: ChildRegistration?) throws {
        let needsWaiter = table.withLock { table -> Bool in
            table.handlers[pid] = registration
            return table.waiting.insert(pid).inserted
        }
        guard needsWaiter else { return }
        do {
            try System.startDetachedThread(stackSize: Self.waiterStackSize) { [self] in wait(for: pid) }
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
        let outcome: Reaper.Outcome = Reaper.waitUntilExitedPreferringPidfd(pid) ? Reaper.reap(pid) : .notAChild
        let returnCode = Reaper.returnCode(for: outcome, pid: pid, logger: logger) ?? 255
        let registration = table.withLock { table -> ChildRegistration? in
            table.waiting.remove(pid)
            return table.handlers.removeValue(forKey: pid)
        }
        registration?.deliver(pid: pid, returnCode: returnCode, logger: logger)
    }

    /// Removes the handler for `pid`: true if one was pending, false otherwise. The removed callback never runs.
    @discardableResult
    public func removeChildHandler(_ pid: pid_t) -> Bool {
        table.withLock { $0.handlers.removeValue(forKey: pid) != nil }
    }

    /// Attaches the watcher to `loop` (see the type's documentation for what it does with it).
    public func attachLoop(_ loop: EventLoop?) {}

    /// True when the watcher can report exits now; spawning with an inactive watcher throws `EventLoopError.childWatcherNotActive`.
    public func isActive() -> Bool { true }

    /// Releases the watcher; pending children are handed to a waiting thread that still reports them.
    public func close() {}

    /// The process-wide watcher that adopts other watchers' orphaned children.
    static let adopter = ThreadedChildWatcher()

}
