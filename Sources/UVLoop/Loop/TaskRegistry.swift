import Synchronization

/// The tasks `createTask` started on one loop that have not finished yet: what `EventLoop.run`
/// cancels and awaits when its operation is done.
final class TaskRegistry: Sendable {
    private struct State: Sendable {
        var running: [UInt64: any LoopTask] = [:]
        /// Tasks that finished before `register` could record them (created off the loop's
        /// thread, run and done at once).
        var finishedEarly: Set<UInt64> = []
        var nextID: UInt64 = 0
    }

    private let state = LockedValue(State())

    /// `LoopTask.referenceCount` of a running loop task whose only handle is the one being read
    /// (0 until measured): what an error's task is compared with to learn that nobody else holds
    /// it. Measured once per process, by the first loop that runs (`calibrate(on:)`).
    static let handlelessReferenceCount = Atomic<UInt>(0)

    /// Measures `handlelessReferenceCount` with a task whose other handles are all dropped, run
    /// on `loop` the way `createTask` tasks run. Loop thread, while the loop starts running.
    static func calibrate(on executor: LoopTaskExecutor) {
        guard handlelessReferenceCount.load(ordering: .relaxed) == 0 else { return }
        let handle = LockedValue<(any LoopTask)?>(nil)
        let task = Task(executorPreference: executor) { () async throws -> Void in
            // The entry taken out of the box is the one handle left, as in createTask's catch.
            guard let entry = handle.withLock({ entry -> (any LoopTask)? in
                defer { entry = nil }
                return entry
            }) else { return }
            // Only a reading taken on a running loop counts (not on a closed loop's fallback queue).
            guard (try? getRunningLoop()) != nil else { return }
            handlelessReferenceCount.store(entry.referenceCount, ordering: .relaxed)
        }
        handle.withLock { $0 = TypedLoopTask(task: task) }
    }

    /// An identifier for the next task.
    func reserveID() -> UInt64 {
        state.withLock { state in
            state.nextID &+= 1
            return state.nextID
        }
    }

    /// Records the task `id` (unless it already finished).
    func register(_ id: UInt64, _ task: any LoopTask) {
        state.withLock { state in
            if state.finishedEarly.remove(id) == nil { state.running[id] = task }
        }
    }

    /// The task `id` finished; returns its entry (nil when it finished before it was recorded).
    @discardableResult
    func finished(_ id: UInt64) -> (any LoopTask)? {
        state.withLock { state in
            guard let task = state.running.removeValue(forKey: id) else {
                state.finishedEarly.insert(id)
                return nil
            }
            return task
        }
    }

    /// Every task still running.
    var running: [any LoopTask] { state.withLock { Array($0.running.values) } }
}

/// One task `createTask` started, whatever its result type.
protocol LoopTask: Sendable {
    func cancel()
    /// Waits for the task; returns the error it ended with (nil when it returned).
    func outcome() async -> (any Error)?
    /// The task object's strong references (see `referenceCount(of:)`).
    var referenceCount: UInt { get }
}

struct TypedLoopTask<T: Sendable>: LoopTask {
    let task: Task<T, any Error>

    func cancel() { task.cancel() }

    func outcome() async -> (any Error)? {
        if case .failure(let error) = await task.result { return error }
        return nil
    }

    var referenceCount: UInt { UVLoop.referenceCount(of: task) }
}
