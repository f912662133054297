/// Writes to a byte stream: a TCP or Unix-socket connection, or a pipe (asyncio.StreamWriter).
///
/// `write` never blocks: it hands the bytes to the kernel when it can and buffers the rest. Pair it
/// with `drain()`, which waits while more than the high-water mark (64 KiB) is buffered, until at
/// most the low-water mark (16 KiB) is:
/// ```swift
/// try writer.write(bytes)
/// try await writer.drain()
/// ```
/// Errors of the connection (`UVError.EPIPE`, `.ECONNRESET`) are thrown by the next `write` or
/// `drain`, never by a crash (the loop ignores SIGPIPE).
///
/// - Warning: The writer's state lives on its loop's thread. Its methods may be called from any
///   thread or task: `write` and `close` from elsewhere are posted to the loop in order (then
///   only errors already known are thrown; later ones surface in `drain`), and the async methods
///   hop to the loop for the call.
public final class StreamWriter: Sendable {
    let transport: StreamTransport

    /// A face of `transport`, counted in its `liveFaces` (the transport closes when the last goes).
    init(transport: StreamTransport) {
        self.transport = transport
        transport.liveFaces.add(1, ordering: .relaxed)
    }

    deinit { transport.faceDidGo() }

    /// Takes ownership of one end of a pipe, opened for writing (`uv_pipe_init` + `uv_pipe_open`).
    /// The descriptor is made non-blocking, and closed by `close()` (after the buffered bytes are
    /// written), by `writeEOF()`, when the writer is dropped, or when the loop closes.
    ///
    /// Call on the loop's thread (or while the loop does not run).
    /// - Throws: `UVError` (EBADF for a closed descriptor or one not open for writing, EEXIST when
    ///   the loop already watches it);
    ///   the descriptor then stays the caller's. `EventLoopError.loopClosed` on a closed loop.
    convenience init(loop: EventLoop, pipe fileDescriptor: Int32, terminal: Bool = false) throws {
        let transport = try StreamTransport.openPipe(loop: loop, fileDescriptor: fileDescriptor, reading: false,
                                                     terminal: terminal)
        self.init(transport: transport)
    }

    /// Writes `bytes`, or buffers what the kernel does not take now.
    /// - Throws: `StreamError.closed` after `close()` or `writeEOF()`; the connection's error
    ///   (`UVError.EPIPE`, `.ECONNRESET`) once it failed; `EventLoopError.loopClosed`.
    public func write(_ bytes: [UInt8]) throws {
        let transport = self.transport
        if transport.loop.inLoopThread {
            try bytes.withUnsafeBytes { try transport.write($0) }
            return
        }
        if transport.publishedWriteClosed.load(ordering: .relaxed) { throw StreamError.closed }
        let posted = transport.loop.execute {
            // A failure here is stored by the transport; drain() and later writes throw it.
            try? bytes.withUnsafeBytes { try transport.write($0) }
        }
        if !posted { throw EventLoopError.loopClosed }
    }

    /// Writes the UTF-8 bytes of `string`.
    public func write(_ string: String) throws {
        try write(Array(string.utf8))
    }

    /// Writes the chunks in order (asyncio's `writelines`), as one write: the chunks are joined
    /// (one copy) and handed to the kernel in one call, where one `write` per chunk made 10,000
    /// chunks 10,000 system calls.
    /// - Throws: as `write`.
    public func writeLines(_ chunks: [[UInt8]]) throws {
        guard chunks.count > 1 else {
            if let only = chunks.first { try write(only) }
            return
        }
        var joined: [UInt8] = []
        joined.reserveCapacity(chunks.reduce(0) { $0 + $1.count })
        for chunk in chunks { joined.append(contentsOf: chunk) }
        try write(joined)
    }

    /// Waits until the buffer is below the low-water mark, when it went above the high-water mark
    /// (flow control); returns at once otherwise.
    /// - Throws: the connection's error (`UVError.EPIPE`, `.ECONNRESET`, ...), including one the
    ///   reader received; `EventLoopError.loopClosed`; `CancellationError`.
    public func drain() async throws {
        let transport = self.transport
        // The common case, under the high-water mark on the loop thread: no async frame at all.
        if transport.loop.inLoopThread, try !transport.mustWaitToDrain() { return }
        try await transport.loop.onLoop { try await transport.drain() }
    }

    /// Sends end of file after the buffered bytes (TCP and Unix sockets: `shutdown(SHUT_WR)`; the
    /// connection stays open for reading). For a pipe, closes it; for a `.pty` child's terminal,
    /// sends the terminal's end-of-file character (twice after a partial line, as typing ^D
    /// would need), then closes this writer. Later writes throw. Idempotent.
    /// - Throws: the connection's error once it failed.
    public func writeEOF() throws {
        let transport = self.transport
        if transport.loop.inLoopThread {
            try transport.writeEOF()
            return
        }
        transport.markWriteClosedFromAnyThread()
        if !transport.loop.execute({ try? transport.writeEOF() }) { throw EventLoopError.loopClosed }
    }

    /// True: every stream supports `writeEOF` (a pipe by closing).
    public var canWriteEOF: Bool { true }

