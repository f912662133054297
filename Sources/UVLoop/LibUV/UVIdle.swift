import CLibUV

/// `uv_idle_t`: runs once per loop iteration while started, and makes the poll phase non-blocking.
final class UVIdle: UVHandle {
    var callback: () -> Void

    init(loop: UVRunLoop, _ callback: @escaping () -> Void) throws(UVError) {
        self.callback = callback
        try super.init(type: UV_IDLE, operation: "uv_idle_init") {
            uv_idle_init(loop.pointer, $0.assumingMemoryBound(to: uv_idle_t.self))
        }
    }

    func start() {
        uv_idle_start(raw.assumingMemoryBound(to: uv_idle_t.self)) { h in uvWrapper(h, as: UVIdle.self)?.callback() }
    }

    func stop() { uv_idle_stop(raw.assumingMemoryBound(to: uv_idle_t.self)) }

    override func didClose() { callback = {} }
}
