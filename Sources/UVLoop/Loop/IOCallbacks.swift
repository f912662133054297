/// The descriptor and signal callbacks of one loop (`addReader`, `addWriter`,
/// `addSignalHandler`), created on first use. Touched only on the loop's thread. The handles
/// themselves belong to the loop: `EventLoop.close()` closes them with every other handle.
final class IOCallbacks {
    /// One `uv_poll_t` per descriptor, shared by its reader and writer callbacks.
    final class DescriptorPoll {
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
            // The reader callback may have removed the writer, or the whole poll.
            if failed || events.contains(.writable), !poll.isClosing, let writer { writer() }
        }
    }

    var descriptors: [Int32: DescriptorPoll] = [:]
    var signals: [Int32: UVSignal] = [:]
}
