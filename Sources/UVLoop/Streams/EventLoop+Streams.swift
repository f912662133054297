import Glibc

/// TCP and Unix-socket servers and clients (asyncio's `start_server`, `open_connection`,
/// `start_unix_server`, `open_unix_connection`).
extension EventLoop {
    /// Starts a TCP server on `host`/`port`; each connection runs `handler` in its own task on
    /// this loop (asyncio's `start_server`).
    ///
    /// ```swift
    /// let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
    ///     while let chunk = try? await reader.read(65536), !chunk.isEmpty {
    ///         try? writer.write(chunk)
    ///         try? await writer.drain()
    ///     }
    /// }
    /// print("listening on port", server.port)
    /// ```
    /// - Parameters:
    ///   - host: a numeric address or a name; every address it resolves to is bound (on one
    ///     port). `""` binds every local address (IPv4 and IPv6).
    ///   - port: 0...65535; 0 lets the kernel choose (read it from `Server.port`).
    ///   - backlog: the listen queue length.
    ///   - reusePort: SO_REUSEPORT, so several loops (threads or processes) can each listen on
    ///     the same port and the kernel spreads connections over them.
    ///   - handler: runs once per connection. The connection closes when the handler has
    ///     dropped its reader and writer (or closed the writer).
    /// - Returns: the listening `Server`.
    /// - Throws: `UVError` (EADDRINUSE, EACCES, EADDRNOTAVAIL, EINVAL for a port out of range,
    ///   EAI_NONAME for an unknown host); `EventLoopError.loopClosed`.
    public func startServer(host: String, port: Int, backlog: Int32 = 511, reusePort: Bool = false,
                            limit: Int = 65_536, maxConnections: Int? = nil, idleTimeout: Double? = nil,
                            startServing: Bool = true,
                            _ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) async throws -> Server {
        let options = try Server.Options(limit: limit, maxConnections: maxConnections, idleTimeout: idleTimeout).validated()
        let addresses = try await socketAddresses(host, port: port, socketType: UVSocketType.stream, passive: true)
        return try await onLoop {
            try checkLoopThread()
            var listening: [(fd: Int32, family: Int32)] = []
            var boundPort = port
            var bound: [SocketAddress] = []
            do {
                for address in addresses {
                    // With several addresses and port 0, the later ones take the port the first got.
                    let target = address.with(port: boundPort)
                    let fd = try target.withSockaddr {
                        try Socket.makeTCPListener($0, length: target.length, name: "\(SocketAddress(target))",
                                                   reusePort: reusePort, ipv6Only: target.family == AF_INET6, backlog: backlog)
                    }
                    listening.append((fd, address.family))
                    if let local = UVSocketAddress(boundTo: fd) {
                        boundPort = local.port
                        bound.append(SocketAddress(local))
                    }
                }
            } catch {
                for descriptor in listening { Glibc.close(descriptor.fd) }
                throw error
            }
            let server = try Server(loop: self, listening: listening, port: boundPort, addresses: bound,
                                    options: options, handler: handler)
            if startServing { try server.startServing() }
            return server
        }
    }

