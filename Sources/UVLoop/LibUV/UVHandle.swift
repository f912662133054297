import CLibUV

/// Base of the 1:1 wrappers of libuv handles.
///
/// Lifetime: the handle's memory is allocated here and freed only in its close callback. `close()`
/// takes a +1 reference on the wrapper that the close callback releases, so the wrapper outlives
/// every callback libuv can still make. `handle.data` holds an unretained pointer to the wrapper.
class UVHandle {
    /// The `uv_xxx_t` memory, sized with `uv_handle_size`.
    let raw: UnsafeMutableRawPointer
    /// True once `close()` was called. Loop thread only.
    private(set) var isClosing = false

    /// `raw` as the generic `uv_handle_t` every handle starts with.
    var handlePointer: UnsafeMutablePointer<uv_handle_t> { raw.assumingMemoryBound(to: uv_handle_t.self) }

    /// Allocates the handle and runs `initialize` (the `uv_xxx_init` call) on it.
    /// - Parameter initializedOnFailure: true when `initialize` leaves the handle initialised even
    ///   when it fails (`uv_spawn`): it is then closed, and freed in its close callback.
    /// - Throws: `UVError` from `initialize`; nothing is left on the loop.
    init(type: uv_handle_type, operation: String, initializedOnFailure: Bool = false,
         _ initialize: (UnsafeMutableRawPointer) -> Int32) throws(UVError) {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: uv_handle_size(type), alignment: 16)
        let rc = initialize(raw)
        if rc < 0 {
            if initializedOnFailure {
                let handle = raw.assumingMemoryBound(to: uv_handle_t.self)
                uv_handle_set_data(handle, nil)
                uv_close(handle, uvHandleCloseCallback)
            } else {
                raw.deallocate()
            }
            throw UVError(code: rc, operation: operation)
        }
        self.raw = raw
        uv_handle_set_data(handlePointer, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Starts closing the handle. Idempotent. Loop thread only.
    final func close() {
        guard !isClosing else { return }
        isClosing = true
        _ = Unmanaged.passRetained(self)
        uv_close(handlePointer, uvHandleCloseCallback)
    }

    /// Called from the close callback, before the memory is freed. Subclasses release what they hold.
    func didClose() {}

    /// Called once the handle has closed, whoever closed it (its owner, or the loop's `close()`).
    /// Loop thread.
    final var whenClosed: (() -> Void)?

    /// `uv_ref`/`uv_unref`: whether this handle alone keeps `uv_run` going.
    final var keepsLoopAlive: Bool {
        get { uv_has_ref(handlePointer) != 0 }
        set { newValue ? uv_ref(handlePointer) : uv_unref(handlePointer) }
    }

    deinit {
        if !isClosing {
            // A wrapper dropped without close() would leave libuv with a dangling data pointer.
            // Detach it; the loop's close() walks and frees the orphaned handle.
            uv_handle_set_data(handlePointer, nil)
            assertionFailure("UVHandle of type \(uv_handle_get_type(handlePointer)) deallocated without close()")
        }
    }

    /// The wrapper that owns `handle`, if any.
    static func wrapper(_ handle: UnsafeMutableRawPointer?) -> UVHandle? {
        guard let handle else { return nil }
        guard let data = uv_handle_get_data(handle.assumingMemoryBound(to: uv_handle_t.self)) else { return nil }
        return Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue()
    }

    /// Closes any handle of the loop: through its wrapper, or directly when it has none.
    static func close(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        if let wrapper = wrapper(UnsafeMutableRawPointer(handle)) {
            wrapper.close()
        } else {
            uv_close(handle, uvHandleCloseCallback)
        }
    }
}

/// The one close callback of every handle: releases the wrapper's +1, then frees the memory.
private let uvHandleCloseCallback: uv_close_cb = { handle in
    guard let handle else { return }
    if let data = uv_handle_get_data(handle) {
        let wrapper = Unmanaged<UVHandle>.fromOpaque(data).takeRetainedValue()
        uv_handle_set_data(handle, nil)
        wrapper.didClose()
        let whenClosed = wrapper.whenClosed
        wrapper.whenClosed = nil
        whenClosed?()
    }
    UnsafeMutableRawPointer(handle).deallocate()
}

/// Recovers the wrapper of type `T` from a callback's handle pointer.
@inline(__always)
func uvWrapper<T: UVHandle, P>(_ pointer: UnsafeMutablePointer<P>?, as: T.Type) -> T? {
    guard let pointer, let data = uv_handle_get_data(UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_handle_t.self)) else {
        return nil
    }
    return unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: T.self)
}
