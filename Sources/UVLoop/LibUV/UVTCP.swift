import CLibUV
import Glibc

/// `uv_tcp_t`: a TCP listener or connection.
final class UVTCP: UVStream {
    /// - Parameter family: `AF_INET` or `AF_INET6` to create the socket at once (so options can be
    ///   set before `bind`), or `AF_UNSPEC` to let `bind`/`connect`/`accept` create it.
    init(loop: UVRunLoop, family: Int32 = AF_UNSPEC) throws(UVError) {
        try super.init(type: UV_TCP, operation: "uv_tcp_init_ex") {
            uv_tcp_init_ex(loop.pointer, $0.assumingMemoryBound(to: uv_tcp_t.self), UInt32(family))
        }
    }

    private var tcp: UnsafeMutablePointer<uv_tcp_t> { raw.assumingMemoryBound(to: uv_tcp_t.self) }

    /// Binds to `address` (libuv sets SO_REUSEADDR). With `ipv6Only`, an IPv6 socket does not
    /// also take the IPv4 port, so "::" and "0.0.0.0" can both be bound.
    /// - Throws: `UVError` (EADDRINUSE, EADDRNOTAVAIL, EACCES); libuv reports some bind errors
    ///   only at `listen`.
    func bind(_ address: UVSocketAddress, ipv6Only: Bool = false) throws(UVError) {
        let flags: UInt32 = ipv6Only ? UInt32(UV_TCP_IPV6ONLY.rawValue) : 0
        let rc = address.withSockaddr { uv_tcp_bind(tcp, $0, flags) }
        try UVError.check(rc, "uv_tcp_bind(\(address.host) port \(address.port))")
    }

    /// Connects to `address`; `completion` gets 0 or a negative libuv error (ECONNREFUSED,
    /// ETIMEDOUT, ECANCELED when the handle is closed first).
    /// - Throws: `UVError` when the attempt cannot start (then `completion` is never called).
    func connect(_ address: UVSocketAddress, completion: @escaping (Int32) -> Void) throws(UVError) {
        let request = UVRequest.allocate(UV_CONNECT, completion)
        let rc = address.withSockaddr { sockaddr in
            uv_tcp_connect(request.assumingMemoryBound(to: uv_connect_t.self), tcp, sockaddr) { request, status in
                guard let request else { return }
                UVRequest.finish(UnsafeMutableRawPointer(request), as: Int32.self)(status)
            }
        }
        if rc < 0 {
            UVRequest.abandon(request, as: Int32.self)
            throw UVError(code: rc, operation: "uv_tcp_connect(\(address.host) port \(address.port))")
        }
    }

    /// Takes ownership of a connected TCP socket (made non-blocking; closed with the handle).
    /// - Throws: `UVError` (EEXIST when this loop already watches it); the descriptor then stays
    ///   the caller's.
    func open(_ fileDescriptor: Int32) throws(UVError) {
        try UVError.check(uv_tcp_open(tcp, fileDescriptor), "uv_tcp_open(fd \(fileDescriptor))")
    }

    /// TCP_NODELAY: send small writes at once (asyncio and uvloop set it on every TCP stream).
    func setNoDelay(_ enabled: Bool) {
        uv_tcp_nodelay(tcp, enabled ? 1 : 0)
    }

    /// SO_LINGER with a zero timeout: the next close sends RST instead of FIN and drops unsent
    /// data (what `uv_tcp_close_reset` does before its own `uv_close`).
    func setResetOnClose() {
        if let fd = fileDescriptor { Socket.setResetOnClose(fd) }
    }

    /// The bound address (`getsockname`), nil when unbound.
    var localAddress: UVSocketAddress? {
        UVSocketAddress(querying: { uv_tcp_getsockname(tcp, $0, $1) })
    }

    /// The peer's address (`getpeername`), nil when not connected.
    var peerAddress: UVSocketAddress? {
        UVSocketAddress(querying: { uv_tcp_getpeername(tcp, $0, $1) })
    }
}
