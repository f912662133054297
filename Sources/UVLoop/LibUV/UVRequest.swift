import CLibUV

/// Memory and completion of one libuv request (`uv_write_t`, `uv_connect_t`, `uv_shutdown_t`,
/// `uv_udp_send_t`, `uv_getaddrinfo_t`).
///
/// Lifetime, as for handles: the request's memory is allocated here and freed only when libuv calls
/// its callback (closing a handle calls the callbacks of its pending requests with `UV_ECANCELED`
/// before the handle's close callback). `req.data` holds a +1 reference on the completion box,
/// taken back in the callback. When the `uv_xxx` call itself fails, libuv never calls back:
/// `abandon` then frees both at once.
enum UVRequest {
    /// Holds a request's Swift completion until libuv calls back.
    final class Completion<Result> {
        let body: (Result) -> Void
        init(_ body: @escaping (Result) -> Void) { self.body = body }
    }

    /// Allocates a request of `type` whose `data` is a retained box around `completion`.
    static func allocate<Result>(_ type: uv_req_type, _ completion: @escaping (Result) -> Void) -> UnsafeMutableRawPointer {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: uv_req_size(type), alignment: 16)
        let box = Unmanaged.passRetained(Completion(completion)).toOpaque()
        uv_req_set_data(raw.assumingMemoryBound(to: uv_req_t.self), box)
        return raw
    }

    /// In a request callback: frees the request and returns its completion (called by the caller
    /// after the memory is gone, so a completion that starts another request cannot see it).
    static func finish<Result>(_ request: UnsafeMutableRawPointer, as: Result.Type) -> (Result) -> Void {
        let data = uv_req_get_data(request.assumingMemoryBound(to: uv_req_t.self))
        request.deallocate()
        guard let data else { return { _ in } }
        return Unmanaged<Completion<Result>>.fromOpaque(data).takeRetainedValue().body
    }

    /// The `uv_xxx` call failed synchronously: libuv will never call back, so free everything now.
    static func abandon<Result>(_ request: UnsafeMutableRawPointer, as: Result.Type) {
        if let data = uv_req_get_data(request.assumingMemoryBound(to: uv_req_t.self)) {
            Unmanaged<Completion<Result>>.fromOpaque(data).release()
        }
        request.deallocate()
    }
}
