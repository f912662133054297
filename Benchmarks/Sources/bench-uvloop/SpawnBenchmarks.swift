import BenchSupport
import Glibc
import UVLoop

// B5/B5b (spawn rate), B6 (exit-to-callback latency) and B7 (memory), under each of UVLoop's
// child watchers. Everything runs on the main thread's loop: SafeChildWatcher and FastChildWatcher
// need it (`setChildWatcher(w); setEventLoop(loop)` on the main thread attaches the loop).

/// The six watchers, by the short name their metrics carry.
let watcherKinds: [(tag: String, make: @Sendable () -> any ChildWatcher)] = [
    ("threaded", { ThreadedChildWatcher() }),
    ("multiloop", { MultiLoopChildWatcher() }),
    ("safe", { SafeChildWatcher() }),
    ("fast", { FastChildWatcher() }),
    ("pidfd", { PidfdChildWatcher() }),
    ("libuv", { LibuvChildWatcher() }),
]

/// Runs `body` on a fresh main-thread loop with each watcher in turn (`only`: just those tags).
private func withEachWatcher(only: Set<String>? = nil, _ body: (String, EventLoop) throws -> Void) throws {
    let loop = try newEventLoop()
    for (tag, make) in watcherKinds where only?.contains(tag) ?? true {
        setChildWatcher(make())  // closes the previous one
        setEventLoop(loop)  // main thread: attaches the loop to the watcher
        try body(tag, loop)
    }
    setChildWatcher(nil)
    setEventLoop(nil)
    try loop.close()
}

/// Waits `seconds` on the running loop's clock.
private func pause(_ seconds: Double) async throws {
    let loop = try getRunningLoop()
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        loop.callLater(seconds) { continuation.resume() }
    }
}

/// A child that only waits to be killed, with no descriptor of ours.
private func startSleeper() async throws -> ChildProcess {
    try await createSubprocessExec("/bin/sleep", ["600"], stdin: .devNull, stdout: .devNull, stderr: .devNull)
}

/// Kills and reaps `children`.
private func killAll(_ children: [ChildProcess]) async throws {
    for child in children { try? child.kill() }
    for child in children { _ = try await child.wait() }
}

// MARK: - B5, B5b

/// B5 (B5b with the 1 GiB ballast): spawn and reap /bin/true n times per watcher, sequentially
/// and 64 in flight; `[best]` is the best watcher.
func spawnRates(bench: String) -> Benchmark {
    { n in
        touchBallast(bytes: ballastBytes(forBenchmark: bench))
        var rates: [(label: String, tag: String, value: Double)] = []
        try withEachWatcher { tag, loop in
            for (label, width) in spawnModes {
                let rate = try loop.runUntilComplete {
                    try await spawnRate(n: n, width: width) {
                        let code = try await createSubprocessExec("/bin/true").wait()
                        if code != 0 { throw BenchFailure("/bin/true returned \(code) under [\(tag)]") }
                    }
                }
                rates.append((label, tag, rate))
            }
        }
        var measurements: [Measurement] = []
        for (label, _) in spawnModes {
            let mode = rates.filter { $0.label == label }
            measurements += mode.map { Measurement(spawnMetric(label, $0.tag), $0.value) }
            measurements.append(Measurement(spawnMetric(label, "best"), mode.map(\.value).max() ?? 0))
        }
        return measurements
    }
}

// MARK: - B6

/// B6's numbers of other live children (`sleep 600`, registered with the same watcher).
let liveChildCounts = [1, 100, 1000]

/// B6: exit-to-callback latency. With 1, 100 and 1000 other live children registered with the
/// watcher, n times: start a `sleep 600` child, let it settle, SIGKILL it (T0) and time until
/// `wait()` returns on the loop. Reports the median in µs per watcher and live count.
func exitLatency(n: Int) throws -> [Measurement] {
    raiseDescriptorLimit()  // PidfdChildWatcher: a pidfd per live child
    var measurements: [Measurement] = []
    try withEachWatcher { tag, loop in
        let medians = try loop.runUntilComplete { () async throws -> [(Int, Double)] in
            var helpers: [ChildProcess] = []
            var medians: [(Int, Double)] = []
            do {
                for live in liveChildCounts {
                    while helpers.count < live { helpers.append(try await startSleeper()) }
                    try await pause(0.05)  // waiting threads started, signals settled
                    var samples: [Double] = []
                    for _ in 0..<n {
                        let child = try await startSleeper()
                        try await pause(0.002)
                        let start = monotonicSeconds()
                        try child.kill()
                        let code = try await child.wait()
                        samples.append(monotonicSeconds() - start)
                        if code != -SIGKILL { throw BenchFailure("a killed child returned \(code) under [\(tag)]") }
                    }
                    medians.append((live, median(samples) * 1e6))
                }
            } catch {
                try? await killAll(helpers)
                throw error
            }
            try await killAll(helpers)
            return medians
        }
        measurements += medians.map { Measurement("latency µs [\(tag), \($0.0) live]", $0.1) }
    }
    return measurements
}

