import Synchronization

/// The UDP socket behind a `DatagramEndpoint`: the libuv handle, the queue of received datagrams
/// and the waiting `receive()`. Its handle's close hook keeps it alive until the handle has closed;
/// the endpoint (the public face) closes it when dropped.
///
/// Confinement: every stored property except the immutable ones and the atomic is touched only on
/// the loop's thread (hence `@unchecked Sendable`).
final class DatagramSocket: @unchecked Sendable {
    /// The address the socket is bound to.
    let localAddress: SocketAddress
    /// The peer of a connected endpoint (`remoteAddress` given), else nil.
    let remoteAddress: SocketAddress?
    /// The largest number of datagrams queued before reading pauses.
    let maxQueuedDatagrams: Int

    let loop: EventLoop
    private let handle: UVUDP
    private let closingFlag = Atomic<Bool>(false)

    // Loop thread only:
    private var queue: [Datagram] = []
    private var queueHead = 0
    private var pendingErrors: [any Error] = []
    private var waiter: (id: UInt64, continuation: UnsafeContinuation<Datagram, any Error>)?
    private var nextWaiterID: UInt64 = 0
    private var receivingPaused = false
    private var closeRequested = false
    private var closed = false
    private var closeWaiters: [UnsafeContinuation<Void, Never>] = []

    /// Takes over a bound (and possibly connected) handle and starts receiving. Loop thread.
    init(loop: EventLoop, handle: UVUDP, maxQueuedDatagrams: Int) throws {
        self.loop = loop
        self.handle = handle
        self.maxQueuedDatagrams = Swift.max(1, maxQueuedDatagrams)
        localAddress = handle.localAddress.map(SocketAddress.init) ?? SocketAddress(unixPath: "")
        remoteAddress = handle.peerAddress.map(SocketAddress.init)
        // The close hook holds the endpoint until the handle has closed.
        handle.onClose = { self.didClose() }
        handle.onDatagram = { [unowned(unsafe) self] bytes, address, truncated in
            self.didReceive(Datagram(data: Array(bytes), address: address.map(SocketAddress.init), truncated: truncated))
        }
        handle.onReceiveError = { [unowned(unsafe) self] error in self.report(error) }
        try handle.startReceiving()
    }

    /// Sends `data` as one datagram to `address`, or to `remoteAddress` when nil.
    ///
    /// Sends at once when the kernel takes it, else queues it.
    /// - Throws: `StreamError.closed` after `close()`; `StreamError.invalidArgument` for a
    ///   missing address on an unconnected endpoint or another address on a connected one;
    ///   `UVError` (EMSGSIZE for a datagram too large, ECONNREFUSED reported by an earlier send,
    ///   ...); `EventLoopError.loopClosed`. From another thread, only `closed` and `loopClosed`
    ///   are thrown; later errors come from `receive()`.
    func send(_ data: [UInt8], to address: SocketAddress? = nil) throws {
        if loop.inLoopThread {
            try sendOnLoop(data, to: address)
            return
        }
        if closingFlag.load(ordering: .relaxed) { throw StreamError.closed }
        let posted = loop.trySubmit {
            do { try self.sendOnLoop(data, to: address) } catch { self.report(error) }
        }
        if !posted { throw EventLoopError.loopClosed }
    }

    /// Waits for the next datagram.
    /// - Throws: an error the socket reported since the last call (once); `StreamError.closed` once
    ///   the endpoint is closed and its queue empty; `EventLoopError.loopClosed`;
    ///   `CancellationError`; `StreamError.readInProgress` while another task waits.
    func receive() async throws -> Datagram {
        try await loop.onLoop { try await receiveOnLoop() }
    }

    /// Closes the socket; queued sends are dropped. A waiting `receive()` throws
    /// `StreamError.closed`. Idempotent; callable from any thread.
    func close() {
        closingFlag.store(true, ordering: .relaxed)
        if loop.inLoopThread {
            closeOnLoop()
        } else {
            loop.trySubmit { self.closeOnLoop() }
        }
    }

    /// True once `close()` was called or the endpoint closed.
    var isClosing: Bool { closingFlag.load(ordering: .relaxed) }

