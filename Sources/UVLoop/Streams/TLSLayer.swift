/// What a TLS implementation gives the stream transport: a record layer driven over memory,
/// on the loop's thread. `UVLoopTLS` implements it on OpenSSL (in-memory BIOs); `UVLoop` itself
/// needs no TLS library. Not API: `@_spi(UVLoopTLS)`, for `UVLoopTLS` only.
@_spi(UVLoopTLS)
public protocol TLSEngine: AnyObject {
    /// Ciphertext received from the peer: the engine reads it while `process` runs (which calls
    /// `handshake()` and `read(into:)`), without a copy, and keeps what it has not read by then.
    func receive(_ ciphertext: UnsafeRawBufferPointer, _ process: () -> Void)
    /// Advances the handshake with what was fed.
    func handshake() -> TLSEngineStep
    /// Decrypts into `buffer`: `.bytes(n)`, `.wantMore` when a whole record has not arrived,
    /// `.closed` at the peer's close_notify, `.failed` on a protocol or verification error.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> TLSEngineStep
    /// Encrypts all of `plaintext` (after the handshake).
    /// - Throws: the engine's error.
    func write(_ plaintext: UnsafeRawBufferPointer) throws
    /// Queues this side's close_notify.
    func shutdown()
    /// At least the plaintext bytes `read(into:)` could return now (what is decrypted and
    /// buffered plus the ciphertext not yet read): the size of a read straight into an array.
    var readableUpperBound: Int { get }
    /// Hands `body` the ciphertext to send, if any, then forgets it.
    func takeOutput(_ body: (UnsafeRawBufferPointer) -> Void)
    /// The error for a failure the stream sees itself: a timeout, an end of file mid-handshake.
    func makeError(_ reason: String) -> any Error
}

@_spi(UVLoopTLS)
public enum TLSEngineStep {
    /// The handshake is complete (`handshake()`).
    case done
    /// `read(into:)` decrypted this many bytes.
    case bytes(Int)
    /// More ciphertext is needed.
    case wantMore
    /// The peer sent close_notify.
    case closed
    case failed(any Error)
}

/// A transport's TLS state: the engine, the handshake's waiter and deadline, the shutdown
/// deadline. Loop thread only (owned by its transport).
final class TLSLayer {
    let engine: any TLSEngine
    var handshaking = true
    var handshakeWaiter: UnsafeContinuation<Void, any Error>?
    var handshakeTimer: TimerHandle?
    var shutdownTimer: TimerHandle?
    /// Our close_notify is queued (by `writeEOF` or `close`).
    var sentCloseNotify = false
    let shutdownTimeout: Double

    init(engine: any TLSEngine, shutdownTimeout: Double) {
        self.engine = engine
        self.shutdownTimeout = shutdownTimeout
    }

    func cancelTimers() {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        shutdownTimer?.cancel()
        shutdownTimer = nil
    }
}

/// TLS on a transport: the handshake, the record layer between the socket's bytes and the
/// reader's and writer's, close_notify. Loop thread only.
extension StreamTransport {
    /// Ciphertext arrived: decrypt what is whole, advance the handshake, send what the engine has.
    func receiveCiphertext(_ bytes: UnsafeRawBufferPointer, _ tls: TLSLayer) {
        noteActivity()
        tls.engine.receive(bytes) { pumpTLS(tls) }
    }

