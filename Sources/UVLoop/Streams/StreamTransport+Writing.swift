import Glibc

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
        if let tls {
            try tls.engine.write(bytes)
            sendTLSOutput(tls)
            if let writeFailure { throw writeFailure }
            return
        }
        if isTerminal { lastWrittenByte = bytes[bytes.count - 1] }
        try writeRaw(bytes)
    }

    /// Hands `bytes` to the socket as they are (plain bytes, or TLS records): to the kernel when it
    /// takes them, else into the chunk in flight or the pending one.
    func writeRaw(_ bytes: UnsafeRawBufferPointer) throws {
        if inFlight == nil {
            let written = stream.tryWrite(bytes)
            if written < 0 {
                let error = UVError(code: Int32(written), operation: "write")
                fail(error)
                throw error
            }
            if written > 0 { noteActivity() }
            if written == bytes.count { return }
            let chunk = takeSpareChunk(minimumCapacity: bytes.count - written)
            chunk.append(UnsafeRawBufferPointer(rebasing: bytes[written...]))
            submit(chunk)
        } else if let ticket = sendfileQueue.last {
            // A sendfile waits its turn: what is written after it goes after its file.
            ticket.append(bytes)
            bytesBehindSendfiles += bytes.count
        } else {
            if pending == nil { pending = takeSpareChunk(minimumCapacity: bytes.count) }
            pending!.append(bytes)
        }
        updateWritePause()
    }

    fileprivate func takeSpareChunk(minimumCapacity: Int) -> ByteChunk {
        if let chunk = spare {
            spare = nil
            return chunk
        }
        return ByteChunk(capacity: max(minimumCapacity, 64 * 1024))
    }

    /// Hands `chunk` to `uv_write`; the completion sends what was coalesced meanwhile.
    fileprivate func submit(_ chunk: ByteChunk) {
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
        noteActivity()
        sendPendingOrFlush()
    }

    /// Nothing is in flight: the bytes coalesced meanwhile go now, or, when there are none, what
    /// waited for the write side to be idle (a sendfile, an EOF, a close).
    fileprivate func sendPendingOrFlush() {
        if let next = pending, next.count > 0 {
            pending = nil
            submit(next)
        } else {
            flushed()
        }
        updateWritePause()
    }

    /// Everything written has been handed to the kernel: a requested EOF or close can go ahead.
    fileprivate func flushed() {
        // A sendfile waiting its turn goes before a pending EOF or close.
        if !sendfileQueue.isEmpty {
            startNextSendfile()
            return
        }
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
        if let tls { sendCloseNotify(tls) }
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

/// `StreamWriter.sendfile`: file bytes handed to the kernel with sendfile(2), no copy through user
/// space, in order with the writes around it. While a sendfile runs, a sentinel chunk stands "in
/// flight", so later writes coalesce into `pending` behind it, and `close()`, `writeEOF()` and
/// `drain()` wait for it as for a write. A sendfile called while bytes are still in flight takes a
/// ticket in `sendfileQueue`: bytes written after it collect in its ticket, and its turn comes when
/// everything before it has been handed to the kernel (`flushed()`). When the socket is full, a
/// poll on a duplicate of its descriptor (libuv watches the original for reading) waits until it
/// is writable. Loop thread only.
final class SendfileTicket {
    let id: UInt64
    var continuation: UnsafeContinuation<Void, any Error>?
    /// Bytes written after this sendfile was called (and before the next one).
    var trailing: ByteChunk?
    /// Set when its turn comes: the chunk that stands in flight while it runs.
    var sentinel: ByteChunk?

    init(id: UInt64) { self.id = id }

    func append(_ bytes: UnsafeRawBufferPointer) {
        if trailing == nil { trailing = ByteChunk(capacity: bytes.count) }
        trailing!.append(bytes)
    }
}

extension StreamTransport {
    func sendfile(_ file: Int32, offset: Int64, count: Int?) async throws -> Int {
        try loop.checkLoopThread()
        guard offset >= 0, (count ?? 0) >= 0 else { throw EventLoopError.invalidArgument }
        try Socket.checkRegularFile(file, "sendfile")
        try checkWritable()
        if tls != nil { return try await sendfileThroughTLS(file, offset: offset, count: count) }
        let sentinel: ByteChunk
        if inFlight == nil {
            sentinel = ByteChunk(capacity: 0)
            inFlight = sentinel
        } else {
            // What was written before goes first: wait for the turn.
            let ticket = SendfileTicket(id: makeWaiterID())
            let ticketID = ticket.id
            sendfileQueue.append(ticket)
            try await suspend { (continuation: UnsafeContinuation<Void, any Error>) in
                ticket.continuation = continuation
            } onCancel: { [self] in
                withdraw(ticketID: ticketID)
            }
            try loop.checkLoopThread()
            guard let started = ticket.sentinel else { throw writeFailure ?? StreamError.closed }
            sentinel = started
        }
        defer { sendfileDidEnd(sentinel) }
        var position = offset
        var sent = 0
        while count.map({ sent < $0 }) ?? true {
            guard state == .open, let fd = stream.fileDescriptor else { throw writeFailure ?? StreamError.closed }
            let step = min(count.map { $0 - sent } ?? Int.max, 1 << 30)
            let result = Socket.sendfile(to: fd, from: file, offset: &position, count: step)
            if result > 0 {
                sent += result
                noteActivity()
            } else if result == 0 {
                break   // the file ended first
            } else if result == -EAGAIN {
                try await waitUntilWritable(fd)
            } else {
                let error = UVError(errno: Int32(-result), operation: "sendfile")
                if result == -EPIPE || result == -ECONNRESET || result == -ENOTCONN { fail(error) }
                throw error
            }
        }
        return sent
    }

    /// sendfile on a TLS connection: the kernel cannot encrypt, so the file is read (256 KiB at a
    /// time) and written through TLS, with `drain()` between (asyncio's fallback for SSL).
    private func sendfileThroughTLS(_ file: Int32, offset: Int64, count: Int?) async throws -> Int {
        var sent = 0
        while count.map({ sent < $0 }) ?? true {
            let step = min(count.map { $0 - sent } ?? Int.max, 256 * 1024)
            let bytes = try Socket.readFile(file, offset: offset + Int64(sent), count: step)
            if bytes.isEmpty { break }
            try bytes.withUnsafeBytes { try write($0) }
            sent += bytes.count
            try await drain()
        }
        return sent
    }

    private func checkWritable() throws {
        switch writeState {
        case .open: return
        case .failed(let error): throw error
        default: throw StreamError.closed
        }
    }

    /// The first waiting sendfile's turn: the bytes written after it become `pending` (they go
    /// once its file is sent). Called by `flushed()`, when nothing is in flight or pending.
    func startNextSendfile() {
        let ticket = sendfileQueue.removeFirst()
        let sentinel = ByteChunk(capacity: 0)
        ticket.sentinel = sentinel
        inFlight = sentinel
        if let trailing = ticket.trailing {
            ticket.trailing = nil
            bytesBehindSendfiles -= trailing.count
            pending = trailing
        }
        ticket.continuation?.resume()
        ticket.continuation = nil
    }

    /// A waiting sendfile was cancelled: its place goes, the bytes written after it keep theirs.
    private func withdraw(ticketID: UInt64) {
        guard let index = sendfileQueue.firstIndex(where: { $0.id == ticketID }) else { return }
        let ticket = sendfileQueue.remove(at: index)
        if let trailing = ticket.trailing {
            ticket.trailing = nil
            if index > 0 {
                sendfileQueue[index - 1].append(trailing.bytes)
            } else {
                bytesBehindSendfiles -= trailing.count
                if pending == nil { pending = takeSpareChunk(minimumCapacity: trailing.count) }
                pending!.append(trailing.bytes)
            }
        }
        ticket.continuation?.resume(throwing: CancellationError())
        ticket.continuation = nil
    }

    /// The connection closed or failed: every waiting sendfile throws.
    func failSendfileQueue() {
        let tickets = sendfileQueue
        sendfileQueue = []
        bytesBehindSendfiles = 0
        let failure = writeFailure ?? StreamError.closed
        for ticket in tickets {
            ticket.continuation?.resume(throwing: failure)
            ticket.continuation = nil
        }
    }

    /// Waits for the socket to take bytes again: a poll on a duplicate of its descriptor, closed
    /// when the wait ends (by writability, the connection's close, or cancellation).
    private func waitUntilWritable(_ fd: Int32) async throws {
        let copy = Socket.duplicate(fd)
        if copy < 0 { throw UVError(errno: -copy, operation: "dup(fd \(fd))") }
        let poll: UVPoll
        do {
            poll = try UVPoll(loop: loop.uvLoop, fileDescriptor: copy) { _, _ in }
        } catch {
            Glibc.close(copy)
            throw error
        }
        poll.whenClosed = { Glibc.close(copy) }
        defer { poll.close() }
        let pollID = ObjectIdentifier(poll)
        try await suspend { (continuation: UnsafeContinuation<Void, any Error>) in
            writableWait = (poll, continuation)
            poll.callback = { [unowned(unsafe) self] _, _ in endWritableWait(nil) }
            do {
                try poll.start(.writable)
            } catch {
                endWritableWait(error)
            }
        } onCancel: { [self] in
            if let wait = writableWait, ObjectIdentifier(wait.poll) == pollID { endWritableWait(CancellationError()) }
        }
    }

    /// Ends the wait in `waitUntilWritable`, if any: with `error`, or writable.
    func endWritableWait(_ error: (any Error)?) {
        guard let wait = writableWait else { return }
        writableWait = nil
        wait.poll.stop()
        wait.poll.callback = { _, _ in }
        if let error { wait.continuation.resume(throwing: error) } else { wait.continuation.resume() }
    }

    /// Hands the write side back: what was queued meanwhile goes now, then the next sendfile, or
    /// a pending EOF or close.
    private func sendfileDidEnd(_ sentinel: ByteChunk) {
        guard inFlight === sentinel else { return }
        inFlight = nil
        guard state == .open else { return }
        sendPendingOrFlush()
    }
}
