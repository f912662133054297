// swift-tools-version: 6.0
import PackageDescription

let examples = ["hello-loop", "custom-policy", "loop-per-thread", "echo-server", "http-hello", "subprocess-pipeline", "child-watchers", "signals", "actor-on-loop", "loop-health", "job-runner"]

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let exampleDependencies: [String: [Target.Dependency]] = [
    "echo-server": ["ServerExampleSupport", argumentParser],
    "http-hello": ["ServerExampleSupport", "UVLoopTLS", argumentParser],
    "child-watchers": [argumentParser],
    "signals": [argumentParser],
    "loop-health": [argumentParser, .product(name: "Logging", package: "swift-log")],
    "job-runner": [argumentParser],
]

let package = Package(
    name: "UVLoop",
    products: [
        .library(name: "UVLoop", targets: ["UVLoop"]),
        .library(name: "UVLoopServiceLifecycle", targets: ["UVLoopServiceLifecycle"]),
        .library(name: "UVLoopTLS", targets: ["UVLoopTLS"]),
    ] + (examples + ["service-group"]).map { .executable(name: $0, targets: [$0]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibUV",
            path: "CLibUV",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),
        // The system OpenSSL (Debian's libssl-dev), for UVLoopTLS only.
        .systemLibrary(
            name: "COpenSSL",
            path: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // The Linux system calls of UVLoop's OS layer (pidfds, wait statuses, posix_spawn extras).
        .systemLibrary(name: "CUVLoopOS", path: "CUVLoopOS"),
        .target(
            name: "UVLoop",
            dependencies: [
                "CLibUV",
                "CUVLoopOS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "UVLoopServiceLifecycle",
            dependencies: [
                "UVLoop",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "UVLoopTests",
            dependencies: [
                "UVLoop",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        // TLS on the system OpenSSL: its own product, so that UVLoop needs no OpenSSL.
        .target(
            name: "UVLoopTLS",
            dependencies: ["UVLoop", "COpenSSL", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "UVLoopTLSTests",
            dependencies: ["UVLoopTLS", "UVLoop"]
        ),
        .testTarget(
            name: "UVLoopServiceLifecycleTests",
            dependencies: [
                "UVLoopServiceLifecycle",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Scenarios that must run on a process's main thread (policy rules), started by the tests.
        .executableTarget(
            name: "uvloop-test-helper",
            dependencies: ["UVLoop"],
            path: "Tests/UVLoopTestHelper"
        ),
        // The command line and the N-loop serving that echo-server and http-hello share.
        .target(
            name: "ServerExampleSupport",
            dependencies: [
                "UVLoop", "UVLoopServiceLifecycle", argumentParser,
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "examples/server-support"
        ),
    ] + examples.map { name in
        .executableTarget(name: name, dependencies: ["UVLoop"] + (exampleDependencies[name] ?? []),
                          path: "examples/\(name)", exclude: ["README.md"])
    } + [
        .executableTarget(
            name: "uvloop-stress",
            dependencies: ["UVLoop", argumentParser],
            path: "Tools/uvloop-stress"
        ),
        .executableTarget(
            name: "service-group",
            dependencies: [
                "UVLoopServiceLifecycle",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "examples/service-group",
            exclude: ["README.md"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
