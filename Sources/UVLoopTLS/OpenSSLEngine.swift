import COpenSSL
import Glibc
@_spi(UVLoopTLS) import UVLoop

/// One TLS connection's OpenSSL state: an `SSL` between two memory BIOs, which the stream
/// transport fills with the socket's ciphertext and empties into the socket. The C-facing layer
/// of `UVLoopTLS`.
///
/// `@unchecked Sendable`: the engine is driven on its loop's thread only; `info` is written once,
/// when the handshake completes, before the connection's reader and writer exist, and only read
/// after.
final class OpenSSLEngine: TLSEngine, @unchecked Sendable {
    private let ssl: OpaquePointer
    /// The BIOs OpenSSL reads the peer's ciphertext from (`input`: the socket's bytes as they
    /// arrived, no copy) and writes the ciphertext to send into (`output`).
    private let incoming: OpaquePointer
    private let outgoing: OpaquePointer
    private let input = InputSource()
    private let output = OutputBuffer()
    /// Kept alive for the callbacks (ALPN, SNI) its `SSL_CTX` calls with a pointer to it.
    private let context: OpenSSLContext
    private(set) var info: TLSConnectionInfo?

    /// - Parameter serverName: a client's: the name sent (SNI) and verified; an IP address is
    ///   verified against the certificate's IP addresses and not sent.
    init(context: OpenSSLContext, serverName: String?) throws {
        self.context = context
        guard let ssl = SSL_new(context.context) else { throw TLSError.fromQueue("SSL_new") }
        guard let incoming = BIO_new(BIOMethods.shared.input), let outgoing = BIO_new(BIOMethods.shared.output) else {
            SSL_free(ssl)
            throw TLSError.fromQueue("BIO_new")
        }
        BIO_set_data(incoming, Unmanaged.passUnretained(input).toOpaque())
        BIO_set_data(outgoing, Unmanaged.passUnretained(output).toOpaque())
        SSL_set_bio(ssl, incoming, outgoing)   // the SSL owns both from here
        self.ssl = ssl
        self.incoming = incoming
        self.outgoing = outgoing
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            // (Initialized: a throw runs deinit, which frees the SSL.)
            if let serverName { try name(serverName) }
        }
    }

    deinit { SSL_free(ssl) }

    private func name(_ serverName: String) throws {
        guard !serverName.isEmpty, !serverName.utf8.contains(0) else {
            throw TLSError(reason: "invalid server name \"\(serverName)\"")
        }
        if Self.isIPAddress(serverName) {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName) == 1 else {
                throw TLSError.fromQueue("server name \(serverName)")
            }
        } else {
            guard SSL_set1_host(ssl, serverName) == 1, uvtls_set_host_name(ssl, serverName) == 1 else {
                throw TLSError.fromQueue("server name \(serverName)")
            }
        }
    }

    static func isIPAddress(_ text: String) -> Bool {
        var storage = in6_addr()
        return inet_pton(AF_INET, text, &storage) == 1 || inet_pton(AF_INET6, text, &storage) == 1
    }

    // MARK: TLSEngine

    func receive(_ ciphertext: UnsafeRawBufferPointer, _ process: () -> Void) {
        // Once per batch of reads: each SSL_read's own clearing cost 4% of a 1 KiB echo. Every
        // failure empties the queue (`queuedReason`), so the reads within see no stale error.
        ERR_clear_error()
        input.begin(ciphertext)
        process()
        input.end()
    }

    func handshake() -> TLSEngineStep {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            info = connectionInfo()
            return .done
        }
        return step(after: rc, doing: nil)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> TLSEngineStep {
        let rc = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if rc > 0 { return .bytes(Int(rc)) }
        return step(after: rc, doing: nil)
    }

    var readableUpperBound: Int {
        // Plaintext decrypted and not read, ciphertext not read yet, and a record OpenSSL holds
        // unprocessed (at most 16 KiB of plaintext).
        Int(SSL_pending(ssl)) + input.available + (SSL_has_pending(ssl) == 1 ? 16_384 : 0)
    }

    func write(_ plaintext: UnsafeRawBufferPointer) throws {
        guard let base = plaintext.baseAddress else { return }
        var offset = 0
        while offset < plaintext.count {
            ERR_clear_error()
            let count = Int32(min(plaintext.count - offset, 1 << 30))
            let rc = SSL_write(ssl, base + offset, count)
            if rc <= 0 {
                if case .failed(let error) = step(after: rc, doing: "write") { throw error }
                throw TLSError(reason: "write: the connection cannot take application data now")
            }
            offset += Int(rc)
        }
    }

    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    func takeOutput(_ body: (UnsafeRawBufferPointer) -> Void) {
        guard !output.bytes.isEmpty else { return }
        output.bytes.withUnsafeBytes(body)
        output.clear()
    }

    func makeError(_ reason: String) -> any Error { TLSError(reason: reason) }

    // MARK: Results

    private func step(after rc: Int32, doing: String?) -> TLSEngineStep {
        let code = SSL_get_error(ssl, rc)
        switch code {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantMore
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        default:
            return .failed(failure(code, doing: doing))
        }
    }

    /// OpenSSL's reason, with the verification's for a certificate that did not verify.
    private func failure(_ code: Int32, doing: String?) -> TLSError {
        var reason = TLSError.queuedReason() ?? (code == SSL_ERROR_SYSCALL ? "unexpected eof while reading" : "error \(code)")
        let verdict = SSL_get_verify_result(ssl)
        if verdict != X509_V_OK, reason == "certificate verify failed", let words = X509_verify_cert_error_string(verdict) {
            reason += ": " + String(cString: words)
        }
        return TLSError(reason: doing.map { "\($0): \(reason)" } ?? reason)
    }

    private func connectionInfo() -> TLSConnectionInfo {
        let version = String(cString: SSL_get_version(ssl))
        let cipher = SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } ?? ""
        var alpnData: UnsafePointer<UInt8>?
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnData, &alpnLength)
        let alpn = alpnData.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self) }
        let serverName = SSL_get_servername(ssl, Int32(TLSEXT_NAMETYPE_host_name)).map { String(cString: $0) }
        var certificate: [UInt8]?
        if let peer = SSL_get1_peer_certificate(ssl) {
            let length = i2d_X509(peer, nil)
            if length > 0 {
                certificate = [UInt8](unsafeUninitializedCapacity: Int(length)) { buffer, count in
                    var cursor = buffer.baseAddress
                    count = Int(max(i2d_X509(peer, &cursor), 0))
                }
            }
            X509_free(peer)
        }
        return TLSConnectionInfo(protocolVersion: version, cipher: cipher, alpnProtocol: alpn,
                                 serverName: serverName, peerCertificate: certificate)
    }
}

