import Foundation
import Testing
@testable import UVLoop

/// A policy that records what the module functions call on it, from one thread only (other
/// suites in this process, such as the lifecycle tests, may call the current policy meanwhile).
final class CountingPolicy: DefaultEventLoopPolicy, @unchecked Sendable {
    let gets = Box(0), sets = Box(0), news = Box(0)
    /// The thread whose calls are counted (none until it is set).
    let countedThread = Box<UInt>(.max)
    private func counts() -> Bool {
        countedThread.value == System.currentThreadID
    }
    override func getEventLoop() throws -> EventLoop { if counts() { gets.value += 1 }; return try super.getEventLoop() }
    override func setEventLoop(_ loop: EventLoop?) { if counts() { sets.value += 1 }; super.setEventLoop(loop) }
    override func newEventLoop() throws -> EventLoop { if counts() { news.value += 1 }; return try super.newEventLoop() }
}

final class WeakLoop: @unchecked Sendable { weak var loop: EventLoop? }

/// A policy whose getEventLoop always throws.
final class ThrowingPolicy: DefaultEventLoopPolicy, @unchecked Sendable {
    struct NoLoops: Error {}
    override func getEventLoop() throws -> EventLoop { throw NoLoops() }
}

/// Suites that touch process-wide state (the policy, its child watcher): nested here, they run one
/// test at a time, never beside each other.
@Suite(.serialized) struct ProcessWide {}

/// The policy is process-wide: these tests restore the default afterwards.
extension ProcessWide {
@Suite("Policy: the process-wide registry")
struct PolicyTests {
    @Test func policyIsCreatedOnceAndCanBeReplaced() {
        defer { setEventLoopPolicy(nil) }
        let first = getEventLoopPolicy()
        #expect(first is DefaultEventLoopPolicy)
        #expect(getEventLoopPolicy() === first)
        let custom = CountingPolicy()
        setEventLoopPolicy(custom)
        #expect(getEventLoopPolicy() === custom)
        setEventLoopPolicy(nil)
        let fresh = getEventLoopPolicy()
        #expect(fresh !== custom)
        #expect(fresh !== first)
        #expect(type(of: fresh) == DefaultEventLoopPolicy.self)
    }

    @Test func moduleFunctionsDelegateToThePolicy() throws {
        let policy = CountingPolicy()
        setEventLoopPolicy(policy)
        defer { setEventLoopPolicy(nil) }
        try onNewThread {
            policy.countedThread.value = System.currentThreadID
            let loop = try newEventLoop()
            setEventLoop(loop)
            #expect(try getEventLoop() === loop)
            setEventLoop(nil)
            try loop.close()
        }
        #expect(policy.news.value == 1)
        #expect(policy.sets.value == 2)
        #expect(policy.gets.value == 1)
    }

    @Test func workerThreadHasNoLoopUntilOneIsSet() throws {
        let policy = DefaultEventLoopPolicy()
        setEventLoopPolicy(policy)
        defer { setEventLoopPolicy(nil) }
        try onNewThread {
            #expect(throws: EventLoopError.noCurrentEventLoop) { try policy.getEventLoop() }
            #expect(throws: EventLoopError.noCurrentEventLoop) { try getEventLoop() }
            let loop = try policy.newEventLoop()
            policy.setEventLoop(loop)
            #expect(try policy.getEventLoop() === loop)
            #expect(try getEventLoop() === loop)
            // Another thread does not see this thread's loop.
            try onNewThread {
                #expect(throws: EventLoopError.noCurrentEventLoop) { try policy.getEventLoop() }
            }
            policy.setEventLoop(nil)
            #expect(throws: EventLoopError.noCurrentEventLoop) { try policy.getEventLoop() }
            try loop.close()
        }
    }

    @Test func aClosedLoopStaysTheCurrentLoop() throws {
        let policy = DefaultEventLoopPolicy()
        try onNewThread {
            let loop = try policy.newEventLoop()
            policy.setEventLoop(loop)
            try loop.close()
            #expect(try policy.getEventLoop() === loop)   // asyncio does not check for closed loops
        }
    }

