import Dispatch
import Logging

/// Where Swift jobs go once their loop is closed: one process-wide serial queue.
///
/// A task whose loop closed while it was suspended (sleeping, awaiting another task) would
/// otherwise never resume, and whoever awaits it would hang. Its jobs run here instead, one at a
/// time, so an actor bound to the closed loop still runs serially (but not on the loop's thread).
final class ClosedLoopExecutor: SerialExecutor, TaskExecutor {
    static let shared = ClosedLoopExecutor()

    private let queue = DispatchQueue(label: "uvloop.closed-loop-jobs")
    private let warned = LockedValue(false)
    private let logger = Logger(label: "uvloop.loop")

    func enqueue(_ job: consuming ExecutorJob) {
        enqueue(UnownedJob(job))
    }

    func enqueue(_ job: UnownedJob) {
        let first = warned.withLock { warned -> Bool in
            defer { warned = true }
            return !warned
        }
        if first {
            logger.warning("Swift jobs of a closed event loop now run on a fallback serial queue (warned once)")
        }
        queue.async {
            job.runSynchronously(isolatedTo: self.asUnownedSerialExecutor(), taskExecutor: self.asUnownedTaskExecutor())
        }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
    func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
}
