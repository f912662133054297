import Foundation
import Testing
@testable import UVLoop

/// Bad input gets a clear error and leaves the loop untouched: after each case, the same loop
/// still runs a timer and a task.
extension ProcessWide {
@Suite("Reliability: bad input")
struct BadInputTests {
    enum Case: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case nanDelay, nanDeadline, negativeDelayRunsSoon, infiniteDelayNeverRuns
        case readerOnNegativeDescriptor, readerOnClosedDescriptor, writerOnClosedDescriptor
        case signalZero, signalOutOfRange, signalKILL, signalSTOP
        case emptyProgram, nulInArgument, nulInEnvironment, equalsInEnvironmentKey, emptyEnvironmentKey
        case closedDescriptorAsStdin, stdoutAsStdin, missingWorkingDirectory
        case sendSignalOutOfRange
        case portOutOfRange, negativePort, unresolvableHost, unixPathTooLong
        case writeAfterClose, readAfterEOF
        case attachClosedLoop, removeUnknownPid
        case runUntilCompleteOnClosedLoop, runForeverOnClosedLoop

        var testDescription: String { rawValue }
    }

    /// Runs `body` on a fresh loop, then checks the loop still runs a timer and a task.
    func check(_ body: @escaping @Sendable (EventLoop) async throws -> String) throws -> String {
        setEventLoopPolicy(nil)
        let loop = try EventLoop()
        defer { try? loop.close() }
        let outcome = try loop.runUntilComplete { try await body(loop) }
        let timerRan = Box(false)
        loop.callLater(0.001) { timerRan.value = true }
        let taskRan = try loop.runUntilComplete { () async throws -> Bool in
            // On the loop's own timers, after the 1 ms one (a libdispatch-timed Task.sleep could
            // resume the task in the same poll as the timer's, and first: a flake).
            try await loop.sleep(0.005)
            return loop.inLoopThread
        }
        #expect(timerRan.value && taskRan, "the loop no longer works after the bad input")
        return outcome
    }

    /// The error `body` throws, as "<UVError name>" or the EventLoopError's description.
    static func error(_ body: () async throws -> Void) async -> String {
        do {
            try await body()
            return "no error"
        } catch let error as UVError {
            return error.name
        } catch let error as EventLoopError {
            return "\(error)"
        } catch let error as StreamError {
            return "StreamError.\(error)"
        } catch {
            return "\(type(of: error))"
        }
    }

