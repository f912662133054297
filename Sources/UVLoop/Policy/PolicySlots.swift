/// The per-thread loop slots of one `DefaultEventLoopPolicy`.
///
/// Every policy's slots live in one process-wide thread-local list, not in a pthread key of their
/// own: `pthread_key_delete` runs no destructors, so a policy deallocated while threads that used
/// it live on would leak those threads' slots and keep their loops alive. Instead the registry
/// knows every slot it handed out and empties them when its policy goes away (`retire`), and a
/// thread's slots leave their registries when the thread exits.
final class PolicySlotRegistry: Sendable {
    private struct Table: Sendable {
        var slots: [ObjectIdentifier: PolicySlot] = [:]
        var retired = false
    }

    private let table = LockedValue(Table())

    private static let threadSlots = ThreadLocal<ThreadSlots>()

    /// The calling thread's slot, created on first use.
    func currentSlot() -> PolicySlot {
        let mine = Self.threadSlots.get { ThreadSlots() }
        if let slot = mine.slot(in: self) { return slot }
        let slot = PolicySlot(registry: self)
        table.withLock { $0.slots[ObjectIdentifier(slot)] = slot }
        mine.add(slot)
        return slot
    }

    /// Whether the policy owning this registry is gone.
    var isRetired: Bool { table.withLock { $0.retired } }

    /// Empties every slot (its thread may still be running): called when the policy goes away.
    /// Loops nobody else holds are released here, outside every lock.
    func retire() {
        let all = table.withLock { table in
            table.retired = true
            defer { table.slots.removeAll() }
            return Array(table.slots.values)
        }
        for slot in all { _ = slot.empty() }
    }

    /// A thread that exits takes its slot out of the registry.
    fileprivate func remove(_ slot: PolicySlot) {
        table.withLock { _ = $0.slots.removeValue(forKey: ObjectIdentifier(slot)) }
    }
}

/// One thread's slot in one policy. Read and written by its thread, emptied by `retire` from
/// whichever thread releases the policy.
final class PolicySlot: Sendable {
    private struct Contents: Sendable {
        var loop: EventLoop?
        var setCalled = false
    }

    fileprivate let registry: PolicySlotRegistry
    private let contents = LockedValue(Contents())

    fileprivate init(registry: PolicySlotRegistry) { self.registry = registry }

    /// The thread's loop.
    var loop: EventLoop? { contents.withLock { $0.loop } }

    /// True once `setEventLoop` was called on this thread (with any value, nil included).
    var setCalled: Bool { contents.withLock { $0.setCalled } }

    /// Records `setEventLoop(loop)`; the previous loop is released outside the lock.
    func set(_ loop: EventLoop?) {
        _ = contents.withLock { contents -> EventLoop? in
            contents.setCalled = true
            defer { contents.loop = loop }
            return contents.loop
        }
    }

    /// Takes the loop out, for the caller to release outside the lock.
    fileprivate func empty() -> EventLoop? {
        contents.withLock { contents -> EventLoop? in
            defer { contents.loop = nil }
            return contents.loop
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
