// uvloop-stress: load on every part of UVLoop at once, then a check that nothing leaked.
//
//   swift run -c release uvloop-stress                 # the short form CI runs (a few seconds)
//   swift run -c release uvloop-stress --scale 10      # ten times the work
//   swift run -c release uvloop-stress --soak --seconds 600
//
// Workloads: spawns under every child watcher with 64 in flight; a TCP echo server with hundreds
// of connections; timers and cross-thread callbacks at full rate on two loops together. Before and
// after: descriptors, threads, zombies and resident memory. Exits 1 when descriptors, threads or
// children are not back to where they started, or (soak) when memory keeps growing.
import ArgumentParser
import Foundation
import UVLoop

struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "uvloop-stress")

    @Option(help: "Multiplies the amount of work.")
    var scale = 1

    @Flag(help: "Repeat the workloads and watch memory, for --seconds.")
    var soak = false

    @Option(help: "With --soak: how long to run.")
    var seconds = 60.0

    func validate() throws {
        if scale < 1 { throw ValidationError("--scale must be at least 1") }
        if seconds <= 0 { throw ValidationError("--seconds must be positive") }
    }
}

struct Snapshot: CustomStringConvertible {
    let descriptors: Int
    let threads: Int
    let children: Int
    let residentKiB: Int

    static func take() -> Snapshot {
        let fds = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).filter {
            // libdispatch's timerfd comes and goes on its own schedule.
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) != "anon_inode:[timerfd]"
        }
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
            .flatMap { Int($0.split(whereSeparator: { $0 == " " || $0 == "\t" })[1]) } ?? -1
        return Snapshot(descriptors: fds.count, threads: threads, children: childCount(), residentKiB: rss)
    }

    /// Children of this process (running or zombie), from /proc.
    static func childCount() -> Int {
        let me = getpid()
        var count = 0
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int32(entry) != nil {
            guard let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, Int32(fields[1]) == me { count += 1 }
        }
        return count
    }

    var description: String {
        "descriptors \(descriptors), threads \(threads), children \(children), resident \(residentKiB / 1024) MiB"
    }
}

func log(_ message: String) { print(message); fflush(nil) }

/// Spawns `count` /bin/true with 64 in flight under `watcher`; returns (spawns, bad exit codes).
func spawnStorm(_ watcher: any ChildWatcher, on loop: EventLoop, count: Int) throws -> (Int, Int) {
    setChildWatcher(watcher)
    setEventLoop(loop)    // main thread: attaches Safe/Fast
    return try loop.runUntilComplete { () async throws -> (Int, Int) in
        var bad = 0
        try await withThrowingTaskGroup(of: Int32.self) { group in
            var started = 0
            while started < min(64, count) {
                group.addTask { try await createSubprocessExec("/bin/true").wait() }
                started += 1
            }
            for try await code in group {
                if code != 0 { bad += 1 }
                if started < count {
                    group.addTask { try await createSubprocessExec("/bin/true").wait() }
                    started += 1
                }
            }
        }
        return (count, bad)
    }
}

/// An echo server on one loop, `connections` clients on another, `messages` round trips each.
func echoStorm(connections: Int, messages: Int) throws -> (Int, Int) {
    let serverLoop = try newEventLoop()
    let serverThread = Thread { try? serverLoop.runForever() }
    serverThread.start()
    let server = try serverLoop.runUntilCompleteOffThread {
        try await serverLoop.startServer(host: "127.0.0.1", port: 0, backlog: 1024) { reader, writer in
            while let chunk = try? await reader.read(65536), !chunk.isEmpty {
                try? writer.write(chunk)
                try? await writer.drain()
            }
            writer.close()
        }
    }
    let clientLoop = try newEventLoop()
    let port = server.port
    let (ok, bad) = try clientLoop.runUntilComplete { () async throws -> (Int, Int) in
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<connections {
                group.addTask {
                    let (reader, writer) = try await clientLoop.openConnection(host: "127.0.0.1", port: port)
                    defer { writer.close() }
                    let message = Array("connection \(index) says hello\n".utf8)
                    for _ in 0..<messages {
                        try writer.write(message)
                        try await writer.drain()
                        guard try await reader.readExactly(message.count) == message else { return false }
                    }
                    return true
                }
            }
            var ok = 0, bad = 0
            for try await good in group { if good { ok += 1 } else { bad += 1 } }
            return (ok, bad)
        }
    }
    server.close()
    _ = try serverLoop.runUntilCompleteOffThread { try await server.waitClosed() }
    serverLoop.stop()
    while !serverThread.isFinished { usleep(1000) }
    try serverLoop.close()
    try clientLoop.close()
    return (ok, bad)
}

/// Timers and cross-thread callbacks at full rate on two loops for `seconds`; returns the counts.
func timerAndCallbackStorm(seconds: Double) throws -> (timers: Int, callbacks: Int) {
    let loops = [try newEventLoop(), try newEventLoop()]
    let counts = Counts()
    let threads = loops.enumerated().map { index, loop in
        Thread {
            // Timers: each fires and schedules the next, 64 chains per loop.
            for chain in 0..<64 {
                func fire() {
                    counts.timer()
                    if !counts.stopped { loop.callLater(Double(chain % 4) / 1000, fire) }
                }
                loop.callLater(0, fire)
            }
            try? loop.runForever()
            _ = index
        }
    }
    threads.forEach { $0.start() }
    // Each loop's neighbour posts callbacks to it from another thread as fast as it can.
    let posters = loops.map { loop in
        Thread {
            while !counts.stopped {
                for _ in 0..<1000 { loop.callSoonThreadsafe { counts.callback() } }
                usleep(100)
            }
        }
    }
    posters.forEach { $0.start() }
    usleep(UInt32(seconds * 1_000_000))
    counts.stop()
    while posters.contains(where: { !$0.isFinished }) { usleep(1000) }
    loops.forEach { $0.stop() }
    while threads.contains(where: { !$0.isFinished }) { usleep(1000) }
    for loop in loops { try loop.close() }
    return counts.totals
}

