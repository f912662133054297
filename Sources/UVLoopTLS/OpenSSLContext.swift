import COpenSSL
import Glibc

/// An OpenSSL `SSL_CTX` made from a `TLSConfiguration`: certificates, trust, versions, ALPN, and
/// the contexts of the server names (SNI). The C-facing layer of `UVLoopTLS`.
///
/// `@unchecked Sendable`: nothing changes after `init`; OpenSSL makes `SSL_new` on a finished
/// context safe from any thread.
final class OpenSSLContext: @unchecked Sendable {
    let context: OpaquePointer
    let isServer: Bool
    /// ALPN's wire format: each name prefixed by its length.
    private let alpnWire: [UInt8]
    /// Server names (lowercased; "*.example.com" for a wildcard) and their contexts.
    private let named: [(name: String, context: OpenSSLContext)]

    init(_ key: TLSConfiguration.Key) throws {
        isServer = key.role == .server
        guard let context = SSL_CTX_new(isServer ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.fromQueue("SSL_CTX_new")
        }
        self.context = context
        var wire: [UInt8] = []
        for name in key.alpnProtocols {
            let bytes = Array(name.utf8)
            guard (1...255).contains(bytes.count) else {
                SSL_CTX_free(context)
                throw TLSError(reason: "ALPN protocol names are 1 to 255 bytes: \"\(name)\"")
            }
            wire.append(UInt8(bytes.count))
            wire += bytes
        }
        alpnWire = wire
        var named: [(String, OpenSSLContext)] = []
        do {
            // Each name's context is the default one but for its certificate: OpenSSL takes the
            // trust store, the client-certificate request and ALPN from the context switched to.
            for entry in key.namedCertificates {
                var sub = key
                sub.certificateChainFile = entry.certificateChainFile
                sub.privateKeyFile = entry.privateKeyFile
                sub.namedCertificates = []
                named.append((entry.name, try OpenSSLContext(sub)))
            }
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        self.named = named
        // Initialized: a throw from here runs deinit, which frees the context.
        try configure(key)
    }

    /// A context holding only a certificate and key: checks the files `addServerName` is given.
    init(certificateOnly chain: String, privateKeyFile: String) throws {
        isServer = true
        alpnWire = []
        named = []
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw TLSError.fromQueue("SSL_CTX_new") }
        self.context = context
        // Initialized: a throw from here runs deinit, which frees the context.
        try Self.useCertificate(context, chain: chain, key: privateKeyFile)
    }

    deinit { SSL_CTX_free(context) }

