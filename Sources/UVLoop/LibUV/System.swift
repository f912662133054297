import CLibUV
import Glibc

/// Thread identity, thread-local slots and process-wide signal settings: the few system calls
/// the layers above need that are not libuv handles.
enum System {
    /// `pthread_self()` of the calling thread, as an integer (never 0).
    @inline(__always)
    static var currentThreadID: UInt { UInt(pthread_self()) }

    /// True on the process's main thread.
    static var isMainThread: Bool { cuv_is_main_thread() != 0 }

    /// The calling thread's name (`pthread_getname_np`), or its kernel thread id.
    static var currentThreadName: String {
        var buffer = [CChar](repeating: 0, count: 32)
        if cuv_thread_name(&buffer) == 0, buffer[0] != 0 {
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return "thread-\(cuv_gettid())"
    }

    /// Ignores SIGPIPE for the whole process, once. libuv does not: a write to a closed pipe or
    /// socket would kill the process instead of failing with EPIPE (ARCHITECTURE fact 8).
    static let ignoreSIGPIPE: Void = {
        signal(SIGPIPE, SIG_IGN)
    }()

    /// Runs `handler` in the child after every `fork()` (registered once per call).
    static func atForkChild(_ handler: @convention(c) () -> Void) {
        pthread_atfork(nil, nil, handler)
    }
}

/// A per-thread slot holding a strong reference, released when the thread exits.
///
/// One `pthread_key_t` per instance; deleting the instance deletes the key (values still held by
/// other live threads are then leaked, never dangling).
final class ThreadLocal<Value: AnyObject>: @unchecked Sendable {
    private let key: pthread_key_t

    init() {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { value in
            if let value { Unmanaged<AnyObject>.fromOpaque(value).release() }
        }
        precondition(rc == 0, "pthread_key_create failed (\(rc)): too many thread-local slots")
        self.key = key
    }

    deinit { pthread_key_delete(key) }

    /// The calling thread's value.
    var value: Value? {
        get {
            guard let raw = pthread_getspecific(key) else { return nil }
            return unsafeDowncast(Unmanaged<AnyObject>.fromOpaque(raw).takeUnretainedValue(), to: Value.self)
        }
        set {
            let old = pthread_getspecific(key)
            let new = newValue.map { Unmanaged<AnyObject>.passRetained($0 as AnyObject).toOpaque() }
            pthread_setspecific(key, new)
            if let old { Unmanaged<AnyObject>.fromOpaque(old).release() }
        }
    }

    /// The calling thread's value, created by `make` the first time.
    func get(orCreate make: () -> Value) -> Value {
        if let existing = value { return existing }
        let created = make()
        value = created
        return created
    }
}

extension System {
    /// The value of an environment variable.
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}

extension System {
    /// Starts a detached thread with a stack of `stackSize` bytes running `body`.
    /// - Throws: `UVError` (EAGAIN when the process or system is out of threads).
    static func startDetachedThread(stackSize: Int, _ body: @escaping @Sendable () -> Void) throws(UVError) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN)))
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let box = Unmanaged.passRetained(ThreadEntry(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { argument in
            Unmanaged<ThreadEntry>.fromOpaque(argument!).takeRetainedValue().body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<ThreadEntry>.fromOpaque(box).release()
            throw UVError(code: -rc, operation: "pthread_create")
        }
    }

    private final class ThreadEntry {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Closes a descriptor, ignoring EINTR (Linux always releases the descriptor).
    static func closeDescriptor(_ fd: Int32) { _ = Glibc.close(fd) }

    /// True when `fd` is an open descriptor.
    static func isOpenDescriptor(_ fd: Int32) -> Bool { cuv_fd_is_open(fd) != 0 }

    /// Creates a pipe; both ends close-on-exec, the chosen ends non-blocking.
    /// - Throws: `UVError` (EMFILE when out of descriptors).
    static func makePipe(nonBlockingRead: Bool, nonBlockingWrite: Bool) throws(UVError) -> (read: Int32, write: Int32) {
        var fds: [uv_file] = [-1, -1]
        let rc = uv_pipe(&fds, nonBlockingRead ? Int32(UV_NONBLOCK_PIPE.rawValue) : 0,
                         nonBlockingWrite ? Int32(UV_NONBLOCK_PIPE.rawValue) : 0)
        if rc < 0 { throw UVError(code: rc, operation: "uv_pipe") }
        return (fds[0], fds[1])
    }

    /// Returns `fd` if it is above the standard descriptors, else a close-on-exec duplicate of it
    /// at 3 or above (closing `fd`). A child's 0, 1 and 2 are set with dup2 in order, so a source
    /// below 3 could be overwritten before it is used.
    static func moveAboveStandardDescriptors(_ fd: Int32) throws(UVError) -> Int32 {
        guard fd < 3 else { return fd }
        let moved = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        if moved < 0 { throw UVError(code: cuv_errno(), operation: "fcntl(F_DUPFD_CLOEXEC)") }
        _ = Glibc.close(fd)
        return moved
    }

    enum PathCheck { case executable, notExecutable, missing }

    /// Whether `path` names an executable regular file.
    static func checkExecutable(_ path: String) -> PathCheck {
        guard cuv_is_regular_file(path) != 0 else { return .missing }
        return cuv_access_executable(path) == 0 ? .executable : .notExecutable
    }
}

/// A joinable thread.
final class JoinableThread: @unchecked Sendable {
    private let thread: pthread_t

    /// Starts `body` on a new thread.
    /// - Throws: `UVError` (EAGAIN when out of threads).
    init(stackSize: Int = 256 * 1024, _ body: @escaping @Sendable () -> Void) throws(UVError) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN)))
        let box = Unmanaged.passRetained(JoinableThreadEntry(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { argument in
            Unmanaged<JoinableThreadEntry>.fromOpaque(argument!).takeRetainedValue().body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<JoinableThreadEntry>.fromOpaque(box).release()
            throw UVError(code: -rc, operation: "pthread_create")
        }
        self.thread = thread
    }

    /// Waits for the thread to finish. Call once.
    func join() { pthread_join(thread, nil) }
}

private final class JoinableThreadEntry {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// A value confined to one loop's thread, carried through a `@Sendable` closure that runs on
/// that thread (a libuv handle wrapper, for instance). The compiler cannot check the confinement:
/// whoever unwraps it must be on the right thread.
struct LoopBound<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
