/// A UDP socket on a loop, made by `EventLoop.createDatagramEndpoint` (asyncio's datagram
/// transport and protocol, in async form).
///
/// asyncio calls a protocol's `datagram_received(data, addr)` and `error_received(exc)`; here the
/// endpoint queues what arrives and `receive()` (or iterating the endpoint) returns it in order:
/// ```swift
/// let endpoint = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 0))
/// for try await datagram in endpoint {
///     try endpoint.send(datagram.data, to: datagram.address)   // echo
/// }
/// ```
/// Errors the socket reports asynchronously (ECONNREFUSED after an ICMP "port unreachable" on a
/// connected endpoint, a queued send that failed) are thrown by the next `receive()`, once each.
/// At most `maxQueuedDatagrams` wait in the queue: beyond that the endpoint stops reading and
/// the kernel's buffer, then the kernel, drops the excess, as UDP does.
///
/// - Warning: The endpoint's state lives on its loop's thread; `send` and `close` may be called
///   from any thread (posted to the loop), `receive` from any task (it hops to the loop).
public final class DatagramEndpoint: Sendable, AsyncSequence {
    let socket: DatagramSocket

    init(socket: DatagramSocket) { self.socket = socket }

    deinit {
        // Dropped without close(): close it on its loop (false when the loop is closed, which
        // closed the handle already).
        socket.close()
    }

    /// The address the socket is bound to.
    public var localAddress: SocketAddress { socket.localAddress }
    /// The peer of a connected endpoint (`remoteAddress` given), else nil.
    public var remoteAddress: SocketAddress? { socket.remoteAddress }
    /// The largest number of datagrams queued before reading pauses.
    public var maxQueuedDatagrams: Int { socket.maxQueuedDatagrams }

    /// Sends `data` as one datagram to `address`, or to `remoteAddress` when nil.
    ///
    /// Sends at once when the kernel takes it, else queues it.
    /// - Throws: `StreamError.closed` after `close()`; `StreamError.invalidArgument` for a
    ///   missing address on an unconnected endpoint or another address on a connected one;
    ///   `UVError` (EMSGSIZE for a datagram too large, ECONNREFUSED reported by an earlier send,
    ///   ...); `EventLoopError.loopClosed`. From another thread, only `closed` and `loopClosed`
    ///   are thrown; later errors come from `receive()`.
    public func send(_ data: [UInt8], to address: SocketAddress? = nil) throws {
        try socket.send(data, to: address)
    }

    /// Waits for the next datagram.
    /// - Throws: an error the socket reported since the last call (once); `StreamError.closed` once
    ///   the endpoint is closed and its queue empty; `EventLoopError.loopClosed`;
    ///   `CancellationError`; `StreamError.readInProgress` while another task waits.
    public func receive() async throws -> Datagram {
        try await socket.receive()
    }

    /// Closes the socket; queued sends are dropped. A waiting `receive()` throws
    /// `StreamError.closed`. Idempotent; callable from any thread.
    public func close() { socket.close() }

    /// True once `close()` was called or the endpoint closed.
    public var isClosing: Bool { socket.isClosing }

    /// Waits until the socket is closed (returns at once when the loop is closed).
    public func waitClosed() async { await socket.waitClosed() }

    // MARK: AsyncSequence: the datagrams until the endpoint closes

    public typealias Element = Datagram

    /// Receives datagrams until the endpoint closes.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let endpoint: DatagramEndpoint

        /// The next datagram, or nil once the endpoint is closed.
        public mutating func next() async throws -> Datagram? {
            do {
                return try await endpoint.receive()
            } catch StreamError.closed {
                return nil
            }
        }
    }

    /// An iterator over received datagrams.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(endpoint: self) }
}
