import Foundation
import Testing
@testable import UVLoop

/// One of the six watchers, built over a fake reaper, with what each needs to see an exit:
/// signal-based watchers get their SIGCHLD pass called directly (`reapPass`), the others wake up
/// by themselves (a waiting thread, or the loop polling the child's pidfd).
enum FakeWatcher: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case threaded, multiLoop, safe, fast, pidfd, libuv

    var testDescription: String { rawValue }

    func make(_ reaper: Reaper) -> any ChildWatcher {
        switch self {
        case .threaded: return ThreadedChildWatcher(reaper: reaper)
        case .multiLoop: return MultiLoopChildWatcher(reaper: reaper)
        case .safe: return SafeChildWatcher(reaper: reaper)
        case .fast: return FastChildWatcher(reaper: reaper)
        case .pidfd: return PidfdChildWatcher(reaper: reaper)
        // Pids it did not spawn go to its waiting-thread fallback, over the same reaper.
        case .libuv: return LibuvChildWatcher(reaper: reaper)
        }
    }

    /// Attaches what needs attaching (on the loop's thread, inside `onFakeLoop`).
    func prepare(_ watcher: any ChildWatcher, on loop: EventLoop) {
        switch self {
        case .safe, .fast: watcher.attachLoop(loop)
        case .multiLoop: watcher.attachLoop(nil)
        default: break
        }
    }

    /// What a SIGCHLD would make the signal-based watchers do.
    func sigchld(_ watcher: any ChildWatcher) {
        switch watcher {
        case let safe as SafeChildWatcher: safe.reapPass()
        case let fast as FastChildWatcher: fast.reapPass()
        case let multiLoop as MultiLoopChildWatcher: multiLoop.reapPass()
        default: break
        }
    }
}

/// Runs `body` as a task on a new loop on this thread; closes the loop afterwards.
func onFakeLoop<T: Sendable>(_ body: sending @escaping (EventLoop) async throws -> T) throws -> T {
    let loop = try EventLoop()
    defer { try? loop.close() }
    return try loop.runUntilComplete { try await body(loop) }
}

@Suite("Child watchers: reaping against a fake kernel")
struct FakeKernelReapingTests {
    @Test(.timeLimit(.minutes(1)), arguments: FakeWatcher.allCases)
    func exitCodesAndDeathsBySignalAreReported(_ kind: FakeWatcher) throws {
        let kernel = FakeKernel()
        let watcher = kind.make(fakeReaper(kernel))
        let exits = ExitStream()
        let (exited, killed) = (kernel.spawn(), kernel.spawn())
        let codes = try onFakeLoop { loop -> [pid_t: Int32] in
            kind.prepare(watcher, on: loop)
            try watcher.addChildHandler(exited, exits.callback)
            try watcher.addChildHandler(killed, exits.callback)
            kernel.exit(exited, code: 3)
            kernel.kill(killed, bySignal: SIGKILL)
            kind.sigchld(watcher)
            let first = await exits.next(), second = await exits.next()
            return [first.pid: first.code, second.pid: second.code]
        }
        watcher.close()
        #expect(codes == [exited: 3, killed: -SIGKILL])
        #expect(kernel.isReaped(exited) && kernel.isReaped(killed))
        #expect(kernel.openPidfdCount == 0)
    }

    @Test(.timeLimit(.minutes(1)), arguments: FakeWatcher.allCases)
    func aStatusStolenByAnotherReaperReports255WithAWarning(_ kind: FakeWatcher) throws {
        let kernel = FakeKernel(), log = CapturedLog()
        let watcher = kind.make(fakeReaper(kernel, log: log))
        let exits = ExitStream()
        let pid = kernel.spawn()
        let exit = try onFakeLoop { loop in
            kind.prepare(watcher, on: loop)
            try watcher.addChildHandler(pid, exits.callback)
            kernel.exitAndSteal(pid)
            kind.sigchld(watcher)
            return await exits.next()
        }
        watcher.close()
        #expect(exit.pid == pid && exit.code == 255)
        #expect(log.contains("will report returncode 255"), "\(log.messages)")
        #expect(exits.pending == 0)
    }

