/// The per-thread loop slots of one `DefaultEventLoopPolicy`.
///
/// Every policy's slots live in one process-wide thread-local list, not in a pthread key of their
/// own: `pthread_key_delete` runs no destructors, so a policy deallocated while threads that used
/// it live on would leak those threads' slots and keep their loops alive. Instead the registry
/// knows every slot it handed out and empties them when its policy goes away (`retire`), and a
/// thread's slots leave their registries when the thread exits.
final class PolicySlotRegistry: @unchecked Sendable {
    private let lock = Lock()
    private var slots: [ObjectIdentifier: PolicySlot] = [:]
    private var retired = false

    private static let threadSlots = ThreadLocal<ThreadSlots>()

    /// The calling thread's slot, created on first use.
    func currentSlot() -> PolicySlot {
        let mine = Self.threadSlots.get { ThreadSlots() }
        if let slot = mine.slot(in: self) { return slot }
        let slot = PolicySlot(registry: self)
        lock.withLock { slots[ObjectIdentifier(slot)] = slot }
        mine.add(slot)
        return slot
    }

    /// Whether the policy owning this registry is gone.
    var isRetired: Bool { lock.withLock { retired } }

    /// Empties every slot (its thread may still be running): called when the policy goes away.
    /// Loops nobody else holds are released here, outside every lock.
    func retire() {
        let all = lock.withLock {
            retired = true
            defer { slots.removeAll() }
            return Array(slots.values)
        }
        for slot in all { _ = slot.empty() }
    }

    /// A thread that exits takes its slot out of the registry.
    fileprivate func remove(_ slot: PolicySlot) {
        lock.withLock { _ = slots.removeValue(forKey: ObjectIdentifier(slot)) }
    }
}

/// One thread's slot in one policy. Read and written by its thread, emptied by `retire` from
/// whichever thread releases the policy.
final class PolicySlot: @unchecked Sendable {
    fileprivate let registry: PolicySlotRegistry
    private let lock = Lock()
    private var _loop: EventLoop?
    private var _setCalled = false

    fileprivate init(registry: PolicySlotRegistry) { self.registry = registry }

    /// The thread's loop.
    var loop: EventLoop? { lock.withLock { _loop } }

    /// True once `setEventLoop` was called on this thread (with any value, nil included).
    var setCalled: Bool { lock.withLock { _setCalled } }

    /// Records `setEventLoop(loop)`; the previous loop is released outside the lock.
    func set(_ loop: EventLoop?) {
        _ = lock.withLock {
            _setCalled = true
            defer { _loop = loop }
            return _loop
        }
    }

    /// Takes the loop out, for the caller to release outside the lock.
    fileprivate func empty() -> EventLoop? {
        lock.withLock {
            defer { _loop = nil }
            return _loop
        }
    }
}

/// The calling thread's slots, one per policy it used. Touched only by its own thread; released by
/// the thread-local's destructor when the thread exits.
private final class ThreadSlots {
    private var slots: [PolicySlot] = []

    func slot(in registry: PolicySlotRegistry) -> PolicySlot? {
        slots.first { $0.registry === registry }
    }

    /// Adds `slot`, first dropping the slots of policies that are gone.
    func add(_ slot: PolicySlot) {
        slots.removeAll { $0.registry.isRetired }
        slots.append(slot)
    }

    deinit {
        for slot in slots { slot.registry.remove(slot) }
    }
}
