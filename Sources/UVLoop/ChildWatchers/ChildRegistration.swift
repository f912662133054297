import Glibc
import Logging

/// One registered exit callback and the loop it is delivered on.
struct ChildRegistration: Sendable {
    let callback: @Sendable (pid_t, Int32) -> Void
    /// Where the callback runs; nil to call it on the thread that saw the exit.
    let loop: EventLoop?

    /// Runs the callback on its loop. If that loop has closed, calls it right here instead (the
    /// callback is required to be thread-safe), so an exit status is never lost.
    func deliver(pid: pid_t, returnCode: Int32, logger: Logger) {
        let callback = self.callback
        guard let loop else {
            callback(pid, returnCode)
            return
        }
        if !loop.trySubmit({ callback(pid, returnCode) }) {
            logger.debug("Loop that handles pid \(pid) is closed; delivering its exit on the reaping thread")
            callback(pid, returnCode)
        }
    }
}

extension Reaper {
    /// Reaps the registered `pids` (nil: every registered pid) that have exited, removes them from
    /// `handlers` and returns what to deliver (outside the caller's lock). For the watchers that
    /// poll each pid on SIGCHLD (Safe, MultiLoop); the caller holds the lock guarding `handlers`.
    static func reapRegistered(_ pids: [pid_t]?, in handlers: inout [pid_t: ChildRegistration],
                               logger: Logger) -> [(ChildRegistration, pid_t, Int32)] {
        lock.withLock {
            var exits: [(ChildRegistration, pid_t, Int32)] = []
            for pid in pids ?? Array(handlers.keys) {
                guard let registration = handlers[pid] else { continue }
                guard let code = returnCode(for: reapLocked(pid), pid: pid, logger: logger) else { continue }
                handlers[pid] = nil
                exits.append((registration, pid, code))
            }
            return exits
        }
    }

    /// The return code for a reaping outcome: nil while running; 255 with a warning when the
    /// status was taken by someone else or the pid is not our child (asyncio's rule, D8).
    static func returnCode(for outcome: Outcome, pid: pid_t, logger: Logger) -> Int32? {
        switch outcome {
        case .exited(let status):
            return returnCode(status)
        case .running:
            return nil
        case .notAChild:
            logger.warning("Unknown child process pid \(pid), will report returncode 255")
            return 255
        }
    }
}

/// Reaps children nobody watches any more (their loop closed, or their watcher was closed or
/// replaced), so none is left a zombie, and still reports their exit when a callback is known.
enum OrphanReaper {
    static let logger = Logger(label: "uvloop.watcher")

    static func adopt(_ pid: pid_t, _ registration: ChildRegistration? = nil) {
        do {
            try ThreadedChildWatcher.adopter.adopt(pid, registration)
        } catch {
            logger.error("Cannot start a thread to reap orphaned child \(pid): \(error)")
        }
    }
}
