import Logging
@_spi(UVLoopTLS) import UVLoop

/// TLS servers and clients (asyncio's `ssl=` on `start_server`, `open_connection`,
/// `start_unix_server`, `open_unix_connection`), on the system's OpenSSL.
///
/// The reader and writer behave as plain ones (`limit`, `drain()`, `writeEOF()`, `abort()`,
/// the server's `idleTimeout`, `maxConnections` and `shutdown(gracePeriod:)`), with TLS in
/// between: `writeEOF()` sends close_notify before the half-close, `close()` sends it before
/// closing, and the peer's close_notify reads as end of file (so does a close without one,
/// once the handshake is over, as in asyncio).
extension EventLoop {
    /// A TLS server on `host`/`port`: each connection's handshake runs first (in the
    /// connection's task, within `tls.handshakeTimeout`), then `handler` gets the decrypted
    /// reader and writer. A failed handshake (an unknown CA, a client without a certificate a
    /// server requires, a plain-text client, a silent one) closes that connection, is logged at
    /// debug level to the loop's logger, and the server goes on serving.
    /// - Throws: what `startServer(host:port:)` throws; `TLSError` for a configuration that
    ///   cannot be used (or a client's); `EventLoopError.invalidArgument` for timeouts not > 0.
    public func startServer(host: String, port: Int, tls: TLSConfiguration, backlog: Int32 = 511,
                            reusePort: Bool = false, limit: Int = 65_536, maxConnections: Int? = nil,
                            idleTimeout: Double? = nil, startServing: Bool = true,
                            _ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) async throws -> Server {
        let secure = try secureHandler(tls, handler)
        return try await startServer(host: host, port: port, backlog: backlog, reusePort: reusePort, limit: limit,
                                     maxConnections: maxConnections, idleTimeout: idleTimeout,
                                     startServing: startServing, secure)
    }

    /// A TLS server on an adopted listening socket (`startServer(socket:)`).
    public func startServer(socket fd: Int32, tls: TLSConfiguration, limit: Int = 65_536, maxConnections: Int? = nil,
                            idleTimeout: Double? = nil, startServing: Bool = true,
                            _ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) async throws -> Server {
        let secure = try secureHandler(tls, handler)
        return try await startServer(socket: fd, limit: limit, maxConnections: maxConnections,
                                     idleTimeout: idleTimeout, startServing: startServing, secure)
    }

    /// A TLS server on a Unix socket.
    public func startUnixServer(path: String, tls: TLSConfiguration, backlog: Int32 = 511, limit: Int = 65_536,
                                maxConnections: Int? = nil, idleTimeout: Double? = nil, startServing: Bool = true,
                                _ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) async throws -> Server {
        let secure = try secureHandler(tls, handler)
        return try await startUnixServer(path: path, backlog: backlog, limit: limit, maxConnections: maxConnections,
                                         idleTimeout: idleTimeout, startServing: startServing, secure)
    }

    /// Connects to `host`/`port` and runs the TLS handshake: the server's certificate is
    /// verified against the configuration's roots (the system's by default) and `serverName`
    /// (default: `host`; an IP address is checked against the certificate's IP addresses).
    /// - Throws: what `openConnection(host:port:)` throws; `TLSError` with OpenSSL's reason
    ///   ("certificate verify failed: hostname mismatch", ...) or the handshake's timeout.
    public func openConnection(host: String, port: Int, tls: TLSConfiguration, serverName: String? = nil,
                               limit: Int = 65_536, localAddress: String? = nil, happyEyeballsDelay: Double? = 0.25,
                               connectTimeout: Double? = nil) async throws -> (StreamReader, StreamWriter) {
        let engine = try makeClientEngine(tls, serverName: serverName ?? host)
        let (_, writer) = try await openConnection(host: host, port: port, limit: limit, localAddress: localAddress,
                                                   happyEyeballsDelay: happyEyeballsDelay, connectTimeout: connectTimeout)
        return try await writer.upgrade(with: engine, handshakeTimeout: tls.handshakeTimeout,
                                        shutdownTimeout: tls.shutdownTimeout)
    }

