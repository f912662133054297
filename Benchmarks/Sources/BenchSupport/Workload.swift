import Glibc

/// Seconds on the monotonic clock; every participant measures with CLOCK_MONOTONIC.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// B2's timer delays in milliseconds, 0...100: xorshift32 seeded with 42, each value mod 101.
/// The C and Python participants generate the very same sequence.
public func timerDelaysMilliseconds(count: Int) -> [Int] {
    var x: UInt32 = 42
    return (0..<count).map { _ in
        x ^= x << 13
        x ^= x >> 17
        x ^= x << 5
        return Int(x % 101)
    }
}

/// B3 runs this many producer threads.
public let producerCount = 4

/// Counts a benchmark's trivial callbacks and times the run from `start` to the `target`-th call.
/// `@unchecked Sendable`: only the event loop's thread touches it, and it is the loop's serial
/// execution, not a lock, that makes that safe (a lock would add cost to the callbacks measured).
public final class CallbackCounter: @unchecked Sendable {
    public let target: Int
    public private(set) var count = 0
    public private(set) var start = 0.0
    public private(set) var end = 0.0

    public init(target: Int) {
        self.target = target
    }

    /// Records the start time; call it just before the first callback is scheduled.
    public func startClock() {
        start = monotonicSeconds()
    }

    /// Counts one callback; returns true for the last one, after recording the end time.
    @inline(__always)
    public func increment() -> Bool {
        count += 1
        guard count == target else { return false }
        end = monotonicSeconds()
        return true
    }

    /// B1's and B3's metric (`variant`: a tag such as "closure per call").
    public func throughput(_ variant: String? = nil) -> [Measurement] {
        [Measurement("callbacks/s" + (variant.map { " [\($0)]" } ?? ""), Double(target) / (end - start))]
    }

    public var throughput: [Measurement] { throughput() }

    /// B2's metrics: wall time from the first schedule to the last timer, and what exceeds the longest delay.
    public func timerMeasurements(delaysMilliseconds: [Int]) -> [Measurement] {
        let wallMilliseconds = (end - start) * 1000
        let longest = Double(delaysMilliseconds.max() ?? 0)
        return [Measurement("wall ms", wallMilliseconds), Measurement("overhead ms", wallMilliseconds - longest)]
    }
}

/// B8's workloads run this many hops, or tasks.
public let hopsVariantNames = ["global to loop actor", "tasks on the loop"]
