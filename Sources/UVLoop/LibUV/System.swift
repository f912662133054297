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
