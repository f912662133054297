import CLibUV

/// What a stream's owner hears from it, on the loop thread, inside libuv's callbacks (none throws).
protocol UVStreamDelegate: AnyObject {
    /// Bytes read; the buffer is valid only during the call.
    func streamDidRead(_ bytes: UnsafeRawBufferPointer)
    /// Reading ended: nil at end of file, else the error (reading has stopped either way).
    func streamDidEndReading(_ error: UVError?)
    /// The handle has closed (its owner's `close`, or the loop's).
    func streamDidClose()
}

/// Base of the `uv_stream_t` wrappers (`UVTCP`, `UVPipe`): reading, writing, shutdown.
///
/// Events go to one delegate rather than to closures (no closure context per connection: B11).
/// The delegate is held strongly until the handle closes, so the owner lives as long as its
/// handle; `didClose` drops it (breaking the cycle) and then tells it. Loop thread only, like
/// every handle.
class UVStream: UVHandle {
    final var delegate: (any UVStreamDelegate)?

    final var stream: UnsafeMutablePointer<uv_stream_t> { raw.assumingMemoryBound(to: uv_stream_t.self) }

    /// Starts delivering reads to `onRead`/`onReadEnd`.
    final func startReading() throws(UVError) {
        try UVError.check(uv_read_start(stream, uvStreamAlloc, uvStreamRead), "uv_read_start")
    }

    /// Stops reading (harmless when not reading).
    final func stopReading() {
        uv_read_stop(stream)
    }

    /// Writes as much of `bytes` as the kernel takes now, without queueing (`uv_try_write`).
    /// - Returns: the number of bytes written (0 when the socket is full, or when a queued write is
    ///   still pending, since order must be kept), or a negative libuv error (`UV_EPIPE`, ...).
    final func tryWrite(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let rc = uv_try_write(stream, &buffer, 1)
        if rc == UV_EAGAIN.rawValue { return 0 }
        return Int(rc)
    }

    /// Queues `bytes` for writing (`uv_write`); `completion` gets 0 or a negative libuv error
    /// (`UV_ECANCELED` when the stream is closed first).
    /// - Warning: the caller keeps `bytes` alive and unchanged until `completion` runs.
    /// - Throws: `UVError` when the write cannot be queued (then `completion` is never called).
    final func write(_ bytes: UnsafeRawBufferPointer, completion: @escaping (Int32) -> Void) throws(UVError) {
        let request = UVRequest.allocate(UV_WRITE, completion)
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)),
                                 UInt32(bytes.count))
        // libuv copies the uv_buf_t array itself; only the bytes must outlive the call.
        let rc = uv_write(request.assumingMemoryBound(to: uv_write_t.self), stream, &buffer, 1) { request, status in
            guard let request else { return }
            UVRequest.finish(UnsafeMutableRawPointer(request), as: Int32.self)(status)
        }
        if rc < 0 {
            UVRequest.abandon(request, as: Int32.self)
            throw UVError(code: rc, operation: "uv_write")
        }
    }

    /// Shuts the write side down once queued writes are done (`uv_shutdown`).
    /// - Throws: `UVError` (ENOTCONN when not connected); `completion` is then never called.
    final func shutdown(completion: @escaping (Int32) -> Void) throws(UVError) {
        let request = UVRequest.allocate(UV_SHUTDOWN, completion)
        let rc = uv_shutdown(request.assumingMemoryBound(to: uv_shutdown_t.self), stream) { request, status in
            guard let request else { return }
            UVRequest.finish(UnsafeMutableRawPointer(request), as: Int32.self)(status)
        }
        if rc < 0 {
            UVRequest.abandon(request, as: Int32.self)
            throw UVError(code: rc, operation: "uv_shutdown")
        }
    }

    /// The underlying descriptor, or nil before one exists.
    final var fileDescriptor: Int32? {
        var fd: uv_os_fd_t = -1
        return uv_fileno(handlePointer, &fd) == 0 ? fd : nil
    }

    override func didClose() {
        let delegate = self.delegate
        self.delegate = nil
        delegate?.streamDidClose()
    }
}

/// libuv asks for a buffer just before each read: hand it the calling thread's receive buffer.
/// Reads complete synchronously in the read callback that follows, which copies out what it keeps.
private let uvStreamAlloc: uv_alloc_cb = { _, _, buffer in
    let receive = ReceiveBuffer.forCurrentThread()
    buffer?.pointee = uv_buf_init(receive.base.assumingMemoryBound(to: CChar.self), UInt32(ReceiveBuffer.size))
}

private let uvStreamRead: uv_read_cb = { stream, nread, buffer in
    guard let wrapper = uvWrapper(stream, as: UVStream.self) else { return }
    guard let delegate = wrapper.delegate else { return }
    if nread > 0 {
        delegate.streamDidRead(UnsafeRawBufferPointer(start: buffer?.pointee.base, count: nread))
    } else if nread == Int(UV_EOF.rawValue) {
        delegate.streamDidEndReading(nil)
    } else if nread < 0 {
        delegate.streamDidEndReading(UVError(code: Int32(nread), operation: "read"))
    }
    // nread == 0: EAGAIN, nothing to do.
}

/// The per-thread buffer libuv reads into (64 KiB, as libuv suggests): one per loop thread instead
/// of one per connection, so idle connections hold no read memory (uvloop does the same per loop).
final class ReceiveBuffer {
    static let size = 65_536
    let base = UnsafeMutableRawPointer.allocate(byteCount: ReceiveBuffer.size, alignment: 16)

    deinit { base.deallocate() }

    private static let slot = ThreadLocal<ReceiveBuffer>()

    @inline(__always)
    static func forCurrentThread() -> ReceiveBuffer {
        slot.get(orCreate: ReceiveBuffer.init)
    }
}
