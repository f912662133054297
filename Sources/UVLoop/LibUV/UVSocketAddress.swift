import CLibUV
import Glibc

/// An IPv4 or IPv6 socket address: what libuv's bind, connect and send calls take, and what its
/// name and receive calls return. Held in a `sockaddr_in6` (28 bytes, which a `sockaddr_in` fits
/// in) rather than a 128-byte `sockaddr_storage`: every connection keeps two (B11).
struct UVSocketAddress {
    private(set) var storage = sockaddr_in6()

    /// Parses a numeric address (`"127.0.0.1"`, `"::1"`, `"fe80::1%lo"`); nil when `host` is not
    /// one (a name such as `"localhost"` needs `UVGetAddrInfo`).
    /// - Precondition: `port` is in 0...65535 (callers validate it first).
    init?(numericHost host: String, port: Int) {
        var storage = sockaddr_in6()
        let ok = withUnsafeMutableBytes(of: &storage) { raw -> Bool in
            if uv_ip4_addr(host, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)) == 0 {
                return true
            }
            // uv_ip6_addr accepts "addr%scope"; it leaves the family set even on failure.
            return uv_ip6_addr(host, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)) == 0
        }
        guard ok else { return nil }
        self.storage = storage
    }

    /// The address a libuv name query fills in (`uv_tcp_getsockname`, `uv_udp_getpeername`...);
    /// nil when the call fails or the family is neither IPv4 nor IPv6.
    init?(querying call: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<Int32>) -> Int32) {
        var query = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let address = withUnsafeMutableBytes(of: &query) { raw -> UVSocketAddress? in
            let address = raw.baseAddress!.assumingMemoryBound(to: sockaddr.self)
            guard call(address, &length) == 0 else { return nil }
            return UVSocketAddress(copying: address)
        }
        guard let address else { return nil }
        self = address
    }

    /// Copies an address libuv or the kernel filled in (IPv4 or IPv6; nil for anything else).
    init?(copying address: UnsafePointer<sockaddr>) {
        let family = Int32(address.pointee.sa_family)
        var storage = sockaddr_in6()
        switch family {
        case AF_INET:
            withUnsafeMutableBytes(of: &storage) {
                $0.baseAddress!.copyMemory(from: address, byteCount: MemoryLayout<sockaddr_in>.size)
            }
        case AF_INET6:
            withUnsafeMutableBytes(of: &storage) {
                $0.baseAddress!.copyMemory(from: address, byteCount: MemoryLayout<sockaddr_in6>.size)
            }
        default:
            return nil
        }
        self.storage = storage
    }

    /// The IP address a system call filled in (nil for another family).
    init?(_ storage: sockaddr_storage) {
        var storage = storage
        guard let address = withUnsafePointer(to: &storage, {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { UVSocketAddress(copying: $0) }
        }) else { return nil }
        self = address
    }

    /// The IP address the socket `fd` is bound to, nil when unbound or not an IP socket.
    init?(boundTo fd: Int32) {
        guard let storage = Socket.localAddress(fd) else { return nil }
        self.init(storage)
    }

    /// `AF_INET` or `AF_INET6`.
    var family: Int32 { Int32(storage.sin6_family) }

    /// True for the "any address" of its family (0.0.0.0 or ::): a socket bound to it has a
    /// local address of its own per connection.
    var isWildcard: Bool {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                return raw[8..<24].allSatisfy { $0 == 0 }    // sin6_addr
            }
            return raw[4..<8].allSatisfy { $0 == 0 }         // sin_addr
        }
    }

    /// The size of the `sockaddr` this holds (`sockaddr_in` or `sockaddr_in6`).
    var length: Int { family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size }

    /// The numeric host (`"127.0.0.1"`, `"::1"`).
    var host: String {
        withUnsafeBytes(of: storage) { raw in
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
                buffer.initialize(repeating: 0)
                if family == AF_INET6 {
                    uv_ip6_name(raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self), buffer.baseAddress!, 64)
                } else {
                    uv_ip4_name(raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self), buffer.baseAddress!, 64)
                }
                return String(cString: buffer.baseAddress!)
            }
        }
    }

    /// The port, in host byte order.
    var port: Int {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                return Int(UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port))
            }
            return Int(UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port))
        }
    }

    /// The same address with another port.
    func with(port: Int) -> UVSocketAddress {
        var copy = self
        withUnsafeMutableBytes(of: &copy.storage) { raw in
            if family == AF_INET6 {
                raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self).pointee.sin6_port = UInt16(port).bigEndian
            } else {
                raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self).pointee.sin_port = UInt16(port).bigEndian
            }
        }
        return copy
    }

    /// Calls `body` with a `sockaddr` pointer valid for the call.
    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: storage) { raw in
            try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self))
        }
    }
}

/// One entry of a `getaddrinfo` answer.
struct UVAddressInfo {
    var address: UVSocketAddress
    var socketType: Int32
    var socketProtocol: Int32
    var canonicalName: String?
}
