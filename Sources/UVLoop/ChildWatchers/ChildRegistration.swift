import Glibc
import Logging

/// A callback of `addChildHandler`, with the whole termination (the public protocol passes its
/// return code on).
typealias TerminationCallback = @Sendable (_ pid: pid_t, _ termination: Termination) -> Void

/// One registered exit callback and the loop it is delivered on.
struct ChildRegistration: Sendable {
    let callback: TerminationCallback
    /// Where the callback runs; nil to call it on the thread that saw the exit.
    let loop: EventLoop?
    /// Keeps the orphan reaper (`becomeChildSubreaper()`) away from the pid while registered.
    let claim: ChildClaim

    init(pid: pid_t, callback: @escaping TerminationCallback, loop: EventLoop?) {
        self.callback = callback
        self.loop = loop
        claim = ChildClaim(pid)
    }

    /// Runs the callback on its loop, in a later batch (never inside the caller). If that loop
    /// has closed, calls it right here instead (the callback is required to be thread-safe), so
    /// an exit status is never lost.
    func deliver(pid: pid_t, termination: Termination, logger: Logger) {
        let callback = self.callback
        guard let loop else {
            callback(pid, termination)
            return
        }
        if !loop.schedule({ callback(pid, termination) }) {
            logger.debug("Loop that handles pid \(pid) is closed; delivering its exit on the reaping thread")
            callback(pid, termination)
        }
    }
}

/// An exit collected under a watcher's lock, delivered after the lock is released.
struct ChildExit {
    let registration: ChildRegistration
    let pid: pid_t
    let termination: Termination

    /// Delivers every exit, in order, on the calling thread (or the registrations' loops).
    static func deliver(_ exits: [ChildExit], logger: Logger) {
        for exit in exits {
            exit.registration.deliver(pid: exit.pid, termination: exit.termination, logger: logger)
        }
    }
}

/// UVLoop's own watchers report the whole termination (a core dump, the signal), not only the
/// return code the public protocol carries; `ChildProcess.termination` comes from here.
protocol TerminationReporting: ChildWatcher {
    /// `addChildHandler`, with the termination.
    func addTerminationHandler(_ pid: pid_t, _ callback: @escaping TerminationCallback) throws
}

/// The public callback, fed from a termination callback.
func returnCodeCallback(_ callback: @escaping @Sendable (pid_t, Int32) -> Void) -> TerminationCallback {
    { pid, termination in callback(pid, termination.returnCode) }
}

/// How `createSubprocessExec` signals a child it started: through the reaper's checked kill, or
/// through the child's pidfd (libuv-reaped children).
typealias ChildSignaller = @Sendable (_ pid: pid_t, _ signal: Int32) throws -> Void

/// How `ChildProcess.terminate(gracePeriod:)` signals the process group a child leads, without
/// ever reaching a group whose leader was reaped (its id could then be another group's).
typealias GroupSignaller = @Sendable (_ leader: pid_t, _ signal: Int32) async throws -> Void

/// A watcher that starts the children it watches itself: `LibuvChildWatcher`, where libuv reaps
/// what `uv_spawn` started. `createSubprocessExec` hands it the spawn plan instead of spawning
/// with `posix_spawn`.
protocol SpawningChildWatcher: ChildWatcher {
    /// Starts the child `plan` describes on `loop` (called on its thread).
    /// - Returns: its pid and how to signal it and its process group.
    /// - Throws: `UVError` from the spawn; nothing is left running.
    func spawn(_ plan: SpawnPlan, on loop: EventLoop) throws -> SpawnedChild
}

/// A child a `SpawningChildWatcher` started.
struct SpawnedChild: Sendable {
    let pid: pid_t
    let signaller: ChildSignaller
    let groupSignaller: GroupSignaller
}
