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
]
if withUVLoop {
    dependencies.append(.package(name: "UVLoop", path: ".."))
    targets.append(
        .executableTarget(
            name: "bench-uvloop",
            dependencies: ["BenchSupport", .product(name: "UVLoop", package: "UVLoop")]
        )
    )
}

let package = Package(
    name: "UVLoopBenchmarks",
    dependencies: dependencies,
    targets: targets,
    swiftLanguageModes: [.v6]
)
