/// Reaching the loop's thread from the extension layers (streams, servers, watchers).
extension EventLoop {
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
            guard inLoopThread else { throw EventLoopError.loopClosed }
            return try await body()
        }
    }

    /// Throws `EventLoopError.loopClosed` unless running on the loop's thread (see `onLoop`).
    @inline(__always)
    func checkLoopThread() throws {
        if !inLoopThread { throw EventLoopError.loopClosed }
    }

    /// Guards the loop-thread operations (`addReader`, pipe streams, ...): they need an open loop,
    /// and the thread that runs it (or any thread while nothing runs it).
    /// - Throws: `EventLoopError.loopClosed`, or `.wrongThread` while another thread runs the loop.
    func checkLoopThreadOperation() throws {
        if isClosed { throw EventLoopError.loopClosed }
        if isRunning && !inLoopThread { throw EventLoopError.wrongThread }
    }
}