    @Test(.timeLimit(.minutes(1)), arguments: Case.allCases)
    func badInput(_ input: Case) throws {
        // A descriptor number that is not open (a freed number could be reused by a test running
        // in parallel).
        let closedFD = closedDescriptor
        #expect(fcntl(closedFD, F_GETFD) == -1)
        let outcome = try check { loop in
            switch input {
            case .nanDelay, .nanDeadline:
                let reported = Box<String?>(nil)
                loop.setExceptionHandler { _, context in reported.value = "\(context.error.map { "\($0)" } ?? "")" }
                let handle = input == .nanDelay ? loop.callLater(.nan) {} : loop.callAt(.nan) {}
                try await Task.sleep(for: .milliseconds(2))
                loop.setExceptionHandler(nil)
                return handle.isCancelled ? (reported.value ?? "not reported") : "scheduled"
            case .negativeDelayRunsSoon:
                let ran = Box(false)
                loop.callLater(-10) { ran.value = true }
                try await Task.sleep(for: .milliseconds(5))
                return ran.value ? "ran" : "did not run"
            case .infiniteDelayNeverRuns:
                let ran = Box(false)
                let handle = loop.callLater(.infinity) { ran.value = true }
                try await Task.sleep(for: .milliseconds(5))
                handle.cancel()
                return ran.value ? "ran" : "never ran"
            case .readerOnNegativeDescriptor:
                return await Self.error { try loop.addReader(-1) {} }
            case .readerOnClosedDescriptor:
                return await Self.error { try loop.addReader(closedFD) {} }
            case .writerOnClosedDescriptor:
                return await Self.error { try loop.addWriter(closedFD) {} }
            case .signalZero:
                return await Self.error { try loop.addSignalHandler(0) {} }
            case .signalOutOfRange:
                return await Self.error { try loop.addSignalHandler(999) {} }
            case .signalKILL:
                return await Self.error { try loop.addSignalHandler(SIGKILL) {} }
            case .signalSTOP:
                return await Self.error { try loop.addSignalHandler(SIGSTOP) {} }
            case .emptyProgram:
                return await Self.error { _ = try await createSubprocessExec("") }
            case .nulInArgument:
                return await Self.error { _ = try await createSubprocessExec("/bin/echo", ["a\u{0}b"]) }
            case .nulInEnvironment:
                return await Self.error { _ = try await createSubprocessExec("/bin/true", environment: ["A": "b\u{0}c"]) }
            case .equalsInEnvironmentKey:
                return await Self.error { _ = try await createSubprocessExec("/bin/true", environment: ["A=B": "c"]) }
            case .emptyEnvironmentKey:
                return await Self.error { _ = try await createSubprocessExec("/bin/true", environment: ["": "c"]) }
            case .closedDescriptorAsStdin:
                return await Self.error { _ = try await createSubprocessExec("/bin/true", stdin: .fileDescriptor(closedFD)) }
            case .stdoutAsStdin:
                return await Self.error { _ = try await createSubprocessExec("/bin/true", stdin: .stdout) }
            case .missingWorkingDirectory:
                return await Self.error { _ = try await createSubprocessExec("/bin/true", workingDirectory: "/no/such/dir") }
            case .sendSignalOutOfRange:
                let process = try await createSubprocessExec("sleep", ["5"])
                let outcome = await Self.error { try process.sendSignal(999) }
                try process.kill()
                _ = try await process.wait()
                return outcome
            case .portOutOfRange:
                return await Self.error { _ = try await loop.startServer(host: "127.0.0.1", port: 70_000) { _, _ in } }
            case .negativePort:
                return await Self.error { _ = try await loop.openConnection(host: "127.0.0.1", port: -1) }
            case .unresolvableHost:
                return await Self.error { _ = try await loop.openConnection(host: "no-such-host.invalid", port: 80) }
            case .unixPathTooLong:
                let path = "/tmp/" + String(repeating: "x", count: 200)
                return await Self.error { _ = try await loop.startUnixServer(path: path) { _, _ in } }
            case .writeAfterClose:
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { _, writer in writer.close() }
                let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
                writer.close()
                let outcome = await Self.error { try writer.write([1, 2, 3]) }
                server.close()
                try await server.waitClosed()
                return outcome
            case .readAfterEOF:
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { _, writer in writer.close() }
                let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
                _ = try await reader.read()                  // to EOF
                let again = try await reader.read()          // asyncio: b'' again, no error
                writer.close()
                server.close()
                try await server.waitClosed()
                return again.isEmpty && reader.atEOF ? "[] at EOF" : "data after EOF"
            case .attachClosedLoop:
                let closed = try EventLoop()
                try closed.close()
                let watcher = SafeChildWatcher()
                watcher.attachLoop(closed)                   // logged, stays detached
                let active = watcher.isActive()
                let registration = await Self.error { try watcher.addChildHandler(getpid()) { _, _ in } }
                watcher.close()
                return "active=\(active) add=\(registration)"
            case .removeUnknownPid:
                let watchers: [any ChildWatcher] = [ThreadedChildWatcher(), MultiLoopChildWatcher(), SafeChildWatcher(),
                                                    FastChildWatcher(), PidfdChildWatcher(), LibuvChildWatcher()]
                let removed = watchers.map { $0.removeChildHandler(424_242) }
                watchers.forEach { $0.close() }
                return removed.contains(true) ? "removed something" : "false for every watcher"
            case .runUntilCompleteOnClosedLoop:
                let closed = try EventLoop()
                try closed.close()
                return await Self.error { _ = try closed.runUntilComplete { 1 } }
            case .runForeverOnClosedLoop:
                let closed = try EventLoop()
                try closed.close()
                return await Self.error { try closed.runForever() }
            }
        }
        let expected: [Case: String] = [
            .nanDelay: "\(EventLoopError.invalidDelay)", .nanDeadline: "\(EventLoopError.invalidDelay)",
            .negativeDelayRunsSoon: "ran", .infiniteDelayNeverRuns: "never ran",
            .readerOnNegativeDescriptor: "EBADF", .readerOnClosedDescriptor: "EBADF", .writerOnClosedDescriptor: "EBADF",
            .signalZero: "EINVAL", .signalOutOfRange: "EINVAL", .signalKILL: "EINVAL", .signalSTOP: "EINVAL",
            .emptyProgram: "EINVAL", .nulInArgument: "EINVAL", .nulInEnvironment: "EINVAL",
            .equalsInEnvironmentKey: "EINVAL", .emptyEnvironmentKey: "EINVAL",
            .closedDescriptorAsStdin: "EBADF", .stdoutAsStdin: "EINVAL", .missingWorkingDirectory: "ENOENT",
            .sendSignalOutOfRange: "EINVAL",
            .portOutOfRange: "EINVAL", .negativePort: "EINVAL", .unresolvableHost: "EAI_NONAME",
            .unixPathTooLong: "ENAMETOOLONG", .writeAfterClose: "StreamError.\(StreamError.closed)",
            .readAfterEOF: "[] at EOF",
            .attachClosedLoop: "active=false add=\(EventLoopError.childWatcherHasNoLoop)",
            .removeUnknownPid: "false for every watcher",
            .runUntilCompleteOnClosedLoop: "\(EventLoopError.loopClosed)", .runForeverOnClosedLoop: "\(EventLoopError.loopClosed)",
        ]
        #expect(outcome == expected[input], "\(input): got \(outcome)")
    }
}
}
