import Glibc

/// OS threads with a chosen stack size: the child watchers' small waiting threads and private
/// loop threads (Foundation's `Thread` has no stack-size control on Linux and costs more).
enum Threads {
    /// Starts a detached thread with a stack of `stackSize` bytes (0: the default) running `body`.
    /// - Throws: `UVError` (EAGAIN when the process or system is out of threads).
    static func startDetached(stackSize: Int, _ body: @escaping @Sendable () -> Void) throws(UVError) {
        _ = try start(stackSize: stackSize, detached: true, body)
    }

    /// Starts a thread; returns it (meaningless once a detached thread runs).
    fileprivate static func start(stackSize: Int, detached: Bool,
                                  _ body: @escaping @Sendable () -> Void) throws(UVError) -> pthread_t {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        // 0: the system's default stack (8 MiB of address space here), for arbitrary user work.
        if stackSize > 0 { pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN))) }
        if detached { pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { argument in
            Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue().body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<ThreadBody>.fromOpaque(box).release()
            throw UVError(errno: rc, operation: "pthread_create")
        }
        return thread
    }

    private final class ThreadBody {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}

/// A joinable thread.
///
/// `@unchecked Sendable`: `pthread_t` is an immutable handle; `join()` is called once, by the owner.
final class JoinableThread: @unchecked Sendable {
    private let thread: pthread_t

    /// Starts `body` on a new thread.
    /// - Throws: `UVError` (EAGAIN when out of threads).
    init(stackSize: Int = 256 * 1024, _ body: @escaping @Sendable () -> Void) throws(UVError) {
        thread = try Threads.start(stackSize: stackSize, detached: false, body)
    }

    /// Waits for the thread to finish. Call once.
    func join() { pthread_join(thread, nil) }
}
