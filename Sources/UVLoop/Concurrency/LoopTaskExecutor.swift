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
    /// Weak: a task may outlive its loop (closed and released while the task slept); its jobs then
    /// go to the closed-loop fallback queue. A strong reference would keep unclosed loops alive
    /// forever (the loop owns this executor).
    weak let loop: EventLoop?

    init(loop: EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if let loop {
            loop.enqueueTaskJob(job)
        } else {
            ClosedLoopExecutor.shared.enqueue(job)
        }
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }
}
