import Glibc

/// Making transports: from a pipe descriptor, an accepted connection, or a connected client.
/// Loop thread only.
extension StreamTransport {
    /// A transport over one end of a pipe, which it owns from now on.
    /// - Throws: `EventLoopError.loopClosed`, `.wrongThread`, or `UVError` from `uv_pipe_open` /
    ///   `uv_read_start` (the descriptor then stays the caller's).
    static func openPipe(loop: EventLoop, fileDescriptor: Int32, reading: Bool,
                         limit: Int = 64 * 1024, terminal: Bool = false) throws -> StreamTransport {
        try loop.checkLoopThread()
        if fileDescriptor < 0 { throw UVError(code: UVError.EBADF.code, operation: "uv_pipe_open(fd \(fileDescriptor))") }
        // Checked before libuv takes the descriptor, so that a failure leaves it to the caller.
        let mode = try System.accessMode(fileDescriptor)
        if mode == (reading ? O_WRONLY : O_RDONLY) {
            throw UVError(code: UVError.EBADF.code,
                          operation: "fd \(fileDescriptor) is not open for \(reading ? "reading" : "writing")")
        }
        let pipe = try UVPipe(loop: loop.uvLoop)
        do {
            try pipe.open(fileDescriptor)
        } catch {
            pipe.close()
            throw error
        }
        let transport = StreamTransport(loop: loop, stream: pipe, kind: .pipe, limit: limit)
        transport.isTerminal = terminal
        // From here the handle owns the descriptor (uv_read_start cannot fail on a readable one).
        try transport.start(reading: reading)
        return transport
    }

    /// A transport over a connected TCP handle (accepted or connected), with Nagle off.
    /// `local` and `peer` when known already (an accept4 gave the peer), else asked for;
    /// `hasNoDelay` when the socket has TCP_NODELAY already (inherited from its listener).
    static func connectedTCP(loop: EventLoop, tcp: UVTCP, limit: Int = 64 * 1024,
                             local: UVSocketAddress? = nil, peer: UVSocketAddress? = nil,
                             hasNoDelay: Bool = false) throws -> StreamTransport {
        if !hasNoDelay { tcp.setNoDelay(true) }
        let transport = StreamTransport(loop: loop, stream: tcp, kind: .tcp,
                                        local: (local ?? tcp.localAddress).map { .ip($0) },
                                        peer: (peer ?? tcp.peerAddress).map { .ip($0) }, limit: limit)
        try transport.start(reading: true)
        return transport
    }

    /// A transport over a connected Unix-socket handle.
    static func connectedUnix(loop: EventLoop, pipe: UVPipe, limit: Int = 64 * 1024) throws -> StreamTransport {
        let transport = StreamTransport(loop: loop, stream: pipe, kind: .unix,
                                        local: pipe.localPath.map { .unix($0) },
                                        peer: pipe.peerPath.map { .unix($0) }, limit: limit)
        try transport.start(reading: true)
        return transport
    }

    /// A transport over a connected socket descriptor (accepted by a server, or made elsewhere):
    /// TCP for `AF_INET`/`AF_INET6`, a Unix-socket stream for `AF_UNIX`. The transport owns the
    /// descriptor from now on.
    /// - Throws: `UVError` from `uv_tcp_open`/`uv_pipe_open`; the descriptor then stays the caller's.
    static func adopting(loop: EventLoop, connected fd: Int32, family: Int32, limit: Int,
                         local: UVSocketAddress? = nil, peer: UVSocketAddress? = nil,
                         hasNoDelay: Bool = false) throws -> StreamTransport {
        if family == AF_UNIX {
            let pipe = try UVPipe(loop: loop.uvLoop)
            do { try pipe.open(fd) } catch { pipe.close(); throw error }
            return try connectedUnix(loop: loop, pipe: pipe, limit: limit)
        }
        let tcp = try UVTCP(loop: loop.uvLoop)
        do { try tcp.open(fd) } catch { tcp.close(); throw error }
        return try connectedTCP(loop: loop, tcp: tcp, limit: limit, local: local, peer: peer, hasNoDelay: hasNoDelay)
    }

    /// The public faces of this transport (it closes when both are gone).
    func makeStreams() -> (StreamReader, StreamWriter) {
        (StreamReader(transport: self), StreamWriter(transport: self))
    }
}
