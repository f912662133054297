import CLibUV

/// `uv_async_t`: the only handle another thread may touch, through `send()`.
final class UVAsync: UVHandle {
    var callback: () -> Void

    init(loop: UVRunLoop, _ callback: @escaping () -> Void) throws(UVError) {
        self.callback = callback
        try super.init(type: UV_ASYNC, operation: "uv_async_init") {
            uv_async_init(loop.pointer, $0.assumingMemoryBound(to: uv_async_t.self)) { h in
                uvWrapper(h, as: UVAsync.self)?.callback()
            }
        }
    }

    /// Wakes the loop; coalesces with other sends not yet seen. Thread-safe, but the caller must
    /// guarantee the handle is not being closed concurrently.
    func send() { uv_async_send(raw.assumingMemoryBound(to: uv_async_t.self)) }

    override func didClose() { callback = {} }
}
