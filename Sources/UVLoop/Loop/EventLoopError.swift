/// Errors of the event loop, the policy and the child watchers (asyncio's `RuntimeError`s).
public enum EventLoopError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// `getEventLoop()` on a thread with no current loop (any thread but the main one, or the
    /// main thread after `setEventLoop(nil)`).
    case noCurrentEventLoop
    /// `getRunningLoop()` on a thread where no loop runs.
    case noRunningEventLoop
    /// The operation needs an open loop.
    case loopClosed
    /// `runForever`/`runUntilComplete` on a loop that already runs.
    case loopAlreadyRunning
    /// `close()` on a loop that is running.
    case loopIsRunning
    /// Running a loop on a thread where another loop is already running.
    case anotherLoopIsRunning
    /// `runUntilComplete`: the loop was stopped before the operation finished.
    case stoppedBeforeComplete
    /// Spawning with a child watcher whose `isActive()` is false.
    case childWatcherNotActive
    /// The child watcher needs an attached loop and has none (or needs it running on the main thread).
    case childWatcherHasNoLoop
    /// A delay or deadline that is not a number (NaN).
    case invalidDelay
    /// An operation that only the loop's own thread may do was called from another thread.
    case wrongThread
    /// An argument out of its domain: a NaN duration, `maxWorkers` below 1.
    case invalidArgument
    /// Work submitted to a `ThreadPoolExecutor` after its `shutdown`.
    case executorShutDown

    /// The message asyncio would raise with.
    public var description: String {
        switch self {
        case .noCurrentEventLoop: return "There is no current event loop in this thread."
        case .noRunningEventLoop: return "no running event loop"
        case .loopClosed: return "Event loop is closed"
        case .loopAlreadyRunning: return "This event loop is already running"
        case .loopIsRunning: return "Cannot close a running event loop"
        case .anotherLoopIsRunning: return "Cannot run the event loop while another loop is running"
        case .stoppedBeforeComplete: return "Event loop stopped before the operation completed."
        case .childWatcherNotActive:
            return "getChildWatcher() is not activated, subprocess support is not installed."
        case .childWatcherHasNoLoop:
            return "The child watcher does not have a running loop attached (attachLoop with the main thread's loop)."
        case .invalidDelay: return "The delay is not a number (NaN); the callback will never run."
        case .wrongThread: return "Non-thread-safe operation invoked on an event loop other than the current one"
        case .invalidArgument: return "Invalid argument (a NaN duration, a count below 1)"
        case .executorShutDown: return "cannot schedule new futures after shutdown"
        }
    }
}
