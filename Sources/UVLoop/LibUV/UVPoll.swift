import CLibUV

/// `uv_poll_t`: readiness of a file descriptor this process owns (one poll handle per fd).
final class UVPoll: UVHandle {
    struct Events: OptionSet, Sendable {
        let rawValue: Int32
        static let readable = Events(rawValue: Int32(UV_READABLE.rawValue))
        static let writable = Events(rawValue: Int32(UV_WRITABLE.rawValue))
        static let disconnect = Events(rawValue: Int32(UV_DISCONNECT.rawValue))
    }

    /// Called with libuv's status (0 or a negative error) and the ready events.
    var callback: (Int32, Events) -> Void
    let fileDescriptor: Int32

    /// - Throws: `UVError` (EBADF for a closed descriptor, EEXIST when the fd is already watched
    ///   by this loop, EPERM for a regular file).
    init(loop: UVRunLoop, fileDescriptor: Int32, _ callback: @escaping (Int32, Events) -> Void) throws(UVError) {
        self.callback = callback
        self.fileDescriptor = fileDescriptor
        try super.init(type: UV_POLL, operation: "uv_poll_init(fd \(fileDescriptor))") {
            uv_poll_init(loop.pointer, $0.assumingMemoryBound(to: uv_poll_t.self), fileDescriptor)
        }
    }

    private var poll: UnsafeMutablePointer<uv_poll_t> { raw.assumingMemoryBound(to: uv_poll_t.self) }

    /// Watches `events` (replacing the previous set).
    func start(_ events: Events) throws(UVError) {
        try UVError.check(uv_poll_start(poll, events.rawValue) { handle, status, events in
            uvWrapper(handle, as: UVPoll.self)?.callback(status, Events(rawValue: events))
        }, "uv_poll_start(fd \(fileDescriptor))")
    }

    func stop() { uv_poll_stop(poll) }

    override func didClose() { callback = { _, _ in } }
}
