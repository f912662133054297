import Synchronization

/// One byte stream on a loop (a TCP or Unix-socket connection, or one end of a pipe): the libuv
/// stream, the bytes received and not yet read, the bytes written and not yet sent, and the
/// lifecycle. `StreamReader` and `StreamWriter` are its public faces.
///
/// `@unchecked Sendable`: every stored property except the immutable ones and the atomics is
/// confined to the loop's thread; the faces hop there (`loop.onLoop`) or post there
/// (`loop.execute`) before they touch anything, and every async entry calls
/// `loop.checkLoopThread()` (on the per-byte paths, so its fields are not boxed one by one in a
/// `LoopBound`). The libuv stream holds the transport as its delegate, so an open
/// transport stays alive until its handle closes (by `close()`, a fatal error, or `EventLoop.close()`
/// walking every handle); it closes itself when both its faces are dropped (`faceDidGo`).
///
/// Reading follows asyncio's `StreamReader`: reading is paused (`uv_read_stop`) while more than
/// 2 × `limit` bytes wait, and resumed once at most `limit` do. Writing follows asyncio's flow
/// control: `drain()` waits while more than `highWater` bytes are unsent, until at most `lowWater`
/// are. At most one `uv_write` is in flight; bytes written meanwhile are coalesced into one chunk.
final class StreamTransport: UVStreamDelegate, @unchecked Sendable {
    enum Kind {
        case tcp
        case unix
        /// A pipe end: no half-close (`writeEOF` closes it), and the reader closes it at EOF.
        case pipe
    }

    /// The lifecycle of the handle.
    enum State {
        case open
        /// `uv_close` was called; the close callback has not run yet.
        case closing
        case closed
    }

    /// The write side's lifecycle: one state instead of a row of flags.
    enum WriteState {
        /// Writes are accepted.
        case open
        /// `writeEOF()`: writes are refused; `shutdown(SHUT_WR)` once the chunk in flight is sent.
        case eofPending
        /// `uv_shutdown` is in flight; `thenClose` when `close()` came meanwhile.
        case shuttingDown(thenClose: Bool)
        /// Half-closed: the shutdown completed (the connection stays open for reading).
        case shutDown
        /// `close()`: writes are refused; the handle closes once the chunk in flight is sent.
        case closePending
        /// Closed, or closing: writes throw `StreamError.closed`.
        case closed
        /// A write failed, the connection died or the loop closed under it: every later write and
        /// drain throws this.
        case failed(any Error)

        var acceptsWrites: Bool { if case .open = self { return true } else { return false } }
    }

    /// A task waiting in a read.
    enum ReadWaiter {
        /// Wants to be woken when anything arrives (or EOF, or an error).
        case data(UnsafeContinuation<Void, any Error>)
        /// `read(maxBytes)`: gets the bytes themselves, or [] at EOF.
        case chunk(Int, UnsafeContinuation<[UInt8], any Error>)
    }

    /// Where one end of a connection is, kept compact: a `SocketAddress` (61 bytes with its host
    /// string) is made when asked for, where storing two cost every connection 128 bytes (B11).
    enum Endpoint {
        case ip(UVSocketAddress)
        case unix(String)

        var address: SocketAddress {
            switch self {
            case .ip(let native): return SocketAddress(native)
            case .unix(let path): return SocketAddress(unixPath: path)
            }
        }
    }

    let loop: EventLoop
    let stream: UVStream
    let kind: Kind
    /// Taken when the connection is made (immutable: readable from any thread).
    let localEndpoint: Endpoint?
    let peerEndpoint: Endpoint?

    var localAddress: SocketAddress? { localEndpoint?.address }
    var peerAddress: SocketAddress? { peerEndpoint?.address }

    // MARK: Lifecycle (loop thread)
    //
    // Confined to the loop thread, so the fields on the per-read and per-write paths skip Swift's
    // dynamic exclusivity checks, as the loop's own hot fields do.

