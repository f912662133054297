import CUVLoopOS
import Glibc

/// The few socket system calls libuv 1.44 does not make for us: options it has no call for, and
/// Unix-socket paths (which it would silently truncate, and whose stale files it never clears).
/// Each wrapper retries EINTR where the call can be interrupted and throws a `UVError` naming the call.
enum Socket {
    /// Longest Unix-socket path: `sun_path` holds 108 bytes including the terminating NUL.
    static let unixPathLimit = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Rejects a path libuv would mangle: empty, with a NUL byte (EINVAL), or longer than
    /// `sun_path` (ENAMETOOLONG: libuv 1.44 would silently truncate it and bind another path).
    static func checkUnixPath(_ path: String, _ operation: String) throws(UVError) {
        let bytes = path.utf8
        if bytes.isEmpty || bytes.contains(0) {
            throw UVError(errno: EINVAL, operation: "\(operation)(\"\(path)\")")
        }
        if bytes.count > unixPathLimit {
            throw UVError(errno: ENAMETOOLONG,
                          operation: "\(operation): path of \(bytes.count) bytes, at most \(unixPathLimit) fit in sun_path")
        }
    }

    /// Sets an integer socket option.
    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ operation: String) throws(UVError) {
        var value = value
        if setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw UVError.lastError(operation)
        }
    }

    /// SO_LINGER with a zero timeout: the next close sends RST instead of FIN and drops unsent
    /// data (what `uv_tcp_close_reset` does before its own `uv_close`). Best effort.
    static func setResetOnClose(_ fd: Int32) {
        var value = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &value, socklen_t(MemoryLayout<linger>.size))
    }

    /// Creates a Unix stream socket bound to `path`, ready for `UVPipe.open` and `listen`.
    ///
    /// An existing socket file at `path` that nobody listens on any more (a server that died without
    /// removing it) is removed first, as asyncio does; one with a live listener is left alone and the
    /// call throws EADDRINUSE. Binding here rather than with `uv_pipe_bind` keeps the kernel's error
    /// (libuv 1.44 turns ENOENT into EACCES) and the path untruncated.
    /// - Throws: `UVError` (EADDRINUSE, ENOENT for a missing directory, EACCES, ENAMETOOLONG).
    static func makeUnixListener(path: String) throws(UVError) -> Int32 {
        try checkUnixPath(path, "bind")
        if isSocketFile(path) && !hasListener(path) {
            Glibc.unlink(path)
        }
        let fd = socket(AF_UNIX, cos_sock_stream | cos_sock_cloexec, 0)
        if fd < 0 { throw UVError.lastError("socket(AF_UNIX)") }
        let rc = withUnixAddress(path) { bind(fd, $0, $1) }
        if rc != 0 {
            let error = UVError.lastError("bind(\"\(path)\")")
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// True when `path` names a socket file.
    static func isSocketFile(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK
    }

    /// True when something accepts connections on the Unix socket at `path` (a non-blocking
    /// connect succeeds, or finds the backlog full).
    static func hasListener(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, cos_sock_stream | cos_sock_nonblock | cos_sock_cloexec, 0)
        guard fd >= 0 else { return true }   // cannot tell: assume live, never remove it
        defer { Glibc.close(fd) }
        let rc = withUnixAddress(path) { connect(fd, $0, $1) }
        return rc == 0 || errno == EAGAIN || errno == EINPROGRESS
    }

    /// Device and inode of `path`, to recognise our own socket file later.
    static func fileIdentity(_ path: String) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// Removes `path` when it is still the file identified by `identity`.
    static func unlink(_ path: String, ifIdentity identity: (device: UInt64, inode: UInt64)) {
        guard let current = fileIdentity(path), current == identity else { return }
        Glibc.unlink(path)
    }

    private static func withUnixAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(unixPathLimit))
            raw.copyBytes(from: bytes)
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}
