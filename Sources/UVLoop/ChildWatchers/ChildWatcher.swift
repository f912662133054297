import Glibc

/// Learns when child processes exit and calls back with their return code
/// (asyncio.AbstractChildWatcher).
///
/// The policy holds one watcher for the whole process (`getChildWatcher()`); `createSubprocessExec`
/// registers every child it spawns with it. Any type conforming to this protocol works there.
public protocol ChildWatcher: AnyObject, Sendable {
    /// Arranges for `callback(pid, returnCode)` to be called once when `pid` exits. Registering the
    /// same pid again replaces the callback. `returnCode` is the exit status, or minus the signal
    /// number when a signal killed the child; 255 when the status was taken by another reaper.
    /// - Throws: `EventLoopError` or `UVError` when the watcher cannot watch the pid.
    func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (_ pid: pid_t, _ returnCode: Int32) -> Void) throws
    /// Removes the handler for `pid`: true if one was removed, false if there was none.
    @discardableResult func removeChildHandler(_ pid: pid_t) -> Bool
    /// Attaches the watcher to `loop` (nil detaches), first detaching it from the previous loop.
    func attachLoop(_ loop: EventLoop?)
    /// True when the watcher is ready to report exits; spawning with an inactive watcher throws
    /// `EventLoopError.childWatcherNotActive`.
    func isActive() -> Bool
    /// Releases the watcher's resources.
    func close()
}