    @exclusivity(unchecked) var state = State.open
    /// True once we asked for the close (close, abort, a fatal error); false when the loop's own
    /// `close()` closed the handle under us.
    @exclusivity(unchecked) var closeRequested = false
    // The one-byte flags of every section sit together here, so that they share 8 bytes
    // instead of padding one each to 8 (B11: every connection carries them).
    @exclusivity(unchecked) var eof = false
    /// True while reading is stopped because too much is buffered.
    @exclusivity(unchecked) var readingPaused = false
    /// True between `pauseReading()` and `resumeReading()`: nothing is read whatever the buffer.
    @exclusivity(unchecked) var pausedByUser = false
    /// For a pseudo-terminal's master (`Stdio.pty`): EIO, which the kernel reports once nothing
    /// has the terminal open, reads as end of file, and `writeEOF` sends the terminal's
    /// end-of-file character before closing.
    @exclusivity(unchecked) var isTerminal = false
    /// The last byte written to a terminal (whether its line is still open); "\n" before any.
    @exclusivity(unchecked) var lastWrittenByte: UInt8 = 0x0A
    /// Set for a server's connections when it has an `idleTimeout`: each byte read or written
    /// stamps `lastActivity`, which the server's idle sweep compares with its deadline.
    @exclusivity(unchecked) var tracksActivity = false
    /// asyncio's "paused writing": set above `highWater`, cleared at or below `lowWater`.
    @exclusivity(unchecked) var writingPaused = false
    var closeWaiters = CloseWaiters()
    /// Called once when the handle has closed (a server counts its connections with it), with
    /// nil; or, when `startTLS` hands the connection over to a new transport, with that one
    /// (which gets the hook). It gets the transport, so that a hook capturing only its server
    /// needs no closure context.
    var onClosed: ((_ transport: StreamTransport, _ successor: StreamTransport?) -> Void)?
    /// TLS, once `startTLS` installed it: the socket's bytes are ciphertext from then on.
    var tls: TLSLayer?

    // MARK: Reading (loop thread)

    @exclusivity(unchecked) var received = ByteQueue()
    @exclusivity(unchecked) var readError: (any Error)?
    @exclusivity(unchecked) var readWaiter: ReadWaiter?
    /// Identifies the current waiter, so a late cancellation cannot hit the next one.
    @exclusivity(unchecked) var readWaiterID: UInt64 = 0
    /// Set when `readUntil` (`readLine`, `lines`) gave up on a record longer than the limit before
    /// its separator had arrived: every later read first discards through that separator, so the
    /// reader is at the next record whatever was buffered when the overrun was seen.
    @exclusivity(unchecked) var skipping: [UInt8]?
    /// asyncio's `limit`: reading pauses above twice this; `readUntil` gives up beyond it.
    let limit: Int

    // MARK: Idle deadline (loop thread)

    /// libuv's millisecond clock (`uv_now`) at the last byte read or written, or at the start.
    @exclusivity(unchecked) var lastActivity: UInt64 = 0

    /// Stamps `lastActivity` when someone looks at it.
    @inline(__always)
    func noteActivity() {
        if tracksActivity { lastActivity = loop.uvLoop.now }
    }

    // MARK: Writing (loop thread)

    /// Where the write side is; its other threads' mirror is `publishedWriteClosed`.
    @exclusivity(unchecked) var writeState = WriteState.open {
        didSet { if !writeState.acceptsWrites { publishedWriteClosed.store(true, ordering: .relaxed) } }
    }
    /// The chunk handed to libuv (`uv_write` in flight), if any.
    @exclusivity(unchecked) var inFlight: ByteChunk?
    /// Bytes written while a chunk is in flight, sent when it completes.
    @exclusivity(unchecked) var pending: ByteChunk?
    /// An emptied chunk kept for reuse.
    var spare: ByteChunk?
    var highWater = 64 * 1024
    var lowWater = 16 * 1024
    var drainWaiters: [(id: UInt64, continuation: UnsafeContinuation<Void, any Error>)] = []
    /// Sendfiles waiting for the bytes written before them to be handed to the kernel, in order.
    var sendfileQueue: [SendfileTicket] = []
    /// Bytes written behind waiting sendfiles (in their tickets), for `drain()`'s count.
    var bytesBehindSendfiles = 0
    /// `sendfile` waiting for the socket to be writable.
    var writableWait: (poll: UVPoll, continuation: UnsafeContinuation<Void, any Error>)?
    @exclusivity(unchecked) var nextWaiterID: UInt64 = 0
    /// A server's handler task for this connection. Nothing can cancel it (no handle to it is
    /// kept), so its waits skip the cancellation handler, which costs about a tenth of a 1 KiB
    /// echo round trip. Cleared when the handler returns, before the task can be freed.
    @exclusivity(unchecked) var uncancellableTask: UnsafeCurrentTask?

