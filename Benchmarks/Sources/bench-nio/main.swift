// The SwiftNIO participant: `bench-nio BENCH N`. Add a benchmark by adding a function and an entry.
import BenchSupport

runParticipant(
    impl: "SwiftNIO",
    benchmarks: [
        "B1": executeThroughput,
        "B2": scheduledTasks,
        "B3": crossThreadThroughput,
        "B8": executorHops,
        "B4": echoServer,
        "B4b": httpHelloServer,
        "B10": echoServer,
        "B11": idleServer,
    ]
)