/// `@unchecked Sendable`: every field is read and written under `lock`.
final class Counts: @unchecked Sendable {
    private let lock = NSLock()
    private var timers = 0, callbacks = 0, isStopped = false
    func timer() { lock.lock(); timers += 1; lock.unlock() }
    func callback() { lock.lock(); callbacks += 1; lock.unlock() }
    func stop() { lock.lock(); isStopped = true; lock.unlock() }
    var stopped: Bool { lock.lock(); defer { lock.unlock() }; return isStopped }
    var totals: (timers: Int, callbacks: Int) { lock.lock(); defer { lock.unlock() }; return (timers, callbacks) }
}

extension EventLoop {
    /// Runs `body` on this loop (running on another thread) and waits for the result.
    func runUntilCompleteOffThread<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let result = Result<T, any Error>?.none
        let box = ResultBox<T>(result)
        let done = DispatchSemaphore(value: 0)
        callSoonThreadsafe {
            self.createTask {
                box.set(await Result { try await body() })
                done.signal()
            }
        }
        done.wait()
        return try box.get()
    }
}

/// `@unchecked Sendable`: `value` is read and written under `lock`.
final class ResultBox<T>: @unchecked Sendable {
    private var value: Result<T, any Error>?
    private let lock = NSLock()
    init(_ value: Result<T, any Error>?) { self.value = value }
    func set(_ result: Result<T, any Error>) { lock.lock(); value = result; lock.unlock() }
    func get() throws -> T { lock.lock(); defer { lock.unlock() }; return try value!.get() }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// One round of every workload; returns false when something failed.
func round(scale: Int, loop: EventLoop, number: Int) throws -> Bool {
    var healthy = true
    let spawns = 200 * scale
    let watchers: [(String, any ChildWatcher)] = [
        ("threaded", ThreadedChildWatcher()), ("multiloop", MultiLoopChildWatcher()), ("safe", SafeChildWatcher()),
        ("fast", FastChildWatcher()), ("pidfd", PidfdChildWatcher()), ("libuv", LibuvChildWatcher()),
    ]
    for (name, watcher) in watchers {
        let start = Date()
        let (count, bad) = try spawnStorm(watcher, on: loop, count: spawns)
        let rate = Double(count) / Date().timeIntervalSince(start)
        log("  [\(number)] spawns  \(name.padding(toLength: 9, withPad: " ", startingAt: 0)) \(count) children, 64 in flight: \(Int(rate))/s, bad exit codes \(bad)")
        healthy = healthy && bad == 0
    }
    setChildWatcher(nil)
    setEventLoop(nil)
    let (ok, bad) = try echoStorm(connections: 200 * min(scale, 4), messages: 20 * scale)
    log("  [\(number)] echo    \(ok) connections ok, \(bad) wrong replies")
    healthy = healthy && bad == 0 && ok == 200 * min(scale, 4)
    let (timers, callbacks) = try timerAndCallbackStorm(seconds: 0.5 * Double(scale))
    log("  [\(number)] timers  \(timers) fired, \(callbacks) cross-thread callbacks run, on 2 loops")
    healthy = healthy && timers > 0 && callbacks > 0
    return healthy
}

let options = Options.parseOrExit()
let loop = try newEventLoop()
// Warm-up: libuv's signal pipe, the pidfd probe, libdispatch's descriptors and threads.
_ = try round(scale: 1, loop: loop, number: 0)
usleep(300_000)
let start = Snapshot.take()
log("start: \(start)")

var healthy = true
var rounds = 0
let began = Date()
var samples: [Int] = []
repeat {
    rounds += 1
    healthy = try round(scale: options.scale, loop: loop, number: rounds) && healthy
    samples.append(Snapshot.take().residentKiB)
    if options.soak { log("  after round \(rounds) (\(Int(Date().timeIntervalSince(began))) s): \(Snapshot.take())") }
} while options.soak && Date().timeIntervalSince(began) < options.seconds

// Children finish being reaped by waiting threads; give them a moment.
var end = Snapshot.take()
let settle = Date().addingTimeInterval(5)
while (end.descriptors > start.descriptors || end.threads > start.threads || end.children > 0) && Date() < settle {
    usleep(50_000)
    end = Snapshot.take()
}
log("end:   \(end)  (\(rounds) round\(rounds == 1 ? "" : "s"), \(Int(Date().timeIntervalSince(began))) s)")
try loop.close()

var problems: [String] = []
if !healthy { problems.append("a workload reported wrong results") }
if end.descriptors > start.descriptors { problems.append("descriptors grew: \(start.descriptors) -> \(end.descriptors)") }
if end.threads > start.threads { problems.append("threads grew: \(start.threads) -> \(end.threads)") }
if end.children > 0 { problems.append("\(end.children) children (zombies) left") }
if options.soak, samples.count >= 4 {
    // Memory is stable when the second half of the run does not keep growing past the first half.
    let half = samples.count / 2
    let firstHalfMax = samples[..<half].max()!, secondHalfMax = samples[half...].max()!
    if secondHalfMax > firstHalfMax + max(firstHalfMax / 10, 16 * 1024) {
        problems.append("resident memory kept growing: \(firstHalfMax / 1024) MiB -> \(secondHalfMax / 1024) MiB")
    }
}
if problems.isEmpty {
    log("OK: nothing leaked")
} else {
    problems.forEach { log("FAIL: \($0)") }
    exit(1)
}
