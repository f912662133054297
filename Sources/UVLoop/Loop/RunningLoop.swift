/// The per-thread "running loop" slot behind `getRunningLoop()`, set while `runForever` or
/// `runUntilComplete` runs a loop on the thread.
enum RunningLoop {
    private static let slot: ThreadLocal<EventLoop> = {
        // A child made with fork() starts with no running loop, even when fork() was called from
        // inside a running loop, so it can create and run its own (asyncio keys this by pid).
        System.atForkChild { RunningLoop.clearAfterFork() }
        return ThreadLocal<EventLoop>()
    }()

    static var current: EventLoop? {
        get { slot.value }
        set { slot.value = newValue }
    }

    private static func clearAfterFork() { slot.value = nil }
}

/// Returns the loop running on the calling thread.
/// - Throws: `EventLoopError.noRunningEventLoop` when no loop runs on this thread.
public func getRunningLoop() throws -> EventLoop {
    guard let loop = RunningLoop.current else { throw EventLoopError.noRunningEventLoop }
    return loop
}
