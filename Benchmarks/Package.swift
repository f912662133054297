// swift-tools-version: 6.0
// The benchmark harness: a package of its own, so that SwiftNIO never reaches UVLoop's users.
// Run everything with `bash Benchmarks/run.sh` (see README.md).
import Foundation
import PackageDescription

// run.py sets BENCHMARKS_WITHOUT_UVLOOP=1 when the root package cannot even be loaded, so that
// the other participants still build; normal builds leave it unset.
let withUVLoop = ProcessInfo.processInfo.environment["BENCHMARKS_WITHOUT_UVLOOP"] == nil

var dependencies: [Package.Dependency] = [
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    // B5/B5b's swift-subprocess participant, at the version issue 3 names.
    .package(url: "https://github.com/swiftlang/swift-subprocess", exact: "1.0.2"),
    // B1's "stall detector and metrics on" run bootstraps swift-metrics (its test factory).
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    // B12/B12b's NIO-SSL participant (BoringSSL inside: its first build takes a few minutes).
    .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
]
var targets: [Target] = [
    // Timing, the shared workload inputs, threads, JSON output and the command line.
    .target(name: "BenchSupport"),
    .executableTarget(
        name: "bench-nio",
        dependencies: [
            "BenchSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]
    ),
    // B12/B12b: SwiftNIO with swift-nio-ssl, a target of its own so that bench-nio does not
    // build BoringSSL.
    .executableTarget(
        name: "bench-nio-ssl",
        dependencies: [
            "BenchSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]
    ),
    // B5/B5b: spawning with swift-subprocess's `run`, and with Foundation's `Process`.
    .executableTarget(
        name: "bench-subprocess",
        dependencies: ["BenchSupport", .product(name: "Subprocess", package: "swift-subprocess")]
    ),
    .executableTarget(name: "bench-process", dependencies: ["BenchSupport"]),
]
if withUVLoop {
    dependencies.append(.package(name: "UVLoop", path: ".."))
    targets.append(
        .executableTarget(
            name: "bench-uvloop",
            dependencies: [
                "BenchSupport", .product(name: "UVLoop", package: "UVLoop"),
                .product(name: "UVLoopTLS", package: "UVLoop"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        )
    )
}

let package = Package(
    name: "UVLoopBenchmarks",
    dependencies: dependencies,
    targets: targets,
    swiftLanguageModes: [.v6]
)