    // MARK: Shared with other threads

    /// Mirrors of loop-thread state for the faces' synchronous getters on other threads.
    let publishedAtEOF = Atomic<Bool>(false)
    let publishedWriteClosed = Atomic<Bool>(false)
    /// The socket's or pipe's descriptor while the handle is open, -1 from the close on
    /// (`StreamWriter.fileDescriptor`, the socket options).
    let publishedFileDescriptor = Atomic<Int32>(-1)
    let publishedBufferedCount = Atomic<Int>(0)
    /// The faces not yet deinitialised (`makeStreams` makes two, a pipe's one); at 0 the transport
    /// closes (`faceDidGo`).
    let liveFaces = Atomic<Int>(0)

    /// Wraps `stream` (connected, or an open pipe). Call `start` next. Loop thread.
    init(loop: EventLoop, stream: UVStream, kind: Kind, local: Endpoint? = nil,
         peer: Endpoint? = nil, limit: Int = 64 * 1024) {
        _ = System.keepFreedBuffersInHeap
        self.loop = loop
        self.stream = stream
        self.kind = kind
        self.localEndpoint = local
        self.peerEndpoint = peer
        self.limit = limit
        // The handle holds its delegate strongly until it has closed, and calls nothing after.
        stream.delegate = self
        publishedFileDescriptor.store(stream.fileDescriptor ?? -1, ordering: .relaxed)
    }

    /// Starts reading (asyncio reads from the start, up to the pause threshold), or marks the
    /// reading side finished for a write-only stream. On failure the handle is closed.
    /// - Throws: `UVError` from `uv_read_start` (ENOTCONN for a descriptor not open for reading).
    func start(reading: Bool) throws {
        guard reading else {
            eof = true
            publishReadState()
            return
        }
        do {
            try stream.startReading()
        } catch {
            closeRequested = true
            closeHandle()
            throw error
        }
    }

    /// The byte count `drain()` looks at: in flight plus pending.
    var writeBufferSize: Int { (inFlight?.count ?? 0) + (pending?.count ?? 0) + bytesBehindSendfiles }

    /// The error every later write and drain throws, once the write side failed.
    var writeFailure: (any Error)? {
        if case .failed(let error) = writeState { return error }
        return nil
    }

    var isEOFPending: Bool {
        if case .eofPending = writeState { return true }
        return false
    }

    // MARK: Running on the loop

    func makeWaiterID() -> UInt64 {
        nextWaiterID &+= 1
        return nextWaiterID
    }

