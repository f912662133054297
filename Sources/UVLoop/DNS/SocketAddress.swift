import Glibc

/// A socket address: an IPv4 or IPv6 address and port, or a Unix-socket path.
///
/// What `getaddrinfo` returns, what `Server.addresses`, `StreamWriter.peerAddress` and datagrams
/// report, and where `DatagramEndpoint.send(_:to:)` sends. The host is always numeric; resolve
/// names with `EventLoop.getaddrinfo`.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family.
    public enum Family: Sendable, Hashable {
        /// IPv4.
        case ipv4
        /// IPv6.
        case ipv6
        /// A Unix-domain socket path.
        case unix
    }

    /// `.ipv4`, `.ipv6` or `.unix`.
    public let family: Family
    /// The numeric address (`"127.0.0.1"`, `"::1"`), or the path of a Unix socket.
    public let host: String
    /// The port (0 for Unix sockets).
    public let port: Int

    /// The `sockaddr` form, for IP addresses.
    let native: UVSocketAddress?

    /// An IP address from its numeric form.
    /// - Parameters:
    ///   - host: `"127.0.0.1"`, `"::1"`, `"fe80::1%eth0"`; not a name.
    ///   - port: 0...65535.
    /// - Throws: `UVError.EINVAL` when `host` is not a numeric address or `port` is out of range.
    public init(host: String, port: Int) throws {
        try SocketAddress.checkPort(port)
        guard let native = UVSocketAddress(numericHost: host, port: port) else {
            throw UVError(code: UVError.EINVAL.code, operation: "SocketAddress(\"\(host)\"): not a numeric IPv4 or IPv6 address")
        }
        self.init(native)
    }

    /// The address of a Unix socket.
    public init(unixPath path: String) {
        family = .unix
        host = path
        port = 0
        native = nil
    }

    init(_ native: UVSocketAddress) {
        self.native = native
        family = native.family == AF_INET6 ? .ipv6 : .ipv4
        host = native.host
        port = native.port
    }

    /// `host:port` (`127.0.0.1:8080`), `[host]:port` for IPv6 (`[::1]:8080`), or the Unix path.
    public var description: String {
        switch family {
        case .ipv4: return "\(host):\(port)"
        case .ipv6: return "[\(host)]:\(port)"
        case .unix: return host
        }
    }

    /// Equal when family, address and port are equal.
    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        lhs.family == rhs.family && lhs.host == rhs.host && lhs.port == rhs.port
    }

    /// Hashes what `==` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(family)
        hasher.combine(host)
        hasher.combine(port)
    }

    /// Ports are 0...65535 (asyncio raises OverflowError outside it).
    /// Refuses a host name with a NUL byte: C would read it only up to there, and
    /// `"127.0.0.1\0junk"` would silently mean 127.0.0.1.
    static func checkHost(_ host: String?) throws(UVError) {
        if let host, host.utf8.contains(0) {
            throw UVError(code: UVError.EINVAL.code, operation: "host name \(host.debugDescription) contains a NUL byte")
        }
    }

    static func checkPort(_ port: Int) throws(UVError) {
        guard (0...65535).contains(port) else {
            throw UVError(code: UVError.EINVAL.code, operation: "port \(port) is out of range 0...65535")
        }
    }
}
