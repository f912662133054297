/// One answer of `EventLoop.getaddrinfo` (an entry of asyncio's `getaddrinfo` list).
public struct AddressInfo: Sendable, Hashable, CustomStringConvertible {
    /// The kind of socket an answer is for.
    public enum SocketType: Sendable, Hashable {
        /// A byte stream (TCP).
        case stream
        /// Datagrams (UDP).
        case datagram
        /// A raw socket.
        case raw
        /// Another `SOCK_*` value.
        case other(Int32)
    }

    /// The address (numeric host and port).
    public var address: SocketAddress
    /// The socket type the answer is for.
    public var socketType: SocketType
    /// The protocol number (`IPPROTO_TCP`, `IPPROTO_UDP`, ...).
    public var socketProtocol: Int32
    /// The canonical name, when `AI_CANONNAME` was asked for (first answer only).
    public var canonicalName: String?

    /// The address and the socket type.
    public var description: String { "\(address) (\(socketType))" }
}
