import Glibc

/// One number a benchmark measured, printed as a JSON line for run.py.
public struct Measurement: Sendable {
    public var metric: String
    public var value: Double

    public init(_ metric: String, _ value: Double) {
        self.metric = metric
        self.value = value
    }
}

/// A benchmark body: runs the workload once with size `n` and returns what it measured.
public typealias Benchmark = (_ n: Int) throws -> [Measurement]

/// The `main` of every Swift participant: `bench-<impl> BENCH N`.
///
/// Prints one line per measurement, e.g.
/// `{"bench":"B1","impl":"UVLoop","metric":"callbacks/s","value":123.0,"n":1000000}`.
/// Exits 2 for bad arguments or a benchmark this participant does not implement, 1 if it throws.
public func runParticipant(impl: String, benchmarks: [String: Benchmark]) -> Never {
    let arguments = CommandLine.arguments
    guard arguments.count == 3, let n = Int(arguments[2]), n > 0 else {
        fail(2, "usage: \(arguments[0]) \(benchmarks.keys.sorted().joined(separator: "|")) N")
    }
    let name = arguments[1]
    guard let benchmark = benchmarks[name] else {
        fail(2, "unknown benchmark \(name)")
    }
    do {
        for measurement in try benchmark(n) {
            print(#"{"bench":"\#(name)","impl":"\#(impl)","metric":"\#(measurement.metric)","value":\#(measurement.value),"n":\#(n)}"#)
        }
    } catch {
        fail(1, "\(name) failed: \(error)")
    }
    exit(0)
}

private func fail(_ status: Int32, _ message: String) -> Never {
    let line = message + "\n"
    _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    exit(status)
}

/// What a server benchmark's participant prints once it listens; run.py waits for this line.
public func announceListening(port: Int) {
    print("listening on 127.0.0.1:\(port)")
    fflush(nil)
}
