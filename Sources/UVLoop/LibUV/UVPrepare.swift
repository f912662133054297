import CLibUV

/// `uv_prepare_t`: runs once per loop iteration while started, right before the poll for I/O.
final class UVPrepare: UVHandle {
    var callback: () -> Void

    init(loop: UVRunLoop, _ callback: @escaping () -> Void) throws(UVError) {
        self.callback = callback
        try super.init(type: UV_PREPARE, operation: "uv_prepare_init") {
            uv_prepare_init(loop.pointer, $0.assumingMemoryBound(to: uv_prepare_t.self))
        }
    }

    func start() {
        uv_prepare_start(raw.assumingMemoryBound(to: uv_prepare_t.self)) { h in uvWrapper(h, as: UVPrepare.self)?.callback() }
    }

    func stop() { uv_prepare_stop(raw.assumingMemoryBound(to: uv_prepare_t.self)) }

    override func didClose() { callback = {} }
}
