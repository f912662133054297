@_spi(UVLoopTLS) import UVLoop

/// How a TLS connection is set up: the certificate and key a server (or a client, for mutual
/// TLS) presents, whom it trusts, the versions and protocols it accepts (asyncio's `ssl=`
/// `SSLContext`). A value type: copy it, change it, hand it to `startServer`, `openConnection`
/// or `startTLS`. The OpenSSL context made from it is built once and shared by the copies that
/// do not change it.
///
/// ```swift
/// let tls = try TLSConfiguration.server(certificateChainFile: "cert.pem", privateKeyFile: "key.pem")
/// let server = try await loop.startServer(host: "0.0.0.0", port: 8443, tls: tls) { reader, writer in ... }
/// let (reader, writer) = try await loop.openConnection(host: "example.com", port: 443, tls: .client())
/// ```
public struct TLSConfiguration: Sendable {
    enum Role: Sendable { case server, client }

    let role: Role
    /// PEM roots to trust instead of the system's (a client verifying its server). On a server,
    /// setting it requires every client to present a certificate they sign (mutual TLS).
    public var trustRootsFile: String?
    /// The certificate chain (PEM, leaf first) and its private key: a server's; a client's for
    /// mutual TLS.
    public var certificateChainFile: String?
    public var privateKeyFile: String?
    /// ALPN protocols, most preferred first (`["h2", "http/1.1"]`). A server picks the first of
    /// its own the client offers, and goes on without ALPN when none matches.
    public var alpnProtocols: [String] = []
    public var minimumVersion: TLSVersion = .tls12
    /// Verify the peer's certificate (a client: against the roots and the server name; a
    /// server: require a client certificate). Default: true for clients, false for servers
    /// (which `trustRootsFile` turns on).
    public var verifyPeer: Bool
    /// Seconds the handshake may take before the connection is aborted (asyncio's
    /// `ssl_handshake_timeout`, 60).
    public var handshakeTimeout: Double = 60
    /// Seconds `close()` may take to send the close_notify and what was written before it
    /// before the connection is aborted (asyncio's `ssl_shutdown_timeout`, 30).
    public var shutdownTimeout: Double = 30

    /// Certificates per server name (SNI), for a server.
    struct NamedCertificate: Sendable, Hashable {
        var name: String
        var certificateChainFile: String
        var privateKeyFile: String
    }
    var namedCertificates: [NamedCertificate] = []

    let contexts = ContextCache()

    private init(role: Role, verifyPeer: Bool) {
        self.role = role
        self.verifyPeer = verifyPeer
    }

    /// A server's configuration presenting this certificate chain and key.
    /// - Throws: `TLSError` when a file is missing or unreadable, is not PEM, or the key does not
    ///   match the certificate.
    public static func server(certificateChainFile: String, privateKeyFile: String) throws -> TLSConfiguration {
        var configuration = TLSConfiguration(role: .server, verifyPeer: false)
        configuration.certificateChainFile = certificateChainFile
        configuration.privateKeyFile = privateKeyFile
        _ = try configuration.context()
        return configuration
    }

    /// A client's configuration: verifies the server's certificate against the system's trust
    /// store and its name (or IP address) against the one connected to.
    public static func client() -> TLSConfiguration {
        TLSConfiguration(role: .client, verifyPeer: true)
    }

    /// Presents a different certificate to clients asking for `name` (SNI); the others get the
    /// default one. Names match without regard to case; `*.example.com` matches one label.
    /// - Throws: `TLSError` for files that cannot be used (as `server`), or on a client's
    ///   configuration.
    public mutating func addServerName(_ name: String, certificateChainFile: String, privateKeyFile: String) throws {
        guard role == .server else { throw TLSError(reason: "addServerName is for a server's configuration") }
        guard !name.isEmpty, !name.utf8.contains(0) else { throw TLSError(reason: "invalid server name \"\(name)\"") }
        _ = try OpenSSLContext(certificateOnly: certificateChainFile, privateKeyFile: privateKeyFile)
        namedCertificates.append(NamedCertificate(name: name.lowercased(), certificateChainFile: certificateChainFile,
                                                  privateKeyFile: privateKeyFile))
    }

    /// What the OpenSSL context is made of: a change to any of it makes a new context.
    struct Key: Hashable, Sendable {
        var role: Role
        var trustRootsFile: String?
        var certificateChainFile: String?
        var privateKeyFile: String?
        var alpnProtocols: [String]
        var minimumVersion: TLSVersion
        var verifyPeer: Bool
        var namedCertificates: [NamedCertificate]
    }

    var key: Key {
        Key(role: role, trustRootsFile: trustRootsFile, certificateChainFile: certificateChainFile,
            privateKeyFile: privateKeyFile, alpnProtocols: alpnProtocols, minimumVersion: minimumVersion,
            verifyPeer: verifyPeer, namedCertificates: namedCertificates)
    }

    /// The OpenSSL context for this configuration, built on first use.
    /// - Throws: `TLSError` for files that cannot be used, an ALPN name out of 1...255 bytes.
    func context() throws -> OpenSSLContext {
        let key = self.key
        return try contexts.context(for: key) { try OpenSSLContext(key) }
    }

    func validateTimeouts() throws {
        guard handshakeTimeout > 0, shutdownTimeout > 0 else { throw EventLoopError.invalidArgument }
    }
}

/// The contexts built for a configuration and its copies, by what they were built from.
///
/// `@unchecked Sendable`: `lock` guards `built`; a context is immutable once built.
final class ContextCache: @unchecked Sendable {
    private let lock = Lock()
    private var built: (key: TLSConfiguration.Key, context: OpenSSLContext)?

    func context(for key: TLSConfiguration.Key, make: () throws -> OpenSSLContext) throws -> OpenSSLContext {
        if let hit = lock.withLock({ built?.key == key ? built?.context : nil }) { return hit }
        let context = try make()
        lock.withLock { built = (key, context) }
        return context
    }
}

public enum TLSVersion: Sendable, Hashable {
    case tls12
    case tls13
}

/// A TLS failure: OpenSSL's reason ("certificate verify failed: unable to get local issuer
/// certificate", "tlsv1 alert unknown ca", "wrong version number", "peer did not return a
/// certificate"), or UVLoop's own ("handshake not finished after 1.0 s (handshakeTimeout)").
public struct TLSError: Error, Sendable, CustomStringConvertible, Equatable {
    public var reason: String

    public init(reason: String) { self.reason = reason }

    public var description: String { "TLS: \(reason)" }
}

/// What a TLS connection agreed on (`StreamWriter.tls`).
public struct TLSConnectionInfo: Sendable, Equatable {
    /// "TLSv1.3", "TLSv1.2".
    public var protocolVersion: String
    /// OpenSSL's name of the cipher suite ("TLS_AES_128_GCM_SHA256").
    public var cipher: String
    /// The protocol ALPN chose, if any.
    public var alpnProtocol: String?
    /// The name the client asked for (SNI): on a server, what the client sent; on a client,
    /// what it sent. Nil when none was (an IP address).
    public var serverName: String?
    /// The peer's certificate (DER), when it presented one.
    public var peerCertificate: [UInt8]?
}
