// The swift-subprocess participant (B5, B5b): `bench-subprocess BENCH N`.
// Each child is one `run(_:input:output:error:)` of /bin/true with the standard streams inherited,
// as every participant does; swift-subprocess waits for it on its own (pidfd + epoll) thread.
import BenchSupport
import Subprocess

@Sendable func spawnAndReap() async throws {
    let result = try await run(.path("/bin/true"), input: .currentStandardInput,
                               output: .currentStandardOutput, error: .currentStandardError)
    guard result.terminationStatus.isSuccess else {
        throw BenchFailure("/bin/true ended with \(result.terminationStatus)")
    }
}

runParticipant(impl: "swift-subprocess", benchmarks: [
    "B5": spawnBenchmark(bench: "B5", spawnAndReap),
    "B5b": spawnBenchmark(bench: "B5b", spawnAndReap),
])
