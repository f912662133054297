/// Whether `task` is the last handle to its task: every other copy of the `Task` value is gone,
/// so nobody can ever read its result (what asyncio learns when a task is garbage-collected).
///
/// A `Task` is one strong reference to the runtime's task object (`@frozen`, a single
/// `Builtin.NativeObject`), so its strong reference count says how many handles exist. Called only
/// after the task has finished, when the runtime holds no reference of its own any more. The count
/// is read with the standard library's `_getRetainCount`; the cast's own temporary copy is the
/// second reference counted.
func isLastHandle<Success, Failure>(_ task: Task<Success, Failure>) -> Bool {
    let object = unsafeBitCast(task, to: AnyObject.self)
    return _getRetainCount(object) <= 2
}
