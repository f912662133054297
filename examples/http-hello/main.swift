// http-hello: an HTTP/1.1 "Hello, World!" server on N event loops, one per thread, sharing a port.
//
//   swift run -c release http-hello --loops 2 --port 8080
//   wrk -t2 -c64 -d10s http://127.0.0.1:8080/
//
// Keep-alive and pipelining work; each connection is one async handler reading request heads with
// readUntil("\r\n\r\n"). Deadlines keep slow clients from holding connections: a request head must
// arrive within --header-timeout seconds (else 408 and close; a slowloris client sending a byte a
// second is cut), a connection with no byte moving for --idle-timeout seconds is cut, and
// --max-connections caps the connections at once (the next clients wait in the backlog). SIGINT
// or SIGTERM shuts down gracefully. Serving on N loops, and systemd socket activation
// (LISTEN_FDS), are shared with echo-server: examples/server-support/MultiLoopServer.swift.
//
// HTTPS: --tls-cert cert.pem --tls-key key.pem (UVLoopTLS; each connection's handshake must
// finish within --header-timeout too):
//
//   swift run http-hello --port 8443 --tls-cert cert.pem --tls-key key.pem
//   curl --cacert ca.pem https://localhost:8443/
import ArgumentParser
import Foundation
import ServerExampleSupport
import Synchronization
import UVLoop
import UVLoopTLS

/// What one loop has done, read by the main loop once a second.
final class LoopFigures: Sendable {
    let requests = Atomic<Int>(0)
    let connections = Atomic<Int>(0)
}

/// The parts of a request head this server looks at, parsed in one pass without allocating.
struct RequestHead {
    var keepAlive: Bool
    var contentLength = 0
    var chunked = false
    var http10: Bool

    /// Parses `head` (request line and headers, through the blank line); nil when malformed.
    init?(_ head: [UInt8]) {
        guard let parsed = head.withUnsafeBufferPointer({ RequestHead.parse($0) }) else { return nil }
        self = parsed
    }

