import Glibc

/// Name resolution (asyncio's `loop.getaddrinfo`) and the address lookups servers and clients make.
extension EventLoop {
    /// Resolves `host` and `port` into socket addresses, on libuv's thread pool (`uv_getaddrinfo`),
    /// without blocking the loop (asyncio's `loop.getaddrinfo`).
    ///
    /// - Parameters:
    ///   - host: a name (`"localhost"`) or a numeric address; nil for the loopback address, or for
    ///     the wildcard address with `AI_PASSIVE` in `flags`.
    ///   - port: 0...65535; nil for 0.
    ///   - family: `.ipv4` or `.ipv6` to restrict the answers; nil for both.
    ///   - type: `.stream` or `.datagram` to restrict the answers; nil for every kind.
    ///   - flags: `AI_*` flags (`AI_PASSIVE`, `AI_CANONNAME`, `AI_NUMERICHOST`, ...).
    /// - Returns: the answers, in the resolver's order of preference.
    /// - Throws: `UVError` (`EAI_NONAME` for an unknown host, `EAI_AGAIN`, ...; `EINVAL` for a port
    ///   out of range, a host name with a NUL byte or a `.unix` family); `EventLoopError.loopClosed`.
    public func getaddrinfo(_ host: String?, port: Int? = nil, family: SocketAddress.Family? = nil,
                            type: AddressInfo.SocketType? = nil, flags: Int32 = 0) async throws -> [AddressInfo] {
        if let port { try SocketAddress.checkPort(port) }
        let familyValue: Int32
        switch family {
        case nil: familyValue = AF_UNSPEC
        case .ipv4?: familyValue = AF_INET
        case .ipv6?: familyValue = AF_INET6
        case .unix?: throw UVError(code: UVError.EINVAL.code, operation: "getaddrinfo: family .unix")
        }
        let typeValue: Int32
        switch type {
        case nil: typeValue = 0
        case .stream?: typeValue = UVSocketType.stream
        case .datagram?: typeValue = UVSocketType.datagram
        case .raw?: typeValue = UVSocketType.raw
        case .other(let value)?: typeValue = value
        }
        let answers = try await resolve(host, port: port ?? 0, family: familyValue, socketType: typeValue, flags: flags)
        return answers.map { answer in
            let kind: AddressInfo.SocketType
            switch answer.socketType {
            case UVSocketType.stream: kind = .stream
            case UVSocketType.datagram: kind = .datagram
            case UVSocketType.raw: kind = .raw
            default: kind = .other(answer.socketType)
            }
            return AddressInfo(address: SocketAddress(answer.address), socketType: kind,
                               socketProtocol: answer.socketProtocol, canonicalName: answer.canonicalName)
        }
    }

    /// Runs `uv_getaddrinfo` on the loop thread and waits for its answer.
    func resolve(_ host: String?, port: Int, family: Int32, socketType: Int32, flags: Int32) async throws -> [UVAddressInfo] {
        try SocketAddress.checkHost(host)
        return try await onLoop {
            try checkLoopThread()
            return try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<[UVAddressInfo], any Error>) in
                do {
                    try checkLoopThread()
                    try UVGetAddrInfo.resolve(loop: uvLoop, host: host, service: String(port), family: family,
                                              socketType: socketType, socketProtocol: 0, flags: flags) { result in
                        switch result {
                        case .success(let answers):
                            continuation.resume(returning: answers)
                        case .failure(let error):
                            continuation.resume(throwing: UVError(code: error.code, operation: "getaddrinfo(\(host ?? "nil"), \(port))"))
                        }
                    }
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// The addresses to connect to or bind for `host`: a numeric address at once, a name through
    /// `getaddrinfo` (nil or "" with `passive`: every local address). Duplicates are dropped.
    func socketAddresses(_ host: String?, port: Int, socketType: Int32, passive: Bool) async throws -> [UVSocketAddress] {
        try SocketAddress.checkPort(port)
        try SocketAddress.checkHost(host)
        let name = (host?.isEmpty ?? true) ? nil : host
        if let name, let literal = UVSocketAddress(numericHost: name, port: port) { return [literal] }
        let answers = try await resolve(name, port: port, family: AF_UNSPEC, socketType: socketType,
                                        flags: passive ? AI_PASSIVE : 0)
        var seen = Set<SocketAddress>()
        var result: [UVSocketAddress] = []
        for answer in answers where seen.insert(SocketAddress(answer.address)).inserted {
            result.append(answer.address)
        }
        if result.isEmpty { throw UVError(code: UVError.EAI_NONAME.code, operation: "getaddrinfo(\(host ?? "nil"))") }
        return result
    }
}
