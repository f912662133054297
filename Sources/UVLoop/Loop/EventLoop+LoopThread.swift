/// How code on any thread reaches the loop's thread, and how loop-thread code checks it is there.
///
/// - `execute(_:)`: run this on the loop's thread (now when already there, else queued).
/// - `schedule(_:)`: queue this for a later batch, even when already on the loop's thread (for
///   deliveries that must not run inside their caller, such as child-watcher callbacks).
/// - `onLoop(_:)`: the async form of `execute`: the calling task moves to the loop for `body`.
/// - `checkLoopThread()`: the one check that the caller may touch loop-confined state.
/// - `LoopBound`: loop-confined values that cross threads in `@Sendable` closures or locked
///   tables, checked on every access in debug builds.
extension EventLoop {
    /// Runs `body` on the loop's thread: at once when called there, else queued (FIFO with the
    /// callbacks, woken like `callSoonThreadsafe`).
    /// - Returns: false when the loop is closed: `body` is dropped (the loop's handles are
    ///   already closed, so there is nothing left for it to touch).
    @discardableResult
    func execute(_ body: @escaping @Sendable () -> Void) -> Bool {
        if inLoopThread {
            body()
            return true
        }
        return schedule(body)
    }

    /// Queues `body` to run on the loop's thread in a later batch, also when called there:
    /// `callSoonThreadsafe` without a handle and without the trap.
    /// - Returns: false when the loop is closed (`body` is dropped).
    @discardableResult
    func schedule(_ body: consuming @escaping @Sendable () -> Void) -> Bool {
        let handle = Handle(consume body)
        if inLoopThread {
            appendReady(.handle(handle))
            return true
        }
        return submitExternal(.handle(handle))
    }

    /// Runs `body` on the loop's thread: at once when already there, else by giving the calling
    /// task this loop as its executor for the duration (`withTaskExecutorPreference`), so the call
    /// waits until the loop runs it.
    ///
    /// Code that runs on the loop thread inside a nonisolated async function belongs to a task whose
    /// executor preference is this loop, so `body`'s own suspensions resume there too.
    /// - Warning: Entering any nonisolated async function (`body` itself included) may switch
    ///   executors: the loop runs task jobs isolated to itself, so the runtime re-enqueues the task
    ///   on the loop at such an entry. If the loop closes meanwhile, the rest runs on the closed
    ///   loop's fallback queue. So `body`, and every async function that touches loop-confined
    ///   state, calls `checkLoopThread()` first, and again after each suspension.
    /// - Throws: what `body` throws; `EventLoopError.loopClosed` when the loop is closed, or closes
    ///   before `body` runs.
    @inline(__always)
    func onLoop<T>(_ body: () async throws -> T) async throws -> T {
        if inLoopThread { return try await body() }
        return try await hopToLoop(body)
    }

    private func hopToLoop<T>(_ body: () async throws -> T) async throws -> T {
        if isClosed { throw EventLoopError.loopClosed }
        return try await withTaskExecutorPreference(self) {
            // A closed loop runs jobs on its fallback queue: state of the loop must not be touched
            // from there.
            try checkLoopThread()
            return try await body()
        }
    }

    /// Throws unless the caller may touch the loop's confined state: it runs on the loop's
    /// thread, or nothing runs the loop (its owner sets things up between runs, as asyncio
    /// allows).
    ///
    /// After `onLoop`, or a suspension inside it, only two outcomes exist: the loop's thread, or
    /// the closed loop's fallback queue, which this rejects.
    /// - Throws: `EventLoopError.loopClosed` on a closed loop (also on its fallback queue);
    ///   `EventLoopError.wrongThread` from another thread while the loop runs.
    @inline(__always)
    func checkLoopThread() throws(EventLoopError) {
        if inLoopThread { return }
        if isClosed { throw .loopClosed }
        if isRunning { throw .wrongThread }
    }

    /// True when loop-confined state may be touched here without a race: on the loop's thread,
    /// or while nothing runs the loop. What `LoopBound` asserts in debug builds.
    var mayTouchConfinedState: Bool { inLoopThread || !isRunning }
}
