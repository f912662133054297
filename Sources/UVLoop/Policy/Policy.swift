
/// The process-wide policy, created lazily.
private let processPolicy = LockedValue<(any EventLoopPolicy)?>(nil)

/// Returns the process-wide event loop policy, creating a `DefaultEventLoopPolicy` on first use.
public func getEventLoopPolicy() -> any EventLoopPolicy {
    processPolicy.withLock { policy in
        if let policy { return policy }
        let created = DefaultEventLoopPolicy()
        policy = created
        return created
    }
}

/// Sets the process-wide policy; `nil` makes the next `getEventLoopPolicy()` create a fresh
/// `DefaultEventLoopPolicy`. The old policy's loops and watcher are left as they are.
public func setEventLoopPolicy(_ policy: (any EventLoopPolicy)?) {
    processPolicy.withLock { $0 = policy }
}

/// Returns the loop running on this thread, else the policy's loop for this thread
/// (asyncio.get_event_loop).
/// - Throws: what the policy's `getEventLoop()` throws, `EventLoopError.noCurrentEventLoop` by default.
public func getEventLoop() throws -> EventLoop {
    if let running = RunningLoop.current { return running }
    return try getEventLoopPolicy().getEventLoop()
}

/// Sets this thread's loop through the policy.
public func setEventLoop(_ loop: EventLoop?) {
    getEventLoopPolicy().setEventLoop(loop)
}

/// Creates a new loop through the policy; it is not set as this thread's loop.
/// - Throws: `UVError` when libuv cannot create a loop.
public func newEventLoop() throws -> EventLoop {
    try getEventLoopPolicy().newEventLoop()
}

/// The policy's child watcher.
public func getChildWatcher() -> any ChildWatcher {
    getEventLoopPolicy().getChildWatcher()
}

/// Sets the policy's child watcher (closing the one it replaces).
public func setChildWatcher(_ watcher: (any ChildWatcher)?) {
    getEventLoopPolicy().setChildWatcher(watcher)
}
