import Synchronization

/// A listening server made by `EventLoop.startServer` or `startUnixServer` (asyncio.Server).
///
/// Each accepted connection gets its own task, running on the server's loop, that calls the
/// handler with the connection's reader and writer. The connection closes when the handler has
/// dropped both (or closed the writer). `close()` stops accepting; connections already accepted
/// go on until they close (`closeClients()`/`abortClients()` end them).
///
/// - Warning: The server's state lives on its loop's thread; every method may be called from any
///   thread (calls from elsewhere are posted to the loop).
public final class Server: Sendable {
    /// The bound port (the one the kernel chose when 0 was asked); 0 for a Unix-socket server.
    public let port: Int
    /// The listening addresses (one per address `host` resolved to), or the socket's path.
    public let addresses: [SocketAddress]

    let loop: EventLoop
    private let handler: @Sendable (StreamReader, StreamWriter) async -> Void
    private let serving = Atomic<Bool>(true)
    private let connectionCount = Atomic<Int>(0)
    /// Runs the handler tasks on the loop without serial isolation (see `LoopTaskExecutor`).
    private let taskExecutor: LoopTaskExecutor
    /// A Unix server's socket file, removed when the server closes if it is still ours.
    private let unixPath: String?
    private let unixIdentity: (device: UInt64, inode: UInt64)?

    /// What only the loop's thread touches.
    private struct State {
        var listeners: [UVStream]
        var openListeners: Int
        var closing = false
        var connections: [ObjectIdentifier: StreamTransport] = [:]
        /// Handler tasks that have not returned yet.
        var runningHandlers = 0
        var closeWaiters = CloseWaiters()

        var isFinished: Bool { closing && openListeners == 0 && connections.isEmpty && runningHandlers == 0 }
    }

    private let state: LoopBound<State>

    /// Takes over listening handles (bound, not yet listening). Loop thread.
    init(loop: EventLoop, listeners: [UVStream], port: Int, addresses: [SocketAddress],
         unixPath: String? = nil, handler: @escaping @Sendable (StreamReader, StreamWriter) async -> Void) {
        self.loop = loop
        self.state = LoopBound(State(listeners: listeners, openListeners: listeners.count), loop: loop)
        self.port = port
        self.addresses = addresses
        self.handler = handler
        self.unixPath = unixPath
        self.unixIdentity = unixPath.flatMap { Socket.fileIdentity($0) }
        self.taskExecutor = loop.taskExecutor
        for listener in listeners {
            // Strong: a listening server stays alive (and serving) until it or its loop closes.
            listener.onConnection = { status in self.accept(from: listener, status: status) }
            listener.onClose = { self.listenerDidClose() }
        }
    }

    /// Starts listening on every handle. On failure, every handle is closed. Loop thread.
    func listen(backlog: Int32) throws(UVError) {
        for listener in state.value.listeners {
            do {
                try listener.listen(backlog: backlog)
            } catch {
                closeListeners()
                throw error
            }
        }
    }

    /// True until `close()` (or the loop's close).
    public var isServing: Bool { serving.load(ordering: .relaxed) }

    /// Connections accepted and not yet closed.
    public var activeConnections: Int { connectionCount.load(ordering: .relaxed) }

    /// Stops listening: no new connection is accepted; those already accepted go on. A Unix
    /// server's socket file is removed. Idempotent; callable from any thread.
    public func close() {
        serving.store(false, ordering: .relaxed)
        loop.execute { self.closeListeners() }
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

    // MARK: Loop thread

    private func closeListeners() {
        serving.store(false, ordering: .relaxed)
        guard !state.value.closing else { return }
        state.value.closing = true
        for listener in state.value.listeners { listener.close() }
        state.value.listeners = []
        removeSocketFile()
    }

    private func removeSocketFile() {
        if let unixPath, let unixIdentity { Socket.unlink(unixPath, ifIdentity: unixIdentity) }
    }

    private func listenerDidClose() {
        // Also reached when the loop's close() closed the listener under us.
        serving.store(false, ordering: .relaxed)
        if !state.value.closing {
            state.value.closing = true
            for listener in state.value.listeners where !listener.isClosing { listener.close() }
            state.value.listeners = []
            removeSocketFile()
        }
        state.value.openListeners -= 1
        resumeWaitersIfDone()
    }

    private func resumeWaitersIfDone() {
        guard state.value.isFinished, !state.value.closeWaiters.isEmpty else { return }
        state.value.closeWaiters.resumeAll()
    }

    private func accept(from listener: UVStream, status: Int32) {
        if status < 0 {
            // EMFILE and friends: libuv keeps listening; report and go on (asyncio logs it too).
            loop.callExceptionHandler(ExceptionContext(
                message: "Error accepting a connection on \(addresses.first.map { "\($0)" } ?? "a server")",
                error: UVError(code: status, operation: "accept")))
            return
        }
        do {
            let transport: StreamTransport
            if listener is UVTCP {
                let client = try UVTCP(loop: loop.uvLoop)
                do { try listener.accept(into: client) } catch { client.close(); throw error }
                transport = try StreamTransport.connectedTCP(loop: loop, tcp: client)
            } else {
                let client = try UVPipe(loop: loop.uvLoop)
                do { try listener.accept(into: client) } catch { client.close(); throw error }
                transport = try StreamTransport.connectedUnix(loop: loop, pipe: client)
            }
            let id = ObjectIdentifier(transport)
            state.value.connections[id] = transport
            connectionCount.add(1, ordering: .relaxed)
            // Strong: the transport drops the hook when it closes, which every transport does (at
            // the latest when the loop closes). A weak reference would give the server a side
            // table, which LeakSanitizer reports when the server is still alive at exit.
            transport.onClosed = { [self] in connectionDidClose(id) }
            let (reader, writer) = transport.makeStreams()
            let handler = self.handler
            state.value.runningHandlers += 1
            // The task's handle is dropped: nothing can cancel it (as in asyncio, closing the
            // server does not cancel handlers), which lets its waits skip cancellation handlers.
            Task(executorPreference: taskExecutor) {
                // On the loop (its executor), unless the loop closed meanwhile.
                if self.loop.inLoopThread { withUnsafeCurrentTask { transport.uncancellableTask = $0 } }
                await handler(reader, writer)
                if self.loop.inLoopThread {
                    transport.uncancellableTask = nil
                    self.handlerDidReturn()
                }
            }
        } catch {
            loop.callExceptionHandler(ExceptionContext(message: "Error setting up an accepted connection", error: error))
        }
    }

    private func handlerDidReturn() {
        state.value.runningHandlers -= 1
        resumeWaitersIfDone()
    }

    private func connectionDidClose(_ id: ObjectIdentifier) {
        guard state.value.connections.removeValue(forKey: id) != nil else { return }
        connectionCount.subtract(1, ordering: .relaxed)
        resumeWaitersIfDone()
    }
}
