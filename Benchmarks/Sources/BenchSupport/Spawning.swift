import Dispatch
import Glibc

// What the spawning benchmarks (B5, B5b, B6, B7) share between the Swift participants.

/// B5b's parent holds this much touched memory while it spawns (B5: none).
public let bigParentBytes = 1 << 30

/// The memory B5b's parent holds, written page by page; kept until the process exits.
nonisolated(unsafe) private var ballast: UnsafeMutableRawPointer?

/// Allocates `bytes` and writes every page, so that the parent really holds them resident (what
/// makes `fork` slow: it copies the page tables). Call it before measuring; 0 does nothing.
public func touchBallast(bytes: Int) {
    guard bytes > 0 else { return }
    guard let memory = malloc(bytes) else { fatalError("malloc(\(bytes)) failed") }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    for offset in stride(from: 0, to: bytes, by: page) {
        memory.storeBytes(of: UInt8(truncatingIfNeeded: offset | 1), toByteOffset: offset, as: UInt8.self)
    }
    ballast = memory
}

/// B5/B5b's ballast for a benchmark id: 1 GiB for B5b, none otherwise.
public func ballastBytes(forBenchmark id: String) -> Int {
    id == "B5b" ? bigParentBytes : 0
}

/// B5's two modes: one child at a time ("seq"), and 64 in flight ("64"). The label starts the metric name.
public let spawnModes: [(label: String, width: Int)] = [("seq", 1), ("64", 64)]

/// B5: after one untimed warm-up, runs `spawnAndReap` n times, `width` at a time (a task group
/// that starts the next one as each finishes); returns spawns per second.
///
/// The child tasks inherit the caller's task executor preference, so a caller running on an
/// event loop keeps every spawn on that loop.
public func spawnRate(n: Int, width: Int, _ spawnAndReap: @escaping @Sendable () async throws -> Void) async throws -> Double {
    try await spawnAndReap()
    let start = monotonicSeconds()
    if width == 1 {
        for _ in 0..<n { try await spawnAndReap() }
    } else {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var started = 0
            while started < min(width, n) {
                group.addTask(operation: spawnAndReap)
                started += 1
            }
            for try await _ in group where started < n {
                group.addTask(operation: spawnAndReap)
                started += 1
            }
        }
    }
    return Double(n) / (monotonicSeconds() - start)
}

/// B5's metric name for a mode and a tag (a watcher's short name, or "best").
public func spawnMetric(_ label: String, _ tag: String) -> String {
    "\(label) spawns/s [\(tag)]"
}

/// B5/B5b for a participant with a single way to spawn (no watchers to choose): touches the
/// ballast, then measures both modes, reported as `[best]`.
public func spawnBenchmark(bench: String, _ spawnAndReap: @escaping @Sendable () async throws -> Void) -> Benchmark {
    { n in
        touchBallast(bytes: ballastBytes(forBenchmark: bench))
        return try spawnModes.map { label, width in
            Measurement(spawnMetric(label, "best"), try blockingAwait { try await spawnRate(n: n, width: width, spawnAndReap) })
        }
    }
}

/// A benchmark's workload went wrong (a child exited with the wrong status, say).
public struct BenchFailure: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Runs `body` on the global concurrent executor and blocks this (main) thread until it is done:
/// the participants' benchmark functions are synchronous.
public func blockingAwait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

/// Where `blockingAwait`'s task leaves its result; the semaphore orders the write before the read.
private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

/// This process's resident memory in bytes (the second field of /proc/self/statm, in pages).
public func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    guard fgets(&line, Int32(line.count), file) != nil else { return 0 }
    let fields = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        .split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// How many descriptors this process has open (entries of /proc/self/fd, less the one listing it).
public func openDescriptorCount() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return 0 }
    defer { closedir(directory) }
    var count = 0
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if name != "." && name != ".." { count += 1 }
    }
    return count - 1  // the directory stream's own descriptor
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (B6 and B7 hold a pidfd per child); returns it.
@discardableResult
public func raiseDescriptorLimit() -> Int {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return -1 }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return Int(limit.rlim_cur)
}

/// The median of some samples (0 for none).
public func median(_ samples: [Double]) -> Double {
    let sorted = samples.sorted()
    guard !sorted.isEmpty else { return 0 }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
