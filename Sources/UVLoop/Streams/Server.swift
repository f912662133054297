import Glibc
import Synchronization

/// A listening server made by `EventLoop.startServer` or `startUnixServer` (asyncio.Server).
///
/// Each accepted connection gets its own task, running on the server's loop, that calls the
/// handler with the connection's reader and writer. The connection closes when the handler has
/// dropped both (or closed the writer). `close()` stops accepting; connections already accepted
/// go on until they close (`closeClients()`/`abortClients()` end them, `shutdown(gracePeriod:)`
/// gives them a deadline).
///
/// Admission control: with `maxConnections`, accepting stops while that many connections are
/// open; the next clients wait in the kernel's listen backlog (never accepted and then closed).
/// When descriptors run out (EMFILE), accepting backs off (10 ms, doubling to 1 s) instead of
/// spinning, the listener stays open, and the failures reach the loop's exception handler at most
/// once a second. With `idleTimeout`, a connection with no byte read or written for that long is
/// aborted, and its pending reads and writes throw `UVError.ETIMEDOUT`.
///
/// - Warning: The server's state lives on its loop's thread; every method may be called from any
///   thread (calls from elsewhere are posted to the loop).
public final class Server: Sendable {
    /// The bound port (the one the kernel chose when 0 was asked); 0 for a Unix-socket server.
    public let port: Int
    /// The listening addresses (one per address `host` resolved to), or the socket's path.
    public let addresses: [SocketAddress]
    /// The loop the server accepts on and runs its handlers on.
    public let loop: EventLoop

    /// What `startServer` was given besides the handler.
    struct Options: Sendable {
        var limit = 64 * 1024
        var maxConnections: Int?
        var idleTimeout: Double?

        /// - Throws: `EventLoopError.invalidArgument` for a limit or a cap below 1, or a timeout
        ///   that is not a positive number (+infinity means none).
        func validated() throws -> Options {
            guard limit >= 1 else { throw EventLoopError.invalidArgument }
            if let maxConnections, maxConnections < 1 { throw EventLoopError.invalidArgument }
            var options = self
            if let idleTimeout {
                guard idleTimeout > 0 else { throw EventLoopError.invalidArgument }   // NaN fails this too
                if idleTimeout.isInfinite { options.idleTimeout = nil }
            }
            return options
        }
    }

