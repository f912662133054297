import Foundation
import Logging
import ServiceLifecycle
import Testing
import UVLoop
import UVLoopServiceLifecycle

/// A value behind a lock, shared with loop callbacks.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// A service that returns once every loop has run a callback on its own thread.
private struct ShutdownAfterWork: Service {
    let loops: [EventLoop]
    let seen: Shared<[Bool]>

    func run() async throws {
        for (index, loop) in loops.enumerated() {
            loop.callSoonThreadsafe {
                // Each loop runs on its own thread and is that thread's loop in the policy.
                let mine = (try? getEventLoop()) === loop && loop.inLoopThread
                seen.withLock { $0[index] = mine }
            }
        }
        while seen.withLock({ $0.contains(false) }) { try await Task.sleep(for: .milliseconds(5)) }
        // Returning shuts the group down gracefully (see successTerminationBehavior below).
    }
}

@Suite("ServiceLifecycle: loops as a Service")
struct EventLoopServiceTests {
    @Test(.timeLimit(.minutes(1))) func loopsRunOnTheirOwnThreadsAndCloseOnGracefulShutdown() async throws {
        let service = try EventLoopService(loops: 2)
        let seen = Shared([false, false])
        let work = ShutdownAfterWork(loops: service.loops, seen: seen)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: service),
                .init(service: work, successTerminationBehavior: .gracefullyShutdownGroup),
            ],
            logger: Logger(label: "test")))
        try await group.run()
        #expect(seen.withLock { $0 } == [true, true])
        #expect(service.loops.allSatisfy { $0.isClosed })
    }

    @Test(.timeLimit(.minutes(1))) func cancellationStopsTheLoopsToo() async throws {
        let service = try EventLoopService(loops: 1)
        let task = Task { try await service.run() }
        while !service.loops[0].isRunning { try await Task.sleep(for: .milliseconds(2)) }
        task.cancel()
        try await task.value
        #expect(service.loops[0].isClosed)
    }
}

/// Graceful shutdown with servers on every loop: a service that starts them, talks to them, and
/// returns (shutting the group down gracefully) while one handler is still busy.
private struct ServeThenLeave: Service {
    let service: EventLoopService
    let report: Shared<[String]>
    /// The busy client's writer, kept open past the shutdown by the test.
    let kept: Shared<[StreamWriter]>

    func run() async throws {
        let servers = try await service.startServers(host: "127.0.0.1", port: 0, maxConnections: 10) { index, reader, writer in
            guard let line = try? await reader.readLine() else { return }
            if line == Array("stay\n".utf8) {
                // Outside the grace: cut by the shutdown (its read throws once it is aborted).
                let outcome = (try? await reader.read()).map { "read \($0.count)" } ?? "cut"
                report.withLock { $0.append("stayer \(outcome)") }
                return
            }
            try? writer.write(Array("loop \(index)\n".utf8))
            writer.close()
        }
        report.withLock { $0.append("servers \(servers.count) ports \(Set(servers.map(\.port)).count)") }
        let loop = service.loops[0]
        let reply = try await loop.onLoopForTest {
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: servers[0].port)
            try writer.write("hello\n")
            let reply = try await reader.readLine()
            let (_, stayer) = try await loop.openConnection(host: "127.0.0.1", port: servers[0].port)
            try stayer.write("stay\n")
            kept.withLock { $0.append(stayer) }
            try await Task.sleep(for: .milliseconds(100))
            return String(decoding: reply, as: UTF8.self)
        }
        report.withLock { $0.append(reply.hasPrefix("loop ") ? "served" : "reply \(reply)") }
    }
}

extension EventLoop {
    /// Runs `body` as a task on this loop and awaits it.
    func onLoopForTest<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await createTask { try await body() }.value
    }
}

@Suite("ServiceLifecycle: servers on every loop")
struct EventLoopServiceServerTests {
    @Test(.timeLimit(.minutes(1))) func startServersServesOnePortOnEveryLoopAndGracefulShutdownCutsAfterTheGrace() async throws {
        let service = try EventLoopService(loops: 2, gracePeriod: 0.3)
        let report = Shared<[String]>([])
        let kept = Shared<[StreamWriter]>([])
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: service),
                .init(service: ServeThenLeave(service: service, report: report, kept: kept),
                      successTerminationBehavior: .gracefullyShutdownGroup),
            ],
            logger: Logger(label: "test")))
        let start = ContinuousClock.now
        try await group.run()
        let took = ContinuousClock.now - start
        let seen = report.withLock { $0 }
        #expect(seen.contains("servers 2 ports 1"), "\(seen)")
        #expect(seen.contains("served"), "\(seen)")
        #expect(seen.contains("stayer cut"), "\(seen)")
        kept.withLock { $0 = [] }
        // The grace was given (the upper side is the cut itself: "stayer cut", not a timing).
        #expect(took >= .milliseconds(300), "\(took)")
        #expect(service.loops.allSatisfy { $0.isClosed })
    }

    @Test(.timeLimit(.minutes(1))) func badCapsAndPortsAreRefusedAndNothingStaysListening() async throws {
        let service = try EventLoopService(loops: 2)
        let task = Task { try await service.run() }
        await #expect(throws: EventLoopError.invalidArgument) {
            try await service.startServers(host: "127.0.0.1", port: 0, maxConnections: 0) { _, _, _ in }
        }
        await #expect(throws: UVError.EINVAL) {
            try await service.startServers(host: "127.0.0.1", port: 70_000) { _, _, _ in }
        }
        await #expect(throws: UVError.ENOTSOCK) {
            try await service.startServers(socket: 0) { _, _, _ in }
        }
        task.cancel()
        try await task.value
    }
}

/// The `EventLoopService` documentation example, verbatim: compiled with the tests so the doc
/// cannot drift from the API (never run: it would listen on port 8080 until SIGTERM).
@available(*, deprecated, message: "compile check of a documentation example; not to be called")
private func eventLoopServiceDocumentationExample() async throws {
    let service = try EventLoopService(loops: 2, gracePeriod: 10)
    let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint],
                             logger: Logger(label: "server"))
    try await withThrowingDiscardingTaskGroup { tasks in
        tasks.addTask { try await group.run() }
        let servers = try await service.startServers(host: "127.0.0.1", port: 8080, maxConnections: 10_000,
                                                     idleTimeout: 60) { loopIndex, reader, writer in
            while let chunk = try? await reader.read(65536), !chunk.isEmpty { try? writer.write(chunk) }
        }
        print("listening on port", servers[0].port)
    }
}
