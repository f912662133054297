import Glibc

/// One listening socket of a `Server`, accepted from by hand.
///
/// libuv's `uv_listen` accepts every waiting connection as soon as the socket is readable, and
/// when descriptors run out it accepts and closes them (its "EMFILE trick"), silently. A server
/// with a connection cap or a descriptor shortage must instead leave connections in the kernel's
/// backlog until it has room: so a `uv_poll_t` watches the descriptor, and the server calls
/// `accept()` (accept4) only while it wants more connections, stopping the watch otherwise.
/// Loop thread only.
final class Listener {
    /// The listening descriptor, owned: closed once the poll handle has closed.
    let fileDescriptor: Int32
    /// `AF_INET`, `AF_INET6` or `AF_UNIX`.
    let family: Int32
    private let poll: UVPoll
    /// True while the poll watches for waiting connections.
    private(set) var isWatching = false
    /// The address every accepted TCP connection has as its own, when the listener is bound to a
    /// specific one (not 0.0.0.0 or ::): no getsockname per connection then.
    let acceptedLocalAddress: UVSocketAddress?
    /// True when the listening TCP socket has TCP_NODELAY, which Linux hands down to every
    /// connection it accepts: no setsockopt per connection then.
    let acceptedHaveNoDelay: Bool

    /// Takes ownership of a listening, non-blocking socket.
    /// - Throws: `UVError` (EEXIST when this loop already watches the descriptor); the descriptor
    ///   then stays the caller's.
    init(loop: EventLoop, fileDescriptor: Int32, family: Int32,
         ready: @escaping () -> Void, closed: @escaping () -> Void) throws(UVError) {
        self.fileDescriptor = fileDescriptor
        self.family = family
        let bound = family == AF_UNIX ? nil : UVSocketAddress(boundTo: fileDescriptor)
        acceptedLocalAddress = bound.flatMap { $0.isWildcard ? nil : $0 }
        acceptedHaveNoDelay = family != AF_UNIX && (try? Socket.setNoDelay(fileDescriptor, true)) != nil
        poll = try UVPoll(loop: loop.uvLoop, fileDescriptor: fileDescriptor) { _, _ in ready() }
        // Strong: the handle drops this closure once it has run.
        poll.whenClosed = { [self] in
            closeDescriptor()
            closed()
        }
    }

    private var descriptorClosed = false

    private func closeDescriptor() {
        guard !descriptorClosed else { return }
        descriptorClosed = true
        Glibc.close(fileDescriptor)
    }

    var isClosing: Bool { poll.isClosing }

    /// Watches for waiting connections (level-triggered: `ready` runs while any wait).
    func watch() {
        guard !isWatching, !poll.isClosing else { return }
        // Fails only for a closed handle, which was checked.
        isWatching = (try? poll.start(.readable)) != nil
    }

    /// Stops watching: connections wait in the kernel's backlog.
    func unwatch() {
        guard isWatching else { return }
        isWatching = false
        poll.stop()
    }

    /// One waiting connection's descriptor and, for TCP, its peer's address; or a negative errno
    /// value (-EAGAIN when none waits).
    func accept() -> (fd: Int32, peer: UVSocketAddress?) {
        let (fd, peer) = Socket.accept(fileDescriptor)
        return (fd, fd >= 0 ? UVSocketAddress(peer) : nil)
    }

    /// Closes the poll handle, then at once the descriptor (`uv_close` stops the poll first), so
    /// the port refuses connections from now on. Idempotent.
    func close() {
        isWatching = false
        poll.close()
        closeDescriptor()
    }
}
