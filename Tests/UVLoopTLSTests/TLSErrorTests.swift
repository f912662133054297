import Foundation
import Testing
import UVLoop
import UVLoopTLS

/// Every failure a TLS connection can meet, each a `TLSError` with OpenSSL's reason (or an end of
/// file where asyncio gives one), with the server serving on afterwards.
@Suite(.timeLimit(.minutes(2))) struct TLSErrorTests {
    let certs = TestCertificates.shared

    func server(_ chain: String? = nil, _ key: String? = nil) throws -> TLSConfiguration {
        try TLSConfiguration.server(certificateChainFile: chain ?? certs.serverCert, privateKeyFile: key ?? certs.serverKey)
    }

    var client: TLSConfiguration {
        var tls = TLSConfiguration.client()
        tls.trustRootsFile = certs.caFile
        return tls
    }

    /// A server answering "ok" to each client, and a count of the handlers that ran.
    func okServer(_ loop: EventLoop, _ tls: TLSConfiguration) async throws -> (Server, LockedBox<Int>) {
        let served = LockedBox(0)
        let server = try await loop.startServer(host: "127.0.0.1", port: 0, tls: tls) { reader, writer in
            served.value += 1
            try? writer.write("ok")
            _ = try? await reader.read()
            writer.close()
        }
        return (server, served)
    }

    /// The server still serves a good client.
    func expectStillServing(_ loop: EventLoop, _ server: Server) async throws {
        let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port, tls: client)
        #expect(text(try await reader.read(2)) == "ok")
        writer.close()
    }

    func reason(_ body: () async throws -> Void) async -> String? {
        do {
            try await body()
            return nil
        } catch let error as TLSError {
            return error.reason
        } catch {
            return "not a TLSError: \(error)"
        }
    }

    @Test func anUnknownCAIsRefusedWithOpenSSLsReason() async throws {
        let tls = try server(certs.strangerCert, certs.strangerKey)
        try await onFreshLoop { [client] loop in
            let (listening, served) = try await okServer(loop, tls)
            let why = await reason { _ = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client) }
            #expect(why == "certificate verify failed: unable to get local issuer certificate")
            // The system's roots do not know the test CA either.
            let system = await reason {
                _ = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: .client())
            }
            #expect(system == "certificate verify failed: unable to get local issuer certificate")
            #expect(served.value == 0)
            listening.close()
        }
    }

    @Test func aWrongNameAndAWrongIPAddressAreRefused() async throws {
        let tls = try server(certs.otherCert, certs.otherKey)   // for other.test only
        try await onFreshLoop { [client] loop in
            let (listening, _) = try await okServer(loop, tls)
            let name = await reason {
                _ = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client, serverName: "localhost")
            }
            #expect(name == "certificate verify failed: hostname mismatch")
            let address = await reason { _ = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client) }
            #expect(address == "certificate verify failed: IP address mismatch")
            // verifyPeer false accepts it (and says what it got).
            var trusting = TLSConfiguration.client()
            trusting.verifyPeer = false
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: trusting)
            #expect(text(try await reader.read(2)) == "ok")
            #expect(writer.tls?.peerCertificate == certs.der("other"))
            writer.close()
            listening.close()
        }
    }

    @Test func anExpiredCertificateIsRefused() async throws {
        let tls = try server(certs.expiredCert)
        try await onFreshLoop { [client] loop in
            let (listening, _) = try await okServer(loop, tls)
            let why = await reason { _ = try await loop.openConnection(host: "localhost", port: listening.port, tls: client) }
            #expect(why == "certificate verify failed: certificate has expired")
            listening.close()
        }
    }

    @Test func aClientWithoutTheCertificateTheServerRequiresFailsAndTheServerServesOn() async throws {
        var tls = try server()
        tls.trustRootsFile = certs.caFile
        try await onFreshLoop { [client, tls] loop in
            let (listening, served) = try await okServer(loop, tls)
            // TLS 1.3: the client's handshake ends before the server has seen its (missing)
            // certificate; the server's alert comes with the first read.
            let why = await reason {
                let (reader, _) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client)
                _ = try await reader.read(2)
            }
            #expect(why == "tlsv13 alert certificate required")
            #expect(served.value == 0)
            var withCertificate = client
            withCertificate.certificateChainFile = certs.clientCert
            withCertificate.privateKeyFile = certs.clientKey
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: withCertificate)
            #expect(text(try await reader.read(2)) == "ok")
            writer.close()
            // A certificate from a CA the server does not trust.
            var stranger = client
            stranger.certificateChainFile = certs.strangerCert
            stranger.privateKeyFile = certs.strangerKey
            let strangerWhy = await reason {
                let (reader, _) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: stranger)
                _ = try await reader.read(2)
            }
            #expect(strangerWhy == "tlsv1 alert unknown ca")
            listening.close()
        }
    }

    @Test func aPlainTextClientOnATLSPortIsClosedAndTheServerServesOn() async throws {
        let tls = try server()
        try await onFreshLoop { loop in
            let (listening, served) = try await okServer(loop, tls)
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: listening.port)
            try writer.write("GET / HTTP/1.0\r\n\r\n")
            // OpenSSL answers with an alert record (type 21) and closes; nothing in the clear.
            let answer = try await reader.read()
            #expect(answer.first == 21 || answer.isEmpty)
            #expect(served.value == 0)
            try await expectStillServing(loop, listening)
            listening.close()
        }
    }

    @Test func aSilentClientIsCutAtTheHandshakeTimeout() async throws {
        var tls = try server()
        tls.handshakeTimeout = 0.3
        try await onFreshLoop { [tls] loop in
            let (listening, served) = try await okServer(loop, tls)
            let (reader, _) = try await loop.openConnection(host: "127.0.0.1", port: listening.port)
            let start = loop.time()
            do {
                let bytes = try await reader.read()
                #expect(bytes.isEmpty)
            } catch let error as UVError {
                #expect(error == .ECONNRESET)
            }
            #expect(loop.time() - start >= 0.25)
            #expect(loop.time() - start < 5)
            #expect(served.value == 0)
            try await expectStillServing(loop, listening)
            listening.close()
        }
    }

    @Test func aClientsHandshakeTimesOutAgainstASilentServer() async throws {
        var tls = client
        tls.handshakeTimeout = 0.3
        try await onFreshLoop { [tls] loop in
            let silent = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, _ in
                _ = try? await reader.read()
            }
            let why = await reason { _ = try await loop.openConnection(host: "127.0.0.1", port: silent.port, tls: tls) }
            #expect(why == "handshake not finished after 0.3 s (handshakeTimeout)")
            silent.close()
        }
    }

    @Test func aServerClosingMidHandshakeIsATLSErrorAndAfterItAnEndOfFile() async throws {
        let tls = try server()
        try await onFreshLoop { [client] loop in
            // Reads the ClientHello, then closes: the handshake cannot finish.
            let closing = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                _ = try? await reader.read(1)
                writer.close()
            }
            let why = await reason { _ = try await loop.openConnection(host: "127.0.0.1", port: closing.port, tls: client) }
            #expect(why == "the peer closed the connection during the handshake")
            closing.close()
            // After the handshake, a close without close_notify (an abort's reset aside) reads as
            // end of file, as in asyncio: here the server's descriptor is shut down under it.
            let unclean = try await loop.startServer(host: "127.0.0.1", port: 0, tls: tls) { _, writer in
                try? writer.write("bye")
                if let fd = writer.fileDescriptor { shutdown(fd, Int32(SHUT_WR)) }
                try? await Task.sleep(for: .milliseconds(500))
            }
            let (reader, _) = try await loop.openConnection(host: "127.0.0.1", port: unclean.port, tls: client)
            #expect(text(try await reader.read()) == "bye")
            unclean.close()
        }
    }

    @Test func aServerRequiringTLS13RefusesATLS12Client() async throws {
        var tls = try server()
        tls.minimumVersion = .tls13
        try await onFreshLoop { [tls] loop in
            let (listening, _) = try await okServer(loop, tls)
            let python = try await loop.subprocessExec("/usr/bin/env", ["python3", "-c", """
                import socket, ssl, sys
                context = ssl.create_default_context(cafile=sys.argv[1])
                context.maximum_version = ssl.TLSVersion.TLSv1_2
                try:
                    context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))), server_hostname="localhost")
                    print("connected")
                except ssl.SSLError as error:
                    print(error.reason)
                """, certs.caFile, "\(listening.port)"], stdout: .pipe, stderr: .stdout)
            let (output, _) = try await python.communicate()
            #expect(text(output).contains("PROTOCOL_VERSION") || text(output).contains("UNSUPPORTED_PROTOCOL"), "\(text(output))")
            listening.close()
        }
    }

    // MARK: Configuration errors

    @Test func unusableKeyAndCertificateFilesThrowAtConfigurationTime() async throws {
        func why(_ chain: String, _ key: String) -> String? {
            do {
                _ = try TLSConfiguration.server(certificateChainFile: chain, privateKeyFile: key)
                return nil
            } catch {
                return (error as? TLSError)?.reason ?? "\(error)"
            }
        }
        let missing = certs.directory + "/missing.pem"
        #expect(why(missing, certs.serverKey) == "cannot read certificate chain file \(missing): No such file or directory")
        #expect(why(certs.serverCert, missing) == "cannot read private key file \(missing): No such file or directory")
        let garbage = certs.directory + "/garbage.pem"
        _ = FileManager.default.createFile(atPath: garbage, contents: Data("not a certificate\n".utf8))
        #expect(why(garbage, certs.serverKey)?.hasPrefix("certificate chain file \(garbage): ") == true)
        #expect(why(certs.serverCert, garbage)?.hasPrefix("private key file \(garbage): ") == true)
        #expect(why(certs.serverCert, certs.otherKey)
                == "private key file \(certs.otherKey) does not match certificate chain file \(certs.serverCert): key values mismatch")
        #expect(why(certs.directory, certs.serverKey) != nil)   // a directory
        var configuration = try server()
        #expect(throws: TLSError.self) {
            try configuration.addServerName("x.test", certificateChainFile: certs.otherCert, privateKeyFile: certs.serverKey)
        }
        #expect(throws: TLSError.self) {
            try configuration.addServerName("", certificateChainFile: certs.otherCert, privateKeyFile: certs.otherKey)
        }
        var client = TLSConfiguration.client()
        #expect(throws: TLSError.self) {
            try client.addServerName("x.test", certificateChainFile: certs.otherCert, privateKeyFile: certs.otherKey)
        }
    }

    @Test func badArgumentsThrowBeforeAnythingIsOpened() async throws {
        let tls = try server()
        try await onFreshLoop { [client] loop in
            var zero = client
            zero.handshakeTimeout = 0
            await #expect(throws: EventLoopError.invalidArgument) {
                _ = try await loop.openConnection(host: "127.0.0.1", port: 1, tls: zero)
            }
            var nan = tls
            nan.shutdownTimeout = .nan
            await #expect(throws: EventLoopError.invalidArgument) {
                _ = try await loop.startServer(host: "127.0.0.1", port: 0, tls: nan) { _, _ in }
            }
            // Roles: a client's configuration cannot serve, a server's cannot connect.
            await #expect(throws: TLSError.self) {
                _ = try await loop.startServer(host: "127.0.0.1", port: 0, tls: client) { _, _ in }
            }
            await #expect(throws: TLSError.self) { _ = try await loop.openConnection(host: "127.0.0.1", port: 1, tls: tls) }
            var alpn = client
            alpn.alpnProtocols = [""]
            await #expect(throws: TLSError.self) { _ = try await loop.openConnection(host: "127.0.0.1", port: 1, tls: alpn) }
            await #expect(throws: TLSError.self) {
                _ = try await loop.openConnection(host: "127.0.0.1", port: 1, tls: client, serverName: "bad\0name")
            }
            var missingRoots = client
            missingRoots.trustRootsFile = "/nonexistent/roots.pem"
            await #expect(throws: TLSError.self) {
                _ = try await loop.openConnection(host: "127.0.0.1", port: 1, tls: missingRoots)
            }
            // startTLS as a verifying client without a name to verify.
            let plain = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, _ in _ = try? await reader.read() }
            let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: plain.port)
            await #expect(throws: TLSError.self) { _ = try await writer.startTLS(client) }
            try writer.write("still usable")   // nothing was handed over
            writer.close()
            plain.close()
        }
    }
}
