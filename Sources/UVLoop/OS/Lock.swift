import CUVLoopOS
import Glibc

/// A pthread mutex.
///
/// Used instead of `Synchronization.Mutex`, which on Linux takes priority-inheritance futexes
/// (`FUTEX_LOCK_PI`): under contention from several producer threads on few cores its throughput
/// collapsed by more than 10x in the cross-thread benchmark, and ThreadSanitizer cannot see it.
///
/// `@unchecked Sendable`: the mutex is the guard; the pointer to it never changes.
@_spi(UVLoopTLS)
public final class Lock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        // Adaptive: spin briefly before sleeping in the kernel. Holders keep the lock for a few
        // instructions, so a short spin beats a futex round trip when producers collide.
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        let rc = pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
        if rc != 0 { fatalError("pthread_mutex_init failed: \(rc)") }
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A value guarded by a `Lock` (SwiftNIO's `NIOLockedValueBox`).
///
/// `Sendable` only when the value is: the lock orders accesses, but a non-`Sendable` value (a
/// libuv handle wrapper, a non-`Sendable` closure) handed out of `withLock` could still be used
/// on two threads at once. Such values go in a `LoopBound` first.
final class LockedValue<Value> {
    private let lock = Lock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    @inline(__always)
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// The lock guards `value`; the box is as sendable as what it holds.
extension LockedValue: @unchecked Sendable where Value: Sendable {}

/// A pthread mutex with a condition variable, for threads that sleep until work arrives (the
/// thread pool's workers).
///
/// `@unchecked Sendable`: the mutex guards whatever its users put under it; the pointers never
/// change.
final class Condition: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        // Timed waits count on the monotonic clock: a change of the wall clock moves no deadline.
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        defer { pthread_condattr_destroy(&attributes) }
        if pthread_mutex_init(mutex, nil) != 0 || pthread_cond_init(condition, &attributes) != 0 {
            fatalError("pthread_mutex_init/pthread_cond_init failed")
        }
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    /// Waits for a signal; the caller holds the lock (held again on return; spurious wake-ups
    /// happen, so callers re-check their condition).
    func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits for a signal or until `seconds` have passed; the caller holds the lock.
    func wait(seconds: Double) {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let nanoseconds = Int(max(0, seconds) * 1e9) + deadline.tv_nsec
        deadline.tv_sec += nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        pthread_cond_timedwait(condition, mutex, &deadline)
    }
    func signal() { pthread_cond_signal(condition) }
    func broadcast() { pthread_cond_broadcast(condition) }

    @inline(__always)
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A pthread read-write lock that prefers writers: many holders of the read side at once, one
/// writer alone, and a waiting writer is not starved by a steady stream of readers.
///
/// `@unchecked Sendable`: the lock is the guard; the pointer to it never changes.
final class ReadWriteLock: @unchecked Sendable {
    private let rwlock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        rwlock = .allocate(capacity: 1)
        rwlock.initialize(to: pthread_rwlock_t())
        let rc = cos_rwlock_init_prefer_writer(rwlock)
        if rc != 0 { fatalError("pthread_rwlock_init failed: \(rc)") }
    }

    deinit {
        pthread_rwlock_destroy(rwlock)
        rwlock.deallocate()
    }

    func withReadLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }

    func withWriteLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }
}
