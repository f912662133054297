import Foundation
import Testing
import UVLoop
import UVLoopTLS

/// UVLoop's TLS against other implementations: `openssl s_client` and `s_server`, Python's `ssl`.
@Suite(.timeLimit(.minutes(2))) struct TLSPeerTests {
    let certs = TestCertificates.shared

    var serverTLS: TLSConfiguration {
        get throws { try TLSConfiguration.server(certificateChainFile: certs.serverCert, privateKeyFile: certs.serverKey) }
    }

    var clientTLS: TLSConfiguration {
        var tls = TLSConfiguration.client()
        tls.trustRootsFile = certs.caFile
        return tls
    }

    /// Runs `python3 -c script arguments...` and returns what it printed (stderr merged).
    func python(_ loop: EventLoop, _ script: String, _ arguments: [String]) async throws -> String {
        let child = try await loop.subprocessExec("/usr/bin/env", ["python3", "-c", script] + arguments,
                                                  stdout: .pipe, stderr: .stdout)
        let (output, _) = try await child.communicate()
        return text(output)
    }

    /// Reads lines from `reader` until one contains `marker`.
    func waitForLine(_ reader: StreamReader, containing marker: String) async throws {
        var seen = ""
        while true {
            let line = try await reader.readLine()
            if line.isEmpty { throw PeerFailed(output: seen) }
            seen += text(line)
            if text(line).contains(marker) { return }
        }
    }

    struct PeerFailed: Error { var output: String }

    @Test func opensslSClientTalksToAUVLoopServer() async throws {
        let tls = try serverTLS
        try await onFreshLoop { [certs] loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, tls: tls) { reader, writer in
                let line = (try? await reader.readLine()) ?? []
                try? writer.write(text(line).uppercased())
                writer.close()
            }
            let client = try await loop.subprocessExec("/usr/bin/openssl", [
                "s_client", "-connect", "127.0.0.1:\(server.port)", "-CAfile", certs.caFile,
                "-servername", "localhost", "-verify_hostname", "localhost", "-verify_return_error", "-quiet", "-ign_eof",
            ], stdin: .pipe, stdout: .pipe, stderr: .devNull)
            let (output, _) = try await client.communicate("hello from s_client\n".bytes)
            #expect(text(output) == "HELLO FROM S_CLIENT\n")
            #expect(client.returnCode == 0)
            server.close()
        }
    }

    @Test func aUVLoopClientTalksToOpensslSServer() async throws {
        let client = clientTLS
        let port = unusedPort()
        try await onFreshLoop { [certs] loop in
            let server = try await loop.subprocessExec("/usr/bin/openssl", [
                "s_server", "-accept", "127.0.0.1:\(port)", "-cert", certs.serverCert, "-key", certs.serverKey, "-rev",
            ], stdin: .pipe, stdout: .pipe, stderr: .stdout)
            defer { try? server.kill() }
            try await waitForLine(server.stdout!, containing: "ACCEPT")
            let (reader, writer) = try await loop.openConnection(host: "localhost", port: port, tls: client)
            #expect(writer.tls?.protocolVersion == "TLSv1.3")
            try writer.write("stressed\n")
            #expect(try await reader.readLine() == "desserts\n".bytes)
            writer.close()
            try server.kill()
            _ = try await server.wait()
        }
    }

    @Test func pythonSSLClientTalksToAUVLoopServer() async throws {
        var tls = try serverTLS
        tls.alpnProtocols = ["h2", "http/1.1"]
        try await onFreshLoop { [certs, tls] loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, tls: tls) { reader, writer in
                let request = (try? await reader.readExactly(4)) ?? []
                try? writer.write("pong to \(text(request)) over \(writer.tls?.protocolVersion ?? "?")")
                try? writer.writeEOF()   // close_notify, which Python's unwrap waits for
                _ = try? await reader.read()
            }
            let output = try await python(loop, """
                import socket, ssl, sys
                context = ssl.create_default_context(cafile=sys.argv[1])
                context.set_alpn_protocols(["http/1.1"])
                with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.sendall(b"ping")
                        reply = b""
                        while True:
                            chunk = tls.recv(4096)
                            if not chunk:
                                break
                            reply += chunk
                        print(reply.decode(), tls.selected_alpn_protocol())
                        tls.unwrap()
                """, [certs.caFile, "\(server.port)"])
            #expect(output == "pong to ping over TLSv1.3 http/1.1\n")
            server.close()
        }
    }

    /// A client that resumes its session (Python's `session=`, as curl and most HTTP clients do)
    /// is served by resumption, with client certificates required too, where OpenSSL refuses a
    /// resumption on a context without a session id context.
    @Test(arguments: [(false, "TLSv1_2"), (false, "TLSv1_3"), (true, "TLSv1_2"), (true, "TLSv1_3")])
    func pythonSSLClientResumesItsSession(mutual: Bool, version: String) async throws {
        var tls = try serverTLS
        if mutual { tls.trustRootsFile = certs.caFile }
        try await onFreshLoop { [certs, tls] loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, tls: tls) { reader, writer in
                let request = (try? await reader.readExactly(4)) ?? []
                try? writer.write("pong to \(text(request))")
                writer.close()
            }
            let output = try await python(loop, """
                import socket, ssl, sys
                context = ssl.create_default_context(cafile=sys.argv[1])
                context.maximum_version = getattr(ssl.TLSVersion, sys.argv[3])
                if sys.argv[4] == "mutual":
                    context.load_cert_chain(sys.argv[5], sys.argv[6])
                session = None
                for attempt in range(2):
                    with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
                        with context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                            tls.sendall(b"ping")
                            reply = b""
                            while True:
                                chunk = tls.recv(4096)
                                if not chunk:
                                    break
                                reply += chunk
                            print(reply.decode(), tls.version(), tls.session_reused)
                            session = tls.session
                """, [certs.caFile, "\(server.port)", version, mutual ? "mutual" : "anonymous", certs.clientCert, certs.clientKey])
            let wire = version == "TLSv1_2" ? "TLSv1.2" : "TLSv1.3"
            #expect(output == "pong to ping \(wire) False\npong to ping \(wire) True\n")
            server.close()
        }
    }

    @Test func aUVLoopClientTalksToAPythonSSLServerThatClosesWithoutCloseNotify() async throws {
        let client = clientTLS
        let port = unusedPort()
        try await onFreshLoop { [certs] loop in
            let script = """
                import socket, ssl, sys
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(sys.argv[1], sys.argv[2])
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.maximum_version = ssl.TLSVersion.TLSv1_2
                listener = socket.create_server(("127.0.0.1", int(sys.argv[3])))
                print("listening", flush=True)
                connection, _ = listener.accept()
                tls = context.wrap_socket(connection, server_side=True)
                data = b""
                while not data.endswith(b"\\n"):
                    data += tls.recv(4096)
                tls.sendall(data.upper() + tls.version().encode())
                tls.shutdown(socket.SHUT_RDWR)   # the socket's shutdown: no close_notify
                tls.close()
                print("done", flush=True)
                """
            let server = try await loop.subprocessExec("/usr/bin/env", ["python3", "-c", script, certs.serverCert,
                                                                       certs.serverKey, "\(port)"],
                                                       stdout: .pipe, stderr: .stdout)
            defer { try? server.kill() }
            try await waitForLine(server.stdout!, containing: "listening")
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port, tls: client)
            #expect(writer.tls?.protocolVersion == "TLSv1.2")
            try writer.write("quiet please\n")
            // The unclean close after the handshake is an end of file, as asyncio makes it.
            #expect(text(try await reader.read()) == "QUIET PLEASE\nTLSv1.2")
            try await waitForLine(server.stdout!, containing: "done")
            #expect(try await server.wait() == 0)
        }
    }

    @Test func writeEOFAndCloseSendCloseNotifyToAPythonServer() async throws {
        let client = clientTLS
        let port = unusedPort()
        try await onFreshLoop { [certs] loop in
            // suppress_ragged_eofs=False: a close without close_notify raises SSLEOFError.
            let script = """
                import socket, ssl, sys
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(sys.argv[1], sys.argv[2])
                listener = socket.create_server(("127.0.0.1", int(sys.argv[3])))
                print("listening", flush=True)
                for _ in range(2):
                    connection, _ = listener.accept()
                    tls = context.wrap_socket(connection, server_side=True, suppress_ragged_eofs=False)
                    received = b""
                    try:
                        while True:
                            chunk = tls.recv(65536)
                            if not chunk:
                                break
                            received += chunk
                        print("clean", len(received), flush=True)
                    except ssl.SSLEOFError:
                        print("ragged", len(received), flush=True)
                    connection.close()
                """
            let server = try await loop.subprocessExec("/usr/bin/env", ["python3", "-c", script, certs.serverCert,
                                                                       certs.serverKey, "\(port)"],
                                                       stdout: .pipe, stderr: .stdout)
            defer { try? server.kill() }
            let output = server.stdout!
            try await waitForLine(output, containing: "listening")
            let (_, first) = try await loop.openConnection(host: "127.0.0.1", port: port, tls: client)
            try first.write(patternBytes(200_000))
            try first.writeEOF()
            #expect(try await output.readLine() == "clean 200000\n".bytes)
            let (_, second) = try await loop.openConnection(host: "127.0.0.1", port: port, tls: client)
            try second.write("bye")
            second.close()
            #expect(try await output.readLine() == "clean 3\n".bytes)
            #expect(try await server.wait() == 0)
        }
    }

    @Test func sendfileGoesThroughTLS() async throws {
        let tls = try serverTLS
        let client = clientTLS
        let path = certs.directory + "/sendfile-\(UInt32.random(in: 0...UInt32.max)).bin"
        let content = patternBytes(700_000, seed: 3)
        _ = FileManager.default.createFile(atPath: path, contents: Data(content))
        try await onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0, tls: tls) { _, writer in
                let fd = open(path, O_RDONLY)
                defer { close(fd) }
                try? writer.write("head:")
                _ = try? await writer.sendfile(fd, offset: 100, count: 600_000)
                try? writer.write(":tail")
                writer.close()
            }
            let (reader, _) = try await loop.openConnection(host: "127.0.0.1", port: server.port, tls: client)
            let received = try await reader.read()
            #expect(received == "head:".bytes + Array(content[100..<600_100]) + ":tail".bytes)
            server.close()
        }
    }
}
