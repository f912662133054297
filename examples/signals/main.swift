// signals: a graceful stop on SIGINT or SIGTERM. The handlers run on the loop's thread as normal
// callbacks (libuv's uv_signal_t), so they can touch loop state directly.
import ArgumentParser
import Glibc
import UVLoop

struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "signals")

    @Flag(help: "Send SIGTERM to itself after a second (for unattended runs).")
    var selfTest = false
}
let options = Options.parseOrExit()

/// State touched only on the loop's thread (the handlers and timers all run there): that is what
/// guards it, hence `@unchecked Sendable`.
final class Worker: @unchecked Sendable {
    let loop: EventLoop
    var ticks = 0
    var stopSignal: Int32?

    init(loop: EventLoop) { self.loop = loop }

    func tick() {
        ticks += 1
        print("\rworking... tick \(ticks) (press Ctrl-C, or: kill -TERM \(getpid()))", terminator: "")
        fflush(nil)
        loop.callLater(0.25) { self.tick() }
    }

    func shutdown(_ signal: Int32) {
        guard stopSignal == nil else { return }
        stopSignal = signal
        print("\nreceived \(signal == SIGINT ? "SIGINT" : "SIGTERM"): finishing the current work, then stopping")
        // Let in-flight work finish: stop shortly instead of right now.
        loop.callLater(0.1) { self.loop.stop() }
    }
}

let loop = try getEventLoop()
let worker = Worker(loop: loop)
try loop.addSignalHandler(SIGINT) { worker.shutdown(SIGINT) }
try loop.addSignalHandler(SIGTERM) { worker.shutdown(SIGTERM) }
loop.callSoon { worker.tick() }

if options.selfTest {
    loop.callLater(1.0) { kill(getpid(), SIGTERM) }
}

try loop.runForever()
loop.removeSignalHandler(SIGINT)
loop.removeSignalHandler(SIGTERM)
try loop.close()
print("stopped cleanly after \(worker.ticks) ticks (signal \(worker.stopSignal ?? 0))")
