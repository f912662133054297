// The UVLoop participant: `bench-uvloop BENCH N`. Add a benchmark by adding a function and an entry.
import BenchSupport

runParticipant(
    impl: "UVLoop",
    benchmarks: [
        "B1": callSoonThroughput,
        "B2": timers,
        "B3": crossThreadThroughput,
        "B8": executorHops,
        "B4": echoServer,
        "B4-limits": echoServerWithLimits,  // run.py's "UVLoop+limits" column of B4
        "B5": spawnRates(bench: "B5"),
        "B5b": spawnRates(bench: "B5b"),
        "B6": exitLatency,
        "B7": memoryFootprint,
        "B5c": supervisionCosts,
        "B9": spawnStall,
        "B10": churnServer,
        "B11": idleServer,
        "B12": tlsEchoServer,
        "B12b": tlsEchoServer,  // the same server: the client makes a new connection per handshake
    ]
)
