import Foundation
import Testing
import UVLoop
import UVLoopTLS

/// TLS between UVLoop servers and clients over real sockets, with certificates made by the
/// `openssl` command line at test time.
@Suite(.timeLimit(.minutes(2))) struct TLSStreamTests {
    let certs = TestCertificates.shared

    var serverTLS: TLSConfiguration {
        get throws { try TLSConfiguration.server(certificateChainFile: certs.serverCert, privateKeyFile: certs.serverKey) }
    }

    var clientTLS: TLSConfiguration {
        var tls = TLSConfiguration.client()
        tls.trustRootsFile = certs.caFile
        return tls
    }

    /// An echo server: each chunk back until end of file, then closes.
    func echoServer(_ loop: EventLoop, _ tls: TLSConfiguration) async throws -> Server {
        try await loop.startServer(host: "127.0.0.1", port: 0, tls: tls) { reader, writer in
            while let chunk = try? await reader.read(65_536), !chunk.isEmpty {
                try? writer.write(chunk)
                try? await writer.drain()
            }
            writer.close()
        }
    }

    @Test func echoBetweenUVLoopServerAndClientWithTheAgreedParameters() async throws {
        var server = try serverTLS
        server.alpnProtocols = ["http/1.1", "h2"]
        var client = clientTLS
        client.alpnProtocols = ["h2", "http/1.1"]
        try await onFreshLoop { [server, client] loop in
            let infos = LockedBox<TLSConnectionInfo?>(nil)
            let listening = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server) { reader, writer in
                infos.value = writer.tls
                let line = try? await reader.readLine()
                try? writer.write(Array((line ?? []).reversed()))
                writer.close()
            }
            let (reader, writer) = try await loop.openConnection(host: "localhost", port: listening.port, tls: client)
            let info = try #require(writer.tls)
            #expect(info.protocolVersion == "TLSv1.3")
            #expect(info.cipher.hasPrefix("TLS_"))
            #expect(info.alpnProtocol == "http/1.1")   // the server's preference among the client's
            #expect(info.peerCertificate == certs.der("server"))
            try writer.write("hello\n")
            #expect(text(try await reader.read()) == "\nolleh")
            #expect(infos.value?.serverName == "localhost")
            #expect(infos.value?.peerCertificate == nil)   // no client certificate asked for
            #expect(infos.value?.alpnProtocol == "http/1.1")
            listening.close()
        }
    }

    @Test func eightMebibytesEachWayWithBackpressure() async throws {
        let server = try serverTLS
        let client = clientTLS
        try await onFreshLoop { [server, client] loop in
            let listening = try await echoServer(loop, server)
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client)
            let payload = patternBytes(8 << 20, seed: 7)
            let sender = Task {
                var offset = 0
                while offset < payload.count {
                    let end = min(offset + 100_000, payload.count)
                    try writer.write(Array(payload[offset..<end]))
                    try await writer.drain()
                    // Flow control holds the writer: never far ahead of what came back.
                    #expect(try await writer.writeBufferSize() <= 64 * 1024 + 100_000 + 20_000)
                    offset = end
                }
                try writer.writeEOF()
            }
            var received: [UInt8] = []
            received.reserveCapacity(payload.count)
            while true {
                let chunk = try await reader.read(65_536)
                if chunk.isEmpty { break }
                received += chunk
            }
            try await sender.value
            #expect(received.count == payload.count)
            #expect(received == payload)
            listening.close()
        }
    }

    @Test func writeEOFSendsCloseNotifyAndTheConnectionStaysOpenForReading() async throws {
        let server = try serverTLS
        let client = clientTLS
        try await onFreshLoop { [server, client] loop in
            let listening = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server) { reader, writer in
                // Everything until the client's close_notify, then the answer.
                let request = (try? await reader.read()) ?? []
                try? writer.write("got \(request.count) bytes")
                writer.close()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client)
            try writer.write(patternBytes(100_000))
            try writer.writeEOF()
            #expect(throws: StreamError.closed) { try writer.write("late") }
            #expect(text(try await reader.read()) == "got 100000 bytes")
            #expect(try await reader.read() == [])
            listening.close()
        }
    }

    @Test func unixSocketServerAndClient() async throws {
        let server = try serverTLS
        let client = clientTLS
        let path = NSTemporaryDirectory() + "uvl-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        try await onFreshLoop { [server, client] loop in
            let listening = try await loop.startUnixServer(path: path, tls: server) { reader, writer in
                let line = try? await reader.readLine()
                try? writer.write(line ?? [])
                writer.close()
            }
            let (reader, writer) = try await loop.openUnixConnection(path: path, tls: client, serverName: "localhost")
            try writer.write("over a unix socket\n")
            #expect(text(try await reader.read()) == "over a unix socket\n")
            #expect(writer.tls?.protocolVersion == "TLSv1.3")
            listening.close()
        }
    }

    @Test func startTLSUpgradesAPlainConnectionOnBothSidesAndRetiresTheOldStreams() async throws {
        let server = try serverTLS
        let client = clientTLS
        try await onFreshLoop { [server, client] loop in
            let listening = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                guard (try? await reader.readLine()) == "STARTTLS\n".bytes else { return }
                try? writer.write("OK\n")
                guard let (secureReader, secureWriter) = try? await writer.startTLS(server) else { return }
                let line = try? await secureReader.readLine()
                try? secureWriter.write("secret: " + text(line ?? []))
                secureWriter.close()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: listening.port)
            try writer.write("STARTTLS\n")
            #expect(try await reader.readLine() == "OK\n".bytes)
            let (secureReader, secureWriter) = try await writer.startTLS(client, serverName: "localhost")
            #expect(secureWriter.tls?.protocolVersion == "TLSv1.3")
            #expect(writer.tls == nil)
            #expect(throws: StreamError.replacedByTLS) { try writer.write("in the clear") }
            await #expect(throws: StreamError.replacedByTLS) { try await reader.read(10) }
            await #expect(throws: StreamError.invalidArgument("startTLS on a stream that is TLS already")) {
                try await secureWriter.startTLS(client, serverName: "localhost")
            }
            try secureWriter.write("swordfish\n")
            #expect(text(try await secureReader.read()) == "secret: swordfish\n")
            listening.close()
        }
    }

    @Test func sniPicksTheCertificateOfTheNameAskedFor() async throws {
        var server = try serverTLS
        try server.addServerName("other.test", certificateChainFile: certs.otherCert, privateKeyFile: certs.otherKey)
        let client = clientTLS
        try await onFreshLoop { [server, client] loop in
            let listening = try await echoServer(loop, server)
            let (_, other) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client,
                                                           serverName: "OTHER.test")
            #expect(other.tls?.peerCertificate == certs.der("other"))
            let (_, plain) = try await loop.openConnection(host: "localhost", port: listening.port, tls: client)
            #expect(plain.tls?.peerCertificate == certs.der("server"))
            listening.close()
        }
    }

    @Test func aServerNamesConnectionKeepsALPNAndTheClientCertificateCheck() async throws {
        var server = try serverTLS
        server.trustRootsFile = certs.caFile
        server.alpnProtocols = ["h2"]
        try server.addServerName("*.test", certificateChainFile: certs.otherCert, privateKeyFile: certs.otherKey)
        var client = clientTLS
        client.alpnProtocols = ["h2"]
        client.certificateChainFile = certs.clientCert
        client.privateKeyFile = certs.clientKey
        var anonymous = clientTLS
        anonymous.alpnProtocols = ["h2"]
        try await onFreshLoop { [server, client, anonymous] loop in
            let listening = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server) { _, writer in
                try? writer.write("\(writer.tls?.serverName ?? "-") \(writer.tls?.peerCertificate?.count ?? 0)")
                writer.close()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client,
                                                                 serverName: "other.test")
            #expect(writer.tls?.alpnProtocol == "h2")
            #expect(writer.tls?.peerCertificate == certs.der("other"))
            #expect(text(try await reader.read()) == "other.test \(certs.der("client").count)")
            // The name's context still requires the client's certificate.
            let refused: Bool
            do {
                let (reader, _) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: anonymous,
                                                                serverName: "other.test")
                refused = (try? await reader.read()) == nil
            } catch {
                refused = error is TLSError
            }
            #expect(refused)
            listening.close()
        }
    }

    @Test func theServerControlsHoldForTLSConnections() async throws {
        let server = try serverTLS
        let client = clientTLS
        try await onFreshLoop { [server, client] loop in
            // maxConnections: never more than 2 handlers at once, every client served.
            let (open, peak) = (LockedBox(0), LockedBox(0))
            let capped = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server, maxConnections: 2) { reader, writer in
                open.value += 1
                peak.value = max(peak.value, open.value)
                try? await loop.sleep(0.05)
                try? writer.write("served")
                _ = try? await reader.read()
                open.value -= 1
                writer.close()
            }
            try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: capped.port, tls: client)
                        let answer = text(try await reader.read(6))
                        writer.close()
                        return answer
                    }
                }
                for try await answer in group { #expect(answer == "served") }
            }
            #expect(peak.value == 2)
            capped.close()

            // idleTimeout: a TLS connection nobody uses is aborted.
            let idle = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server, idleTimeout: 0.3) { reader, _ in
                _ = try? await reader.read()
            }
            let (idleReader, _) = try await loop.openConnection(host: "127.0.0.1", port: idle.port, tls: client)
            let start = loop.time()
            let ended: Bool
            do { ended = try await idleReader.read().isEmpty } catch { ended = true }
            #expect(ended)
            #expect(loop.time() - start >= 0.25)
            idle.close()

            // shutdown(gracePeriod:): a handler that never finishes is cut after the grace.
            let stuck = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server) { reader, writer in
                try? writer.write("hi")
                while (try? await reader.read()) != nil {}
            }
            let (stuckReader, _) = try await loop.openConnection(host: "127.0.0.1", port: stuck.port, tls: client)
            #expect(text(try await stuckReader.read(2)) == "hi")
            let before = loop.time()
            await stuck.shutdown(gracePeriod: 0.2)
            #expect(loop.time() - before >= 0.15)
            #expect(stuck.activeConnections == 0)
        }
    }

    @Test func closeAbortsAfterTheShutdownTimeoutWhenThePeerDoesNotRead() async throws {
        var server = try serverTLS
        server.shutdownTimeout = 0.5
        let client = clientTLS
        try await onFreshLoop { [server, client] loop in
            let closedAt = LockedBox<Double?>(nil)
            let listening = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server) { _, writer in
                // Far more than the kernel's buffers hold, to a client that never reads.
                try? writer.write([UInt8](repeating: 7, count: 16 << 20))
                writer.close()
                let start = loop.time()
                try? await writer.waitClosed()
                closedAt.value = loop.time() - start
            }
            let (reader, _) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client)
            listening.close()
            try await withTimeout(10) { try await listening.waitClosed() }
            let seconds = try #require(closedAt.value)
            #expect(seconds >= 0.45 && seconds < 5, "closed after \(seconds) s")
            // The client gets what the kernel had, then the reset (never the 16 MiB).
            var total = 0
            do {
                while true {
                    let chunk = try await reader.read(1 << 20)
                    if chunk.isEmpty { break }
                    total += chunk.count
                }
            } catch {}
            #expect(total < 16 << 20)
        }
    }

    @Test func mutualTLSGivesTheServerTheClientsCertificate() async throws {
        var server = try serverTLS
        server.trustRootsFile = certs.caFile
        var client = clientTLS
        client.certificateChainFile = certs.clientCert
        client.privateKeyFile = certs.clientKey
        try await onFreshLoop { [server, client] loop in
            let listening = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server) { _, writer in
                try? writer.write((writer.tls?.peerCertificate).map { "client \($0.count)" } ?? "none")
                writer.close()
            }
            let (reader, _) = try await loop.openConnection(host: "127.0.0.1", port: listening.port, tls: client)
            #expect(text(try await reader.read()) == "client \(certs.der("client").count)")
            listening.close()
        }
    }
}

/// A value set in one task and read in another, on one loop (tests only).
final class LockedBox<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
