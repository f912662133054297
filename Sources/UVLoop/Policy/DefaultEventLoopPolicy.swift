import Logging

/// The default policy: the context is the current OS thread (asyncio.DefaultEventLoopPolicy).
///
/// - Each thread has one loop slot, released when the thread exits or the policy is deallocated
///   (a loop nobody else holds is then closed by its deinit).
/// - On the main thread, the first `getEventLoop()` creates a loop with `newEventLoop()` and sets
///   it with `setEventLoop(_:)` (so overrides of either are used), unless `setEventLoop` was
///   already called on the main thread. On other threads it throws until a loop is set.
/// - `getChildWatcher()` creates a `ThreadedChildWatcher` on first use; `setChildWatcher` closes
///   the watcher it replaces; `setEventLoop` on the main thread attaches the loop to the watcher.
///
/// Subclass it to customise, as in asyncio's documentation:
/// ```swift
/// final class MyEventLoopPolicy: DefaultEventLoopPolicy {
///     override func getEventLoop() throws -> EventLoop {
///         let loop = try super.getEventLoop()
///         // Do something with loop ...
///         return loop
///     }
/// }
/// setEventLoopPolicy(MyEventLoopPolicy())
/// ```
///
/// `@unchecked Sendable` (an open class cannot be checked): its own state is the slot registry
/// and the watcher, each behind its lock; subclasses restate the conformance and answer for theirs.
open class DefaultEventLoopPolicy: EventLoopPolicy, @unchecked Sendable {
    private let slots = PolicySlotRegistry()
    private let watcher = LockedValue<(any ChildWatcher)?>(nil)

    /// Creates a policy with no loops set and no child watcher yet.
    public init() {}

    /// Empties the slots of threads that are still running, releasing their loops.
    deinit { slots.retire() }

    /// The loop set for the calling thread; on the main thread, created on first use.
    /// - Throws: `EventLoopError.noCurrentEventLoop` when the thread has none; what
    ///   `newEventLoop()` throws when creating one fails.
    open func getEventLoop() throws -> EventLoop {
        let slot = slots.currentSlot()
        // Once setEventLoop was called on the main thread (with any value, nil included), the main
        // thread stops creating loops implicitly.
        if slot.loop == nil, !slot.setCalled, System.isMainThread {
            setEventLoop(try newEventLoop())
        }
        guard let loop = slot.loop else { throw EventLoopError.noCurrentEventLoop }
        return loop
    }

    /// The loop set for the calling thread, without creating one (`EventLoop.run` restores it).
    var loopSetForThisThread: EventLoop? { slots.currentSlot().loop }

    /// Sets the calling thread's loop. On the main thread, also attaches the child watcher (if one
    /// exists) to `loop`.
    open func setEventLoop(_ loop: EventLoop?) {
        slots.currentSlot().set(loop)
        if System.isMainThread, let current = watcher.withLock({ $0 }) {
            current.attachLoop(loop)
        }
    }

    /// Creates a new, unset loop.
    /// - Throws: `UVError` when libuv cannot create a loop.
    open func newEventLoop() throws -> EventLoop {
        try EventLoop()
    }

    /// The process's child watcher, a `ThreadedChildWatcher` created on first use.
    open func getChildWatcher() -> any ChildWatcher {
        watcher.withLock { current in
            if let current { return current }
            let created = ThreadedChildWatcher()
            current = created
            return created
        }
    }

    /// Replaces the child watcher and closes the one it replaces (unless it is the same object).
    /// `nil` means the next `getChildWatcher()` creates a new `ThreadedChildWatcher`. The new
    /// watcher is not attached to any loop: call `attachLoop` or `setEventLoop` on the main thread.
    open func setChildWatcher(_ newWatcher: (any ChildWatcher)?) {
        let old = watcher.withLock { current in
            defer { current = newWatcher }
            return current
        }
        if let old, old !== newWatcher {
            old.close()
        }
    }
}
