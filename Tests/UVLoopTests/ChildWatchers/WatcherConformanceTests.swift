import Foundation
import Testing
@testable import UVLoop

/// The conformance suite over every watcher and a user-written one. Each runs in its own helper
/// process, on that process's main thread (Safe and Fast need a main-thread loop), and checks
/// afterwards that no zombie, child or descriptor is left.
@Suite("Child watchers: conformance (helper process per watcher)")
struct WatcherConformanceTests {
    @Test(.timeLimit(.minutes(2)), arguments: ["threaded", "multiloop", "safe", "fast", "pidfd", "libuv", "user"])
    func conformance(_ watcher: String) async throws {
        try await asHeavyTest { [self] in try self.conformanceBlocking(watcher) }
    }

    func conformanceBlocking(_ watcher: String) throws {
        let (status, output) = try runHelper("conformance", watcher)
        let checks = output.split(separator: "\n").filter { $0.hasPrefix("ok ") || $0.hasPrefix("FAIL ") }
        #expect(status == 0, "\(watcher):\n\(output)")
        #expect(checks.count >= 24, "\(watcher) ran too few checks:\n\(output)")
        #expect(!output.contains("FAIL"), "\(watcher):\n\(output)")
    }

    /// becomeChildSubreaper() in a process of its own per watcher (the flag cannot be taken back).
    @Test(.timeLimit(.minutes(2)), arguments: ["threaded", "multiloop", "safe", "fast", "pidfd", "libuv", "user"])
    func subreaper(_ watcher: String) async throws {
        try await asHeavyTest { [self] in try self.subreaperBlocking(watcher) }
    }

    func subreaperBlocking(_ watcher: String) throws {
        let (status, output) = try runHelper("subreaper", watcher)
        let checks = output.split(separator: "\n").filter { $0.hasPrefix("ok ") || $0.hasPrefix("FAIL ") }
        #expect(status == 0, "\(watcher):\n\(output)")
        #expect(checks.count >= (watcher == "user" ? 7 : 8), "\(watcher) ran too few checks:\n\(output)")
        #expect(!output.contains("FAIL"), "\(watcher):\n\(output)")
    }
}
