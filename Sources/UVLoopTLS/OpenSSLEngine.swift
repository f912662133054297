import COpenSSL
import Glibc
@_spi(TLSEngine) import UVLoop

/// One TLS connection's OpenSSL state: an `SSL` between two memory BIOs, which the stream
/// transport fills with the socket's ciphertext and empties into the socket. The C-facing layer
/// of `UVLoopTLS`.
///
/// `@unchecked Sendable`: the engine is driven on its loop's thread only; `info` is written once,
/// when the handshake completes, before the connection's reader and writer exist, and only read
/// after.
final class OpenSSLEngine: TLSEngine, @unchecked Sendable {
    private let ssl: OpaquePointer
    /// Ciphertext from the peer (a memory BIO OpenSSL reads); ciphertext to send (a BIO of ours
    /// that OpenSSL writes into `output`).
    private let incoming: OpaquePointer
    private let outgoing: OpaquePointer
    private let output = OutputBuffer()
    /// Kept alive for the callbacks (ALPN, SNI) its `SSL_CTX` calls with a pointer to it.
    private let context: OpenSSLContext
    private(set) var info: TLSConnectionInfo?

    /// - Parameter serverName: a client's: the name sent (SNI) and verified; an IP address is
    ///   verified against the certificate's IP addresses and not sent.
    init(context: OpenSSLContext, serverName: String?) throws {
        self.context = context
        guard let ssl = SSL_new(context.context) else { throw TLSError.fromQueue("SSL_new") }
        guard let incoming = BIO_new(BIO_s_mem()), let outgoing = BIO_new(OutputBuffer.method.method) else {
            SSL_free(ssl)
            throw TLSError.fromQueue("BIO_new")
        }
        uvtls_bio_retry_when_empty(incoming)
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

    func feed(_ ciphertext: UnsafeRawBufferPointer) {
        guard let base = ciphertext.baseAddress, ciphertext.count > 0 else { return }
        // A memory BIO takes everything (it grows).
        _ = BIO_write(incoming, base, Int32(ciphertext.count))
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
        ERR_clear_error()
        let rc = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if rc > 0 { return .bytes(Int(rc)) }
        return step(after: rc, doing: nil)
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

    /// The BIO method, made once per process.
    ///
    /// `@unchecked Sendable`: the method is immutable once made; OpenSSL reads it from any thread.
    final class Method: @unchecked Sendable {
        let method: OpaquePointer

        init() {
            guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "uvloop-tls-output") else {
                fatalError("UVLoopTLS: BIO_meth_new failed (out of memory)")
            }
            BIO_meth_set_write(method, outputWrite)
            BIO_meth_set_ctrl(method, outputControl)
            BIO_meth_set_create(method, { bio in
                BIO_set_init(bio, 1)
                return 1
            })
            self.method = method
        }
    }

    static let method = Method()
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
    case BIO_CTRL_PENDING, BIO_CTRL_WPENDING:
        guard let bio, let box = BIO_get_data(bio) else { return 0 }
        return Unmanaged<OutputBuffer>.fromOpaque(box).takeUnretainedValue().bytes.count
    default:
        return 0
    }
}