    @Test func newEventLoopGivesDistinctOpenLoopsAndDoesNotSetThem() throws {
        let policy = DefaultEventLoopPolicy()
        try onNewThread {
            let a = try policy.newEventLoop(), b = try policy.newEventLoop()
            #expect(a !== b)
            #expect(!a.isClosed && !a.isRunning && !b.isClosed && !b.isRunning)
            #expect(throws: EventLoopError.noCurrentEventLoop) { try policy.getEventLoop() }
            try a.close(); try b.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func threadExitReleasesItsSlotAndTheLoop() throws {
        let policy = DefaultEventLoopPolicy()
        let released = WeakLoop()
        try onNewThread {
            let loop = try policy.newEventLoop()
            policy.setEventLoop(loop)
            released.loop = loop
        }
        // The slot was dropped when the thread exited; nobody else held the loop, so its deinit
        // closed it and it is gone.
        #expect(released.loop == nil)
    }

    @Test(.timeLimit(.minutes(1))) func droppingAPolicyReleasesTheLoopsOfThreadsStillRunning() throws {
        var policy: DefaultEventLoopPolicy? = DefaultEventLoopPolicy()
        let shared = LockedValue<DefaultEventLoopPolicy?>(policy)
        let released = WeakLoop()
        let loopSet = DispatchSemaphore(value: 0), policyDropped = DispatchSemaphore(value: 0)
        let seenAfterwards = LockedValue<Bool?>(nil)
        let join = startThread {
            do {                                     // hold nothing past this block
                let policy = shared.withLock { $0! }
                let loop = try! policy.newEventLoop()
                policy.setEventLoop(loop)
                released.loop = loop
                shared.withLock { $0 = nil }
            }
            loopSet.signal()
            policyDropped.wait()
            // A new policy on the same thread starts empty (the old slot is not mistaken for it).
            let fresh = DefaultEventLoopPolicy()
            seenAfterwards.withLock { $0 = (try? fresh.getEventLoop()) != nil }
        }
        loopSet.wait()
        #expect(released.loop != nil)
        policy = nil                                 // the thread is still alive, parked
        #expect(released.loop == nil, "the policy's deinit released the parked thread's loop")
        policyDropped.signal()
        join()
        #expect(seenAfterwards.withLock { $0 } == false)
    }

    @Test(.timeLimit(.minutes(1))) func aLoopHeldElsewhereSurvivesItsThreadAndStillWorks() throws {
        let policy = DefaultEventLoopPolicy()
        let loop = try onNewThread { () throws -> EventLoop in
            let loop = try policy.newEventLoop()
            policy.setEventLoop(loop)
            return loop
        }
        #expect(!loop.isClosed)
        #expect(try loop.runUntilComplete { 5 } == 5)
        try loop.close()
    }

    @Test func runningLoopWinsOverThePolicy() throws {
        setEventLoopPolicy(ThrowingPolicy())
        defer { setEventLoopPolicy(nil) }
        #expect(throws: ThrowingPolicy.NoLoops.self) { try getEventLoop() }
        let loop = try EventLoop()
        defer { try? loop.close() }
        #expect(try loop.runUntilComplete { try getEventLoop() === loop })
    }

    @Test func childWatcherIsCreatedOnceAsThreaded() {
        let policy = DefaultEventLoopPolicy()
        let watcher = policy.getChildWatcher()
        #expect(watcher is ThreadedChildWatcher)
        #expect(policy.getChildWatcher() === watcher)
        // One watcher for the whole process: every thread gets the same object.
        let fromThread = try? onNewThread { policy.getChildWatcher() }
        #expect(fromThread === watcher)
    }

    @Test func setChildWatcherClosesTheOneItReplaces() {
        let policy = DefaultEventLoopPolicy()
        let first = RecordingWatcher(), second = RecordingWatcher()
        policy.setChildWatcher(first)
        #expect(policy.getChildWatcher() === first)
        policy.setChildWatcher(first)            // same object: not closed (asyncio's quirk fixed)
        #expect(first.calls.isEmpty)
        policy.setChildWatcher(second)
        #expect(first.calls == [.close])
        #expect(second.calls.isEmpty)            // setChildWatcher never attaches
        policy.setChildWatcher(nil)
        #expect(second.calls == [.close])
        let replacement = policy.getChildWatcher()
        #expect(replacement is ThreadedChildWatcher)
        #expect(replacement !== second)
    }

    @Test func setEventLoopOffTheMainThreadDoesNotAttachTheWatcher() throws {
        let policy = DefaultEventLoopPolicy()
        let watcher = RecordingWatcher()
        policy.setChildWatcher(watcher)
        try onNewThread {
            let loop = try policy.newEventLoop()
            policy.setEventLoop(loop)
            policy.setEventLoop(nil)
            try loop.close()
        }
        #expect(watcher.calls.isEmpty)
    }

    @Test func moduleChildWatcherFunctionsUseThePolicy() {
        let policy = DefaultEventLoopPolicy()
        setEventLoopPolicy(policy)
        defer { setEventLoopPolicy(nil) }
        let watcher = RecordingWatcher()
        setChildWatcher(watcher)
        #expect(getChildWatcher() === watcher)
        #expect(policy.getChildWatcher() === watcher)
        setChildWatcher(nil)
        #expect(watcher.calls == [.close])
    }
}

}

/// Rules that only hold on a process's main thread, checked in a helper process.
@Suite("Policy: main-thread rules (helper process)")
struct MainThreadPolicyTests {
    @Test(.timeLimit(.minutes(1)), arguments: [
        "main-implicit-loop", "main-set-disables-creation", "main-overrides-used", "main-attaches-watcher",
        "custom-policy-example",
    ])
    func scenario(_ name: String) throws {
        let (status, output) = try runHelper(name)
        #expect(status == 0, "\(name) failed:\n\(output)")
        #expect(output.contains("ok "), "\(name) checked nothing:\n\(output)")
        #expect(!output.contains("FAIL"), "\(output)")
    }
}