    /// Runs the engine on what it was fed: the handshake first, then every whole record.
    func pumpTLS(_ tls: TLSLayer) {
        if tls.handshaking {
            switch tls.engine.handshake() {
            case .done:
                tls.handshaking = false
                tls.handshakeTimer?.cancel()
                tls.handshakeTimer = nil
                if let waiter = tls.handshakeWaiter {
                    tls.handshakeWaiter = nil
                    waiter.resume()
                }
            case .failed(let error):
                sendTLSOutput(tls)
                fail(error)
                return
            default:
                sendTLSOutput(tls)
                return
            }
        }
        let scratch = PlaintextBuffer.forCurrentThread().bytes
        decrypting: while state == .open && !eof {
            // A `read(n)` waits on an empty queue: decrypt straight into the array it gets.
            if case .chunk(let maxBytes, let continuation)? = readWaiter, received.isEmpty,
               case let capacity = min(maxBytes, tls.engine.readableUpperBound), capacity > 0 {
                var last = TLSEngineStep.wantMore
                let bytes = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
                    count = 0
                    // (Stops when nothing is left to read: a last SSL_read would only say so.)
                    while count < buffer.count && (count == 0 || tls.engine.readableUpperBound > 0) {
                        last = tls.engine.read(into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[count...])))
                        guard case .bytes(let got) = last else { break }
                        count += got
                    }
                }
                if !bytes.isEmpty {
                    readWaiter = nil
                    continuation.resume(returning: bytes)
                }
                if case .bytes = last { continue decrypting }
                if case .wantMore = last { break decrypting }
                if case .failed(let error) = last {
                    sendTLSOutput(tls)
                    fail(error)
                    return
                }
                eof = true   // .closed
                publishReadState()
                wakeReader()
                break decrypting
            }
            guard tls.engine.readableUpperBound > 0 else { break decrypting }
            switch tls.engine.read(into: scratch) {
            case .bytes(let count):
                deliver(UnsafeRawBufferPointer(rebasing: scratch[..<count]))
            case .closed:
                eof = true
                publishReadState()
                wakeReader()
                break decrypting
            case .failed(let error):
                sendTLSOutput(tls)
                fail(error)
                return
            default:
                break decrypting
            }
        }
        sendTLSOutput(tls)
    }

    /// Sends the ciphertext the engine made (handshake messages, records, alerts, close_notify),
    /// unless the write side is already shut or failed.
    func sendTLSOutput(_ tls: TLSLayer) {
        tls.engine.takeOutput { bytes in
            guard state == .open, bytes.count > 0 else { return }
            switch writeState {
            case .open, .eofPending, .closePending: try? writeRaw(bytes)
            default: return
            }
        }
    }

    /// Queues and sends close_notify once (after the handshake; before it there is nothing to end).
    func sendCloseNotify(_ tls: TLSLayer) {
        guard !tls.sentCloseNotify, !tls.handshaking, state == .open else { return }
        tls.sentCloseNotify = true
        tls.engine.shutdown()
        sendTLSOutput(tls)
    }

    /// `close()` on a TLS stream: when the close_notify and the bytes before it are still
    /// unsent after `shutdownTimeout` (a peer that does not read), the connection is aborted.
    func armShutdownDeadline(_ tls: TLSLayer) {
        guard state == .open, tls.shutdownTimer == nil, tls.shutdownTimeout.isFinite else { return }
        let seconds = tls.shutdownTimeout
        tls.shutdownTimer = loop.callLater(seconds) { [self] in
            tls.shutdownTimer = nil
            abort(failing: UVError(code: UVError.ETIMEDOUT.code,
                                   operation: "TLS shutdown not finished after \(seconds) s (shutdownTimeout)"))
        }
    }

    /// Starts TLS on this fresh transport (made by `handOver`): `initial` is what the plain
    /// transport had received (the start of the peer's handshake, maybe). Returns once the
    /// handshake is complete.
    /// - Throws: the engine's error (verification, protocol), its timeout error after
    ///   `handshakeTimeout` seconds, the connection's error; the connection is then closed.
    func startTLS(_ engine: any TLSEngine, initial: [UInt8], handshakeTimeout: Double,
                  shutdownTimeout: Double) async throws {
        try loop.checkLoopThread()
        let tls = TLSLayer(engine: engine, shutdownTimeout: shutdownTimeout)
        self.tls = tls
        if handshakeTimeout.isFinite {
            tls.handshakeTimer = loop.callLater(handshakeTimeout) { [self] in
                tls.handshakeTimer = nil
                guard tls.handshaking else { return }
                abort(failing: engine.makeError("handshake not finished after \(handshakeTimeout) s (handshakeTimeout)"))
            }
        }
        if initial.isEmpty {
            pumpTLS(tls)
        } else {
            initial.withUnsafeBytes { bytes in engine.receive(bytes) { pumpTLS(tls) } }
        }
        if tls.handshaking, state == .open, readError == nil {
            if eof {
                abort(failing: engine.makeError("the peer closed the connection during the handshake"))
            } else {
                let loop = self.loop
                try await withTaskCancellationHandler {
                    try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                        if Task.isCancelled || state != .open {
                            continuation.resume(throwing: readError ?? CancellationError())
                            return
                        }
                        tls.handshakeWaiter = continuation
                    }
                } onCancel: {
                    loop.schedule { [self] in abort(failing: CancellationError()) }
                }
            }
        }
        try loop.checkLoopThread()
        if let readError { throw readError }
        if tls.handshaking { throw StreamError.closed }
    }

    /// Wakes a handshake waiter with the connection's error (fail, close).
    func endHandshakeWait(_ tls: TLSLayer) {
        tls.cancelTimers()
        guard let waiter = tls.handshakeWaiter else { return }
        tls.handshakeWaiter = nil
        waiter.resume(throwing: readError ?? StreamError.closed)
    }
}

// MARK: startTLS: handing a plain connection over to a TLS transport

