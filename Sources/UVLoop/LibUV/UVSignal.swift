import CLibUV
import Glibc

/// `uv_signal_t`: a signal delivered to the loop's thread as a normal callback.
///
/// libuv installs one process-wide handler per signal and fans it out to every started
/// `uv_signal_t` on every loop (ARCHITECTURE fact 4); when the last one stops, it restores SIG_DFL.
final class UVSignal: UVHandle {
    var callback: (Int32) -> Void

    init(loop: UVRunLoop, _ callback: @escaping (Int32) -> Void) throws(UVError) {
        self.callback = callback
        try super.init(type: UV_SIGNAL, operation: "uv_signal_init") {
            uv_signal_init(loop.pointer, $0.assumingMemoryBound(to: uv_signal_t.self))
        }
    }

    private var signal: UnsafeMutablePointer<uv_signal_t> { raw.assumingMemoryBound(to: uv_signal_t.self) }

    /// Starts watching `signum`, and unblocks it on the calling thread (the loop's).
    ///
    /// A process started from a thread that blocks signals (a libdispatch worker, for one) begins
    /// with them blocked on every thread; then no thread takes the signal, it stays pending, and
    /// libuv never sees it. Unblocking it on the loop thread gives the kernel a thread to deliver to.
    /// - Throws: `UVError` (EINVAL for a signal number libuv rejects).
    func start(_ signum: Int32) throws(UVError) {
        Self.unblockOnThisThread(signum)
        try UVError.check(uv_signal_start(signal, { handle, signum in
            uvWrapper(handle, as: UVSignal.self)?.callback(signum)
        }, signum), "uv_signal_start(\(signum))")
    }

    func stop() { uv_signal_stop(signal) }

    /// Unblocks `signum` on the calling thread (see `start`). Also for libuv's own SIGCHLD handle,
    /// which `uv_spawn` starts without touching the mask.
    static func unblockOnThisThread(_ signum: Int32) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signum)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    override func didClose() { callback = { _ in } }
}