// MARK: - B7

/// B7: resident memory per pending child under ThreadedChildWatcher and PidfdChildWatcher, and per
/// idle EventLoop. Each figure is taken in a fresh process (this program again, with
/// UVLOOP_B7_PART set), so that one measurement's freed memory does not feed the next.
func memoryFootprint(n: Int) throws -> [Measurement] {
    if let part = getenv("UVLOOP_B7_PART").map({ String(cString: $0) }) {
        for (metric, value) in try memoryPart(part, n: n) { print("\(metric)\t\(value)") }
        return []
    }
    var values: [String: Double] = [:]
    for part in ["pidfd", "threaded", "loops"] {
        setenv("UVLOOP_B7_PART", part, 1)
        defer { unsetenv("UVLOOP_B7_PART") }
        let loop = try newEventLoop()
        let output = try loop.runUntilComplete { () async throws -> String in
            let child = try await createSubprocessExec("/proc/self/exe", ["B7", String(n)], stdout: .pipe)
            let (out, _) = try await child.communicate()
            let code = try await child.wait()
            if code != 0 { throw BenchFailure("B7 part \(part) exited with \(code)") }
            return String(decoding: out, as: UTF8.self)
        }
        try loop.close()
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: "\t")
            if fields.count == 2, let value = Double(fields[1]) { values[String(fields[0])] = value }
        }
    }
    let perChild = "RSS KiB per pending child"
    var measurements = [
        Measurement("\(perChild) [pidfd]", values["\(perChild) [pidfd]"] ?? 0),
        Measurement("\(perChild) [threaded]", values["\(perChild) [threaded]"] ?? 0),
        Measurement("thread KiB per pending child [threaded - pidfd]",
                    (values["\(perChild) [threaded]"] ?? 0) - (values["\(perChild) [pidfd]"] ?? 0)),
    ]
    for metric in ["fds per pending child [pidfd]", "fds per pending child [threaded]",
                   "RSS KiB per idle loop", "fds per idle loop"] {
        measurements.append(Measurement(metric, values[metric] ?? 0))
    }
    return measurements
}

/// One B7 figure, measured in this (fresh) process.
private func memoryPart(_ part: String, n: Int) throws -> [(String, Double)] {
    raiseDescriptorLimit()
    if part == "loops" {
        // Idle loops: created, never run. n pending children -> 2n loops (1000 for n = 500).
        let count = 2 * n
        let warmUp = try newEventLoop()
        try warmUp.close()
        let (rss, fds) = (residentBytes(), openDescriptorCount())
        let loops = try (0..<count).map { _ in try newEventLoop() }
        let (rssAfter, fdsAfter) = (residentBytes(), openDescriptorCount())
        for loop in loops { try loop.close() }
        return [("RSS KiB per idle loop", Double(rssAfter - rss) / 1024 / Double(count)),
                ("fds per idle loop", Double(fdsAfter - fds) / Double(count))]
    }
    var result: [(String, Double)] = []
    try withEachWatcher(only: [part]) { tag, loop in
        result = try loop.runUntilComplete { () async throws -> [(String, Double)] in
            try await killAll([try await startSleeper(), try await startSleeper()])  // warm-up
            try await pause(0.1)
            let (rss, fds) = (residentBytes(), openDescriptorCount())
            var children: [ChildProcess] = []
            do {
                for _ in 0..<n { children.append(try await startSleeper()) }
                try await pause(0.3)  // every waiting thread started and blocked
            } catch {
                try? await killAll(children)
                throw error
            }
            let (rssAfter, fdsAfter) = (residentBytes(), openDescriptorCount())
            try await killAll(children)
            return [("RSS KiB per pending child [\(tag)]", Double(rssAfter - rss) / 1024 / Double(n)),
                    ("fds per pending child [\(tag)]", Double(fdsAfter - fds) / Double(n))]
        }
    }
    return result
}