    /// Waits until the socket is closed (returns at once when the loop is closed).
    func waitClosed() async {
        try? await loop.onLoop {
            guard loop.inLoopThread, !closed else { return }
            await withUnsafeContinuation { continuation in
                guard loop.inLoopThread else { return continuation.resume() }
                closeWaiters.append(continuation)
            }
        }
    }

    // MARK: Loop thread

    private func sendOnLoop(_ data: [UInt8], to address: SocketAddress?) throws {
        if closeRequested || closed { throw StreamError.closed }
        var destination: UVSocketAddress?
        if let address {
            guard let native = address.native else {
                throw StreamError.invalidArgument("DatagramEndpoint.send: \(address) is not an IP address")
            }
            if let remoteAddress, remoteAddress != address {
                throw StreamError.invalidArgument("Invalid address: must be nil or \(remoteAddress) on a connected endpoint")
            }
            // A connected socket takes no destination (libuv: EISCONN).
            destination = remoteAddress == nil ? native : nil
        } else if remoteAddress == nil {
            throw StreamError.invalidArgument("DatagramEndpoint.send: an address is needed on an unconnected endpoint")
        }
        let sent = data.withUnsafeBytes { handle.trySend($0, to: destination) }
        if sent >= 0 { return }
        guard sent == Int(UVError.EAGAIN.code) else {
            throw UVError(code: Int32(sent), operation: "send to \(address.map { "\($0)" } ?? "the remote address")")
        }
        // The kernel's buffer is full, or earlier datagrams are queued: queue this one, keeping
        // its bytes alive until libuv calls back.
        let chunk = ByteChunk(capacity: data.count)
        data.withUnsafeBytes { chunk.append($0) }
        // Strong: libuv calls back once per send, ECANCELED at the latest when the handle closes.
        try handle.send(chunk.bytes, to: destination) { [self] status in
            withExtendedLifetime(chunk) {}
            if status < 0 && status != UVError.ECANCELED.code {
                report(UVError(code: status, operation: "send"))
            }
        }
    }

    private func receiveOnLoop() async throws -> Datagram {
        try loop.checkLoopThread()
        if queueHead < queue.count { return dequeue() }
        if !pendingErrors.isEmpty { throw pendingErrors.removeFirst() }
        if closeRequested || closed { throw StreamError.closed }
        if waiter != nil { throw StreamError.readInProgress }
        nextWaiterID &+= 1
        let id = nextWaiterID
        let datagram = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Datagram, any Error>) in
                guard loop.inLoopThread else { return continuation.resume(throwing: EventLoopError.loopClosed) }
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                waiter = (id, continuation)
            }
        } onCancel: {
            loop.trySubmit {
                guard let waiter = self.waiter, waiter.id == id else { return }
                self.waiter = nil
                waiter.continuation.resume(throwing: CancellationError())
            }
        }
        if !loop.inLoopThread { throw EventLoopError.loopClosed }
        return datagram
    }

    private func dequeue() -> Datagram {
        let datagram = queue[queueHead]
        queueHead += 1
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        } else if queueHead >= 256 && queueHead * 2 >= queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        if receivingPaused && queue.count - queueHead < maxQueuedDatagrams / 2 {
            receivingPaused = false
            if !closeRequested && !closed { try? handle.startReceiving() }
        }
        return datagram
    }

    private func didReceive(_ datagram: Datagram) {
        if let waiter {
            self.waiter = nil
            waiter.continuation.resume(returning: datagram)
            return
        }
        queue.append(datagram)
        if queue.count - queueHead >= maxQueuedDatagrams && !receivingPaused {
            receivingPaused = true
            handle.stopReceiving()
        }
    }

    /// asyncio's `error_received`: the next `receive()` throws it.
    private func report(_ error: any Error) {
        if let waiter {
            self.waiter = nil
            waiter.continuation.resume(throwing: error)
        } else {
            pendingErrors.append(error)
        }
    }

    private func closeOnLoop() {
        guard !closeRequested, !closed else { return }
        closeRequested = true
        closingFlag.store(true, ordering: .relaxed)
        handle.close()
    }

    private func didClose() {
        closed = true
        closingFlag.store(true, ordering: .relaxed)
        if let waiter {
            self.waiter = nil
            waiter.continuation.resume(throwing: closeRequested ? StreamError.closed : EventLoopError.loopClosed)
        }
        let waiters = closeWaiters
        closeWaiters = []
        for waiter in waiters { waiter.resume() }
    }
}