extension StreamTransport {
    /// Hands the connection over to a new transport, for `startTLS`: once what was written is
    /// sent, the new transport takes the handle (it becomes the stream's delegate) and the
    /// server's place, and this one is retired: its faces throw `StreamError.replacedByTLS`.
    /// Returns the new transport and the bytes received and not read (the peer's first
    /// handshake bytes, maybe).
    /// - Throws: the connection's error; `StreamError.closed` once closed or half-closed;
    ///   `StreamError.readInProgress` while a task waits in a read; `StreamError.invalidArgument`
    ///   for a pipe, a stream with TLS already, or during a sendfile.
    func handOver(keepingTaskBinding: Bool = false) async throws -> (StreamTransport, [UInt8]) {
        try loop.checkLoopThread()
        try checkCanHandOver()
        // What was written before goes out first, in the clear.
        if inFlight != nil {
            let marks = (highWater, lowWater)
            highWater = 0
            lowWater = 0
            updateWritePause()
            defer {
                (highWater, lowWater) = marks
                updateWritePause()
            }
            try await drain()
            try checkCanHandOver()
        }
        let successor = StreamTransport(loop: loop, stream: stream, kind: kind, local: localEndpoint,
                                        peer: peerEndpoint, limit: limit)
        successor.tracksActivity = tracksActivity
        successor.lastActivity = lastActivity
        successor.highWater = highWater
        successor.lowWater = lowWater
        successor.eof = eof
        // The server's handler task binding goes along only when its unbinding does too
        // (`upgrade(... keepingTaskBinding: true)`: the caller unbinds when the handler returns).
        if keepingTaskBinding { successor.uncancellableTask = uncancellableTask }
        let initial = received.takeAll()
        // Retire this transport: it owns nothing any more.
        // (A pauseReading() ends here: the handshake needs the peer's bytes.)
        let wasPaused = readingPaused || pausedByUser
        state = .closed
        closeRequested = true
        readError = StreamError.replacedByTLS
        writeState = .failed(StreamError.replacedByTLS)
        readingPaused = false
        spare = nil
        publishedFileDescriptor.store(-1, ordering: .relaxed)
        publishReadState()
        resumeDrainWaiters()
        closeWaiters.resumeAll()
        let hook = onClosed
        onClosed = nil
        successor.onClosed = hook
        hook?(self, successor)
        // Flow control or the user may have stopped reading; the new transport's buffer is empty.
        if wasPaused, !eof { try? stream.startReading() }
        return (successor, initial)
    }

    private func checkCanHandOver() throws {
        if let readError { throw readError }
        if let writeFailure { throw writeFailure }
        guard state == .open, writeState.acceptsWrites else { throw StreamError.closed }
        guard kind != .pipe else { throw StreamError.invalidArgument("startTLS needs a socket, not a pipe") }
        guard tls == nil else { throw StreamError.invalidArgument("startTLS on a stream that is TLS already") }
        guard sendfileQueue.isEmpty, inFlight.map({ $0.count > 0 }) ?? true else {
            throw StreamError.invalidArgument("startTLS while a sendfile runs")
        }
        if readWaiter != nil { throw StreamError.readInProgress }
    }
}

/// For `UVLoopTLS` (SPI): TLS over a stream's connection.
@_spi(UVLoopTLS)
extension StreamWriter {
    /// Upgrades this plain connection to TLS with `engine` (asyncio's `start_tls`): sends what
    /// was written first, hands the connection over, runs the handshake. This reader and writer
    /// throw `StreamError.replacedByTLS` from then on. On failure the connection is closed.
    /// - Parameter keepingTaskBinding: for a TLS server's handler wrapper only, which runs in the
    ///   server's handler task and calls `endTaskBinding()` on the new writer once its handler
    ///   returns: the new streams' waits then skip the cancellation handler as plain ones do.
    public func upgrade(with engine: any TLSEngine, handshakeTimeout: Double, shutdownTimeout: Double,
                        keepingTaskBinding: Bool = false) async throws -> (StreamReader, StreamWriter) {
        let transport = self.transport
        return try await transport.loop.onLoop {
            let (successor, initial) = try await transport.handOver(keepingTaskBinding: keepingTaskBinding)
            do {
                try await successor.startTLS(engine, initial: initial, handshakeTimeout: handshakeTimeout,
                                             shutdownTimeout: shutdownTimeout)
            } catch {
                successor.abort(failing: error)
                throw error
            }
            return successor.makeStreams()
        }
    }

    /// Ends what `upgrade(... keepingTaskBinding: true)` kept: the handler task has returned.
    public func endTaskBinding() {
        let transport = self.transport
        if transport.loop.inLoopThread {
            transport.uncancellableTask = nil
        } else {
            transport.loop.execute { transport.uncancellableTask = nil }
        }
    }

    /// The engine of a TLS connection (set before its reader and writer exist), else nil.
    public var tlsEngine: (any TLSEngine)? { transport.tls?.engine }
}
