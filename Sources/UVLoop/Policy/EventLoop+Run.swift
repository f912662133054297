/// asyncio's `run`: a whole program's loop, set up and torn down around one operation.
extension EventLoop {
    /// Runs `operation` on a new loop and returns its result (asyncio's `asyncio.run`).
    ///
    /// The loop (from the policy's `newEventLoop()`) is set as this thread's loop for the
    /// duration; when `operation` is done, every task `createTask` started on it and not finished
    /// is cancelled and awaited (errors other than cancellation go to the exception handler), the
    /// loop's built-in executor is shut down and waited for, the loop is closed, and the thread's
    /// previous loop (or none) is set again.
    /// - Throws: what `operation` throws; `EventLoopError.anotherLoopIsRunning` when a loop
    ///   already runs on this thread (nothing is created); what `newEventLoop()` throws.
    public static func run<T: Sendable>(_ operation: sending @escaping () async throws -> T) throws -> T {
        if RunningLoop.current != nil { throw EventLoopError.anotherLoopIsRunning }
        let policy = getEventLoopPolicy()
        let previous = (policy as? DefaultEventLoopPolicy).map { $0.loopSetForThisThread } ?? (try? policy.getEventLoop())
        let loop = try policy.newEventLoop()
        policy.setEventLoop(loop)
        defer {
            policy.setEventLoop(previous)
            try? loop.close()
        }
        let outcome: Result<T, any Error>
        do {
            outcome = .success(try loop.runUntilComplete(operation))
        } catch {
            outcome = .failure(error)
        }
        loop.finishLeftoverTasks()
        loop.executors.withLock { $0.builtIn }?.shutdown(wait: true)
        return try outcome.get()
    }

    /// Cancels every unfinished `createTask` task and runs the loop until they have ended (again
    /// for tasks started meanwhile). Errors other than cancellations go to the exception handler.
    func finishLeftoverTasks() {
        while case let leftovers = tasks.running, !leftovers.isEmpty {
            for task in leftovers { task.cancel() }
            let finished: Void? = try? runUntilComplete {
                for task in leftovers {
                    if let error = await task.outcome(), !(error is CancellationError) {
                        self.callExceptionHandler(ExceptionContext(
                            message: "Unhandled error in a task, at the end of EventLoop.run", error: error))
                    }
                }
            }
            if finished == nil { return }   // stopped or closed meanwhile: nothing more to do
        }
    }
}
