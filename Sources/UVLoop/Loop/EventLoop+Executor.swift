import Dispatch

extension EventLoop: SerialExecutor, TaskExecutor {
    /// Queues a Swift job; it runs on the loop's thread in FIFO order with the callbacks.
    ///
    /// A job enqueued on a closed loop runs on a process-wide serial fallback queue instead (with
    /// a warning logged once), so its task can finish rather than hang forever.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if inLoopThread {
            appendReady(.job(job))
        } else if !submitExternal(.job(job)) {
            ClosedLoopExecutor.shared.enqueue(job)
        }
    }

    /// Queues a job of a task that prefers this loop (`LoopTaskExecutor`): it runs on the loop's
    /// thread without serial isolation.
    func enqueueTaskJob(_ job: UnownedJob) {
        if inLoopThread {
            appendReady(.taskJob(job))
        } else if !submitExternal(.taskJob(job)) {
            ClosedLoopExecutor.shared.enqueue(job)
        }
    }

    /// This loop as a serial executor (an actor's `unownedExecutor` can return it).
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// This loop as a task executor (`Task(executorPreference:)`).
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        taskExecutor.asUnownedTaskExecutor()
    }

    /// True when `other` is this very loop.
    public func isSameExclusiveExecutionContext(other: EventLoop) -> Bool {
        self === other
    }

    /// Traps unless called on the thread running this loop (`assumeIsolated` relies on it).
    public func checkIsolated() {
        if !inLoopThread { fatalError("Expected to be on the thread running this EventLoop") }
    }
}

extension EventLoop {
    /// Runs the loop until `operation` finishes, and returns its value (asyncio's
    /// `run_until_complete`). The operation runs as a task whose executor is this loop, so it and
    /// everything it awaits without hopping elsewhere run on the calling thread.
    ///
    /// - Throws: what `operation` throws; `EventLoopError.loopClosed`, `.loopAlreadyRunning` or
    ///   `.anotherLoopIsRunning` before it starts; `.stoppedBeforeComplete` when `stop()` ended the
    ///   loop first (the task then stays pending, as in asyncio).
    public func runUntilComplete<T: Sendable>(_ operation: sending @escaping () async throws -> T) throws -> T {
        try beginRun()
        defer { endRun() }
        // Written by the task on this thread, read here once the run is over.
        let outcome = LoopBound<Result<T, any Error>?>(nil, loop: self)
        Task(executorPreference: taskExecutor) {
            do {
                outcome.value = .success(try await operation())
            } catch {
                outcome.value = .failure(error)
            }
            self.stop()
        }
        runUntilStopped()
        guard let result = outcome.value else { throw EventLoopError.stoppedBeforeComplete }
        return try result.get()
    }

    /// Starts `operation` as a task running on this loop (asyncio's `create_task`). It starts when
    /// the loop runs.
    /// - Warning: Traps with "Event loop is closed" on a closed loop.
    @discardableResult
    public func createTask<T: Sendable>(_ operation: sending @escaping () async throws -> T) -> Task<T, any Error> {
        if isClosed { fatalError("Event loop is closed") }
        return Task(executorPreference: taskExecutor, operation: operation)
    }

    /// Runs blocking `work` on a worker thread and resumes the caller with its result (asyncio's
    /// `run_in_executor(None, ...)`). The loop thread is never blocked.
    /// - Throws: what `work` throws.
    public func runInExecutor<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try work() })
            }
        }
    }
}
