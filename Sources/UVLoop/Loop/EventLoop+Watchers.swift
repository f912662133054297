import Glibc

/// Descriptor and signal callbacks (asyncio's `add_reader`, `add_writer`, `add_signal_handler`).
///
/// These are loop-thread operations: call them on the thread running the loop (from its callbacks
/// and tasks), or from any thread while the loop does not run.
extension EventLoop {
    // MARK: Descriptors

    /// Calls `callback` on the loop each time `fd` is readable, until `removeReader(fd)`.
    ///
    /// Watching uses a `uv_poll_t` (epoll), which makes `fd` non-blocking. A reader and a writer on
    /// one descriptor share one poll handle; adding a reader again replaces its callback. The
    /// callback is level-triggered: it runs again on the next iteration while data remains.
    /// - Throws: `UVError` (EBADF for a negative or closed descriptor, EPERM for a regular file,
    ///   EEXIST when this loop already streams the descriptor); `EventLoopError.loopClosed`;
    ///   `EventLoopError.wrongThread` from another thread while the loop runs.
    /// - Warning: Remove the reader before closing the descriptor: epoll forgets a closed one, and
    ///   a new descriptor with the same number would not be watched.
    public func addReader(_ fd: Int32, _ callback: @escaping () -> Void) throws {
        try watch(fd, operation: "addReader") { $0.reader = callback }
    }

    /// Stops watching `fd` for reading.
    /// - Returns: true when a reader was registered for `fd` (false on a closed loop).
    /// - Warning: Traps when called from another thread while the loop runs.
    @discardableResult
    public func removeReader(_ fd: Int32) -> Bool {
        unwatch(fd, operation: "removeReader") { descriptor in
            defer { descriptor.reader = nil }
            return descriptor.reader != nil
        }
    }

    /// Calls `callback` on the loop each time `fd` is writable, until `removeWriter(fd)`.
    /// See `addReader` for the details and the errors.
    public func addWriter(_ fd: Int32, _ callback: @escaping () -> Void) throws {
        try watch(fd, operation: "addWriter") { $0.writer = callback }
    }

    /// Stops watching `fd` for writing.
    /// - Returns: true when a writer was registered for `fd` (false on a closed loop).
    /// - Warning: Traps when called from another thread while the loop runs.
    @discardableResult
    public func removeWriter(_ fd: Int32) -> Bool {
        unwatch(fd, operation: "removeWriter") { descriptor in
            defer { descriptor.writer = nil }
            return descriptor.writer != nil
        }
    }

    /// The loop's descriptor and signal callbacks, created on first use.
    private func makeIOCallbacks() -> IOCallbacks {
        if let ioCallbacks { return ioCallbacks }
        let created = IOCallbacks()
        ioCallbacks = created
        return created
    }

    private func watch(_ fd: Int32, operation: String, _ set: (IOCallbacks.DescriptorPoll) -> Void) throws {
        try checkLoopThread()
        guard fd >= 0 else { throw UVError(code: UVError.EBADF.code, operation: "\(operation)(fd \(fd))") }
        let callbacks = makeIOCallbacks()
        if let existing = callbacks.descriptors[fd] {
            let before = (existing.reader, existing.writer)
            set(existing)
            do {
                try existing.poll.start(existing.events)
            } catch {
                (existing.reader, existing.writer) = before
                throw error
            }
            return
        }
        let poll = try UVPoll(loop: uvLoop, fileDescriptor: fd) { _, _ in }
        let descriptor = IOCallbacks.DescriptorPoll(poll: poll)
        poll.callback = { [weak descriptor] status, events in descriptor?.fire(status: status, events: events) }
        set(descriptor)
        do {
            try poll.start(descriptor.events)
        } catch {
            poll.close()
            throw error
        }
        callbacks.descriptors[fd] = descriptor
    }

