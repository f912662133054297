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
    ///
    /// A task that ends with an error (other than `CancellationError`) when no handle to it is
    /// left, so that nobody can ever read the error, is reported to the exception handler ("Task
    /// exception was never retrieved", as asyncio does when such a task is garbage-collected):
    /// a fire-and-forget task that throws is never silent. A task whose handle is still held when
    /// it ends is not reported (its error may still be read).
    /// - Returns: the task; on a closed loop, a task that throws `EventLoopError.loopClosed`
    ///   (`operation` never runs).
    @discardableResult
    public func createTask<T: Sendable>(_ operation: sending @escaping () async throws -> T) -> Task<T, any Error> {
        if isClosed { return Task { throw EventLoopError.loopClosed } }
        let registry = tasks
        let id = registry.reserveID()
        // The task holds the registry and the executor, never the loop itself: a task may outlive
        // its loop (closed and released while the task slept).
        let executor: LoopTaskExecutor = taskExecutor
        let task = Task(executorPreference: executor) {
            do {
                let value = try await operation()
                registry.finished(id)
                return value
            } catch {
                // Read while the task still runs, with the registry's copy as the one handle of
                // ours: equal to the handleless reading means the caller kept none.
                if let entry = registry.finished(id), !(error is CancellationError) {
                    executor.reportIfNeverRetrieved(references: entry.referenceCount, error)
                }
                throw error
            }
        }
        registry.register(id, TypedLoopTask(task: task))
        return task
    }

    /// Runs blocking `work` on a worker thread of the loop's default executor and resumes the
    /// caller with its result (asyncio's `run_in_executor(None, ...)`). See
    /// `runInExecutor(_:_:)`.
    public func runInExecutor<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await runInExecutor(nil, work)
    }

    /// Runs blocking `work` on a worker thread of `executor` (nil: the loop's default executor)
    /// and resumes the caller with its result (asyncio's `run_in_executor`). The loop's thread is
    /// never blocked.
    ///
    /// Cancelling the awaiting task returns at once with `CancellationError`; `work` itself is not
    /// interrupted (a thread cannot be), it finishes in the background and its result is dropped.
    /// - Throws: what `work` throws; `CancellationError`; `EventLoopError.executorShutDown` when
    ///   the executor was shut down; `EventLoopError.loopClosed` on a closed loop (for the
    ///   default executor); `UVError.EAGAIN` when no worker thread can be started.
    public func runInExecutor<T: Sendable>(_ executor: ThreadPoolExecutor?,
                                           _ work: @escaping @Sendable () throws -> T) async throws -> T {
        let pool = try executor ?? defaultExecutor()
        try Task.checkCancellation()
        let outcome = OnceContinuation<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                outcome.set(continuation)
                do {
                    try pool.submit { outcome.resume(with: Result { try work() }) }
                } catch {
                    outcome.resume(with: .failure(error))
                }
            }
        } onCancel: {
            outcome.resume(with: .failure(CancellationError()))
        }
    }

    /// Makes `executor` the one `runInExecutor(nil, ...)` uses (asyncio's `set_default_executor`);
    /// nil goes back to the loop's built-in pool. The executor replaced is not shut down (asyncio
    /// leaves that to its owner too); the built-in pool is shut down when the loop closes.
    public func setDefaultExecutor(_ executor: ThreadPoolExecutor?) {
        executors.withLock { $0.chosen = executor }
    }

    /// The loop's built-in pool (created on first use), whatever `setDefaultExecutor` chose: for
    /// UVLoop's own short blocking calls (spawning), which must not queue behind the user's work.
    /// - Throws: `EventLoopError.loopClosed` on a closed loop.
    func builtInExecutor() throws -> ThreadPoolExecutor {
        try executors.withLock { try builtIn(&$0) }
    }

    /// The executor `runInExecutor(nil, ...)` uses: the one set, else the built-in pool (created
    /// on first use).
    /// - Throws: `EventLoopError.loopClosed` on a closed loop (whose built-in pool is shut down).
    func defaultExecutor() throws -> ThreadPoolExecutor {
        try executors.withLock { executors in
            if let chosen = executors.chosen { return chosen }
            return try builtIn(&executors)
        }
    }

    /// The built-in pool, created on first use. Under `executors`' lock.
    private func builtIn(_ executors: inout LoopExecutors) throws -> ThreadPoolExecutor {
        if isClosed { throw EventLoopError.loopClosed }
        if let builtIn = executors.builtIn { return builtIn }
        let created = try ThreadPoolExecutor(maxWorkers: ThreadPoolExecutor.defaultWorkerCount)
        executors.builtIn = created
        return created
    }
}

/// The executors of one loop: the one `setDefaultExecutor` chose, and the built-in pool.
struct LoopExecutors: Sendable {
    var chosen: ThreadPoolExecutor?
    var builtIn: ThreadPoolExecutor?
}

/// A continuation resumed once, by whichever comes first (the work's result, a cancellation).
final class OnceContinuation<T: Sendable>: Sendable {
    private enum State: Sendable {
        case empty
        case waiting(CheckedContinuation<T, any Error>)
        case early(Result<T, any Error>)
        case done
    }

    private let state = LockedValue(State.empty)

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        let early = state.withLock { state -> Result<T, any Error>? in
            guard case .early(let result) = state else {
                state = .waiting(continuation)
                return nil
            }
            state = .done
            return result
        }
        if let early { continuation.resume(with: early) }
    }

    func resume(with result: Result<T, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            switch state {
            case .empty:
                state = .early(result)
                return nil
            case .waiting(let continuation):
                state = .done
                return continuation
            case .early, .done:
                return nil
            }
        }
        continuation?.resume(with: result)
    }
}
