import Glibc
@testable import UVLoop

/// A user-written watcher that records the calls made to it (for the policy's wiring rules).
final class RecordingWatcher: ChildWatcher, @unchecked Sendable {
    enum Call: Equatable { case attach(ObjectIdentifier?), close }
    private let log = LockedValue<[Call]>([])
    var calls: [Call] { log.withLock { $0 } }

    func addChildHandler(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {}
    func removeChildHandler(_ pid: pid_t) -> Bool { false }
    func attachLoop(_ loop: EventLoop?) { log.withLock { $0.append(.attach(loop.map(ObjectIdentifier.init))) } }
    func isActive() -> Bool { true }
    func close() { log.withLock { $0.append(.close) } }
}