    /// Connects to a Unix socket and runs the TLS handshake, verifying the server against
    /// `serverName`.
    public func openUnixConnection(path: String, tls: TLSConfiguration,
                                   serverName: String) async throws -> (StreamReader, StreamWriter) {
        let engine = try makeClientEngine(tls, serverName: serverName)
        let (_, writer) = try await openUnixConnection(path: path)
        return try await writer.upgrade(with: engine, handshakeTimeout: tls.handshakeTimeout,
                                        shutdownTimeout: tls.shutdownTimeout)
    }

    private func makeClientEngine(_ tls: TLSConfiguration, serverName: String) throws -> OpenSSLEngine {
        guard tls.role == .client else {
            throw TLSError(reason: "openConnection needs a client's configuration (TLSConfiguration.client())")
        }
        try tls.validateTimeouts()
        return try OpenSSLEngine(context: tls.context(), serverName: serverName)
    }

    /// The handler a TLS server runs per connection: the handshake, then the user's handler.
    private func secureHandler(_ tls: TLSConfiguration,
                               _ handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) throws
        -> @Sendable (StreamReader, StreamWriter) async -> Void {
        guard tls.role == .server else {
            throw TLSError(reason: "a TLS server needs a server's configuration (TLSConfiguration.server)")
        }
        try tls.validateTimeouts()
        let context = try tls.context()
        let (handshakeTimeout, shutdownTimeout) = (tls.handshakeTimeout, tls.shutdownTimeout)
        let logger = self.logger
        return { _, plain in
            let secured: (StreamReader, StreamWriter)
            do {
                let engine = try OpenSSLEngine(context: context, serverName: nil)
                secured = try await plain.upgrade(with: engine, handshakeTimeout: handshakeTimeout,
                                                  shutdownTimeout: shutdownTimeout, keepingTaskBinding: true)
            } catch {
                logger.debug("TLS handshake failed", metadata: [
                    "peer": "\(plain.peerAddress.map { "\($0)" } ?? "?")", "error": "\(error)",
                ])
                return
            }
            await handler(secured.0, secured.1)
            secured.1.endTaskBinding()
        }
    }
}

extension StreamWriter {
    /// Upgrades this plain connection to TLS (asyncio's `StreamWriter.start_tls`), as a client
    /// or a server as `tls` says: what was written before is sent first (in the clear), then
    /// the handshake runs. This writer and its reader throw `StreamError.replacedByTLS` from
    /// then on; use the ones returned. Bytes already received and not read are taken as the
    /// peer's first TLS bytes; a `pauseReading()` ends (the handshake needs the peer's bytes).
    /// - Parameter serverName: a client's: the name to send and verify (required when the
    ///   configuration verifies the peer).
    /// - Throws: `TLSError` (the handshake's failure or timeout; the connection is then
    ///   closed); the connection's error; `StreamError.readInProgress` while a task waits in a
    ///   read; `StreamError.invalidArgument` for a pipe or a stream that is TLS already.
    public func startTLS(_ tls: TLSConfiguration, serverName: String? = nil) async throws -> (StreamReader, StreamWriter) {
        try tls.validateTimeouts()
        if tls.role == .client && tls.verifyPeer && serverName == nil {
            throw TLSError(reason: "startTLS as a client verifying its server needs the serverName to verify")
        }
        let engine = try OpenSSLEngine(context: tls.context(), serverName: serverName)
        return try await upgrade(with: engine, handshakeTimeout: tls.handshakeTimeout,
                                 shutdownTimeout: tls.shutdownTimeout)
    }

    /// What this TLS connection agreed on; nil for a plain one.
    public var tls: TLSConnectionInfo? { (tlsEngine as? OpenSSLEngine)?.info }
}