    private func configure(_ key: TLSConfiguration.Key) throws {
        uvtls_ctx_set_default_options(context)
        _ = uvtls_ctx_set_mode(context, Int(SSL_MODE_RELEASE_BUFFERS))
        let minimum = key.minimumVersion == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard uvtls_ctx_set_min_proto(context, minimum) == 1 else { throw TLSError.fromQueue("minimum version") }
        if let chain = key.certificateChainFile {
            guard let privateKey = key.privateKeyFile else {
                throw TLSError(reason: "a certificate chain (\(chain)) needs its private key file")
            }
            try Self.useCertificate(context, chain: chain, key: privateKey)
        } else if isServer {
            throw TLSError(reason: "a server needs a certificate chain and a private key")
        } else if key.privateKeyFile != nil {
            throw TLSError(reason: "a private key needs its certificate chain file")
        }
        if isServer {
            if key.verifyPeer || key.trustRootsFile != nil {
                try loadRoots(key.trustRootsFile)
                if let roots = key.trustRootsFile, let names = SSL_load_client_CA_file(roots) {
                    SSL_CTX_set_client_CA_list(context, names)
                }
                SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
            }
            // Without a session id context OpenSSL fails (an internal-error alert) the handshake
            // of a client resuming a session on a server that verifies client certificates. Each
            // context's ticket keys are its own, so one name serves every context.
            let sessionContext = Array("UVLoop".utf8)
            guard SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count)) == 1 else {
                throw TLSError.fromQueue("session id context")
            }
            let me = Unmanaged.passUnretained(self).toOpaque()
            if !alpnWire.isEmpty { SSL_CTX_set_alpn_select_cb(context, alpnSelect, me) }
            if !named.isEmpty { uvtls_ctx_set_servername_callback(context, serverNameSelect, me) }
        } else {
            if key.verifyPeer {
                try loadRoots(key.trustRootsFile)
                SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            } else {
                SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
            }
            if !alpnWire.isEmpty {
                // (0 is success here.)
                let rc = alpnWire.withUnsafeBufferPointer { SSL_CTX_set_alpn_protos(context, $0.baseAddress, UInt32($0.count)) }
                guard rc == 0 else { throw TLSError.fromQueue("ALPN protocols") }
            }
        }
    }

    private func loadRoots(_ file: String?) throws {
        if let file {
            try Self.checkReadable(file, what: "trust roots file")
            guard SSL_CTX_load_verify_locations(context, file, nil) == 1 else {
                throw TLSError.fromQueue("trust roots file \(file)")
            }
        } else {
            guard SSL_CTX_set_default_verify_paths(context) == 1 else { throw TLSError.fromQueue("the system's trust store") }
        }
    }

    private static func useCertificate(_ context: OpaquePointer, chain: String, key: String) throws {
        try checkReadable(chain, what: "certificate chain file")
        try checkReadable(key, what: "private key file")
        ERR_clear_error()
        guard SSL_CTX_use_certificate_chain_file(context, chain) == 1 else {
            throw TLSError.fromQueue("certificate chain file \(chain)")
        }
        guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else {
            let error = TLSError.fromQueue("private key file \(key)")
            if error.reason.hasSuffix(": key values mismatch") {
                throw TLSError(reason: "private key file \(key) does not match certificate chain file \(chain): key values mismatch")
            }
            throw error
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw TLSError.fromQueue("private key file \(key) does not match certificate chain file \(chain)")
        }
    }

    /// Missing and unreadable files are named with the system's reason, which OpenSSL's queue
    /// words as "system lib".
    private static func checkReadable(_ path: String, what: String) throws {
        guard !path.utf8.contains(0) else { throw TLSError(reason: "\(what) path contains a NUL byte") }
        guard let file = fopen(path, "r") else {
            throw TLSError(reason: "cannot read \(what) \(path): \(String(cString: strerror(errno)))")
        }
        fclose(file)
    }

    /// ALPN on a server: the first of the server's protocols the client offered; none matching
    /// goes on without ALPN.
    fileprivate func selectProtocol(_ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                                    _ outLength: UnsafeMutablePointer<UInt8>?,
                                    offered: UnsafePointer<UInt8>?, offeredLength: UInt32) -> Int32 {
        var selected: UnsafeMutablePointer<UInt8>?
        let rc = alpnWire.withUnsafeBufferPointer { ours in
            SSL_select_next_proto(&selected, outLength, ours.baseAddress, UInt32(ours.count), offered, offeredLength)
        }
        // SSL_select_next_proto points into one of the two lists; ours lives as long as the context.
        guard rc == OPENSSL_NPN_NEGOTIATED, let selected else { return SSL_TLSEXT_ERR_NOACK }
        out?.pointee = UnsafePointer(selected)
        return SSL_TLSEXT_ERR_OK
    }

    /// SNI on a server: the context of the name asked for, when one was added for it.
    fileprivate func selectServerName(_ ssl: OpaquePointer?) -> Int32 {
        guard let ssl, let raw = SSL_get_servername(ssl, Int32(TLSEXT_NAMETYPE_host_name)) else { return SSL_TLSEXT_ERR_OK }
        let asked = String(cString: raw).lowercased()
        let wildcard = asked.firstIndex(of: ".").map { "*" + asked[$0...] }
        if let match = named.first(where: { $0.name == asked }) ?? named.first(where: { $0.name == wildcard }) {
            SSL_set_SSL_CTX(ssl, match.context.context)
        }
        return SSL_TLSEXT_ERR_OK
    }
}

private func alpnSelect(_ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                        _ outLength: UnsafeMutablePointer<UInt8>?, _ offered: UnsafePointer<UInt8>?,
                        _ offeredLength: UInt32, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    guard let arg else { return SSL_TLSEXT_ERR_NOACK }
    return Unmanaged<OpenSSLContext>.fromOpaque(arg).takeUnretainedValue()
        .selectProtocol(out, outLength, offered: offered, offeredLength: offeredLength)
}

private func serverNameSelect(_ ssl: OpaquePointer?, _ alert: UnsafeMutablePointer<Int32>?,
                              _ arg: UnsafeMutableRawPointer?) -> Int32 {
    guard let arg else { return SSL_TLSEXT_ERR_OK }
    return Unmanaged<OpenSSLContext>.fromOpaque(arg).takeUnretainedValue().selectServerName(ssl)
}

extension TLSError {
    /// The reason of the first error on this thread's OpenSSL queue (which is then emptied),
    /// prefixed by what was being done.
    static func fromQueue(_ doing: String) -> TLSError {
        let reason = queuedReason()
        return TLSError(reason: reason.map { "\(doing): \($0)" } ?? doing)
    }

    /// OpenSSL's reason for the first queued error ("wrong version number"), nil when none is.
    static func queuedReason() -> String? {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return nil }
        if let reason = ERR_reason_error_string(code) { return String(cString: reason) }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
