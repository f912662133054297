import BenchSupport
import Glibc
import UVLoop

// Issue 12: the cost of the supervision features.
//
// B5c: spawn-and-reap rate of /bin/true, one at a time, with closeFDs on (the default) and none
// or 1,000 extra inheritable descriptors open in the parent (no per-descriptor loop: one
// close_range in the child); and runSubprocessExec("/bin/true") against createSubprocessExec +
// communicate() with both outputs piped, the same work by hand.
//
// B9: loop stall while spawning: a parent holding 1 GiB runs a 1 ms repeating timer and spawns
// n children, 8 in flight; the timer's worst and median lateness (how long past 1 ms after the
// previous tick each tick ran).

/// Opens `count` descriptors on /dev/null without O_CLOEXEC (Swift's and C's default); they stay
/// open until the returned closure runs.
private func openInheritableDescriptors(_ count: Int) -> () -> Void {
    _ = raiseDescriptorLimit()
    let fds = (0..<count).map { _ in open("/dev/null", O_RDONLY) }
    return { fds.forEach { _ = close($0) } }
}

/// B5c, under the policy's default watcher on a main-thread loop.
func supervisionCosts(n: Int) throws -> [Measurement] {
    let loop = try newEventLoop()
    setEventLoop(loop)
    defer {
        setEventLoop(nil)
        try? loop.close()
    }
    func rate(_ spawnAndReap: @escaping @Sendable () async throws -> Void) throws -> Double {
        try loop.runUntilComplete { try await spawnRate(n: n, width: 1, spawnAndReap) }
    }
    let trueChild: @Sendable () async throws -> Void = {
        let code = try await createSubprocessExec("/bin/true").wait()
        if code != 0 { throw BenchFailure("/bin/true returned \(code)") }
    }
    // Interleaved, twice each, best kept: the machine's noise hits both sides alike.
    var none = 0.0, thousand = 0.0, byHand = 0.0, run = 0.0
    for _ in 0..<2 {
        none = max(none, try rate(trueChild))
        let closeAll = openInheritableDescriptors(1000)
        thousand = max(thousand, try rate(trueChild))
        closeAll()
        byHand = max(byHand, try rate {
            let child = try await createSubprocessExec("/bin/true", stdout: .pipe, stderr: .pipe)
            _ = try await child.communicate()
            if child.returnCode != 0 { throw BenchFailure("/bin/true returned \(String(describing: child.returnCode))") }
        })
        run = max(run, try rate {
            let completed = try await runSubprocessExec("/bin/true")
            if completed.returnCode != 0 { throw BenchFailure("/bin/true returned \(completed.returnCode)") }
        })
    }
    return [
        Measurement("seq spawns/s [closeFDs, 0 extra fds]", none),
        Measurement("seq spawns/s [closeFDs, 1000 extra fds]", thousand),
        Measurement("seq runs/s [createSubprocessExec+communicate]", byHand),
        Measurement("seq runs/s [runSubprocessExec]", run),
    ]
}

/// B9: a 1 ms repeating timer (each tick armed 1 ms after the previous one ran) on a loop
/// whose parent holds 1 GiB, while n children are spawned and reaped, 8 in flight.
func spawnStall(n: Int) throws -> [Measurement] {
    touchBallast(bytes: bigParentBytes)
    let loop = try newEventLoop()
    setEventLoop(loop)
    defer {
        setEventLoop(nil)
        try? loop.close()
    }
    let latenesses = try loop.runUntilComplete { () async throws -> [Double] in
        final class Ticker: @unchecked Sendable {   // loop thread only
            var samples: [Double] = []
            var running = true
        }
        let ticker = Ticker()
        // Each tick arms the next 1 ms after it ran (a repeating timer, as `call_later` from its
        // own callback): its lateness is how long the loop could not run it, with no drift
        // carried from one tick to the next. Measured on the live clock (CLOCK_MONOTONIC).
        func tick(_ due: Double) {
            guard ticker.running else { return }
            let now = monotonicSeconds()
            ticker.samples.append(now - due)
            loop.callLater(0.001) { tick(now + 0.001) }
        }
        let start = monotonicSeconds()
        loop.callLater(0.001) { tick(start + 0.001) }
        try await pauseOnLoop(0.05)
        ticker.samples.removeAll()
        _ = try await spawnRate(n: n, width: 8) {
            let code = try await createSubprocessExec("/bin/true").wait()
            if code != 0 { throw BenchFailure("/bin/true returned \(code)") }
        }
        ticker.running = false
        return ticker.samples
    }
    let sorted = latenesses.sorted()
    return [
        Measurement("worst timer lateness ms", (sorted.last ?? 0) * 1e3),
        Measurement("median timer lateness ms", median(latenesses) * 1e3),
    ]
}

/// Waits `seconds` on the running loop's clock.
private func pauseOnLoop(_ seconds: Double) async throws {
    try await getRunningLoop().sleep(seconds)
}
