import Glibc

/// UDP endpoints (asyncio's `create_datagram_endpoint`).
extension EventLoop {
    /// Creates a UDP endpoint (asyncio's `create_datagram_endpoint`, returning the endpoint
    /// itself instead of a transport and protocol pair).
    ///
    /// ```swift
    /// let server = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 9999))
    /// let client = try await loop.createDatagramEndpoint(remoteAddress: ("127.0.0.1", 9999))
    /// try client.send(Array("ping".utf8))
    /// let datagram = try await server.receive()      // data "ping", address: the client's
    /// try server.send(Array("pong".utf8), to: datagram.address)
    /// ```
    /// - Parameters:
    ///   - localAddress: the host and port to bind (port 0: the kernel chooses). Without it, the
    ///     socket is bound to an ephemeral port when it connects or first sends.
    ///   - remoteAddress: connects the socket: `send` without an address goes there, and only the
    ///     peer's datagrams are received.
    ///   - reusePort: SO_REUSEPORT (several sockets on one port).
    ///   - allowBroadcast: SO_BROADCAST.
    ///   - maxQueuedDatagrams: received datagrams queued before reading pauses.
    /// - Throws: `StreamError.invalidArgument` when neither address is given; `UVError`
    ///   (EADDRINUSE, EINVAL for a port out of range, EAI_NONAME, ...); `EventLoopError.loopClosed`.
    public func createDatagramEndpoint(localAddress: (host: String, port: Int)? = nil,
                                       remoteAddress: (host: String, port: Int)? = nil,
                                       reusePort: Bool = false, allowBroadcast: Bool = false,
                                       maxQueuedDatagrams: Int = 1024) async throws -> DatagramEndpoint {
        guard localAddress != nil || remoteAddress != nil else {
            throw StreamError.invalidArgument("createDatagramEndpoint needs a local or a remote address")
        }
        let datagram = UVSocketType.datagram
        var remotes: [UVSocketAddress]?
        if let remoteAddress {
            remotes = try await socketAddresses(remoteAddress.host, port: remoteAddress.port, socketType: datagram, passive: false)
        }
        var locals: [UVSocketAddress]?
        if let localAddress {
            locals = try await socketAddresses(localAddress.host, port: localAddress.port, socketType: datagram, passive: true)
        }
        // With both, bind an address of the family of the first remote one.
        if let remote = remotes?.first, let candidates = locals {
            let matching = candidates.filter { $0.family == remote.family }
            guard !matching.isEmpty else {
                throw UVError(code: UVError.EINVAL.code, operation: "createDatagramEndpoint: local and remote address families differ")
            }
            locals = matching
        }
        let family = locals?.first?.family ?? remotes!.first!.family
        return try await onLoop {
            try checkLoopThread()
            let udp = try UVUDP(loop: uvLoop, family: family)
            do {
                if reusePort { try udp.setReusePort() }
                if let local = locals?.first { try udp.bind(local, ipv6Only: false) }
                if let remote = remotes?.first { try udp.connect(remote) }
                if allowBroadcast { try udp.setBroadcast(true) }
                return DatagramEndpoint(socket: try DatagramSocket(loop: self, udp: udp, maxQueuedDatagrams: maxQueuedDatagrams))
            } catch {
                udp.close()
                throw error
            }
        }
    }
}
