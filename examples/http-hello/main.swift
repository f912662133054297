// http-hello: an HTTP/1.1 "Hello, World!" server on N event loops, one per thread, sharing a port.
//
//   swift run -c release http-hello --loops 2 --port 8080
//   wrk -t2 -c64 -d10s http://127.0.0.1:8080/
//
// Keep-alive and pipelining work; each connection is one async handler reading request heads with
// readUntil("\r\n\r\n"). SIGINT or SIGTERM stops every loop cleanly.
import Foundation
import Synchronization
import UVLoop

struct Options {
    var loops = 1
    var host = "127.0.0.1"
    var port = 8080
    var quiet = false

    static let usage = "usage: http-hello [--loops N] [--host HOST] [--port PORT (0: any)] [--quiet]"

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var rest = arguments.dropFirst()
        func value(_ flag: String) -> String {
            guard let value = rest.popFirst() else { fail("\(flag) needs a value") }
            return value
        }
        while let argument = rest.popFirst() {
            switch argument {
            case "--loops": options.loops = Int(value(argument)) ?? 0
            case "--host": options.host = value(argument)
            case "--port": options.port = Int(value(argument)) ?? -1
            case "--quiet": options.quiet = true
            case "-h", "--help": print(usage); exit(0)
            default: fail("unknown argument \(argument)")
            }
        }
        if options.loops < 1 { fail("--loops must be at least 1") }
        if !(0...65535).contains(options.port) { fail("--port must be in 0...65535") }
        return options
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("http-hello: \(message)\n\(usage)\n".utf8))
        exit(2)
    }
}

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
    static let badRequest = Array("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
    static let notImplemented = Array("HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
}

/// One connection: answers each request in order until the client closes or asks to.
func handle(_ reader: StreamReader, _ writer: StreamWriter, _ figures: LoopFigures) async {
    figures.connections.add(1, ordering: .relaxed)
    defer { figures.connections.subtract(1, ordering: .relaxed) }
    let endOfHead: [UInt8] = [13, 10, 13, 10]
    do {
        while true {
            let head = try await reader.readUntil(endOfHead)
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

/// Serves on `loop` (running on this thread) until SIGINT or SIGTERM, then closes cleanly.
func serve(on loop: EventLoop, options: Options, port: Int, figures: LoopFigures,
           listening: @escaping @Sendable (Int) -> Void = { _ in }) throws {
    try loop.runUntilComplete {
        let server = try await loop.startServer(host: options.host, port: port, reusePort: options.loops > 1) { reader, writer in
            await handle(reader, writer, figures)
        }
        listening(server.port)
        let stop = AsyncStream<Void>.makeStream()
        for signal in [SIGINT, SIGTERM] {
            try loop.addSignalHandler(signal) { stop.continuation.finish() }
        }
        for await _ in stop.stream {}
        server.close()
        server.closeClients()
        await server.waitClosed()
        for signal in [SIGINT, SIGTERM] { loop.removeSignalHandler(signal) }
    }
}

let options = Options.parse(CommandLine.arguments)
let figures = (0..<options.loops).map { _ in LoopFigures() }
let mainLoop = try getEventLoop()
let workersDone = DispatchGroup()

func startWorkers(port: Int) {
    for index in 1..<options.loops {
        workersDone.enter()
        Thread.detachNewThread {
            defer { workersDone.leave() }
            do {
                let loop = try newEventLoop()
                setEventLoop(loop)
                try serve(on: loop, options: options, port: port, figures: figures[index])
                setEventLoop(nil)
                try loop.close()
            } catch {
                FileHandle.standardError.write(Data("http-hello: loop \(index) failed: \(error)\n".utf8))
                kill(getpid(), SIGTERM)
            }
        }
    }
}

/// Prints the live figures once a second while requests come in.
func report(previousRequests: Int, start: Double) {
    mainLoop.callLater(1.0) {
        let requests = figures.reduce(0) { $0 + $1.requests.load(ordering: .relaxed) }
        let connections = figures.reduce(0) { $0 + $1.connections.load(ordering: .relaxed) }
        let now = mainLoop.time()
        if requests != previousRequests {
            let perLoop = figures.map { "\($0.requests.load(ordering: .relaxed))" }.joined(separator: "/")
            print("connections: \(connections)  \(Int(Double(requests - previousRequests) / (now - start))) req/s  (total per loop: \(perLoop))")
            fflush(nil)
        }
        report(previousRequests: requests, start: now)
    }
}

do {
    // The main thread's loop binds first, so that with --port 0 the others join the port it got.
    try serve(on: mainLoop, options: options, port: options.port, figures: figures[0]) { port in
        print("http-hello listening on http://\(options.host):\(port)/ with \(options.loops) loop\(options.loops == 1 ? "" : "s") (SIGINT or SIGTERM stops)")
        fflush(nil)   // the port line must reach a pipe at once (benchmark harness)
        if options.loops > 1 { startWorkers(port: port) }
        if !options.quiet { report(previousRequests: 0, start: mainLoop.time()) }
    }
} catch {
    FileHandle.standardError.write(Data("http-hello: \(error)\n".utf8))
    exit(1)
}
workersDone.wait()
try mainLoop.close()
let total = figures.reduce(0) { $0 + $1.requests.load(ordering: .relaxed) }
print("http-hello stopped after \(total) requests")