    /// Serves on a listening socket made elsewhere: one inherited from a parent process, one
    /// systemd passed (`LISTEN_FDS`, see `EventLoop.inheritedListeners()`), or one bound by hand.
    /// A TCP (IPv4, IPv6) or Unix stream socket on which `listen` was called. The server owns the
    /// descriptor from then on (it is made non-blocking and close-on-exec, and closed with the
    /// server); a Unix socket's file is left in place when the server closes.
    /// - Parameters: as `startServer(host:port:...)`.
    /// - Throws: `UVError` (ENOTSOCK for a descriptor that is not a socket, EBADF for one not
    ///   open, EINVAL for a socket that does not listen or is not a stream, EAFNOSUPPORT for
    ///   another family, EEXIST when this loop already watches it): the descriptor then stays
    ///   the caller's. `EventLoopError.invalidArgument` for a bad limit, cap or timeout.
    public func startServer(socket fd: Int32, limit: Int = 65_536, maxConnections: Int? = nil,
                            idleTimeout: Double? = nil, startServing: Bool = true,
                            _ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) async throws -> Server {
        let options = try Server.Options(limit: limit, maxConnections: maxConnections, idleTimeout: idleTimeout).validated()
        let info = try Socket.info(fd, "startServer(socket:)")
        guard info.isStream, info.listening else {
            throw UVError(code: UVError.EINVAL.code,
                          operation: "startServer(socket: \(fd)): not a listening stream socket")
        }
        guard [AF_INET, AF_INET6, AF_UNIX].contains(info.domain) else {
            throw UVError(errno: EAFNOSUPPORT, operation: "startServer(socket: \(fd)): address family \(info.domain)")
        }
        return try await onLoop {
            try checkLoopThread()
            try Socket.prepareAdopted(fd, "startServer(socket:)")
            let address = info.domain == AF_UNIX ? SocketAddress(unixPath: Socket.localUnixPath(fd) ?? "")
                : UVSocketAddress(boundTo: fd).map(SocketAddress.init)
            let port = info.domain == AF_UNIX ? 0 : UVSocketAddress(boundTo: fd)?.port ?? 0
            // The descriptor stays the caller's if the server cannot take it.
            let dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)
            if dup < 0 { throw UVError.lastError("dup(fd \(fd))") }
            let server = try Server(loop: self, listening: [(dup, info.domain)], port: port,
                                    addresses: address.map { [$0] } ?? [], options: options, handler: handler)
            Glibc.close(fd)
            if startServing { try server.startServing() }
            return server
        }
    }

    /// Opens a TCP connection to `host`/`port` (asyncio's `open_connection`), racing the
    /// addresses `host` resolves to as RFC 8305 (Happy Eyeballs) says: families interleaved, the
    /// next address tried when the previous one has not connected after `happyEyeballsDelay`
    /// (or at once when it failed), the first to connect wins and the others are closed.
    /// - Parameters:
    ///   - limit: the reader's `limit`.
    ///   - localAddress: a numeric address or a name to bind the connection to (the source
    ///     address; an address of each attempt's family is used).
    ///   - happyEyeballsDelay: seconds before the next attempt starts; nil tries one address after
    ///     another (asyncio's default).
    ///   - connectTimeout: seconds for the attempts together (name resolution excluded); past it
    ///     the connection fails with `UVError.ETIMEDOUT`.
    /// - Returns: the connection's reader and writer.
    /// - Throws: `UVError` (ECONNREFUSED, ETIMEDOUT, ENETUNREACH: the first address's failure,
    ///   with every address's failure in the text; EAI_NONAME for an unknown host; EINVAL for a
    ///   port out of range or a NUL byte in a name); `EventLoopError.invalidArgument` for a limit
    ///   below 1, a delay that is NaN or negative, a timeout that is NaN, negative or 0; `EventLoopError.loopClosed`;
    ///   `CancellationError`.
    public func openConnection(host: String, port: Int, limit: Int = 65_536, localAddress: String? = nil,
                               happyEyeballsDelay: Double? = 0.25,
                               connectTimeout: Double? = nil) async throws -> (StreamReader, StreamWriter) {
        guard limit >= 1 else { throw EventLoopError.invalidArgument }
        if let happyEyeballsDelay, !(happyEyeballsDelay >= 0) { throw EventLoopError.invalidArgument }
        if let connectTimeout, !(connectTimeout > 0) { throw EventLoopError.invalidArgument }
        let addresses = try await socketAddresses(host, port: port, socketType: UVSocketType.stream, passive: false)
        var local: [UVSocketAddress] = []
        if let localAddress {
            local = try await socketAddresses(localAddress, port: 0, socketType: UVSocketType.stream, passive: true)
        }
        return try await openConnection(addresses: addresses, operation: "connect(\(host) port \(port))", limit: limit,
                                        localAddresses: local, happyEyeballsDelay: happyEyeballsDelay,
                                        connectTimeout: connectTimeout)
    }

    /// The race itself, over resolved addresses (tests give their own).
    func openConnection(addresses: [UVSocketAddress], operation: String, limit: Int = 65_536,
                        localAddresses: [UVSocketAddress] = [], happyEyeballsDelay: Double?,
                        connectTimeout: Double?) async throws -> (StreamReader, StreamWriter) {
        try await onLoop {
            try checkLoopThread()
            let race = ConnectRace(loop: self, addresses: addresses,
                                   staggerDelay: happyEyeballsDelay, timeout: connectTimeout.flatMap { $0.isFinite ? $0 : nil },
                                   localAddresses: localAddresses, operation: operation)
            let tcp = try await race.run()
            try checkLoopThread()
            return try StreamTransport.connectedTCP(loop: self, tcp: tcp, limit: limit).makeStreams()
        }
    }

    /// Wraps a connected socket made elsewhere (asyncio's `connect_accepted_socket`, or
    /// `open_connection(sock=)`): one end of a `socketpair`, a connection handed over by another
    /// process, or one connected by hand. TCP (IPv4, IPv6) or a Unix stream socket; the
    /// streams own the descriptor from then on (made non-blocking and close-on-exec).
    /// - Throws: `UVError` (ENOTSOCK, EBADF, EINVAL for a listening socket or one that is not a
    ///   stream, ENOTCONN for one not connected, EAFNOSUPPORT, EEXIST when this loop already
    ///   watches it): the descriptor then stays the caller's. `EventLoopError.invalidArgument`
    ///   for a limit below 1.
    public func openConnection(socket fd: Int32, limit: Int = 65_536) async throws -> (StreamReader, StreamWriter) {
        guard limit >= 1 else { throw EventLoopError.invalidArgument }
        let info = try Socket.info(fd, "openConnection(socket:)")
        guard info.isStream, !info.listening else {
            throw UVError(code: UVError.EINVAL.code,
                          operation: "openConnection(socket: \(fd)): not a connected stream socket")
        }
        guard [AF_INET, AF_INET6, AF_UNIX].contains(info.domain) else {
            throw UVError(errno: EAFNOSUPPORT, operation: "openConnection(socket: \(fd)): address family \(info.domain)")
        }
        try Socket.checkConnected(fd, "openConnection(socket: \(fd))")
        return try await onLoop {
            try checkLoopThread()
            try Socket.prepareAdopted(fd, "openConnection(socket:)")
            return try StreamTransport.adopting(loop: self, connected: fd, family: info.domain, limit: limit).makeStreams()
        }
    }

    /// Starts a server on the Unix socket at `path` (asyncio's `start_unix_server`).
    ///
    /// A socket file left at `path` by a server that is gone is replaced; one a live server
    /// listens on is not (EADDRINUSE). The file is removed when the server closes.
    /// - Throws: `UVError` (EADDRINUSE, ENOENT for a missing directory, EACCES, ENAMETOOLONG for a
    ///   path longer than `sun_path` (107 bytes), EINVAL for an empty one);
    ///   `EventLoopError.loopClosed`.
    public func startUnixServer(path: String, backlog: Int32 = 511, limit: Int = 65_536,
                                maxConnections: Int? = nil, idleTimeout: Double? = nil, startServing: Bool = true,
                                _ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) async throws -> Server {
        let options = try Server.Options(limit: limit, maxConnections: maxConnections, idleTimeout: idleTimeout).validated()
        return try await onLoop {
            try checkLoopThread()
            let fd = try Socket.makeUnixListener(path: path)
            do {
                try Socket.listen(fd, backlog: backlog, "listen(\"\(path)\")")
            } catch {
                Glibc.close(fd)
                Glibc.unlink(path)
                throw error
            }
            let server: Server
            do {
                server = try Server(loop: self, listening: [(fd, AF_UNIX)], port: 0,
                                    addresses: [SocketAddress(unixPath: path)], options: options,
                                    unixPath: path, handler: handler)
            } catch {
                Glibc.unlink(path)
                throw error
            }
            if startServing { try server.startServing() }
            return server
        }
    }

    /// Connects to the Unix socket at `path` (asyncio's `open_unix_connection`).
    /// - Throws: `UVError` (ENOENT when nothing is there, ECONNREFUSED when nobody listens,
    ///   ENAMETOOLONG, EINVAL); `EventLoopError.loopClosed`; `CancellationError`.
    public func openUnixConnection(path: String) async throws -> (StreamReader, StreamWriter) {
        try Socket.checkUnixPath(path, "connect")
        return try await onLoop {
            try checkLoopThread()
            let pipe = try UVPipe(loop: uvLoop)
            let attempt = ConnectAttempt(pipe, loop: self)
            try await attempt.run(describing: "connect(\"\(path)\")") { completion in
                pipe.connect(path: path, completion: completion)
            }
            return try StreamTransport.connectedUnix(loop: self, pipe: pipe).makeStreams()
        }
    }
}

