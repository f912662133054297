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
                            _ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) async throws -> Server {
        let addresses = try await socketAddresses(host, port: port, socketType: UVSocketType.stream, passive: true)
        return try await onLoop {
            try checkLoopThread()
            var listeners: [UVTCP] = []
            var boundPort = port
            var bound: [SocketAddress] = []
            do {
                for address in addresses {
                    let listener = try UVTCP(loop: uvLoop, family: address.family)
                    listeners.append(listener)
                    if reusePort { try listener.setReusePort() }
                    // With several addresses and port 0, the later ones take the port the first got.
                    let target = address.with(port: boundPort)
                    do {
                        try listener.bind(target, ipv6Only: address.family == AF_INET6)
                    } catch let error as UVError {
                        throw UVError(code: error.code, operation: "bind(\(SocketAddress(target)))")
                    }
                    if let local = listener.localAddress {
                        boundPort = local.port
                        bound.append(SocketAddress(local))
                    }
                }
            } catch {
                for listener in listeners { listener.close() }
                throw error
            }
            let server = Server(loop: self, listeners: listeners, port: boundPort, addresses: bound, handler: handler)
            do {
                try server.listen(backlog: backlog)
            } catch let error as UVError {
                // libuv reports EADDRINUSE only now (it defers bind's error to listen).
                throw UVError(code: error.code, operation: "listen(\(bound.first.map { "\($0)" } ?? host))")
            }
            return server
        }
    }

    /// Opens a TCP connection to `host`/`port` (asyncio's `open_connection`). Each address `host`
    /// resolves to is tried in order until one accepts.
    /// - Returns: the connection's reader and writer.
    /// - Throws: `UVError` (ECONNREFUSED, ETIMEDOUT, ENETUNREACH: the last attempt's error;
    ///   EAI_NONAME for an unknown host; EINVAL for a port out of range);
    ///   `EventLoopError.loopClosed`; `CancellationError`.
    public func openConnection(host: String, port: Int) async throws -> (StreamReader, StreamWriter) {
        let addresses = try await socketAddresses(host, port: port, socketType: UVSocketType.stream, passive: false)
        var lastError: any Error = UVError(code: UVError.EAI_NONAME.code, operation: "getaddrinfo(\(host))")
        for address in addresses {
            do {
                return try await connect(to: address)
            } catch let error as UVError {
                lastError = error
            }
        }
        throw lastError
    }

    private func connect(to address: UVSocketAddress) async throws -> (StreamReader, StreamWriter) {
        try await onLoop {
            try checkLoopThread()
            let tcp = try UVTCP(loop: uvLoop)
            let attempt = ConnectAttempt(tcp, loop: self)
            try await attempt.run(describing: "connect(\(SocketAddress(address)))") { completion in
                try tcp.connect(address, completion: completion)
            }
            return try StreamTransport.connectedTCP(loop: self, tcp: tcp).makeStreams()
        }
    }

    /// Starts a server on the Unix socket at `path` (asyncio's `start_unix_server`).
    ///
    /// A socket file left at `path` by a server that is gone is replaced; one a live server
    /// listens on is not (EADDRINUSE). The file is removed when the server closes.
    /// - Throws: `UVError` (EADDRINUSE, ENOENT for a missing directory, EACCES, ENAMETOOLONG for a
    ///   path longer than `sun_path` (107 bytes), EINVAL for an empty one);
    ///   `EventLoopError.loopClosed`.
    public func startUnixServer(path: String, backlog: Int32 = 511,
                                _ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) async throws -> Server {
        try await onLoop {
            try checkLoopThread()
            let fd = try Socket.makeUnixListener(path: path)
            let listener: UVPipe
            do {
                listener = try UVPipe(loop: uvLoop)
            } catch {
                Glibc.close(fd)
                throw error
            }
            do {
                try listener.open(fd)
            } catch {
                listener.close()
                Glibc.close(fd)
                Glibc.unlink(path)
                throw error
            }
            let server = Server(loop: self, listeners: [listener], port: 0, addresses: [SocketAddress(unixPath: path)],
                                unixPath: path, handler: handler)
            try server.listen(backlog: backlog)
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