    @Test(.timeLimit(.minutes(1)), arguments: FakeWatcher.allCases)
    func aPidThatIsNotAChildReports255AtOnce(_ kind: FakeWatcher) throws {
        let kernel = FakeKernel(), log = CapturedLog()
        let watcher = kind.make(fakeReaper(kernel, log: log))
        let exits = ExitStream()
        let stranger: pid_t = 12_345_678   // ECHILD for every wait
        let exit = try onFakeLoop { loop in
            kind.prepare(watcher, on: loop)
            try watcher.addChildHandler(stranger, exits.callback)
            return await exits.next()
        }
        watcher.close()
        #expect(exit.pid == stranger && exit.code == 255)
        #expect(log.contains("Unknown child process pid \(stranger), will report returncode 255"), "\(log.messages)")
    }

    @Test(.timeLimit(.minutes(1)), arguments: FakeWatcher.allCases)
    func interruptedSystemCallsAreRetried(_ kind: FakeWatcher) throws {
        let kernel = FakeKernel()
        let watcher = kind.make(fakeReaper(kernel))
        let exits = ExitStream()
        let pid = kernel.spawn()
        for call in ["waitpid", "waitid", "waitReadable"] { kernel.interrupt(call, times: 3) }
        let exit = try onFakeLoop { loop in
            kind.prepare(watcher, on: loop)
            try watcher.addChildHandler(pid, exits.callback)
            kernel.exit(pid, code: 42)
            kind.sigchld(watcher)
            return await exits.next()
        }
        watcher.close()
        #expect(exit.pid == pid && exit.code == 42)
        // Every watcher reaps with waitpid; an EINTR there is never taken for "not a child".
        #expect(kernel.interruptedCount("waitpid") == 3)
        if kind == .threaded || kind == .libuv {
            #expect(kernel.interruptedCount("waitid") == 3)
            #expect(kernel.interruptedCount("waitReadable") == 3)
        }
    }

    @Test(.timeLimit(.minutes(1)), arguments: FakeWatcher.allCases)
    func aChildThatExitedBeforeItWasRegisteredIsReported(_ kind: FakeWatcher) throws {
        let kernel = FakeKernel()
        let watcher = kind.make(fakeReaper(kernel))
        let exits = ExitStream()
        let pid = kernel.spawn()
        kernel.exit(pid, code: 7)   // between the spawn and addChildHandler
        let exit = try onFakeLoop { loop in
            kind.prepare(watcher, on: loop)
            try watcher.addChildHandler(pid, exits.callback)
            kind.sigchld(watcher)
            return await exits.next()
        }
        watcher.close()
        #expect(exit.pid == pid && exit.code == 7)
        #expect(kernel.isReaped(pid))
    }

    @Test(.timeLimit(.minutes(1)), arguments: FakeWatcher.allCases)
    func closingWithAPendingChildHandsItToAWaitingThreadOverTheSameKernel(_ kind: FakeWatcher) throws {
        let kernel = FakeKernel()
        let watcher = kind.make(fakeReaper(kernel))
        let exits = ExitStream()
        let pid = kernel.spawn()
        let exit = try onFakeLoop { loop in
            kind.prepare(watcher, on: loop)
            try watcher.addChildHandler(pid, exits.callback)
            watcher.close()
            // The real kernel would answer ECHILD for this pid (255): the code proves who reaped.
            kernel.exit(pid, code: 5)
            return await exits.next()
        }
        #expect(exit.pid == pid && exit.code == 5)
        #expect(kernel.isReaped(pid))
    }

    @Test(.timeLimit(.minutes(1)))
    func fastDeliversAnExitItReapedBeforeTheRegistration() throws {
        let kernel = FakeKernel()
        let watcher = FastChildWatcher(reaper: fakeReaper(kernel))
        let exits = ExitStream()
        let pid = kernel.spawn()
        let exit = try onFakeLoop { loop in
            watcher.attachLoop(loop)
            kernel.exit(pid, code: 9)
            watcher.reapPass()                        // reaped, stored: nobody registered it yet
            #expect(kernel.isReaped(pid))
            try watcher.addChildHandler(pid, exits.callback)
            return await exits.next()
        }
        watcher.close()
        #expect(exit.pid == pid && exit.code == 9)
    }

