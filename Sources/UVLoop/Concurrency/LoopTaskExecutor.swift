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
final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    /// Unowned: the loop owns this executor and must outlive the tasks that prefer it (as with any
    /// executor preference).
    unowned(unsafe) let loop: EventLoop

    init(loop: EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        loop.enqueueTaskJob(UnownedJob(job))
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }
}
