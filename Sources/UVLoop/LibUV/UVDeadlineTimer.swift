import CLibUV
import Glibc

/// A one-shot timer at an absolute time on the monotonic clock, to the nanosecond: a timerfd
/// watched by a `uv_poll_t` (SwiftNIO's epoll selector uses a timerfd the same way).
///
/// libuv 1.44's `uv_timer_t` counts whole milliseconds from a clock floored to the millisecond, so
/// a timer that must never fire early, armed through it, fires up to 2 ms late (1 ms on average).
/// The timerfd fires within the kernel's timer slack (50 µs) of its deadline, never before.
final class UVDeadlineTimer: UVHandle {
    private var callback: () -> Void
    private let fileDescriptor: Int32

    /// - Throws: `UVError` (EMFILE when out of descriptors); nothing is left open.
    init(loop: UVRunLoop, _ callback: @escaping () -> Void) throws(UVError) {
        let fd = cuv_timerfd_create()
        guard fd >= 0 else { throw UVError(code: fd, operation: "timerfd_create") }
        self.callback = callback
        self.fileDescriptor = fd
        do {
            try super.init(type: UV_POLL, operation: "uv_poll_init(timerfd)") {
                uv_poll_init(loop.pointer, $0.assumingMemoryBound(to: uv_poll_t.self), fd)
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        let rc = uv_poll_start(raw.assumingMemoryBound(to: uv_poll_t.self), Int32(UV_READABLE.rawValue)) { handle, _, _ in
            guard let timer = uvWrapper(handle, as: UVDeadlineTimer.self) else { return }
            cuv_timerfd_clear(timer.fileDescriptor)
            timer.callback()
        }
        if rc != 0 {
            close()   // the descriptor goes in the close callback (didClose)
            throw UVError(code: rc, operation: "uv_poll_start(timerfd)")
        }
    }

    /// Fires once when the monotonic clock (`UVRunLoop.hrtime()`) reaches `deadline` nanoseconds;
    /// at once when it has passed. Replaces the previous deadline.
    func arm(at deadline: UInt64) {
        // 0 would disarm: the earliest expiry that still fires is 1 ns.
        let rc = cuv_timerfd_arm(fileDescriptor, max(deadline, 1))
        // Fails only for a bad descriptor or value, neither of which can happen here.
        if rc != 0 { fatalError("timerfd_settime failed: \(UVError(code: rc, operation: "timerfd_settime"))") }
    }

    /// The poll handle has closed: the descriptor can go.
    override func didClose() {
        callback = {}
        Glibc.close(fileDescriptor)
    }
}
