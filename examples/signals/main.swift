// signals: a graceful stop on SIGINT or SIGTERM. The handlers run on the loop's thread as normal
// callbacks (libuv's uv_signal_t), so they can touch loop state directly.
import Glibc
import UVLoop

let loop = try getEventLoop()
var ticks = 0
var stopRequested: Int32? = nil

func shutdown(_ signal: Int32) {
    guard stopRequested == nil else { return }
    stopRequested = signal
    print("\nreceived \(signal == SIGINT ? "SIGINT" : "SIGTERM"): finishing the current work, then stopping")
    // Let in-flight work finish: stop at the next tick instead of right now.
    loop.callLater(0.1) { loop.stop() }
}

try loop.addSignalHandler(SIGINT) { shutdown(SIGINT) }
try loop.addSignalHandler(SIGTERM) { shutdown(SIGTERM) }

// Some periodic work, with a live figure.
func tick() {
    ticks += 1
    print("\rworking... tick \(ticks) (press Ctrl-C, or: kill -TERM \(getpid()))", terminator: "")
    fflush(stdout)
    loop.callLater(0.25, tick)
}
loop.callSoon(tick)

// For unattended runs: `signals --self-test` sends itself SIGTERM after a second.
if CommandLine.arguments.contains("--self-test") {
    loop.callLater(1.0) { kill(getpid(), SIGTERM) }
}

try loop.runForever()
loop.removeSignalHandler(SIGINT)
loop.removeSignalHandler(SIGTERM)
try loop.close()
print("stopped cleanly after \(ticks) ticks (signal \(stopRequested ?? 0))")
