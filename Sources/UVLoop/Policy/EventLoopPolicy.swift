/// A process-wide object that manages one event loop per context (asyncio.AbstractEventLoopPolicy).
///
/// Implement it directly, or subclass `DefaultEventLoopPolicy` and override what you need.
public protocol EventLoopPolicy: AnyObject, Sendable {
    /// The loop for the current context. Never nil: throws instead.
    func getEventLoop() throws -> EventLoop
    /// Sets the loop for the current context.
    func setEventLoop(_ loop: EventLoop?)
    /// Creates a new loop; it is not set as any context's loop.
    func newEventLoop() throws -> EventLoop
    /// The child watcher used to learn when spawned children exit.
    func getChildWatcher() -> any ChildWatcher
    /// Replaces the child watcher.
    func setChildWatcher(_ watcher: (any ChildWatcher)?)
}
