/// One datagram received by a `DatagramEndpoint`.
public struct Datagram: Sendable, Hashable {
    /// The payload.
    public var data: [UInt8]
    /// The sender (nil when the kernel did not say).
    public var address: SocketAddress?
    /// True when the datagram was longer than the receive buffer (64 KiB) and was cut.
    public var truncated: Bool

    /// A datagram with its payload and, for received ones, the sender.
    public init(data: [UInt8], address: SocketAddress?, truncated: Bool = false) {
        self.data = data
        self.address = address
        self.truncated = truncated
    }
}