/// Where OpenSSL writes a connection's ciphertext: a BIO method of ours over a byte array, which
/// `takeOutput` hands on and empties. (A memory BIO's reset clears its whole allocation with
/// memset, which after one 8 MiB write made every later small write clear 8 MiB.)
final class OutputBuffer {
    var bytes: [UInt8] = []

    /// Capacity kept when emptied; more (after a burst) is released.
    static let retainedCapacity = 256 * 1024

    func clear() { bytes.removeAll(keepingCapacity: bytes.capacity <= Self.retainedCapacity) }
}

/// What OpenSSL reads the peer's ciphertext from: the bytes libuv just read, in place, during
/// `receive`; what is left unread when it ends (part of a record, or bytes after the peer's
/// close_notify) is copied into `kept` and read first next time. (A memory BIO copied every read
/// into a buffer it zeroed as it grew: 5% of a 64 KiB echo.)
final class InputSource {
    private var current = UnsafeRawBufferPointer(start: nil, count: 0)
    private var kept: [UInt8] = []
    private var keptOffset = 0

    var available: Int { kept.count - keptOffset + current.count }

    func begin(_ bytes: UnsafeRawBufferPointer) {
        if kept.isEmpty {
            current = bytes
        } else {
            kept.append(contentsOf: bytes)
        }
    }