    /// Closes the stream once the buffered bytes are written (stops reading at once). Idempotent;
    /// callable from any thread. Await `waitClosed()` to know when it is closed.
    public func close() {
        let transport = self.transport
        if !transport.loop.inLoopThread { transport.markWriteClosedFromAnyThread() }
        transport.loop.execute { transport.close() }
    }

    /// Closes at once, dropping buffered bytes; a TCP connection is reset (RST) rather than
    /// ended with FIN (asyncio's `transport.abort()`). Callable from any thread.
    public func abort() {
        let transport = self.transport
        if !transport.loop.inLoopThread { transport.markWriteClosedFromAnyThread() }
        transport.loop.execute { transport.abort() }
    }

    /// True once `close()`, `abort()` or `writeEOF()` was called, or the stream failed or closed.
    public var isClosing: Bool { transport.publishedWriteClosed.load(ordering: .relaxed) }

    /// Waits until the stream is closed (returns at once when the loop is closed).
    /// - Throws: `CancellationError` when the waiting task is cancelled (the stream is untouched).
    public func waitClosed() async throws {
        let transport = self.transport
        do {
            try await transport.loop.onLoop { try await transport.waitClosed() }
        } catch EventLoopError.loopClosed {
            // The loop's close closed the stream.
        }
    }

    /// Sets the flow-control marks `drain()` uses (asyncio's `set_write_buffer_limits`): nil high
    /// means 64 KiB (or 4 × low), nil low means high / 4.
    /// - Throws: `StreamError.invalidArgument` unless high >= low >= 0.
    public func setWriteBufferLimits(high: Int? = nil, low: Int? = nil) async throws {
        try await transport.loop.onLoop {
            try transport.loop.checkLoopThread()
            try transport.setWriteBufferLimits(high: high, low: low)
        }
    }

    /// Bytes written but not yet handed to the kernel.
    public func writeBufferSize() async throws -> Int {
        try await transport.loop.onLoop {
            try transport.loop.checkLoopThread()
            return transport.writeBufferSize
        }
    }

    /// The peer's address (asyncio's `get_extra_info("peername")`): IP and port for TCP, the
    /// path for a Unix socket (often empty: client sockets are rarely bound), nil for a pipe.
    public var peerAddress: SocketAddress? { transport.peerAddress }

    /// This end's address (asyncio's `get_extra_info("sockname")`), nil for a pipe.
    public var localAddress: SocketAddress? { transport.localAddress }

    // MARK: Socket options and sendfile

    /// The socket's (or pipe's) descriptor, for options UVLoop has no call for (`setsockopt`);
    /// nil once the stream is closed or closing. The stream still owns it: never close it. From
    /// another thread than the loop's, the stream may close meanwhile.
    public var fileDescriptor: Int32? {
        let fd = transport.publishedFileDescriptor.load(ordering: .relaxed)
        return fd >= 0 ? fd : nil
    }

    /// TCP_NODELAY (Nagle's algorithm off): on by default for every TCP connection, as in asyncio.
    /// - Throws: `UVError.ENOTSUP` for a Unix socket or a pipe; `StreamError.closed` once closed.
    public func setNoDelay(_ enabled: Bool) throws {
        let fd = try tcpDescriptor("setNoDelay")
        try Socket.setNoDelay(fd, enabled)
    }

    /// SO_KEEPALIVE, with the idle time before the first probe (TCP_KEEPIDLE, in 1...32767 s).
    /// - Throws: `EventLoopError.invalidArgument` for an idle time out of range; `UVError.ENOTSUP`
    ///   for a Unix socket or a pipe; `StreamError.closed` once closed.
    public func setKeepAlive(_ enabled: Bool, idleSeconds: Int = 60) throws {
        guard (1...32767).contains(idleSeconds) else { throw EventLoopError.invalidArgument }
        let fd = try tcpDescriptor("setKeepAlive")
        try Socket.setKeepAlive(fd, enabled, idleSeconds: Int32(idleSeconds))
    }

    private func tcpDescriptor(_ operation: String) throws -> Int32 {
        guard transport.kind == .tcp else {
            throw UVError(code: UVError.ENOTSUP.code, operation: "\(operation): not a TCP connection")
        }
        guard let fd = fileDescriptor else { throw StreamError.closed }
        return fd
    }

    /// Sends `count` bytes (nil: up to the end) of the regular file `fd` from `offset`, with
    /// sendfile(2): the kernel copies the file to the socket, nothing passes through this process
    /// (asyncio's `loop.sendfile`). Bytes written before go first; bytes written while it runs
    /// follow it. The file descriptor stays the caller's, and its own offset is not moved.
    /// - Returns: the bytes sent (fewer than `count` when the file ends first).
    /// - Throws: `UVError.EINVAL` for a descriptor that is not a regular file, `.EBADF` for one
    ///   not open; the connection's error (`UVError.EPIPE`, `.ECONNRESET`); `StreamError.closed`;
    ///   `EventLoopError.invalidArgument` for a negative offset or count; `CancellationError` (bytes
    ///   sent by then are gone: the stream is then in the middle of the file).
    public func sendfile(_ fd: Int32, offset: Int64 = 0, count: Int? = nil) async throws -> Int {
        let transport = self.transport
        return try await transport.loop.onLoop { try await transport.sendfile(fd, offset: offset, count: count) }
    }
}
