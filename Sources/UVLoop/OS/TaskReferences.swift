/// A weak reference to a task's runtime object: it becomes nil once every `Task` handle to the
/// task is gone and the runtime has let go of it, so that nobody can ever read its result (what
/// asyncio learns when a task is garbage-collected).
///
/// A `Task` is one strong reference to that object (`@frozen`, a single `Builtin.NativeObject`),
/// so the handle can be reinterpreted as an `AnyObject` to take a weak reference to it.
final class TaskObjectReference: Sendable {
    private let object: WeakObject

    init<Success, Failure>(_ task: Task<Success, Failure>) {
        object = WeakObject(unsafeBitCast(task, to: AnyObject.self))
    }

    /// True once the task object is gone.
    var isGone: Bool { object.isGone }
}

/// `@unchecked Sendable`: the weak reference is written once, in `init`, and only read after.
private final class WeakObject: @unchecked Sendable {
    private weak var object: AnyObject?
    init(_ object: AnyObject) { self.object = object }
    var isGone: Bool { object == nil }
}
