import Glibc

/// A per-thread slot holding a strong reference, released when the thread exits.
///
/// One `pthread_key_t` per instance; deleting the instance deletes the key (values still held by
/// other live threads are then leaked, never dangling). Instances are meant to be `static`.
///
/// `@unchecked Sendable`: the key is immutable, and each thread only ever sees its own value.
final class ThreadLocal<Value: AnyObject>: @unchecked Sendable {
    private let key: pthread_key_t

    init() {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { value in
            if let value { Unmanaged<AnyObject>.fromOpaque(value).release() }
        }
        if rc != 0 { fatalError("pthread_key_create failed (\(rc)): too many thread-local slots") }
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
