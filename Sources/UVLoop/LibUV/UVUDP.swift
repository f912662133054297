import CLibUV
import Glibc

/// `uv_udp_t`: a UDP socket.
final class UVUDP: UVHandle {
    /// A datagram arrived (the bytes are valid only during the call); `truncated` when it was longer
    /// than the receive buffer.
    var onDatagram: (UnsafeRawBufferPointer, UVSocketAddress?, _ truncated: Bool) -> Void = { _, _, _ in }
    /// Receiving reported an error (ECONNREFUSED after an ICMP port-unreachable, ...).
    var onReceiveError: (UVError) -> Void = { _ in }
    /// Runs once, from the close callback, after the other callbacks were cleared.
    var onClose: () -> Void = {}

    /// - Parameter family: `AF_INET`/`AF_INET6` to create the socket at once, or `AF_UNSPEC`.
    init(loop: UVRunLoop, family: Int32 = AF_UNSPEC) throws(UVError) {
        try super.init(type: UV_UDP, operation: "uv_udp_init_ex") {
            uv_udp_init_ex(loop.pointer, $0.assumingMemoryBound(to: uv_udp_t.self), UInt32(family))
        }
    }

    private var udp: UnsafeMutablePointer<uv_udp_t> { raw.assumingMemoryBound(to: uv_udp_t.self) }

    /// Binds to `address`; `reuseAddress` sets SO_REUSEADDR.
    func bind(_ address: UVSocketAddress, reuseAddress: Bool = false, ipv6Only: Bool = false) throws(UVError) {
        var flags: UInt32 = 0
        if reuseAddress { flags |= UInt32(UV_UDP_REUSEADDR.rawValue) }
        if ipv6Only { flags |= UInt32(UV_UDP_IPV6ONLY.rawValue) }
        let rc = address.withSockaddr { uv_udp_bind(udp, $0, flags) }
        try UVError.check(rc, "uv_udp_bind(\(address.host) port \(address.port))")
    }

    /// SO_REUSEPORT on the socket (created by `init(family:)`).
    func setReusePort() throws(UVError) {
        var fd: uv_os_fd_t = -1
        guard uv_fileno(handlePointer, &fd) == 0 else { throw UVError(code: UV_EBADF.rawValue, operation: "setsockopt(SO_REUSEPORT)") }
        try Socket.setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt(SO_REUSEPORT)")
    }

    /// Fixes the peer: sends without an address go there, and only its datagrams are received.
    func connect(_ address: UVSocketAddress) throws(UVError) {
        let rc = address.withSockaddr { uv_udp_connect(udp, $0) }
        try UVError.check(rc, "uv_udp_connect(\(address.host) port \(address.port))")
    }

    /// SO_BROADCAST.
    func setBroadcast(_ enabled: Bool) throws(UVError) {
        try UVError.check(uv_udp_set_broadcast(udp, enabled ? 1 : 0), "uv_udp_set_broadcast")
    }

    func startReceiving() throws(UVError) {
        try UVError.check(uv_udp_recv_start(udp, { _, _, buffer in
            let receive = ReceiveBuffer.forCurrentThread()
            buffer?.pointee = uv_buf_init(receive.base.assumingMemoryBound(to: CChar.self), UInt32(ReceiveBuffer.size))
        }, { handle, nread, buffer, address, flags in
            guard let wrapper = uvWrapper(handle, as: UVUDP.self) else { return }
            if nread < 0 {
                wrapper.onReceiveError(UVError(code: Int32(nread), operation: "recvmsg"))
                return
            }
            // nread == 0 without an address: nothing (more) to read; with one, an empty datagram.
            guard let address else { return }
            let truncated = flags & UInt32(UV_UDP_PARTIAL.rawValue) != 0
            wrapper.onDatagram(UnsafeRawBufferPointer(start: buffer?.pointee.base, count: nread),
                               UVSocketAddress(copying: address), truncated)
        }), "uv_udp_recv_start")
    }

    func stopReceiving() { uv_udp_recv_stop(udp) }

    /// Sends now if the kernel takes it (`uv_udp_try_send`).
    /// - Returns: the bytes sent, or a negative libuv error (`UV_EAGAIN` when it would block or
    ///   earlier sends are still queued).
    func trySend(_ bytes: UnsafeRawBufferPointer, to address: UVSocketAddress?) -> Int {
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)),
                                 UInt32(bytes.count))
        let rc: Int32
        if let address {
            rc = address.withSockaddr { uv_udp_try_send(udp, &buffer, 1, $0) }
        } else {
            rc = uv_udp_try_send(udp, &buffer, 1, nil)
        }
        return Int(rc)
    }

    /// Queues a datagram (`uv_udp_send`); `completion` gets 0 or a negative libuv error.
    /// - Warning: the caller keeps `bytes` alive and unchanged until `completion` runs.
    /// - Throws: `UVError` when it cannot be queued (then `completion` is never called).
    func send(_ bytes: UnsafeRawBufferPointer, to address: UVSocketAddress?, completion: @escaping (Int32) -> Void) throws(UVError) {
        let request = UVRequest.allocate(UV_UDP_SEND, completion)
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)),
                                 UInt32(bytes.count))
        let callback: uv_udp_send_cb = { request, status in
            guard let request else { return }
            UVRequest.finish(UnsafeMutableRawPointer(request), as: Int32.self)(status)
        }
        let typed = request.assumingMemoryBound(to: uv_udp_send_t.self)
        let rc: Int32
        if let address {
            rc = address.withSockaddr { uv_udp_send(typed, udp, &buffer, 1, $0, callback) }
        } else {
            rc = uv_udp_send(typed, udp, &buffer, 1, nil, callback)
        }
        if rc < 0 {
            UVRequest.abandon(request, as: Int32.self)
            throw UVError(code: rc, operation: "uv_udp_send")
        }
    }

    var localAddress: UVSocketAddress? { UVSocketAddress(querying: { uv_udp_getsockname(udp, $0, $1) }) }
    var peerAddress: UVSocketAddress? { UVSocketAddress(querying: { uv_udp_getpeername(udp, $0, $1) }) }

    override func didClose() {
        let hook = onClose
        onDatagram = { _, _, _ in }
        onReceiveError = { _ in }
        onClose = {}
        hook()
    }
}