    private let options: Options
    private let handler: @Sendable (StreamReader, StreamWriter) async -> Void
    private let serving = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)
    private let connectionCount = Atomic<Int>(0)
    /// Runs the handler tasks on the loop without serial isolation (see `LoopTaskExecutor`).
    private let taskExecutor: LoopTaskExecutor
    /// A Unix server's socket file, removed when the server closes if it is still ours.
    private let unixPath: String?
    private let unixIdentity: (device: UInt64, inode: UInt64)?

    /// What only the loop's thread touches.
    private struct State {
        var listeners: [Listener] = []
        var openListeners = 0
        /// `startServing` ran and `close` has not.
        var serving = false
        var closing = false
        var connections: [ObjectIdentifier: StreamTransport] = [:]
        /// Handler tasks that have not returned yet, cancelled by `shutdown` after its grace.
        var handlers: [UInt64: Task<Void, Never>] = [:]
        var nextHandlerID: UInt64 = 0
        /// `waitClosed()`: until closed, every connection closed and every handler returned.
        var closeWaiters = CloseWaiters()
        /// `serveForever()`: until the server stops serving.
        var stopWaiters = CloseWaiters()
        /// `shutdown(gracePeriod:)`: as `closeWaiters`, or once cut, until every connection is gone.
        var shutdownWaiters: [UnsafeContinuation<Void, Never>] = []
        /// `shutdown` cut the remaining connections (its grace ran out).
        var cut = false
        var graceTimer: TimerHandle?
        /// Accepting stopped because `maxConnections` are open.
        var pausedAtCapacity = false
        /// Accepting stopped after EMFILE (or another failure of the listener) until this fires.
        var backoff: TimerHandle?
        var backoffDelay = 0.0
        /// Failed accepts not reported yet, and when the last report went out (loop seconds).
        var unreportedFailures = 0
        var lastFailureReport = -Double.infinity
        var idleSweep: TimerHandle?

        var isFinished: Bool { closing && openListeners == 0 && connections.isEmpty && handlers.isEmpty }
        var isCutDown: Bool { isFinished || (cut && connections.isEmpty) }
    }

    private let state: LoopBound<State>

    /// Takes over listening sockets (bound and listening, non-blocking). Loop thread. On failure
    /// every descriptor is closed.
    init(loop: EventLoop, listening descriptors: [(fd: Int32, family: Int32)], port: Int, addresses: [SocketAddress],
         options: Options, unixPath: String? = nil,
         handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) throws {
        self.loop = loop
        self.state = LoopBound(State(), loop: loop)
        self.port = port
        self.addresses = addresses
        self.options = options
        self.handler = handler
        self.unixPath = unixPath
        self.unixIdentity = unixPath.flatMap { Socket.fileIdentity($0) }
        self.taskExecutor = loop.taskExecutor
        var listeners: [Listener] = []
        for (index, descriptor) in descriptors.enumerated() {
            do {
                // Strong: a listening server stays alive (and serving) until it or its loop closes;
                // the poll handle drops these closures when it closes.
                var listener: Listener?
                listener = try Listener(loop: loop, fileDescriptor: descriptor.fd, family: descriptor.family,
                                        ready: { if let listener { self.acceptReady(listener) } },
                                        closed: { self.listenerDidClose() })
                listeners.append(listener!)
            } catch {
                for listener in listeners { listener.close() }
                for rest in descriptors[index...] { Glibc.close(rest.fd) }
                throw error
            }
        }
        state.value.listeners = listeners
        state.value.openListeners = listeners.count
    }

    /// True while the server accepts connections: from `startServing` (or the start, with
    /// `startServing: true`) until `close()` or the loop's close.
    public var isServing: Bool { serving.load(ordering: .relaxed) }

    /// Connections accepted and not yet closed.
    public var activeConnections: Int { connectionCount.load(ordering: .relaxed) }

    /// Starts accepting (asyncio's `start_serving`), for a server started with
    /// `startServing: false`: until then clients wait in the listen backlog. Nothing when it
    /// serves already. Callable from any thread.
    /// - Throws: `StreamError.closed` once the server is closed; `EventLoopError.loopClosed`.
    public func startServing() throws {
        if loop.isClosed { throw EventLoopError.loopClosed }
        if closed.load(ordering: .relaxed) { throw StreamError.closed }
        if serving.exchange(true, ordering: .relaxed) { return }
        if !loop.execute({ self.beginServing() }) { throw EventLoopError.loopClosed }
    }

    /// Serves until the calling task is cancelled, then closes the server and throws
    /// `CancellationError` (asyncio's `serve_forever`); returns when the server is closed otherwise
    /// (by `close()`, `shutdown`, or the loop's close). Starts serving first when it did not yet.
    /// - Throws: `CancellationError`; `StreamError.closed` for a server closed before the call.
    public func serveForever() async throws {
        try startServing()
        let state = self.state
        do {
            try await loop.onLoop {
                try await self.loop.waitUntilClosed(
                    isClosed: { state.value.closing },
                    register: { id, continuation in state.value.stopWaiters.add(id, continuation) },
                    makeID: { state.value.stopWaiters.makeID() },
                    cancel: { id in state.value.stopWaiters.cancel(id) })
            }
        } catch is CancellationError {
            close()
            throw CancellationError()
        } catch EventLoopError.loopClosed {
            // The loop's close closed the server.
        }
    }

    /// Stops listening: no new connection is accepted; those already accepted go on. A Unix
    /// server's socket file is removed. Idempotent; callable from any thread.
    public func close() {
        serving.store(false, ordering: .relaxed)
        closed.store(true, ordering: .relaxed)
        loop.execute { self.closeListeners() }
    }

    /// Graceful shutdown with a deadline: stops accepting now; the handlers get `gracePeriod`
    /// seconds to finish (and their connections to close); then the remaining connections are
    /// aborted (reset; their pending and later reads and writes throw `UVError.ECANCELED`) and
    /// the remaining handler tasks cancelled. Returns when every connection is gone (and, when
    /// all finished in time, every handler has returned). A negative or NaN grace period is 0;
    /// `.infinity` waits for the handlers however long they take. Cancelling the calling task
    /// cuts at once. Returns at once when the loop is closed.
    public func shutdown(gracePeriod: Double) async {
        close()
        let grace = gracePeriod.isNaN ? 0 : max(gracePeriod, 0)
        let state = self.state
        await withTaskCancellationHandler {
            _ = try? await loop.onLoop {
                try self.loop.checkLoopThread()
                guard !state.value.isCutDown else { return }
                if grace == 0 {
                    self.cutRemaining()
                } else if grace.isFinite, state.value.graceTimer == nil {
                    state.value.graceTimer = self.loop.callLater(grace) { self.cutRemaining() }
                }
                guard !state.value.isCutDown else { return }
                await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                    state.value.shutdownWaiters.append(continuation)
                }
            }
        } onCancel: {
            loop.execute { self.cutRemaining() }
        }
    }

    /// Closes every accepted connection gracefully (each sends what it buffered first).
    /// Callable from any thread.
    public func closeClients() {
        loop.execute { for transport in self.state.value.connections.values { transport.close() } }
    }

    /// Closes every accepted connection at once (TCP connections are reset).
    /// Callable from any thread.
    public func abortClients() {
        loop.execute { for transport in self.state.value.connections.values { transport.abort() } }
    }

    /// Waits until `close()` was called, the listeners are closed, every accepted connection has
    /// closed and every handler has returned (asyncio 3.12's semantics: "all active connections
    /// have finished"). Returns at once when the loop is closed.
    /// - Throws: `CancellationError` when the waiting task is cancelled (the server is untouched:
    ///   it goes on closing, or serving).
    public func waitClosed() async throws {
        let state = self.state
        do {
            try await loop.onLoop {
                try await self.loop.waitUntilClosed(
                    isClosed: { state.value.isFinished },
                    register: { id, continuation in state.value.closeWaiters.add(id, continuation) },
                    makeID: { state.value.closeWaiters.makeID() },
                    cancel: { id in state.value.closeWaiters.cancel(id) })
            }
        } catch EventLoopError.loopClosed {
            // The loop's close closed the server and its connections.
        }
    }

    // MARK: Loop thread: serving and closing

    private func beginServing() {
        guard !state.value.closing, !state.value.serving else { return }
        state.value.serving = true
        watchIfAdmitting()
    }

    /// Watches the listeners unless something holds accepting back.
    private func watchIfAdmitting() {
        let current = state.value
        guard current.serving, !current.closing, !current.pausedAtCapacity, current.backoff == nil else { return }
        for listener in current.listeners { listener.watch() }
    }

    private func unwatchAll() {
        for listener in state.value.listeners { listener.unwatch() }
    }

    private func closeListeners() {
        serving.store(false, ordering: .relaxed)
        closed.store(true, ordering: .relaxed)
        guard !state.value.closing else { return }
        state.value.closing = true
        state.value.serving = false
        state.value.backoff?.cancel()
        state.value.backoff = nil
        for listener in state.value.listeners { listener.close() }
        state.value.listeners = []
        removeSocketFile()
        state.value.stopWaiters.resumeAll()
        resumeWaitersIfDone()
    }

    private func removeSocketFile() {
        if let unixPath, let unixIdentity { Socket.unlink(unixPath, ifIdentity: unixIdentity) }
    }

    private func listenerDidClose() {
        // Also reached when the loop's close() closed the listener under us.
        if !state.value.closing {
            for listener in state.value.listeners where !listener.isClosing { listener.close() }
            closeListeners()
        }
        state.value.openListeners -= 1
        resumeWaitersIfDone()
    }

    private func resumeWaitersIfDone() {
        if state.value.isFinished, !state.value.closeWaiters.isEmpty {
            state.value.closeWaiters.resumeAll()
        }
        if state.value.isCutDown, !state.value.shutdownWaiters.isEmpty {
            state.value.graceTimer?.cancel()
            state.value.graceTimer = nil
            let waiters = state.value.shutdownWaiters
            state.value.shutdownWaiters = []
            for waiter in waiters { waiter.resume() }
        }
    }

    /// The end of `shutdown`'s grace: every connection is aborted, then every handler task still
    /// running is cancelled (in that order: a handler's waits on its own connection skip the
    /// cancellation handler, and the abort is what wakes them).
    private func cutRemaining() {
        guard !state.value.cut else { return }
        state.value.cut = true
        state.value.graceTimer?.cancel()
        state.value.graceTimer = nil
        let cut = UVError(code: UVError.ECANCELED.code, operation: "the server's shutdown grace period ended")
        for transport in state.value.connections.values { transport.abort(failing: cut) }
        for task in state.value.handlers.values { task.cancel() }
        resumeWaitersIfDone()
    }

    // MARK: Loop thread: accepting

    /// A listener has connections waiting: accept them while there is room.
    private func acceptReady(_ listener: Listener) {
        while state.value.serving {
            if let cap = options.maxConnections, state.value.connections.count >= cap {
                state.value.pausedAtCapacity = true
                unwatchAll()
                return
            }
            let (fd, peer) = listener.accept()
            if fd >= 0 {
                state.value.backoffDelay = 0
                adopt(fd, from: listener, peer: peer)
                continue
            }
            switch -fd {
            case EAGAIN, EWOULDBLOCK:
                return
            case ECONNABORTED, EPROTO, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH:
                continue   // that client went away before it was accepted (accept(2) says retry)
            default:
                // EMFILE, ENFILE, ENOBUFS, ENOMEM, or a listener gone wrong: never spin on it.
                backOff(UVError(errno: -fd, operation: "accept"))
                return
            }
        }
    }

    /// Stops accepting for a while (10 ms, doubling up to 1 s while failures go on): the clients
    /// wait in the listen backlog meanwhile. Reports to the exception handler at most once a second.
    private func backOff(_ error: UVError) {
        unwatchAll()
        let delay = state.value.backoffDelay == 0 ? 0.01 : min(state.value.backoffDelay * 2, 1)
        state.value.backoffDelay = delay
        state.value.unreportedFailures += 1
        state.value.backoff?.cancel()
        state.value.backoff = loop.callLater(delay) { [self] in
            state.value.backoff = nil
            watchIfAdmitting()
        }
        let now = loop.time()
        guard now - state.value.lastFailureReport >= 1 else { return }
        let failures = state.value.unreportedFailures
        state.value.unreportedFailures = 0
        state.value.lastFailureReport = now
        loop.callExceptionHandler(ExceptionContext(
            message: "Could not accept \(failures == 1 ? "a connection" : "\(failures) connections") on "
                + "\(addresses.first.map { "\($0)" } ?? "a server"): accepting paused for \(delay) s "
                + "(the clients wait in the listen backlog; reports are limited to one a second)",
            error: error))
    }

    /// Wraps an accepted descriptor in a transport and starts its handler.
    private func adopt(_ fd: Int32, from listener: Listener, peer: UVSocketAddress?) {
        let transport: StreamTransport
        do {
            transport = try StreamTransport.adopting(loop: loop, connected: fd, family: listener.family, limit: options.limit,
                                                     local: listener.acceptedLocalAddress, peer: peer,
                                                     hasNoDelay: listener.acceptedHaveNoDelay)
        } catch {
            Glibc.close(fd)
            loop.callExceptionHandler(ExceptionContext(message: "Error setting up an accepted connection", error: error))
            return
        }
        let id = ObjectIdentifier(transport)
        state.value.connections[id] = transport
        connectionCount.add(1, ordering: .relaxed)
        if let idleTimeout = options.idleTimeout {
            transport.tracksActivity = true
            transport.lastActivity = loop.uvLoop.now
            if state.value.idleSweep == nil { scheduleIdleSweep(after: idleTimeout) }
        }
        // Strong: the transport drops the hook when it closes, which every transport does (at
        // the latest when the loop closes). A weak reference would give the server a side
        // table, which LeakSanitizer reports when the server is still alive at exit.
        transport.onClosed = { [self] closed, successor in connectionDidClose(closed, successor: successor) }
        let key = state.value.nextHandlerID
        state.value.nextHandlerID &+= 1
        // Only `shutdown` cancels this task, and only after aborting its connection, whose abort
        // wakes every wait the task makes on it: so those waits skip the cancellation handler.
        // The faces are made in the task, so its closure holds three values (B11).
        let task = Task(executorPreference: taskExecutor) { [self, transport, key] in
            // On the loop (its executor), unless the loop closed meanwhile.
            if loop.inLoopThread { withUnsafeCurrentTask { transport.uncancellableTask = $0 } }
            let (reader, writer) = transport.makeStreams()
            await handler(reader, writer)
            if loop.inLoopThread {
                transport.uncancellableTask = nil
                handlerDidReturn(key)
            }
        }
        state.value.handlers[key] = task
    }

    private func handlerDidReturn(_ key: UInt64) {
        state.value.handlers.removeValue(forKey: key)
        resumeWaitersIfDone()
    }

    /// A connection closed, or `startTLS` handed it over to `successor` (which takes its place).
    private func connectionDidClose(_ transport: StreamTransport, successor: StreamTransport?) {
        guard state.value.connections.removeValue(forKey: ObjectIdentifier(transport)) != nil else { return }
        if let successor {
            state.value.connections[ObjectIdentifier(successor)] = successor
            return
        }
        connectionCount.subtract(1, ordering: .relaxed)
        if state.value.connections.isEmpty, let sweep = state.value.idleSweep {
            // Nothing to sweep; and a timer kept here would hold the server through its closure.
            sweep.cancel()
            state.value.idleSweep = nil
        }
        if state.value.pausedAtCapacity, let cap = options.maxConnections, state.value.connections.count < cap {
            state.value.pausedAtCapacity = false
            watchIfAdmitting()
        }
        resumeWaitersIfDone()
    }

    // MARK: Loop thread: idle deadline

    private func scheduleIdleSweep(after delay: Double) {
        state.value.idleSweep = loop.callLater(delay) { [self] in sweepIdle() }
    }

    /// Aborts the connections idle for `idleTimeout`, and runs again at the next one's deadline
    /// (not sooner than a sixteenth of the timeout: one scan serves many deadlines).
    private func sweepIdle() {
        state.value.idleSweep = nil
        guard let idleTimeout = options.idleTimeout, !state.value.connections.isEmpty else { return }
        let now = loop.uvLoop.now
        // uv_now is floored to the millisecond: one more keeps the deadline from coming early.
        let allowed = UInt64((idleTimeout * 1000).rounded(.up)) + 1
        var nextDue = UInt64.max
        for transport in state.value.connections.values where transport.state == .open {
            let due = transport.lastActivity &+ allowed
            if due <= now {
                transport.timeOut(after: idleTimeout)
            } else {
                nextDue = min(nextDue, due)
            }
        }
        guard nextDue != .max else { return }
        scheduleIdleSweep(after: max(Double(nextDue - now) / 1000, idleTimeout / 16))
    }
}
