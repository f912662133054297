import CLibUV
import Glibc

/// `uv_getaddrinfo_t`: name resolution on libuv's thread pool.
enum UVGetAddrInfo {
    /// Resolves `host`/`service`; `completion` runs on the loop thread with the answers (in the
    /// resolver's order) or libuv's error (`UV_EAI_NONAME`, `UV_EAI_AGAIN`, `UV_ECANCELED`, ...).
    /// - Parameters:
    ///   - host: a name or numeric address; nil for the wildcard/loopback address (per `flags`).
    ///   - service: a port number or service name; nil for port 0.
    /// - Throws: `UVError` when the request cannot start (then `completion` is never called).
    static func resolve(loop: UVRunLoop, host: String?, service: String?,
                        family: Int32, socketType: Int32, socketProtocol: Int32, flags: Int32,
                        completion: @escaping (Result<[UVAddressInfo], UVError>) -> Void) throws(UVError) {
        let request = UVRequest.allocate(UV_GETADDRINFO, completion)
        var hints = addrinfo()
        hints.ai_family = family
        hints.ai_socktype = socketType
        hints.ai_protocol = socketProtocol
        hints.ai_flags = flags
        let callback: uv_getaddrinfo_cb = { request, status, list in
            // The list belongs to us whatever the status; copy it out and free it first.
            var answers: [UVAddressInfo] = []
            var entry = list
            while let current = entry {
                if let address = current.pointee.ai_addr, let parsed = UVSocketAddress(copying: address) {
                    answers.append(UVAddressInfo(
                        address: parsed,
                        socketType: current.pointee.ai_socktype,
                        socketProtocol: current.pointee.ai_protocol,
                        canonicalName: current.pointee.ai_canonname.map { String(cString: $0) }))
                }
                entry = current.pointee.ai_next
            }
            if let list { uv_freeaddrinfo(list) }
            guard let request else { return }
            let completion = UVRequest.finish(UnsafeMutableRawPointer(request), as: Result<[UVAddressInfo], UVError>.self)
            if status < 0 {
                completion(.failure(UVError(code: status, operation: "getaddrinfo")))
            } else {
                completion(.success(answers))
            }
        }
        let rc = uv_getaddrinfo(loop.pointer, request.assumingMemoryBound(to: uv_getaddrinfo_t.self), callback,
                                host, service, &hints)
        if rc < 0 {
            UVRequest.abandon(request, as: Result<[UVAddressInfo], UVError>.self)
            throw UVError(code: rc, operation: "getaddrinfo(\(host ?? "nil"))")
        }
    }
}

/// Socket type numbers (`SOCK_STREAM`, ...), for the layers above: Glibc's Swift overlay does not
/// export them on every build configuration, libuv's headers do.
enum UVSocketType {
    static let stream = Int32(SOCK_STREAM.rawValue)
    static let datagram = Int32(SOCK_DGRAM.rawValue)
    static let raw = Int32(SOCK_RAW.rawValue)
}