/// One connect request awaited by a task: cancelling the task closes the handle (the request then
/// completes with ECANCELED), and a failed attempt closes it too. Made and run on the loop thread.
private final class ConnectAttempt: Sendable {
    private struct Attempt {
        let stream: UVStream
        var finished = false
    }

    private let attempt: LoopBound<Attempt>

    init(_ stream: UVStream, loop: EventLoop) { attempt = LoopBound(Attempt(stream: stream), loop: loop) }

    func run(describing operation: String, _ start: (@escaping (Int32) -> Void) throws -> Void) async throws {
        let loop = attempt.loop
        // On a closed loop the handle was closed with the loop: only report it.
        try loop.checkLoopThread()
        let status: Int32
        do {
            status = try await withTaskCancellationHandler {
                try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Int32, any Error>) in
                    do {
                        try loop.checkLoopThread()
                        try start { status in continuation.resume(returning: status) }
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            } onCancel: {
                loop.schedule { if !self.attempt.value.finished { self.attempt.value.stream.close() } }
            }
        } catch {
            if (try? loop.checkLoopThread()) != nil {
                attempt.value.finished = true
                attempt.value.stream.close()
            }
            throw error
        }
        try loop.checkLoopThread()
        attempt.value.finished = true
        guard status == 0 else {
            attempt.value.stream.close()
            if Task.isCancelled { throw CancellationError() }
            if loop.isClosed { throw EventLoopError.loopClosed }
            throw UVError(code: status, operation: operation)
        }
    }
}