    private init(http10: Bool) {
        self.http10 = http10
        keepAlive = !http10
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> RequestHead? {
        // The request line: METHOD SP TARGET SP HTTP/1.x CRLF
        guard let lineEnd = bytes.firstIndex(of: 10), lineEnd >= 9 else { return nil }
        let versionEnd = bytes[lineEnd - 1] == 13 ? lineEnd - 1 : lineEnd
        let version = UnsafeBufferPointer(rebasing: bytes[(versionEnd - 8)..<versionEnd])
        guard version.starts(with: Self.http1) else { return nil }
        var head = RequestHead(http10: version[7] == UInt8(ascii: "0"))
        // The headers: NAME ":" OWS VALUE CRLF, up to the empty line.
        var start = lineEnd + 1
        while start < bytes.count {
            guard let end = bytes[start...].firstIndex(of: 10) else { break }
            let lineEnd = end > start && bytes[end - 1] == 13 ? end - 1 : end
            if lineEnd == start { break }   // the blank line
            guard let colon = bytes[start..<lineEnd].firstIndex(of: 58) else { return nil }
            var valueStart = colon + 1
            while valueStart < lineEnd && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
            let name = UnsafeBufferPointer(rebasing: bytes[start..<colon])
            let value = UnsafeBufferPointer(rebasing: bytes[valueStart..<lineEnd])
            if equalsIgnoringCase(name, Self.connection) {
                if containsIgnoringCase(value, Self.close) { head.keepAlive = false }
                if containsIgnoringCase(value, Self.keepAliveToken) { head.keepAlive = true }
            } else if equalsIgnoringCase(name, Self.contentLength) {
                var length = 0
                guard !value.isEmpty else { return nil }
                for byte in value {
                    guard byte >= 48 && byte <= 57, length < Int.max / 10 - 9 else { return nil }
                    length = length * 10 + Int(byte - 48)
                }
                head.contentLength = length
            } else if equalsIgnoringCase(name, Self.transferEncoding) {
                head.chunked = true
            }
            start = end + 1
        }
        return head
    }

    static let http1 = Array("HTTP/1.".utf8)
    static let connection = Array("connection".utf8)
    static let contentLength = Array("content-length".utf8)
    static let transferEncoding = Array("transfer-encoding".utf8)
    static let close = Array("close".utf8)
    static let keepAliveToken = Array("keep-alive".utf8)

    @inline(__always) static func lower(_ byte: UInt8) -> UInt8 { byte >= 65 && byte <= 90 ? byte + 32 : byte }

    /// `bytes` equals the lowercase `word`, ignoring ASCII case.
    static func equalsIgnoringCase(_ bytes: UnsafeBufferPointer<UInt8>, _ word: [UInt8]) -> Bool {
        guard bytes.count == word.count else { return false }
        for index in 0..<word.count where lower(bytes[index]) != word[index] { return false }
        return true
    }

    /// `bytes` contains the lowercase `word`, ignoring ASCII case.
    static func containsIgnoringCase(_ bytes: UnsafeBufferPointer<UInt8>, _ word: [UInt8]) -> Bool {
        guard bytes.count >= word.count else { return false }
        outer: for start in 0...(bytes.count - word.count) {
            for index in 0..<word.count where lower(bytes[start + index]) != word[index] { continue outer }
            return true
        }
        return false
    }
}

enum Responses {
    static let body = "Hello, World!"
    static func make(_ extra: String) -> [UInt8] {
        Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)".utf8)
    }
    static let keepAlive = make("")
    static let keepAlive10 = make("Connection: keep-alive\r\n")
    static let close = make("Connection: close\r\n")
    static let requestTimeout = Array("HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
    static let badRequest = Array("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
    static let notImplemented = Array("HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
}

/// One connection: answers each request in order until the client closes or asks to. Each
/// request head must arrive within `headerTimeout` seconds (on the loop's own timers).
func handle(_ reader: StreamReader, _ writer: StreamWriter, _ figures: LoopFigures, headerTimeout: Double) async {
    figures.connections.add(1, ordering: .relaxed)
    defer { figures.connections.subtract(1, ordering: .relaxed) }
    let endOfHead: [UInt8] = [13, 10, 13, 10]
    do {
        while true {
            let head: [UInt8]
            do {
                head = try await withTimeout(headerTimeout) { try await reader.readUntil(endOfHead) }
            } catch is TimeoutError {
                try? writer.write(Responses.requestTimeout)
                break
            }
            guard let request = RequestHead(head) else {
                try writer.write(Responses.badRequest)
                break
            }
            if request.chunked {
                try writer.write(Responses.notImplemented)
                break
            }
            if request.contentLength > 0 { _ = try await reader.readExactly(request.contentLength) }
            figures.requests.add(1, ordering: .relaxed)
            if !request.keepAlive {
                try writer.write(Responses.close)
                break
            }
            try writer.write(request.http10 ? Responses.keepAlive10 : Responses.keepAlive)
            try await writer.drain()
        }
    } catch {
        // EOF between requests (incompleteRead), a reset peer, or the server closing its clients.
    }
    writer.close()
}

struct HTTPHello: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "http-hello")
    @OptionGroup var server: ServerOptions

    @Option(help: "Seconds a request head may take to arrive (408 and close after).")
    var headerTimeout = 10.0

    @Option(help: "Serve HTTPS with this certificate chain (PEM); needs --tls-key.")
    var tlsCert: String?

    @Option(help: "The private key (PEM) of --tls-cert.")
    var tlsKey: String?

    func validate() throws {
        if !(headerTimeout > 0) { throw ValidationError("--header-timeout must be a positive number of seconds") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    /// The TLS configuration, checked before anything listens (a missing or mismatched file).
    func tlsConfiguration() -> TLSConfiguration? {
        guard let tlsCert, let tlsKey else { return nil }
        do {
            var tls = try TLSConfiguration.server(certificateChainFile: tlsCert, privateKeyFile: tlsKey)
            tls.alpnProtocols = ["http/1.1"]
            tls.handshakeTimeout = headerTimeout
            return tls
        } catch {
            FileHandle.standardError.write(Data("http-hello: \(error)\n".utf8))
            Foundation.exit(1)
        }
    }
}

let command = HTTPHello.parseOrExit()
let options = command.server
let headerTimeout = command.headerTimeout
let tls = command.tlsConfiguration()
let figures = (0..<options.loops).map { _ in LoopFigures() }
let previousRequests = Atomic<Int>(0)

await serveOnLoops("http-hello", options: options, defaultPort: 8080, listening: { port, firstLoop in
    print("http-hello listening on \(tls == nil ? "http" : "https")://\(options.host):\(port)/ with \(options.loops) loop\(options.loops == 1 ? "" : "s") (SIGINT or SIGTERM stops)")
    fflush(nil)   // the port line must reach a pipe at once (benchmark harness)
    if options.quiet { return }
    // The live figures, once a second while requests come in.
    everySecond(on: firstLoop) { elapsed in
        let requests = figures.reduce(0) { $0 + $1.requests.load(ordering: .relaxed) }
        let connections = figures.reduce(0) { $0 + $1.connections.load(ordering: .relaxed) }
        let previous = previousRequests.exchange(requests, ordering: .relaxed)
        if requests != previous {
            let perLoop = figures.map { "\($0.requests.load(ordering: .relaxed))" }.joined(separator: "/")
            print("connections: \(connections)  \(Int(Double(requests - previous) / elapsed)) req/s  (total per loop: \(perLoop))")
            fflush(nil)
        }
    }
}, handler: { index, reader, writer in
    if let tls {
        // The handshake first (a failed one just ends the connection), then HTTP inside TLS.
        guard let (secureReader, secureWriter) = try? await writer.startTLS(tls) else { return }
        await handle(secureReader, secureWriter, figures[index], headerTimeout: headerTimeout)
    } else {
        await handle(reader, writer, figures[index], headerTimeout: headerTimeout)
    }
})
let total = figures.reduce(0) { $0 + $1.requests.load(ordering: .relaxed) }
print("http-hello stopped after \(total) requests")
