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

    /// Starts watching `signum`, and unblocks it on the calling thread (the loop's): see
    /// `System.unblockOnThisThread`.
    /// - Throws: `UVError` (EINVAL for a signal number libuv rejects).
    func start(_ signum: Int32) throws(UVError) {
        System.unblockOnThisThread(signum)
        try UVError.check(uv_signal_start(signal, { handle, signum in
            uvWrapper(handle, as: UVSignal.self)?.callback(signum)
        }, signum), "uv_signal_start(\(signum))")
    }

    func stop() { uv_signal_stop(signal) }

    override func didClose() { callback = { _ in } }
}