    @Test(.timeLimit(.minutes(1)))
    func aPidfdThatCannotBeOpenedThrowsAndRegistersNothing() throws {
        let kernel = FakeKernel()
        let watcher = PidfdChildWatcher(reaper: fakeReaper(kernel))
        let pid = kernel.spawn()
        kernel.failPidfdOpen(with: EMFILE)
        try onFakeLoop { _ in
            #expect(throws: UVError.EMFILE) { try watcher.addChildHandler(pid) { _, _ in } }
            #expect(!watcher.removeChildHandler(pid))
        }
        #expect(kernel.openPidfdCount == 0)
        #expect(!kernel.isReaped(pid))
        kernel.exit(pid, code: 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func theWaitingThreadFallsBackToWaitidWhenNoPidfdCanBeOpened() throws {
        let kernel = FakeKernel()
        let watcher = ThreadedChildWatcher(reaper: fakeReaper(kernel))
        let exits = ExitStream()
        let pid = kernel.spawn()
        kernel.failPidfdOpen(with: EMFILE)
        let exit = try onFakeLoop { _ in
            try watcher.addChildHandler(pid, exits.callback)
            kernel.exit(pid, code: 11)
            return await exits.next()
        }
        #expect(exit.pid == pid && exit.code == 11)
        #expect(kernel.openPidfdCount == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func withoutPidfdsThePidfdWatcherIsInactiveAndTheOthersStillReap() throws {
        let kernel = FakeKernel(pidfds: false)
        let reaper = fakeReaper(kernel)
        #expect(!reaper.pidfdSupported)
        let pidfd = PidfdChildWatcher(reaper: reaper)
        #expect(!pidfd.isActive())
        let threaded = ThreadedChildWatcher(reaper: reaper)
        let exits = ExitStream()
        let pid = kernel.spawn()
        let exit = try onFakeLoop { _ in
            #expect(throws: UVError.ENOSYS) { try pidfd.addChildHandler(pid) { _, _ in } }
            try threaded.addChildHandler(pid, exits.callback)
            kernel.exit(pid, code: 13)
            return await exits.next()
        }
        #expect(exit.pid == pid && exit.code == 13)
    }

    @Test func aReapedChildIsNeverSignalled() throws {
        let kernel = FakeKernel()
        let reaper = fakeReaper(kernel)
        let pid = kernel.spawn()
        try reaper.signal(pid, SIGUSR1)
        kernel.exit(pid, code: 0)
        // Exited but not reaped: still ours (a zombie), still signallable without harm.
        try reaper.signal(pid, SIGUSR2)
        #expect(reaper.reap(pid) == .exited(.exited(0)))
        #expect(throws: UVError.ESRCH) { try reaper.signal(pid, SIGTERM) }
        #expect(kernel.signals(of: pid) == [SIGUSR1, SIGUSR2])
    }

    @Test func aPidfdSignallerRefusesOnceItsHandleClosed() throws {
        let kernel = FakeKernel()
        let reaper = fakeReaper(kernel)
        let pid = kernel.spawn()
        let signaller = PidfdSignaller(pid: pid, reaper: reaper)
        try signaller.send(SIGUSR1, to: pid)
        signaller.close()
        #expect(throws: UVError.ESRCH) { try signaller.send(SIGTERM, to: pid) }
        #expect(kernel.signals(of: pid) == [SIGUSR1])
        #expect(kernel.openPidfdCount == 0)
        kernel.exit(pid, code: 0)
    }

    /// The public initialisers take a logger (the real kernel here: a pid that is not our child).
    @Test(.timeLimit(.minutes(1))) func aWatcherLogsThroughTheLoggerItWasGiven() throws {
        let log = CapturedLog()
        let watcher = ThreadedChildWatcher(logger: log.logger)
        let exits = ExitStream()
        let exit = try onFakeLoop { _ in
            try watcher.addChildHandler(getppid(), exits.callback)
            return await exits.next()
        }
        #expect(exit.code == 255)
        #expect(log.contains("Unknown child process pid \(getppid())"), "\(log.messages)")
    }

    @Test func waitStatusesBecomeAsyncioReturnCodes() {
        #expect(Termination(waitStatus: 3 << 8) == .exited(3))
        #expect(Termination(waitStatus: SIGKILL) == .signaled(SIGKILL, coreDumped: false))
        #expect(Termination(waitStatus: SIGSEGV | 0x80) == .signaled(SIGSEGV, coreDumped: true))
        #expect(Termination(waitStatus: 3 << 8).returnCode == 3)
        #expect(Termination(waitStatus: SIGKILL).returnCode == -SIGKILL)
        #expect(Termination(exitStatus: 2, signal: 0).returnCode == 2)
        #expect(Termination(exitStatus: 0, signal: SIGTERM).returnCode == -SIGTERM)
    }
}
