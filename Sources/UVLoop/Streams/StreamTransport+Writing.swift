/// The writing side. A write first tries the kernel directly (`uv_try_write`: no request, no
/// copy); what it does not take is copied into a chunk handed to `uv_write`. While that chunk is in
/// flight, later writes are coalesced into `pending`, sent as one chunk when it completes.
/// `writeState` says what the side accepts and what happens once the chunk in flight is sent.
/// Loop thread only.
extension StreamTransport {
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        switch writeState {
        case .open: break
        case .failed(let error): throw error
        default: throw StreamError.closed
        }
        guard bytes.count > 0 else { return }
        if isTerminal { lastWrittenByte = bytes[bytes.count - 1] }
        if inFlight == nil {
            let written = stream.tryWrite(bytes)
            if written < 0 {
                let error = UVError(code: Int32(written), operation: "write")
                fail(error)
                throw error
            }
            if written == bytes.count { return }
            let chunk = takeSpareChunk(minimumCapacity: bytes.count - written)
            chunk.append(UnsafeRawBufferPointer(rebasing: bytes[written...]))
            submit(chunk)
        } else {
            if pending == nil { pending = takeSpareChunk(minimumCapacity: bytes.count) }
            pending!.append(bytes)
        }
        updateWritePause()
    }

    private func takeSpareChunk(minimumCapacity: Int) -> ByteChunk {
        if let chunk = spare {
            spare = nil
            return chunk
        }
        return ByteChunk(capacity: max(minimumCapacity, 64 * 1024))
    }

    /// Hands `chunk` to `uv_write`; the completion sends what was coalesced meanwhile.
    private func submit(_ chunk: ByteChunk) {
        inFlight = chunk
        do {
            try stream.write(chunk.bytes) { [self] status in self.didWrite(status) }
        } catch {
            inFlight = nil
            fail(error)
        }
    }

    private func didWrite(_ status: Int32) {
        guard let chunk = inFlight else { return }
        inFlight = nil
        chunk.removeAll()
        // Keep one emptied chunk of a reasonable size for the next slow write.
        if spare == nil && chunk.capacity <= 1 << 20 { spare = chunk }
        if status < 0 {
            // ECANCELED: the handle is closing (abort, or the loop's close); didClose reports it.
            if status != UVError.ECANCELED.code { fail(UVError(code: status, operation: "write")) }
            return
        }
        guard state == .open else { return }
        if let next = pending, next.count > 0 {
            pending = nil
            submit(next)
        } else {
            flushed()
        }
        updateWritePause()
    }

    /// Everything written has been handed to the kernel: a requested EOF or close can go ahead.
    private func flushed() {
        switch writeState {
        case .eofPending:
            shutdownWrites()
        case .closePending:
            writeState = .closed
            closeHandle()
        default:
            break
        }
    }

    /// asyncio's `pause_writing`/`resume_writing` around the high and low water marks.
    func updateWritePause() {
        let size = writeBufferSize
        if !writingPaused {
            if size > highWater { writingPaused = true }
        } else if size <= lowWater {
            writingPaused = false
            resumeDrainWaiters()
        }
    }

    /// Resumes every `drain()`: with the failure, if any.
    func resumeDrainWaiters() {
        guard !drainWaiters.isEmpty else { return }
        let waiters = drainWaiters
        drainWaiters = []
        let failure = writeFailure
        for waiter in waiters {
            if let failure {
                waiter.continuation.resume(throwing: failure)
            } else {
                waiter.continuation.resume()
            }
        }
    }

    func drain() async throws {
        try loop.checkLoopThread()
        if try !mustWaitToDrain() { return }
        let id = makeWaiterID()
        try await suspend { (continuation: UnsafeContinuation<Void, any Error>) in
            drainWaiters.append((id, continuation))
        } onCancel: {
            self.cancelDrainWaiter(id)
        }
        try loop.checkLoopThread()
    }

    /// The checks of `drain()` that need no wait: throws the failure, or tells whether to wait.
    @inline(__always)
    func mustWaitToDrain() throws -> Bool {
        if let writeFailure { throw writeFailure }
        if let readError, !(readError is EventLoopError) { throw readError }
        return writingPaused && state != .closed
    }

    private func cancelDrainWaiter(_ id: UInt64) {
        guard let index = drainWaiters.firstIndex(where: { $0.id == id }) else { return }
        drainWaiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    /// Half-closes after the buffered bytes are sent (TCP and Unix sockets: `shutdown(SHUT_WR)`);
    /// a pipe has no half-close, so its write end is closed instead. Idempotent.
    func writeEOF() throws {
        switch writeState {
        case .open: break
        case .failed(let error): throw error
        default: return
        }
        if kind == .pipe {
            if isTerminal { try writeTerminalEOF() }
            close()
            return
        }
        writeState = .eofPending
        if inFlight == nil { shutdownWrites() }
    }

    /// A terminal's end of file is a character: at the start of a line it makes the child's read
    /// return 0; after a partial line the first one only ends that line, so two are sent.
    private func writeTerminalEOF() throws {
        guard let character = stream.fileDescriptor.flatMap(System.terminalEOFCharacter) else { return }
        let count = lastWrittenByte == 0x0A || lastWrittenByte == 0x0D ? 1 : 2
        try [UInt8](repeating: character, count: count).withUnsafeBytes { try write($0) }
    }

    /// `uv_shutdown` for a pending EOF, once nothing is in flight.
    private func shutdownWrites() {
        guard state == .open, case .eofPending = writeState else { return }
        writeState = .shuttingDown(thenClose: false)
        do {
            try stream.shutdown { [self] status in
                // Closed, aborted or failed meanwhile: that path owns the state now.
                guard case .shuttingDown(let thenClose) = writeState else { return }
                // ENOTCONN/ECANCELED: the peer or the close got there first; nothing to report.
                if status < 0 && status != UVError.ECANCELED.code && status != UVError.ENOTCONN.code {
                    fail(UVError(code: status, operation: "shutdown"))
                    return
                }
                if thenClose {
                    writeState = .closed
                    closeHandle()
                } else {
                    writeState = .shutDown
                }
            }
        } catch {
            // ENOTCONN: the connection is gone already; there is nothing left to half-close.
            writeState = .shutDown
        }
    }

    func setWriteBufferLimits(high: Int?, low: Int?) throws {
        let high = high ?? (low.map { $0 * 4 } ?? 64 * 1024)
        let low = low ?? high / 4
        guard high >= low, low >= 0 else {
            throw StreamError.invalidArgument("high (\(high)) must be >= low (\(low)) must be >= 0")
        }
        highWater = high
        lowWater = low
        updateWritePause()
    }
}