    func end() {
        if !current.isEmpty {
            kept.append(contentsOf: current)
            current = UnsafeRawBufferPointer(start: nil, count: 0)
        }
        if keptOffset == kept.count {
            kept.removeAll(keepingCapacity: kept.capacity <= 64 * 1024)
            keptOffset = 0
        }
    }

    /// Copies up to `count` bytes into `destination`; 0 when there are none.
    func read(into destination: UnsafeMutableRawPointer, count: Int) -> Int {
        if keptOffset < kept.count {
            let n = min(count, kept.count - keptOffset)
            kept.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress! + keptOffset, byteCount: n) }
            keptOffset += n
            if keptOffset == kept.count {
                kept.removeAll(keepingCapacity: true)
                keptOffset = 0
            }
            return n
        }
        let n = min(count, current.count)
        guard n > 0, let base = current.baseAddress else { return 0 }
        destination.copyMemory(from: base, byteCount: n)
        current = UnsafeRawBufferPointer(rebasing: current[n...])
        return n
    }
}

/// The two BIO methods, made once per process.
///
/// `@unchecked Sendable`: the methods are immutable once made; OpenSSL reads them from any thread.
final class BIOMethods: @unchecked Sendable {
    let input: OpaquePointer
    let output: OpaquePointer

    static let shared = BIOMethods()

    private init() {
        guard let input = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "uvloop-tls-input"),
              let output = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "uvloop-tls-output") else {
            fatalError("UVLoopTLS: BIO_meth_new failed (out of memory)")
        }
        for method in [input, output] {
            BIO_meth_set_create(method, { bio in
                BIO_set_init(bio, 1)
                return 1
            })
        }
        BIO_meth_set_read(input, inputRead)
        BIO_meth_set_ctrl(input, inputControl)
        BIO_meth_set_write(output, outputWrite)
        BIO_meth_set_ctrl(output, outputControl)
        self.input = input
        self.output = output
    }
}

private func inputRead(_ bio: OpaquePointer?, _ data: UnsafeMutablePointer<CChar>?, _ count: Int32) -> Int32 {
    guard let bio, let data, count > 0, let box = BIO_get_data(bio) else { return 0 }
    uvtls_bio_clear_retry_flags(bio)
    let read = Unmanaged<InputSource>.fromOpaque(box).takeUnretainedValue().read(into: data, count: Int(count))
    if read == 0 {
        uvtls_bio_set_retry_read(bio)
        return -1
    }
    return Int32(read)
}

private func inputControl(_ bio: OpaquePointer?, _ command: Int32, _ argument: Int, _ pointer: UnsafeMutableRawPointer?) -> Int {
    switch command {
    case BIO_CTRL_FLUSH:
        return 1
    case BIO_CTRL_PENDING:
        guard let bio, let box = BIO_get_data(bio) else { return 0 }
        return Unmanaged<InputSource>.fromOpaque(box).takeUnretainedValue().available
    default:
        return 0
    }
}

private func outputWrite(_ bio: OpaquePointer?, _ data: UnsafePointer<CChar>?, _ count: Int32) -> Int32 {
    guard let bio, let data, count > 0, let box = BIO_get_data(bio) else { return 0 }
    let buffer = Unmanaged<OutputBuffer>.fromOpaque(box).takeUnretainedValue()
    buffer.bytes.append(contentsOf: UnsafeRawBufferPointer(start: data, count: Int(count)))
    return count
}

private func outputControl(_ bio: OpaquePointer?, _ command: Int32, _ argument: Int, _ pointer: UnsafeMutableRawPointer?) -> Int {
    switch command {
    case BIO_CTRL_FLUSH:
        return 1
    case BIO_CTRL_WPENDING:
        guard let bio, let box = BIO_get_data(bio) else { return 0 }
        return Unmanaged<OutputBuffer>.fromOpaque(box).takeUnretainedValue().bytes.count
    default:
        return 0
    }
}
