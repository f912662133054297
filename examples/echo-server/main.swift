// echo-server: a TCP echo server on N event loops, one per thread, sharing one port.
//
//   swift run -c release echo-server --loops 2 --port 8888
//
// The loops run in an EventLoopService (one thread each, each its thread's loop in the policy),
// one server per loop on the same port (EventLoopService.startServers, SO_REUSEPORT), so the
// kernel spreads connections over the threads. SIGINT or SIGTERM shuts down gracefully: accepting
// stops, the handlers get --grace seconds, then the loops stop and close. That part is shared
// with http-hello: examples/server-support/MultiLoopServer.swift.
import ArgumentParser
import Foundation
import ServerExampleSupport
import Synchronization
import UVLoop

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

struct EchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "echo-server")
    @OptionGroup var server: ServerOptions
}

let options = EchoServer.parseOrExit().server
let figures = (0..<options.loops).map { _ in LoopFigures() }
let previousBytes = Atomic<Int>(0)

await serveOnLoops("echo-server", options: options, defaultPort: 8888, listening: { port, firstLoop in
    print("echo-server listening on \(options.host):\(port) with \(options.loops) loop\(options.loops == 1 ? "" : "s") (SIGINT or SIGTERM stops)")
    fflush(nil)   // the port line must reach a pipe at once (benchmark harness)
    if options.quiet { return }
    // The live figures, once a second while they change.
    everySecond(on: firstLoop) { elapsed in
        let bytes = figures.reduce(0) { $0 + $1.bytes.load(ordering: .relaxed) }
        let connections = figures.reduce(0) { $0 + $1.connections.load(ordering: .relaxed) }
        let previous = previousBytes.exchange(bytes, ordering: .relaxed)
        if bytes != previous {
            print("connections: \(connections)  echoed: \(String(format: "%.1f", Double(bytes - previous) / elapsed / 1e6)) MB/s")
            fflush(nil)
        }
    }
}, handler: { index, reader, writer in
    await echo(reader, writer, figures[index])
})
print("echo-server stopped")