    /// Suspends until `store`'s continuation is resumed. A cancellation of the waiting task runs
    /// `cancel` on the loop (which resumes the continuation if it is still waiting), unless the task
    /// cannot be cancelled. Loop thread.
    @inline(__always)
    func suspend<T>(_ store: (UnsafeContinuation<T, any Error>) -> Void,
                    onCancel cancel: @escaping @Sendable () -> Void) async throws -> T {
        let loop = self.loop
        if let owner = uncancellableTask, withUnsafeCurrentTask(body: { $0 == owner }) {
            return try await withUnsafeThrowingContinuation { continuation in
                // (Checked again: entering an async function may have switched executors.)
                do { try loop.checkLoopThread() } catch { return continuation.resume(throwing: error) }
                store(continuation)
            }
        }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<T, any Error>) in
                do { try loop.checkLoopThread() } catch { return continuation.resume(throwing: error) }
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                store(continuation)
            }
        } onCancel: {
            loop.schedule(cancel)
        }
    }

    // MARK: Closing

    /// Closes gracefully: stops reading, sends what is buffered, then closes the handle (and the
    /// descriptor). Idempotent. Loop thread.
    func close() {
        guard !closeRequested, state == .open else { return }
        if let tls, writeState.acceptsWrites || isEOFPending {
            sendCloseNotify(tls)
            armShutdownDeadline(tls)
        }
        closeRequested = true
        stream.stopReading()
        readingPaused = false
        switch writeState {
        case .shuttingDown:
            writeState = .shuttingDown(thenClose: true)
        case .failed:
            closeHandle()
        default:
            // A pending EOF needs no shutdown of its own: the close sends FIN after the bytes.
            if inFlight != nil {
                writeState = .closePending
            } else {
                writeState = .closed
                closeHandle()
            }
        }
    }

    /// Closes at once, dropping unsent bytes; a TCP connection is reset (RST). Loop thread.
    func abort() {
        guard state == .open else { return }
        closeRequested = true
        if writeFailure == nil { writeState = .closed }
        pending?.removeAll()
        if let tcp = stream as? UVTCP { tcp.setResetOnClose() }
        closeHandle()
    }

    /// A read or write error ends the connection (asyncio's `_fatal_error`): every waiter and every
    /// later call sees `error`, and the handle is closed at once.
    func fail(_ error: any Error) {
        if readError == nil { readError = error }
        if writeFailure == nil { writeState = .failed(error) }
        if let tls { endHandshakeWait(tls) }
        wakeReader()
        resumeDrainWaiters()
        guard state == .open else { return }
        closeRequested = true
        closeHandle()
    }

    func closeHandle() {
        guard state == .open else { return }
        state = .closing
        publishedFileDescriptor.store(-1, ordering: .relaxed)
        // A sendfile's poll holds a duplicate of the descriptor: let it go with the handle.
        if writableWait != nil { endWritableWait(writeFailure ?? StreamError.closed) }
        stream.close()
    }

    /// The idle deadline passed (a server's `idleTimeout`): the connection is aborted (reset,
    /// unsent bytes dropped), and pending and later reads and writes throw `UVError.ETIMEDOUT`.
    func timeOut(after seconds: Double) {
        abort(failing: UVError(code: UVError.ETIMEDOUT.code, operation: "idle for \(seconds) s (the server's idleTimeout)"))
    }

    /// Aborts (reset, unsent bytes dropped) with `error` for every pending and later read and
    /// write: the idle deadline's ETIMEDOUT, a shutdown's ECANCELED.
    /// Also a TLS handshake's failure, timeout or cancellation. (Off the loop's thread, when the
    /// loop's close ended a handshake, it does nothing: that close closed the handle.)
    func abort(failing error: any Error) {
        guard loop.inLoopThread, state == .open else { return }
        pending?.removeAll()
        if let tcp = stream as? UVTCP { tcp.setResetOnClose() }
        fail(error)
    }

    /// A face posted a close or EOF from another thread: later posted writes must throw, as they
    /// would once the posted call has run.
    func markWriteClosedFromAnyThread() {
        publishedWriteClosed.store(true, ordering: .relaxed)
    }

    /// The handle's close callback (also when `EventLoop.close()` closed it).
    func streamDidClose() {
        state = .closed
        publishedFileDescriptor.store(-1, ordering: .relaxed)
        if !closeRequested {
            // The loop closed under us: whoever waits learns it.
            if readError == nil { readError = EventLoopError.loopClosed }
            if writeFailure == nil { writeState = .failed(EventLoopError.loopClosed) }
        } else {
            if readError == nil { eof = true }   // asyncio feeds EOF to the reader on connection_lost
            if writeFailure == nil { writeState = .closed }
        }
        if let tls { endHandshakeWait(tls) }
        wakeReader()
        resumeDrainWaiters()
        if !sendfileQueue.isEmpty { failSendfileQueue() }
        pending = nil
        spare = nil
        inFlight = nil
        publishReadState()
        closeWaiters.resumeAll()
        let hook = onClosed
        onClosed = nil
        hook?(self, nil)
    }

    /// Waits until the handle has closed. Loop thread.
    /// - Throws: `CancellationError` when the waiting task is cancelled.
    func waitClosed() async throws {
        guard (try? loop.checkLoopThread()) != nil else { return }
        try await loop.waitUntilClosed(
            isClosed: { state == .closed },
            register: { id, continuation in closeWaiters.add(id, continuation) },
            makeID: { closeWaiters.makeID() },
            cancel: { [self] id in closeWaiters.cancel(id) })
    }
}

extension StreamTransport {
    /// One of the transport's faces (`StreamReader`, `StreamWriter`) is gone: when the last one
    /// is, the transport is closed gracefully on its loop (asyncio closes a transport its writer
    /// leaves behind; here nothing else would, short of `EventLoop.close()`). Any thread.
    func faceDidGo() {
        guard liveFaces.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 else { return }
        // False when the loop is closed: its close() closed the handle already.
        loop.execute { [self] in close() }
    }
}
