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

    // MARK: Listening and accepting by hand

    /// A TCP socket bound to `address` (`length` bytes) and listening (non-blocking,
    /// close-on-exec); `name` describes the address in the error.
    /// - Throws: `UVError` naming the failing call (EADDRINUSE from bind, EACCES, EADDRNOTAVAIL).
    static func makeTCPListener(_ address: UnsafePointer<sockaddr>, length: Int, name: String, reusePort: Bool,
                                ipv6Only: Bool, backlog: Int32) throws(UVError) -> Int32 {
        var step: Int32 = 0
        let fd = cos_tcp_listener(address, socklen_t(length), reusePort ? 1 : 0, ipv6Only ? 1 : 0, backlog, &step)
        guard fd < 0 else { return fd }
        let call = ["socket", "setsockopt", "bind", "listen"][Int(step)]
        throw UVError(code: fd, operation: "\(call)(\(name))")
    }

    /// listen(2) on a bound socket, which is made non-blocking first.
    static func listen(_ fd: Int32, backlog: Int32, _ operation: String) throws(UVError) {
        try prepareAdopted(fd, operation)
        if Glibc.listen(fd, backlog) != 0 { throw UVError.lastError(operation) }
    }

    /// Accepts one waiting connection: its descriptor (non-blocking, close-on-exec), or a negative
    /// errno value (-EAGAIN when none waits, -EMFILE when descriptors ran out), and the peer's
    /// address, which accept4 hands back for free (no getpeername per connection).
    static func accept(_ fd: Int32) -> (fd: Int32, peer: sockaddr_storage) {
        var peer = sockaddr_storage()
        var length = socklen_t(0)
        return (cos_accept_with_peer(fd, &peer, &length), peer)
    }

    /// What a descriptor handed to `startServer(socket:)` or `openConnection(socket:)` is.
    struct Info {
        var domain: Int32
        var type: Int32
        var listening: Bool

        /// SOCK_STREAM (whatever flags the type carries).
        var isStream: Bool { type & 0xF == cos_sock_stream }
    }

    /// The domain, type and listening state of the socket `fd`.
    /// - Throws: `UVError` (ENOTSOCK for a descriptor that is not a socket, EBADF for one not open).
    static func info(_ fd: Int32, _ operation: String) throws(UVError) -> Info {
        var domain: Int32 = 0, type: Int32 = 0, listening: Int32 = 0
        let rc = cos_socket_info(fd, &domain, &type, &listening)
        if rc < 0 { throw UVError(code: rc, operation: "\(operation)(fd \(fd))") }
        return Info(domain: domain, type: type, listening: listening != 0)
    }

    /// Throws ENOTCONN unless the socket `fd` has a peer (`getpeername`).
    static func checkConnected(_ fd: Int32, _ operation: String) throws(UVError) {
        var address = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &size) }
        }
        if rc != 0 { throw UVError.lastError(operation) }
    }

    /// Makes an adopted descriptor non-blocking and close-on-exec.
    static func prepareAdopted(_ fd: Int32, _ operation: String) throws(UVError) {
        let rc = cos_set_nonblock_cloexec(fd)
        if rc < 0 { throw UVError(code: rc, operation: "\(operation)(fd \(fd))") }
    }

    /// The address `fd` is bound to (`getsockname`), nil when the call fails.
    static func localAddress(_ fd: Int32) -> sockaddr_storage? {
        var address = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) }
        }
        return rc == 0 ? address : nil
    }

    /// The path a Unix socket is bound to, nil when unbound (or abstract).
    static func localUnixPath(_ fd: Int32) -> String? {
        var address = sockaddr_un()
        var size = socklen_t(MemoryLayout<sockaddr_un>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) }
        }
        let header = MemoryLayout<sa_family_t>.size
        guard rc == 0, Int(size) > header else { return nil }
        return withUnsafeBytes(of: &address.sun_path) { raw in
            let bytes = raw.prefix(Int(size) - header).prefix { $0 != 0 }
            return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
        }
    }

    /// TCP_NODELAY on `fd`. - Throws: `UVError` (EOPNOTSUPP for a socket that is not TCP).
    static func setNoDelay(_ fd: Int32, _ enabled: Bool) throws(UVError) {
        let rc = cos_set_nodelay(fd, enabled ? 1 : 0)
        if rc < 0 { throw UVError(code: rc, operation: "setsockopt(TCP_NODELAY)") }
    }

    /// SO_KEEPALIVE with TCP_KEEPIDLE. - Throws: `UVError` (EOPNOTSUPP, EINVAL).
    static func setKeepAlive(_ fd: Int32, _ enabled: Bool, idleSeconds: Int32) throws(UVError) {
        let rc = cos_set_keepalive(fd, enabled ? 1 : 0, idleSeconds)
        if rc < 0 { throw UVError(code: rc, operation: "setsockopt(SO_KEEPALIVE, TCP_KEEPIDLE \(idleSeconds))") }
    }

    /// Throws unless `fd` is open on a regular file (what sendfile(2) reads from).
    static func checkRegularFile(_ fd: Int32, _ operation: String) throws(UVError) {
        let rc = cos_fd_is_regular_file(fd)
        if rc < 0 { throw UVError(code: rc, operation: "\(operation)(fd \(fd))") }
        if rc == 0 { throw UVError(errno: EINVAL, operation: "\(operation): fd \(fd) is not a regular file") }
    }

    /// A close-on-exec duplicate of `fd`, or a negative errno value.
    static func duplicate(_ fd: Int32) -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        return copy >= 0 ? copy : -errno
    }

    /// One sendfile(2) from `file` at `offset` (advanced by what was sent) to `fd`: the bytes sent,
    /// 0 at the file's end, or a negative errno value (-EAGAIN when `fd` takes nothing now).
    static func sendfile(to fd: Int32, from file: Int32, offset: inout Int64, count: Int) -> Int {
        var position = CLongLong(offset)
        let sent = cos_sendfile(fd, file, &position, UInt(count))
        offset = Int64(position)
        return Int(sent)
    }

    /// Up to `count` bytes of `file` from `offset` (pread(2): the file's own offset stays), fewer
    /// at its end; retried on EINTR.
    static func readFile(_ file: Int32, offset: Int64, count: Int) throws(UVError) -> [UInt8] {
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = 0
            while true {
                let got = pread(file, buffer.baseAddress, count, off_t(offset))
                if got >= 0 {
                    initialized = got
                    return
                }
                if errno != EINTR {
                    failure = errno
                    return
                }
            }
        }
        if failure != 0 { throw UVError(errno: failure, operation: "pread(fd \(file))") }
        return bytes
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
