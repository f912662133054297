/// The descriptor and signal watchers of one loop (`addReader`, `addWriter`, `addSignalHandler`).
///
/// Kept in a process-wide table keyed by the loop's identity, so the loop itself needs no field
/// for them. An entry holds its loop weakly and is trusted only while that reference is the loop
/// asking (an address reused by a later loop never sees a dead loop's entry); entries of closed or
/// freed loops are swept when entries are created. The handles themselves belong to the loop:
/// `EventLoop.close()` closes them with every other handle.
///
/// Confinement: the table is guarded by its lock; an entry's fields are touched only on its loop's
/// thread (hence `@unchecked Sendable`).
final class LoopWatchers: @unchecked Sendable {
    /// One `uv_poll_t` per descriptor, shared by its reader and writer callbacks.
    final class Descriptor {
        let poll: UVPoll
        var reader: (() -> Void)?
        var writer: (() -> Void)?

        init(poll: UVPoll) { self.poll = poll }

        var events: UVPoll.Events {
            var events: UVPoll.Events = []
            if reader != nil { events.insert(.readable) }
            if writer != nil { events.insert(.writable) }
            return events
        }

        /// A poll callback. An error (the descriptor was closed under the poll: libuv stops it)
        /// wakes both callbacks, as a selector reports a failed descriptor ready for both.
        func fire(status: Int32, events: UVPoll.Events) {
            let failed = status < 0
            if failed || events.contains(.readable), let reader { reader() }
            // The reader callback may have removed the writer, or the whole watcher.
            if failed || events.contains(.writable), !poll.isClosing, let writer { writer() }
        }
    }

    weak var loop: EventLoop?
    var descriptors: [Int32: Descriptor] = [:]
    var signals: [Int32: UVSignal] = [:]

    init(loop: EventLoop) { self.loop = loop }

    private static let table = LockedValue<[ObjectIdentifier: LoopWatchers]>([:])

    /// The watchers of `loop`; created when `create` is true and there are none.
    static func of(_ loop: EventLoop, create: Bool) -> LoopWatchers? {
        table.withLock { table in
            let key = ObjectIdentifier(loop)
            if let existing = table[key], existing.loop === loop { return existing }
            guard create else { return nil }
            table = table.filter { _, entry in entry.loop.map { !$0.isClosed } ?? false }
            let created = LoopWatchers(loop: loop)
            table[key] = created
            return created
        }
    }
}
