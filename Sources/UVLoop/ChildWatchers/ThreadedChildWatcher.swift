import Glibc

/// The default watcher: one waiting thread per child (asyncio.ThreadedChildWatcher).
///
/// Not yet able to watch: `addChildHandler` throws `UVError.ENOSYS` until the child-watcher issue
/// lands. It exists so the policy's watcher slot works.
public final class ThreadedChildWatcher: ChildWatcher, @unchecked Sendable {
    public init() {}
    public func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        throw UVError(code: UVError.ENOSYS.code, operation: "ThreadedChildWatcher.addChildHandler")
    }
    @discardableResult public func removeChildHandler(_ pid: pid_t) -> Bool { false }
    public func attachLoop(_ loop: EventLoop?) {}
    public func isActive() -> Bool { true }
    public func close() {}
}
