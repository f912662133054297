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
/// Active only while attached to a loop running on the main thread, as SafeChildWatcher.
public final class FastChildWatcher: ChildWatcher, @unchecked Sendable {
    /// How many exits of unregistered pids are kept.
    public static let storedExitLimit = 4096

    private let core = MainLoopSIGCHLD()

    /// Creates a watcher; attach it to the main thread's loop (`setEventLoop` on the main thread does).
    public init() {
        core.onSIGCHLD = { [weak self] in self?.reapAll() }
    }

    /// Registers `callback`, or calls it at once with a stored exit.
    /// - Throws: `EventLoopError.childWatcherHasNoLoop` when no loop is attached.
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        let registration = ChildRegistration(callback: callback, loop: nil)
        let logger = core.logger
        let immediate = try core.state.withLock { state -> Int32? in
            guard state.attached != nil else { throw EventLoopError.childWatcherHasNoLoop }
            if let code = state.storedExits.removeValue(forKey: pid) {
                state.storedOrder.removeAll { $0 == pid }
                return code
            }
            // Neither stored nor an unreaped child: someone else took its status (D5).
            if !Reaper.lock.withLock({ Reaper.isUnreapedChild(pid) }) {
                logger.warning("Unknown child process pid \(pid), will report returncode 255")
                return 255
            }
            state.handlers[pid] = registration
            return nil
        }
        if let immediate { registration.deliver(pid: pid, returnCode: immediate, logger: logger) }
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

    /// On SIGCHLD (attached loop's thread): reap until nothing is left.
    private func reapAll() {
        let logger = core.logger
        let exits = core.state.withLock { state -> [(ChildRegistration, pid_t, Int32)] in
            var exits: [(ChildRegistration, pid_t, Int32)] = []
            var noChildrenLeft = false
            Reaper.lock.withLock {
                reaping: while true {
                    switch Reaper.reapAnyLocked() {
                    case .exited(let pid, let status):
                        let code = Reaper.returnCode(status)
                        if let registration = state.handlers.removeValue(forKey: pid) {
                            exits.append((registration, pid, code))
                        } else {
                            Self.store(pid, code, in: &state, logger: logger)
                        }
                    case .none:
                        break reaping
                    case .noChildren:
                        noChildrenLeft = true
                        break reaping
                    }
                }
            }
            if noChildrenLeft && !state.handlers.isEmpty {
                // Registered, yet no child is left: their statuses went to another reaper.
                for (pid, registration) in state.handlers {
                    logger.warning("Child process pid \(pid) was reaped elsewhere, will report returncode 255")
                    exits.append((registration, pid, 255))
                }
                state.handlers = [:]
            }
            return exits
        }
        core.deliver(exits)
    }

    /// Keeps an exit for a later `addChildHandler`. Under `state`'s lock.
    private static func store(_ pid: pid_t, _ code: Int32, in state: inout MainLoopSIGCHLD.State, logger: Logger) {
        if state.storedExits.updateValue(code, forKey: pid) == nil { state.storedOrder.append(pid) }
        if state.storedOrder.count > storedExitLimit {
            let dropped = state.storedOrder.removeFirst()
            if let code = state.storedExits.removeValue(forKey: dropped) {
                logger.warning("Caught subprocess termination from unknown pid: \(dropped) -> \(code) (dropped)")
            }
        }
    }
}
