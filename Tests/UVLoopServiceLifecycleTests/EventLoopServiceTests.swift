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

/// The `EventLoopService` documentation example, verbatim: compiled with the tests so the doc
/// cannot drift from the API (never run: it would listen on port 8080 until SIGTERM).
@available(*, deprecated, message: "compile check of a documentation example; not to be called")
private func eventLoopServiceDocumentationExample() async throws {
    let service = try EventLoopService(loops: 2)
    for loop in service.loops {
        // Work scheduled before `run()` starts once the loops run.
        loop.createTask {
            let server = try await loop.startServer(host: "127.0.0.1", port: 8080, reusePort: true) { reader, writer in
                while let chunk = try? await reader.read(65536), !chunk.isEmpty { try? writer.write(chunk) }
            }
            try await server.waitClosed()
        }
    }
    let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint],
                             logger: Logger(label: "server"))
    try await group.run()
}
