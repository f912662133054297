// What the server examples (echo-server, http-hello) share: their command line, and serving on N
// event loops, one per thread, all listening on one port with SO_REUSEPORT.
import ArgumentParser
import Foundation
import UVLoop

/// The server examples' options: `[--loops N] [--host HOST] [--port PORT] [--quiet]`.
public struct ServerOptions: ParsableArguments, Sendable {
    @Option(help: "Event loops, one thread each, sharing the port.")
    public var loops = 1

    @Option(help: "The address to listen on.")
    public var host = "127.0.0.1"

    @Option(help: "The port to listen on; 0 picks a free one.")
    public var port: Int?

    @Flag(help: "Print no live figures.")
    public var quiet = false

    public init() {}

    public func validate() throws {
        if loops < 1 { throw ValidationError("--loops must be at least 1") }
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535") }
    }
}

/// Serves connections on `options.loops` loops until SIGINT or SIGTERM, then closes every listener,
/// every connection and every loop cleanly, and returns.
///
/// The main thread's loop (the policy's, from `getEventLoop()`) binds first, so that with port 0
/// the others join the port it got. Every other loop runs on a thread of its own, created with
/// `newEventLoop()` and set with `setEventLoop(_:)` there, as asyncio's policy model has it.
///
/// - Parameters:
///   - name: the program's name, for messages.
///   - defaultPort: the port when `--port` is not given.
///   - listening: runs once, on the main loop, with the bound port and the main loop.
///   - handler: runs once per connection, as a task on the loop that accepted it; `loop` is that
///     loop's index, 0 being the main thread's.
public func serveOnLoops(
    _ name: String, options: ServerOptions, defaultPort: Int,
    listening: @escaping @Sendable (_ port: Int, _ mainLoop: EventLoop) -> Void,
    handler: @escaping @Sendable (_ loop: Int, StreamReader, StreamWriter) async -> Void
) {
    let workersDone = DispatchGroup()

    @Sendable func serve(on loop: EventLoop, index: Int, port: Int, listening: @escaping @Sendable (Int) -> Void) throws {
        try loop.runUntilComplete {
            let server = try await loop.startServer(host: options.host, port: port, reusePort: options.loops > 1) { reader, writer in
                await handler(index, reader, writer)
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
            try await server.waitClosed()
            for signal in [SIGINT, SIGTERM] { loop.removeSignalHandler(signal) }
        }
    }

    @Sendable func startWorkers(port: Int) {
        for index in 1..<options.loops {
            workersDone.enter()
            Thread.detachNewThread {
                defer { workersDone.leave() }
                do {
                    let loop = try newEventLoop()
                    setEventLoop(loop)
                    try serve(on: loop, index: index, port: port) { _ in }
                    setEventLoop(nil)
                    try loop.close()
                } catch {
                    FileHandle.standardError.write(Data("\(name): loop \(index) failed: \(error)\n".utf8))
                    kill(getpid(), SIGTERM)   // stop the others too
                }
            }
        }
    }

    do {
        let mainLoop = try getEventLoop()
        try serve(on: mainLoop, index: 0, port: options.port ?? defaultPort) { port in
            listening(port, mainLoop)
            if options.loops > 1 { startWorkers(port: port) }
        }
        workersDone.wait()
        try mainLoop.close()
    } catch {
        FileHandle.standardError.write(Data("\(name): \(error)\n".utf8))
        exit(1)
    }
}

/// Runs `body` on `loop` once a second, with the seconds since the previous run.
public func everySecond(on loop: EventLoop, _ body: @escaping (_ elapsed: Double) -> Void) {
    func schedule(from start: Double) {
        loop.callLater(1.0) {
            let now = loop.time()
            body(now - start)
            schedule(from: now)
        }
    }
    schedule(from: loop.time())
}