/// The program's own pipes as streams (asyncio's `connect_read_pipe`/`connect_write_pipe`).
extension EventLoop {
    /// Wraps the read end of a pipe (or a FIFO, a socket, a terminal) of this process in a
    /// `StreamReader` on this loop (asyncio's `connect_read_pipe`). The reader owns the descriptor
    /// from then on: it is closed with the reader, or at end of file. Call it on the loop's
    /// thread, or while the loop does not run.
    /// - Throws: `UVError.EBADF` for a descriptor that is not open or not open for reading,
    ///   `UVError.EINVAL` for a regular file or a directory (nothing to poll);
    ///   `EventLoopError.invalidArgument` for a `limit` below 1; `EventLoopError.loopClosed`,
    ///   `.wrongThread`. On failure the descriptor stays the caller's.
    public func connectReadPipe(_ fd: Int32, limit: Int = 65_536) throws -> StreamReader {
        guard limit >= 1 else { throw EventLoopError.invalidArgument }
        try System.checkStreamDescriptor(fd, "connectReadPipe")
        return try StreamReader(loop: self, pipe: fd, limit: limit)
    }

    /// Wraps the write end of a pipe (or a FIFO, a socket, a terminal) of this process in a
    /// `StreamWriter` on this loop (asyncio's `connect_write_pipe`), with the same flow control as
    /// a connection's. The writer owns the descriptor from then on. Call it on the loop's thread,
    /// or while the loop does not run.
    /// - Throws: as `connectReadPipe` (EBADF for a descriptor not open for writing).
    public func connectWritePipe(_ fd: Int32) throws -> StreamWriter {
        try System.checkStreamDescriptor(fd, "connectWritePipe")
        return try StreamWriter(loop: self, pipe: fd)
    }
}
