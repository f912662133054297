import Foundation

/// A value behind an NSLock (a pthread mutex, which ThreadSanitizer understands; Synchronization's
/// Mutex on Linux is a futex it cannot see).
final class Mutex<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
