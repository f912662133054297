import Glibc

/// A bounded pool of worker threads for blocking work (Python's
/// `concurrent.futures.ThreadPoolExecutor`), used by `EventLoop.runInExecutor`.
///
/// Workers start on demand, up to `maxWorkers`, and stay until `shutdown`; work beyond them
/// waits in a FIFO queue. Each loop has a built-in pool of `min(32, cores + 4)` workers (Python's
/// default), created on first use and shut down when the loop closes; `setDefaultExecutor`
/// replaces it.
public final class ThreadPoolExecutor: Sendable {
    /// The most threads that run work at once.
    public let maxWorkers: Int
    private let pool: WorkerPool

    /// Creates a pool; no thread starts before work is submitted.
    /// - Throws: `EventLoopError.invalidArgument` when `maxWorkers` is below 1.
    public init(maxWorkers: Int) throws {
        guard maxWorkers >= 1 else { throw EventLoopError.invalidArgument }
        self.maxWorkers = maxWorkers
        pool = WorkerPool(maxWorkers: maxWorkers)
    }

    /// The size of a loop's built-in pool: Python's `min(32, os.cpu_count() + 4)`.
    static var defaultWorkerCount: Int {
        min(32, max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) + 4)
    }

    /// Stops accepting work: later submissions throw `EventLoopError.executorShutDown`. Work
    /// already queued still runs. With `wait`, returns once every worker has finished it and
    /// exited (a worker calling this does not wait for itself). Idempotent.
    public func shutdown(wait: Bool = true) {
        pool.shutdown(wait: wait)
    }

    /// True once `shutdown` was called.
    public var isShutDown: Bool { pool.isShutDown }

    /// Queues `work` for a worker.
    /// - Throws: `EventLoopError.executorShutDown` after `shutdown`; `UVError.EAGAIN` when no
    ///   worker exists and none can be started.
    func submit(_ work: @escaping @Sendable () -> Void) throws {
        try pool.submit(work)
    }

    deinit { pool.shutdown(wait: false) }
}

/// The queue and the workers of one `ThreadPoolExecutor`. Workers hold the pool, never the
/// executor, so dropping an executor shuts its pool down.
///
/// `@unchecked Sendable`: every field is read and written under `condition`'s lock.
private final class WorkerPool: @unchecked Sendable {
    private let condition = Condition()
    private let maxWorkers: Int
    private var queue: [WorkItem] = []
    private var queueHead = 0
    private var workers = 0
    private var idleWorkers = 0
    private var shutDown = false
    /// `pthread_self()` of each live worker, so that a worker's own `shutdown(wait:)` does not
    /// wait for itself.
    private var workerThreads: Set<UInt> = []

    init(maxWorkers: Int) { self.maxWorkers = maxWorkers }

    var isShutDown: Bool { condition.withLock { shutDown } }

    func submit(_ work: @escaping @Sendable () -> Void) throws {
        let item = WorkItem(work)
        let startWorker: Bool = try condition.withLock {
            if shutDown { throw EventLoopError.executorShutDown }
            queue.append(item)
            if idleWorkers > 0 {
                condition.signal()
                return false
            }
            guard workers < maxWorkers else { return false }
            workers += 1
            return true
        }
        guard startWorker else { return }
        do {
            try Threads.startDetached(stackSize: 0) { [self] in runWorker() }
        } catch {
            let stranded = condition.withLock { () -> Bool in
                workers -= 1
                condition.broadcast()   // a shutdown(wait: true) may count this worker
                // No worker at all to run it: take the work back and report.
                guard workers == 0, let index = queue[queueHead...].firstIndex(where: { $0 === item }) else { return false }
                queue.remove(at: index)
                return true
            }
            if stranded { throw error }
        }
    }

    private func runWorker() {
        condition.withLock { _ = workerThreads.insert(System.currentThreadID) }
        while let item = nextWork() { item.work() }
    }

    /// The next queued work, or nil once the pool is shut down and drained (the worker exits).
    private func nextWork() -> WorkItem? {
        condition.withLock {
            while queueHead == queue.count && !shutDown {
                idleWorkers += 1
                condition.wait()
                idleWorkers -= 1
            }
            guard queueHead < queue.count else {
                workers -= 1
                workerThreads.remove(System.currentThreadID)
                condition.broadcast()   // a shutdown(wait: true) counts the workers left
                return nil
            }
            let work = queue[queueHead]
            queueHead += 1
            if queueHead == queue.count {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
            }
            return work
        }
    }

    func shutdown(wait: Bool) {
        condition.withLock {
            shutDown = true
            condition.broadcast()
            guard wait else { return }
            let me = workerThreads.contains(System.currentThreadID) ? 1 : 0
            while workers > me { condition.wait() }
        }
    }
}

/// One submission, compared by identity (a failed worker start takes back exactly its own).
private final class WorkItem: Sendable {
    let work: @Sendable () -> Void
    init(_ work: @escaping @Sendable () -> Void) { self.work = work }
}
