import Glibc
import Logging

/// One registered exit callback and the loop it is delivered on.
struct ChildRegistration: Sendable {
    let callback: @Sendable (pid_t, Int32) -> Void
    /// Where the callback runs; nil to call it on the thread that saw the exit.
    let loop: EventLoop?

    /// Runs the callback on its loop, in a later batch (never inside the caller). If that loop
    /// has closed, calls it right here instead (the callback is required to be thread-safe), so
    /// an exit status is never lost.
    func deliver(pid: pid_t, returnCode: Int32, logger: Logger) {
        let callback = self.callback
        guard let loop else {
            callback(pid, returnCode)
            return
        }
        if !loop.schedule({ callback(pid, returnCode) }) {
            logger.debug("Loop that handles pid \(pid) is closed; delivering its exit on the reaping thread")
            callback(pid, returnCode)
        }
    }
}

/// An exit collected under a watcher's lock, delivered after the lock is released.
struct ChildExit {
    let registration: ChildRegistration
    let pid: pid_t
    let returnCode: Int32

    /// Delivers every exit, in order, on the calling thread (or the registrations' loops).
    static func deliver(_ exits: [ChildExit], logger: Logger) {
        for exit in exits {
            exit.registration.deliver(pid: exit.pid, returnCode: exit.returnCode, logger: logger)
        }
    }
}

/// How `createSubprocessExec` signals a child it started: through the reaper's checked kill, or
/// through the child's pidfd (libuv-reaped children).
typealias ChildSignaller = @Sendable (_ pid: pid_t, _ signal: Int32) throws -> Void

/// A watcher that starts the children it watches itself: `LibuvChildWatcher`, where libuv reaps
/// what `uv_spawn` started. `createSubprocessExec` hands it the spawn plan instead of spawning
/// with `posix_spawn`.
protocol SpawningChildWatcher: ChildWatcher {
    /// Starts the child `plan` describes on `loop` (called on its thread).
    /// - Returns: its pid and how to signal it.
    /// - Throws: `UVError` from the spawn; nothing is left running.
    func spawn(_ plan: SpawnPlan, on loop: EventLoop) throws -> (pid: pid_t, signaller: ChildSignaller)
}
