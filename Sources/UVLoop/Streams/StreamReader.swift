/// Reads from a byte stream: a TCP or Unix-socket connection, or a pipe (asyncio.StreamReader).
///
/// Readers come from `EventLoop.openConnection`, from the handler given to `startServer`, and from
/// a child process's `stdout`/`stderr`. Bytes are received into the reader's buffer as they arrive;
/// reading from the socket pauses while more than twice `limit` (64 KiB) bytes wait there, and
/// resumes once they are read down to `limit`: a slow reader slows the peer down.
///
/// A reader is also an `AsyncSequence` of chunks (at most 64 KiB each) that ends at end of file:
/// ```swift
/// for try await chunk in reader { process(chunk) }
/// ```
///
/// - Warning: The reader's state lives on its loop's thread. Its methods may be called from any
///   task: from a task not running on the loop they hop to the loop for the call (which then waits
///   for the loop to run). Only one task at a time may wait in a read.
public final class StreamReader: Sendable, AsyncSequence {
    let transport: StreamTransport

    /// A face of `transport`, counted in its `liveFaces` (the transport closes when the last goes).
    init(transport: StreamTransport) {
        self.transport = transport
        transport.liveFaces.add(1, ordering: .relaxed)
    }

    deinit { transport.faceDidGo() }

    /// Takes ownership of one end of a pipe, opened for reading (`uv_pipe_init` + `uv_pipe_open`),
    /// and starts reading from it. The descriptor is made non-blocking, and closed when the reader
    /// reaches EOF, fails, is dropped together with any writer of it, or when the loop closes.
    ///
    /// Call on the loop's thread (or while the loop does not run).
    /// - Throws: `UVError` (EBADF for a closed descriptor or one not open for reading, EEXIST when
    ///   the loop already watches it); the descriptor then stays the caller's.
    ///   `EventLoopError.loopClosed` on a closed loop.
    convenience init(loop: EventLoop, pipe fileDescriptor: Int32, limit: Int = 64 * 1024,
                     terminal: Bool = false) throws {
        let transport = try StreamTransport.openPipe(loop: loop, fileDescriptor: fileDescriptor, reading: true,
                                                     limit: limit, terminal: terminal)
        self.init(transport: transport)
    }

    /// asyncio's `limit`: reading pauses above twice this many buffered bytes, and `readUntil`
    /// gives up on a separator further than this.
    public var limit: Int { transport.limit }

    /// Reads up to `maxBytes` bytes; with -1 (the default), everything until end of file.
    ///
    /// Returns as soon as any bytes are buffered (at most `maxBytes` of them); returns [] at end of
    /// file, and for `maxBytes == 0`.
    /// - Throws: the connection's error (`UVError.ECONNRESET`, ...); `EventLoopError.loopClosed`;
    ///   `StreamError.readInProgress` while another task waits in a read; `CancellationError`.
    public func read(_ maxBytes: Int = -1) async throws -> [UInt8] {
        let transport = self.transport
        if transport.loop.inLoopThread {
            // The common case without an extra async frame: bytes are there, or wait for a chunk.
            if let bytes = try transport.readNow(maxBytes) { return bytes }
            if maxBytes > 0 { return try await transport.waitForChunk(maxBytes) }
        }
        return try await transport.loop.onLoop { try await transport.read(maxBytes) }
    }

    /// Reads exactly `count` bytes.
    /// - Throws: `StreamError.incompleteRead(partial:expected:)` when end of file comes first (the
    ///   partial bytes are consumed); `StreamError.invalidArgument` for a negative count; and what
    ///   `read` throws.
    public func readExactly(_ count: Int) async throws -> [UInt8] {
        try await transport.loop.onLoop { try await transport.readExactly(count) }
    }

    /// Reads one line, through its `"\n"`; at end of file, the rest without one ([] when none).
    /// - Throws: `StreamError.limitOverrun` for a line longer than `limit`: the line is consumed
    ///   through its newline, also when that arrives later (the next read starts after it); and
    ///   what `read` throws.
    public func readLine() async throws -> [UInt8] {
        try await transport.loop.onLoop { try await transport.readLine() }
    }

    /// Reads through the first occurrence of `separator`, which is included.
    /// - Throws: `StreamError.incompleteRead(partial:expected: nil)` at end of file without the
    ///   separator (the bytes are consumed); `StreamError.limitOverrun(consumed:)` when the
    ///   separator is not within `limit` bytes: the over-long record is consumed through its
    ///   separator, whatever was buffered then, also when the separator arrives later (asyncio
    ///   leaves the bytes buffered; a server needs one defined place to go on from);
    ///   `StreamError.invalidArgument` for an empty separator; and what `read` throws.
    public func readUntil(_ separator: [UInt8]) async throws -> [UInt8] {
        try await transport.loop.onLoop { try await transport.readUntil(separator) }
    }

    /// True when end of file was received and every buffered byte has been read.
    public var atEOF: Bool {
        transport.loop.inLoopThread ? transport.eof && transport.received.isEmpty
            : transport.publishedAtEOF.load(ordering: .relaxed)
    }

    /// Stops reading from the connection or pipe until `resumeReading()` (asyncio's
    /// `transport.pause_reading()`): the peer's bytes wait in the kernel, and then the peer, so a
    /// slow consumer pushes back. Bytes already buffered stay readable; a read that needs more
    /// waits for the resume. Callable from any thread (it takes effect on the loop's thread).
    public func pauseReading() {
        let transport = self.transport
        transport.loop.execute { transport.pauseReadingByUser() }
    }

    /// Reads again after `pauseReading()` (asyncio's `transport.resume_reading()`); nothing
    /// otherwise. Callable from any thread.
    public func resumeReading() {
        let transport = self.transport
        transport.loop.execute { transport.resumeReadingByUser() }
    }

    /// How many received bytes wait to be read. Exact on the loop's thread; from another thread,
    /// the figure the loop last published.
    public var bufferedByteCount: Int {
        transport.loop.inLoopThread ? transport.received.count
            : transport.publishedBufferedCount.load(ordering: .relaxed)
    }

    /// Closes the underlying transport (for a connection, the same as its writer's `close()`).
    /// Buffered bytes stay readable; then reads return [] (EOF). Callable from any thread.
    public func close() {
        let transport = self.transport
        transport.loop.execute { transport.close() }
    }

    // MARK: AsyncSequence

    public typealias Element = [UInt8]

    /// Reads chunks of at most `chunkSize` bytes until end of file.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let reader: StreamReader
        /// The largest chunk one step returns.
        public var chunkSize = 64 * 1024

        /// The next chunk, or nil at end of file.
        /// - Throws: what `read` throws.
        public mutating func next() async throws -> [UInt8]? {
            let chunk = try await reader.read(chunkSize)
            return chunk.isEmpty ? nil : chunk
        }
    }

    /// An iterator over the stream's chunks.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(reader: self) }
}
