import Synchronization

/// The UDP socket behind a `DatagramEndpoint`: the libuv handle, the queue of received datagrams
/// and the waiting `receive()`. Its handle's close hook keeps it alive until the handle has closed;
/// the endpoint (the public face) closes it when dropped.
///
/// What only the loop's thread touches sits in `state`, a `LoopBound`.
final class DatagramSocket: Sendable {
    /// The address the socket is bound to.
    let localAddress: SocketAddress
    /// The peer of a connected endpoint (`remoteAddress` given), else nil.
    let remoteAddress: SocketAddress?
    /// The largest number of datagrams queued before reading pauses.
    let maxQueuedDatagrams: Int

    let loop: EventLoop
    private let closingFlag = Atomic<Bool>(false)

    private struct State {
        let udp: UVUDP
        var queue: [Datagram] = []
        var queueHead = 0
        var pendingErrors: [any Error] = []
        var waiter: (id: UInt64, continuation: UnsafeContinuation<Datagram, any Error>)?
        var nextWaiterID: UInt64 = 0
        var receivingPaused = false
        var closeRequested = false
        var closed = false
        var closeWaiters: [UnsafeContinuation<Void, Never>] = []
    }

    private let state: LoopBound<State>

    /// Takes over a bound (and possibly connected) handle and starts receiving. Loop thread.
    init(loop: EventLoop, udp: UVUDP, maxQueuedDatagrams: Int) throws {
        self.loop = loop
        self.state = LoopBound(State(udp: udp), loop: loop)
        self.maxQueuedDatagrams = Swift.max(1, maxQueuedDatagrams)
        localAddress = udp.localAddress.map(SocketAddress.init) ?? SocketAddress(unixPath: "")
        remoteAddress = udp.peerAddress.map(SocketAddress.init)
        // The close hook holds the endpoint until the handle has closed.
        udp.onClose = { self.didClose() }
        udp.onDatagram = { [unowned(unsafe) self] bytes, address, truncated in
            self.didReceive(Datagram(data: Array(bytes), address: address.map(SocketAddress.init), truncated: truncated))
        }
        udp.onReceiveError = { [unowned(unsafe) self] error in self.report(error) }
        try udp.startReceiving()
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
        let posted = loop.execute {
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
        loop.execute { self.closeOnLoop() }
    }

    /// True once `close()` was called or the endpoint closed.
    var isClosing: Bool { closingFlag.load(ordering: .relaxed) }

    /// Waits until the socket is closed (returns at once when the loop is closed).
    func waitClosed() async {
        try? await loop.onLoop {
            try loop.checkLoopThread()
            guard !state.value.closed else { return }
            await withUnsafeContinuation { continuation in
                guard (try? loop.checkLoopThread()) != nil else { return continuation.resume() }
                state.value.closeWaiters.append(continuation)
            }
        }
    }

    // MARK: Loop thread

    private func sendOnLoop(_ data: [UInt8], to address: SocketAddress?) throws {
        if state.value.closeRequested || state.value.closed { throw StreamError.closed }
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
        let udp = state.value.udp
        let sent = data.withUnsafeBytes { udp.trySend($0, to: destination) }
        if sent >= 0 { return }
        guard sent == Int(UVError.EAGAIN.code) else {
            throw UVError(code: Int32(sent), operation: "send to \(address.map { "\($0)" } ?? "the remote address")")
        }
        // The kernel's buffer is full, or earlier datagrams are queued: queue this one, keeping
        // its bytes alive until libuv calls back.
        let chunk = ByteChunk(capacity: data.count)
        data.withUnsafeBytes { chunk.append($0) }
        // Strong: libuv calls back once per send, ECANCELED at the latest when the handle closes.
        try udp.send(chunk.bytes, to: destination) { [self] status in
            withExtendedLifetime(chunk) {}
            if status < 0 && status != UVError.ECANCELED.code {
                report(UVError(code: status, operation: "send"))
            }
        }
    }

    private func receiveOnLoop() async throws -> Datagram {
        try loop.checkLoopThread()
        if state.value.queueHead < state.value.queue.count { return dequeue() }
        if !state.value.pendingErrors.isEmpty { throw state.value.pendingErrors.removeFirst() }
        if state.value.closeRequested || state.value.closed { throw StreamError.closed }
        if state.value.waiter != nil { throw StreamError.readInProgress }
        state.value.nextWaiterID &+= 1
        let id = state.value.nextWaiterID
        let datagram = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Datagram, any Error>) in
                do { try loop.checkLoopThread() } catch { return continuation.resume(throwing: error) }
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                state.value.waiter = (id, continuation)
            }
        } onCancel: {
            loop.schedule {
                guard let waiter = self.state.value.waiter, waiter.id == id else { return }
                self.state.value.waiter = nil
                waiter.continuation.resume(throwing: CancellationError())
            }
        }
        try loop.checkLoopThread()
        return datagram
    }

    private func dequeue() -> Datagram {
        let datagram = state.value.queue[state.value.queueHead]
        state.value.queueHead += 1
        let (count, head) = (state.value.queue.count, state.value.queueHead)
        if head == count {
            state.value.queue.removeAll(keepingCapacity: true)
            state.value.queueHead = 0
        } else if head >= 256 && head * 2 >= count {
            state.value.queue.removeFirst(head)
            state.value.queueHead = 0
        }
        if state.value.receivingPaused && state.value.queue.count - state.value.queueHead < maxQueuedDatagrams / 2 {
            state.value.receivingPaused = false
            if !state.value.closeRequested && !state.value.closed { try? state.value.udp.startReceiving() }
        }
        return datagram
    }

    private func didReceive(_ datagram: Datagram) {
        if let waiter = state.value.waiter {
            state.value.waiter = nil
            waiter.continuation.resume(returning: datagram)
            return
        }
        state.value.queue.append(datagram)
        if state.value.queue.count - state.value.queueHead >= maxQueuedDatagrams && !state.value.receivingPaused {
            state.value.receivingPaused = true
            state.value.udp.stopReceiving()
        }
    }

    /// asyncio's `error_received`: the next `receive()` throws it.
    private func report(_ error: any Error) {
        if let waiter = state.value.waiter {
            state.value.waiter = nil
            waiter.continuation.resume(throwing: error)
        } else {
            state.value.pendingErrors.append(error)
        }
    }

    private func closeOnLoop() {
        guard !state.value.closeRequested, !state.value.closed else { return }
        state.value.closeRequested = true
        closingFlag.store(true, ordering: .relaxed)
        state.value.udp.close()
    }

    private func didClose() {
        state.value.closed = true
        closingFlag.store(true, ordering: .relaxed)
        if let waiter = state.value.waiter {
            state.value.waiter = nil
            waiter.continuation.resume(throwing: state.value.closeRequested ? StreamError.closed : EventLoopError.loopClosed)
        }
        let waiters = state.value.closeWaiters
        state.value.closeWaiters = []
        for waiter in waiters { waiter.resume() }
    }
}
