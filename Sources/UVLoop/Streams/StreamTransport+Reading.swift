/// The reading side: libuv delivers into `received`; the read operations take from it, in the
/// manner of asyncio's `StreamReader`. Loop thread only.
extension StreamTransport {
    // MARK: From libuv

    func streamDidRead(_ bytes: UnsafeRawBufferPointer) {
        if let tls {
            receiveCiphertext(bytes, tls)
            return
        }
        noteActivity()
        deliver(bytes)
    }

    /// Bytes for the reader (received, or decrypted): to a waiting `read(n)`, or into `received`.
    func deliver(_ bytes: UnsafeRawBufferPointer) {
        // Fast path: a `read(n)` is waiting on an empty queue; give it the bytes directly.
        if case .chunk(let maxBytes, let continuation)? = readWaiter, received.isEmpty {
            readWaiter = nil
            if bytes.count <= maxBytes {
                continuation.resume(returning: Self.copy(bytes))
                return
            }
            continuation.resume(returning: Self.copy(UnsafeRawBufferPointer(rebasing: bytes[..<maxBytes])))
            received.append(UnsafeRawBufferPointer(rebasing: bytes[maxBytes...]))
            publishedBufferedCount.store(received.count, ordering: .relaxed)
        } else {
            received.append(bytes)
            publishedBufferedCount.store(received.count, ordering: .relaxed)
            wakeReader()
        }
        if !readingPaused && received.count > 2 * limit {
            readingPaused = true
            stream.stopReading()
        }
    }

