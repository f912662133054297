import CLibUV
import Glibc

/// `uv_pipe_t`: a pipe descriptor, or a Unix-domain stream socket (listener or connection).
final class UVPipe: UVStream {
    init(loop: UVRunLoop) throws(UVError) {
        try super.init(type: UV_NAMED_PIPE, operation: "uv_pipe_init") {
            uv_pipe_init(loop.pointer, $0.assumingMemoryBound(to: uv_pipe_t.self), 0)
        }
    }

    private var pipe: UnsafeMutablePointer<uv_pipe_t> { raw.assumingMemoryBound(to: uv_pipe_t.self) }

    /// Takes ownership of `fileDescriptor` (a pipe end or a Unix socket): it is made non-blocking and
    /// closed when the handle closes. Readable/writable follows the descriptor's access mode.
    /// - Throws: `UVError` (EBADF for a closed descriptor, EEXIST when this loop already watches
    ///   it); the descriptor then stays the caller's.
    func open(_ fileDescriptor: Int32) throws(UVError) {
        try UVError.check(uv_pipe_open(pipe, fileDescriptor), "uv_pipe_open(fd \(fileDescriptor))")
    }

    /// Connects to the Unix socket at `path`; `completion` gets 0 or a negative libuv error
    /// (ENOENT, ECONNREFUSED, ECANCELED). libuv reports even immediate failures through it.
    /// - Precondition: `path` fits in `sun_path` (libuv 1.44 silently truncates longer paths, so
    ///   callers check with `Socket.checkUnixPath` first).
    func connect(path: String, completion: @escaping (Int32) -> Void) {
        let request = UVRequest.allocate(UV_CONNECT, completion)
        uv_pipe_connect(request.assumingMemoryBound(to: uv_connect_t.self), pipe, path) { request, status in
            guard let request else { return }
            UVRequest.finish(UnsafeMutableRawPointer(request), as: Int32.self)(status)
        }
    }

    /// The socket's own path (`getsockname`), nil for a pipe or an unbound socket.
    var localPath: String? { name { uv_pipe_getsockname(pipe, $0, $1) } }

    /// The peer's path (`getpeername`), nil when unknown.
    var peerPath: String? { name { uv_pipe_getpeername(pipe, $0, $1) } }

    private func name(_ call: (UnsafeMutablePointer<CChar>, UnsafeMutablePointer<Int>) -> Int32) -> String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer -> String? in
            var size = 256
            guard call(buffer.baseAddress!, &size) == 0, size > 0 else { return nil }
            return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: size), as: UTF8.self)
        }
    }
}
