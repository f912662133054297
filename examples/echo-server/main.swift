// echo-server: a TCP echo server on N event loops, one per thread, sharing one port.
//
//   swift run -c release echo-server --loops 2 --port 8888
//
// Every loop comes from the policy (newEventLoop + setEventLoop on its own thread) and listens on
// the same port with SO_REUSEPORT, so the kernel spreads connections over the threads. SIGINT or
// SIGTERM stops every loop cleanly: each closes its listener and its connections, then the loop.
import Foundation
import Synchronization
import UVLoop

struct Options {
    var loops = 1
    var host = "127.0.0.1"
    var port = 8888
    var quiet = false

    static let usage = "usage: echo-server [--loops N] [--host HOST] [--port PORT (0: any)] [--quiet]"

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
        FileHandle.standardError.write(Data("echo-server: \(message)\n\(usage)\n".utf8))
        exit(2)
    }
}

/// What one loop has done, read by the main loop once a second.
final class LoopFigures: Sendable {
    let bytes = Atomic<Int>(0)
    let connections = Atomic<Int>(0)
}

/// The echo handler: copies every chunk back, with flow control, until EOF or an error.
func echo(_ reader: StreamReader, _ writer: StreamWriter, _ figures: LoopFigures) async {
    figures.connections.add(1, ordering: .relaxed)
    defer { figures.connections.subtract(1, ordering: .relaxed) }
    do {
        for try await chunk in reader {
            try writer.write(chunk)
            try await writer.drain()
            figures.bytes.add(chunk.count, ordering: .relaxed)
        }
    } catch {
        // A reset peer, or the server closing its clients: nothing to report.
    }
    writer.close()
}

/// Serves on `loop` (running on this thread) until SIGINT or SIGTERM, then closes cleanly.
/// `listening` runs once the server listens, with its port.
func serve(on loop: EventLoop, options: Options, port: Int, figures: LoopFigures,
           listening: @escaping @Sendable (Int) -> Void = { _ in }) throws {
    try loop.runUntilComplete {
        let server = try await loop.startServer(host: options.host, port: port, reusePort: options.loops > 1) { reader, writer in
            await echo(reader, writer, figures)
        }
        listening(server.port)
        // Every loop handles the signals itself: libuv delivers each one to all of them.
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

// The main thread's loop binds first, so that with --port 0 the others can join the port it got.
let boundPort = Mutex<Int?>(nil)
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
                FileHandle.standardError.write(Data("echo-server: loop \(index) failed: \(error)\n".utf8))
                kill(getpid(), SIGTERM)   // stop the others too
            }
        }
    }
}

/// Prints the live figures once a second while they change.
func report(previousBytes: Int, start: Double) {
    mainLoop.callLater(1.0) {
        let bytes = figures.reduce(0) { $0 + $1.bytes.load(ordering: .relaxed) }
        let connections = figures.reduce(0) { $0 + $1.connections.load(ordering: .relaxed) }
        let now = mainLoop.time()
        if bytes != previousBytes {
            let rate = Double(bytes - previousBytes) / (now - start) / 1e6
            print("connections: \(connections)  echoed: \(String(format: "%.1f", rate)) MB/s")
            fflush(nil)
        }
        report(previousBytes: bytes, start: now)
    }
}

do {
    try serve(on: mainLoop, options: options, port: options.port, figures: figures[0]) { port in
        boundPort.withLock { $0 = port }
        print("echo-server listening on \(options.host):\(port) with \(options.loops) loop\(options.loops == 1 ? "" : "s") (SIGINT or SIGTERM stops)")
        fflush(nil)   // the port line must reach a pipe at once (benchmark harness)
        if options.loops > 1 { startWorkers(port: port) }
        if !options.quiet { report(previousBytes: 0, start: mainLoop.time()) }
    }
} catch {
    FileHandle.standardError.write(Data("echo-server: \(error)\n".utf8))
    exit(1)
}
workersDone.wait()
try mainLoop.close()
print("echo-server stopped")
