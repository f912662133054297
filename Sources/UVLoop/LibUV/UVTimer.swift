import CLibUV

/// `uv_timer_t`: one-shot or repeating timer on the loop's millisecond clock.
final class UVTimer: UVHandle {
    var callback: () -> Void

    init(loop: UVRunLoop, _ callback: @escaping () -> Void) throws(UVError) {
        self.callback = callback
        try super.init(type: UV_TIMER, operation: "uv_timer_init") {
            uv_timer_init(loop.pointer, $0.assumingMemoryBound(to: uv_timer_t.self))
        }
    }

    private var timer: UnsafeMutablePointer<uv_timer_t> { raw.assumingMemoryBound(to: uv_timer_t.self) }

    /// Fires after `timeout` ms of the loop clock (then every `repeat` ms when non-zero).
    func start(timeout: UInt64, repeat: UInt64 = 0) {
        uv_timer_start(timer, { t in uvWrapper(t, as: UVTimer.self)?.callback() }, timeout, `repeat`)
    }

    func stop() { uv_timer_stop(timer) }

    override func didClose() { callback = {} }
}
