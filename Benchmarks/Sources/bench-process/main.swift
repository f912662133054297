// The Foundation.Process participant (B5, B5b): `bench-process BENCH N`.
// Each child is a `Process` running /bin/true with the standard streams inherited; its
// `terminationHandler` resumes the waiting task.
import BenchSupport
import Foundation

@Sendable func spawnAndReap() async throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/true")
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        process.terminationHandler = { process in
            if process.terminationReason == .exit && process.terminationStatus == 0 {
                continuation.resume()
            } else {
                continuation.resume(throwing: BenchFailure("/bin/true ended with \(process.terminationStatus)"))
            }
        }
        do {
            try process.run()
        } catch {
            continuation.resume(throwing: error)
        }
    }
}

runParticipant(impl: "Foundation.Process", benchmarks: [
    "B5": spawnBenchmark(bench: "B5", spawnAndReap),
    "B5b": spawnBenchmark(bench: "B5b", spawnAndReap),
])