    private func unwatch(_ fd: Int32, operation: String, _ clear: (IOCallbacks.DescriptorPoll) -> Bool) -> Bool {
        guard checkRemoval(operation), let callbacks = ioCallbacks, let descriptor = callbacks.descriptors[fd] else {
            return false
        }
        let removed = clear(descriptor)
        let events = descriptor.events
        if events.isEmpty {
            callbacks.descriptors[fd] = nil
            descriptor.poll.close()
        } else {
            // Narrowing the event set of a live poll cannot fail for a descriptor it watches; if
            // the descriptor was closed meanwhile, stop watching it altogether.
            do {
                try descriptor.poll.start(events)
            } catch {
                callbacks.descriptors[fd] = nil
                descriptor.poll.close()
            }
        }
        return removed
    }

    /// The thread check of the `remove...` calls, which cannot throw: false on a closed loop
    /// (nothing is registered any more); a trap, with its message, from another thread while the
    /// loop runs.
    private func checkRemoval(_ operation: String) -> Bool {
        do {
            try checkLoopThread()
            return true
        } catch .loopClosed {
            return false
        } catch {
            fatalError("\(operation) must be called on the thread running the event loop (or while it does not run)")
        }
    }

    // MARK: Signals

    /// Calls `callback` on the loop each time `signal` is delivered to the process, until
    /// `removeSignalHandler(signal)`; adding a handler again replaces the callback.
    ///
    /// Signals go through libuv (`uv_signal_t`): one process-wide handler per signal fans each
    /// delivery out to every loop watching it, so handlers on several loops all run. The same
    /// mechanism serves the child watchers that watch SIGCHLD (`MultiLoopChildWatcher`,
    /// `SafeChildWatcher`, `FastChildWatcher`): a SIGCHLD handler added here runs alongside them
    /// and does not disturb them. Unlike asyncio, any loop (not only the main thread's) may do this.
    /// - Throws: `UVError.EINVAL` for a number outside 1...64, or for SIGKILL and SIGSTOP (which
    ///   cannot be caught); `UVError` from `uv_signal_start`; `EventLoopError.loopClosed`;
    ///   `EventLoopError.wrongThread` from another thread while the loop runs.
    /// - Warning: When the last `uv_signal_t` of a signal goes away, libuv restores its default
    ///   action (SIGINT and SIGTERM then end the process again).
    public func addSignalHandler(_ signal: Int32, _ callback: @escaping () -> Void) throws {
        try checkLoopThread()
        try Self.checkCatchable(signal)
        let callbacks = makeIOCallbacks()
        if let existing = callbacks.signals[signal] {
            existing.callback = { _ in callback() }
            return
        }
        let handle = try UVSignal(loop: uvLoop) { _ in callback() }
        do {
            try handle.start(signal)
        } catch {
            handle.close()
            throw error
        }
        callbacks.signals[signal] = handle
    }

    /// Removes the handler of `signal`.
    /// - Returns: true when a handler was registered (false on a closed loop).
    /// - Warning: Traps when called from another thread while the loop runs.
    @discardableResult
    public func removeSignalHandler(_ signal: Int32) -> Bool {
        guard checkRemoval("removeSignalHandler"), let callbacks = ioCallbacks,
              let handle = callbacks.signals.removeValue(forKey: signal) else { return false }
        handle.close()
        // libuv resets a signal to SIG_DFL when its last handle goes; SIGPIPE must stay ignored
        // (ARCHITECTURE fact 8), or the next write to a closed socket would kill the process.
        if signal == SIGPIPE { System.ignoreSIGPIPEIfDefault() }
        return true
    }

    /// Signals a handler may be added for: 1...64 except SIGKILL and SIGSTOP.
    static func checkCatchable(_ signal: Int32) throws {
        guard signal >= 1 && signal <= 64 else {
            throw UVError(code: UVError.EINVAL.code, operation: "addSignalHandler(\(signal)): not a signal number (1...64)")
        }
        guard signal != SIGKILL && signal != SIGSTOP else {
            throw UVError(code: UVError.EINVAL.code,
                          operation: "addSignalHandler(\(signal)): SIGKILL and SIGSTOP cannot be caught")
        }
    }
}