    /// A new array holding `bytes` (one memcpy).
    @inline(__always)
    static func copy(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, count in
            if let base = bytes.baseAddress { buffer.baseAddress!.update(from: base.assumingMemoryBound(to: UInt8.self), count: bytes.count) }
            count = bytes.count
        }
    }

    func streamDidEndReading(_ error: UVError?) {
        if let error, !(isTerminal && error == .EIO) {
            fail(error)
            return
        }
        // An end of file before the handshake finished is its failure; after it, without
        // close_notify, it is an end of file (asyncio's choice).
        if let tls, tls.handshaking {
            fail(tls.engine.makeError("the peer closed the connection during the handshake"))
            return
        }
        eof = true
        publishReadState()
        wakeReader()
        // A read pipe has nothing more to do (asyncio's read-pipe transport closes itself at EOF).
        if kind == .pipe && state == .open {
            closeRequested = true
            closeHandle()
        }
    }

    /// Resumes the waiting reader, if any, with what is there (data, EOF, or the error).
    func wakeReader() {
        guard let waiter = readWaiter else { return }
        readWaiter = nil
        switch waiter {
        case .data(let continuation):
            if let readError {
                continuation.resume(throwing: readError)
            } else {
                continuation.resume()
            }
        case .chunk(let maxBytes, let continuation):
            if let readError {
                continuation.resume(throwing: readError)
            } else if !received.isEmpty {
                let bytes = received.take(min(maxBytes, received.count))
                resumeReadingIfDrained()
                continuation.resume(returning: bytes)
            } else {
                continuation.resume(returning: [])   // EOF
            }
        }
        publishReadState()
    }

    /// asyncio's `_maybe_resume_transport`: reading resumes once at most `limit` bytes wait.
    func resumeReadingIfDrained() {
        if readingPaused && received.count <= limit {
            readingPaused = false
            if state == .open && !eof && !pausedByUser { try? stream.startReading() }
        }
    }

    func publishReadState() {
        publishedAtEOF.store(eof && received.isEmpty, ordering: .relaxed)
        publishedBufferedCount.store(received.count, ordering: .relaxed)
    }

    /// `pauseReading()`: stop reading until `resumeReading()`, whatever is buffered (asyncio's
    /// `transport.pause_reading()`); buffered bytes stay readable.
    func pauseReadingByUser() {
        guard state == .open, !pausedByUser else { return }
        pausedByUser = true
        stream.stopReading()
    }

    /// `resumeReading()`: read again, unless flow control keeps reading paused.
    func resumeReadingByUser() {
        guard pausedByUser else { return }
        pausedByUser = false
        if state == .open && !eof && !readingPaused { try? stream.startReading() }
    }

    // MARK: Waiting

    private func checkNoOtherReader() throws {
        if readWaiter != nil { throw StreamError.readInProgress }
    }

    /// asyncio's `_wait_for_data`: waits until something arrives, EOF, or an error. Resumes a
    /// paused transport first, or a read wanting more than the pause threshold would never finish.
    private func waitForData() async throws {
        try loop.checkLoopThread()
        try checkNoOtherReader()
        if readingPaused {
            readingPaused = false
            if state == .open && !pausedByUser { try? stream.startReading() }
        }
        let id = makeWaiterID()
        try await suspend { (continuation: UnsafeContinuation<Void, any Error>) in
            readWaiter = .data(continuation)
            readWaiterID = id
        } onCancel: {
            self.cancelReadWaiter(id)
        }
        try loop.checkLoopThread()
    }

    /// Waits for a chunk of at most `maxBytes`; [] at EOF.
    func waitForChunk(_ maxBytes: Int) async throws -> [UInt8] {
        try loop.checkLoopThread()
        if skipping != nil {
            try await finishSkipping()
            if let bytes = try readNow(maxBytes) { return bytes }
        }
        try checkNoOtherReader()
        let id = makeWaiterID()
        let bytes = try await suspend { (continuation: UnsafeContinuation<[UInt8], any Error>) in
            readWaiter = .chunk(maxBytes, continuation)
            readWaiterID = id
        } onCancel: {
            self.cancelReadWaiter(id)
        }
        try loop.checkLoopThread()
        return bytes
    }

    private func cancelReadWaiter(_ id: UInt64) {
        guard readWaiterID == id, let waiter = readWaiter else { return }
        readWaiter = nil
        switch waiter {
        case .data(let continuation): continuation.resume(throwing: CancellationError())
        case .chunk(_, let continuation): continuation.resume(throwing: CancellationError())
        }
    }

    // MARK: The read operations (loop thread; the faces hop here)

    func read(_ maxBytes: Int) async throws -> [UInt8] {
        try loop.checkLoopThread()
        if let bytes = try readNow(maxBytes) { return bytes }
        if maxBytes < 0 { return try await readToEOF() }
        return try await waitForChunk(maxBytes)
    }

    /// `read(maxBytes)` when it needs no wait: buffered bytes, [] at EOF or for 0, or the error;
    /// nil when it must wait (or read to EOF, for a negative count).
    @inline(__always)
    func readNow(_ maxBytes: Int) throws -> [UInt8]? {
        if let readError { throw readError }
        if maxBytes == 0 { return [] }
        if maxBytes < 0 || skipping != nil { return nil }
        if received.isEmpty { return eof ? [] : nil }
        let bytes = received.take(min(maxBytes, received.count))
        resumeReadingIfDrained()
        publishReadState()
        return bytes
    }

    private func readToEOF() async throws -> [UInt8] {
        try loop.checkLoopThread()
        try await finishSkipping()
        var result: [UInt8] = []
        while true {
            if let readError { throw readError }
            if !received.isEmpty {
                if result.isEmpty {
                    result = received.takeAll()
                } else {
                    result.append(contentsOf: received.takeAll())
                }
                resumeReadingIfDrained()
                publishReadState()
            }
            if eof { return result }
            try await waitForData()
        }
    }

    func readExactly(_ count: Int) async throws -> [UInt8] {
        try loop.checkLoopThread()
        if count < 0 { throw StreamError.invalidArgument("readExactly size can not be less than zero") }
        if let readError { throw readError }
        if count == 0 { return [] }
        try await finishSkipping()
        while received.count < count {
            if eof {
                let partial = received.takeAll()
                publishReadState()
                throw StreamError.incompleteRead(partial: partial, expected: count)
            }
            try await waitForData()
            if let readError { throw readError }
        }
        let bytes = received.take(count)
        resumeReadingIfDrained()
        publishReadState()
        return bytes
    }

    func readUntil(_ separator: [UInt8]) async throws -> [UInt8] {
        try loop.checkLoopThread()
        if separator.isEmpty { throw StreamError.invalidArgument("Separator should be at least one-byte string") }
        if let readError { throw readError }
        try await finishSkipping()
        var offset = 0
        var found: Int?
        while true {
            if received.count - offset >= separator.count {
                if let index = received.firstIndex(of: separator, from: offset) {
                    found = index
                    break
                }
                offset = received.count + 1 - separator.count
                if offset > limit { throw overrun(consumed: offset, separator: separator, foundAt: nil) }
            }
            if eof {
                let partial = received.takeAll()
                publishReadState()
                throw StreamError.incompleteRead(partial: partial, expected: nil)
            }
            try await waitForData()
            if let readError { throw readError }
        }
        let index = found!
        if index > limit { throw overrun(consumed: index, separator: separator, foundAt: index) }
        let bytes = received.take(index + separator.count)
        resumeReadingIfDrained()
        publishReadState()
        return bytes
    }

    func readLine() async throws -> [UInt8] {
        try loop.checkLoopThread()
        do {
            return try await readUntil(Self.newline)
        } catch StreamError.incompleteRead(let partial, _) {
            return partial
        }
    }

    /// The next line for `StreamReader.lines`, with its terminator; the last one without; nil at
    /// end of file. After a line longer than `limit`, the next call starts after that line's
    /// newline, however much later it arrives (`readUntil`'s rule).
    func nextLine() async throws -> [UInt8]? {
        try loop.checkLoopThread()
        do {
            return try await readUntil(Self.newline)
        } catch StreamError.incompleteRead(let partial, _) {
            return partial.isEmpty ? nil : partial
        }
    }

    private static let newline: [UInt8] = [0x0A]

    /// The `limitOverrun` error for a record longer than the limit, after putting the reader past
    /// it: through its separator when that is buffered (`foundAt`), else everything buffered but
    /// a possible start of the separator, with the rest skipped by the next read.
    private func overrun(consumed: Int, separator: [UInt8], foundAt: Int?) -> StreamError {
        if let foundAt {
            received.removeFirst(foundAt + separator.count)
        } else {
            received.removeFirst(max(received.count - (separator.count - 1), 0))
            skipping = separator
        }
        resumeReadingIfDrained()
        publishReadState()
        return StreamError.limitOverrun(consumed: consumed)
    }

    /// Discards bytes through the separator an over-long record is still waiting for, as they
    /// arrive, keeping no more than a separator's length of them; at end of file, everything.
    private func finishSkipping() async throws {
        while let separator = skipping {
            if let readError { throw readError }
            if let end = received.firstIndex(of: separator, from: 0) {
                received.removeFirst(end + separator.count)
                skipping = nil
            } else if eof {
                received.removeFirst(received.count)
                skipping = nil
            } else {
                received.removeFirst(max(received.count - (separator.count - 1), 0))
            }
            resumeReadingIfDrained()
            publishReadState()
            if skipping != nil { try await waitForData() }
        }
    }
}
