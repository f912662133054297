import Synchronization

/// An event loop's task-executor face: runs the jobs of tasks that prefer the loop on the loop's
/// thread, without isolating them to the loop's serial executor.
///
/// Run isolated to the loop (as an actor's jobs are), a task would "leave" that isolation at every
/// entry into a nonisolated async function (the handler, `read`, `drain`...), and the runtime would
/// re-enqueue it on the loop each time: measured on the B4 echo benchmark, six jobs per echoed
/// message instead of one. Jobs enqueued here run with no serial executor, so nonisolated code
/// never hops. `createTask`, `runUntilComplete` and server handler tasks prefer it; an actor whose
/// executor is the loop still runs isolated (`EventLoop.enqueue`).
///
/// Jobs share the loop's ready queue (FIFO with callbacks, no allocation per job); on a closed loop
/// they go to the fallback queue, as the loop's own jobs do.
///
/// `@unchecked Sendable`: `loop` is read and cleared under `lock` only.
final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    /// The loop, until its deinit clears it (guarded by `lock`). A task may outlive its loop (closed
    /// and released while the task slept); its jobs then go to the closed-loop fallback queue. Not
    /// a strong reference (the loop owns this executor: unclosed loops would never be freed), and
    /// not `weak` (a side table per loop, which LeakSanitizer reports for every loop alive at exit).
    private unowned(unsafe) var loop: EventLoop?
    private let lock = Lock()

    init(loop: EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        lock.lock()
        if let loop {
            // Under the lock: the loop's deinit cannot finish meanwhile.
            loop.enqueueTaskJob(job)
            lock.unlock()
        } else {
            lock.unlock()
            ClosedLoopExecutor.shared.enqueue(job)
        }
    }

    /// Reports `error`, which ended a `createTask` task, to the loop's exception handler in a
    /// later batch if no handle to the task is left then ("Task exception was never retrieved").
    /// Goes through this executor so that the task never keeps its loop alive.
    func reportIfNeverRetrieved(references: UInt, _ error: any Error) {
        lock.withLock {
            // The closure holds this executor, not the loop (it runs on the loop, which is alive
            // while it runs its queue). By then the calibration task has run: the first loop to
            // run queues it before any task it runs.
            _ = loop?.schedule { [self] in
                let handleless = TaskRegistry.handlelessReferenceCount.load(ordering: .relaxed)
                guard handleless != 0, references <= handleless else { return }
                lock.withLock { loop }?.callExceptionHandler(
                    ExceptionContext(message: "Task exception was never retrieved", error: error))
            }
        }
    }

    /// Runs `body` with the loop, if it still exists (under the lock, so its deinit waits).
    /// `body` must not keep the loop beyond the call.
    func withLoop<T>(_ body: (EventLoop) -> T) -> T? {
        lock.withLock { loop.map(body) }
    }

    /// Called first thing by the loop's deinit.
    func loopIsGone() {
        lock.withLock { loop = nil }
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }
}
