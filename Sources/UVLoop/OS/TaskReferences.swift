/// How many strong references the runtime object of `task` has right now.
///
/// A `Task` is one strong reference to that object (`@frozen`, a single `Builtin.NativeObject`),
/// so reinterpreting the handle as an `AnyObject` and reading its count (the standard library's
/// `_getRetainCount`) tells how many handles exist, plus the runtime's own references while the
/// task runs and this call's temporary copy. Only ever compared with the same reading taken for a
/// task known to have no other handle (`TaskRegistry.handlelessReferenceCount`), so the runtime's
/// share cancels out. No weak reference is taken: one on a task object leaks its side table
/// (the concurrency runtime frees tasks without it; LeakSanitizer, 32 bytes per task).
func referenceCount<Success, Failure>(of task: Task<Success, Failure>) -> UInt {
    _getRetainCount(unsafeBitCast(task, to: AnyObject.self))
}
