/// The tasks waiting in `waitClosed()` for one server or stream, each removable when its task is
/// cancelled. Loop thread only (it lives in confined state).
struct CloseWaiters {
    private var waiters: [UInt64: UnsafeContinuation<Void, any Error>] = [:]
    private var nextID: UInt64 = 0

    var isEmpty: Bool { waiters.isEmpty }

    mutating func makeID() -> UInt64 {
        nextID &+= 1
        return nextID
    }

    mutating func add(_ id: UInt64, _ continuation: UnsafeContinuation<Void, any Error>) {
        waiters[id] = continuation
    }

    /// Ends one wait with `CancellationError` (nothing when it ended already).
    mutating func cancel(_ id: UInt64) {
        waiters.removeValue(forKey: id)?.resume(throwing: CancellationError())
    }

    /// Ends every wait: the thing waited for has closed.
    mutating func resumeAll() {
        let ended = waiters.values
        waiters = [:]
        for waiter in ended { waiter.resume() }
    }
}

extension EventLoop {
    /// Waits, on the loop's thread, until `register` has stored the continuation somewhere that
    /// resumes it on close, or the task is cancelled (`cancel` runs on the loop's thread then).
    /// `isClosed` is asked first: true returns at once.
    func waitUntilClosed(isClosed: () -> Bool, register: (UInt64, UnsafeContinuation<Void, any Error>) -> Void,
                         makeID: () -> UInt64, cancel: @escaping @Sendable (UInt64) -> Void) async throws {
        try checkLoopThread()
        guard !isClosed() else { return }
        let id = makeID()
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                guard (try? checkLoopThread()) != nil else { return continuation.resume() }
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                register(id, continuation)
            }
        } onCancel: {
            self.execute { cancel(id) }
        }
    }
}
