import Glibc

/// Happy Eyeballs (RFC 8305) for `openConnection`: the addresses a name resolved to, families
/// interleaved (the first answer's family first), are tried in turn; the next attempt starts when
/// the previous one has not connected after `staggerDelay`, or at once when it failed. The first
/// attempt that connects wins and every other is closed. When every attempt fails (or the
/// deadline passes), the error names each address's failure. With no stagger delay, the attempts
/// run one after another. Made and run on the loop thread.
final class ConnectRace: Sendable {
    private struct State {
        /// The addresses not tried yet, in order.
        var queue: ArraySlice<UVSocketAddress>
        /// Attempts in flight, by their index.
        var running: [Int: (tcp: UVTCP, address: UVSocketAddress)] = [:]
        var started = 0
        var failures: [(address: SocketAddress, error: UVError)] = []
        var continuation: UnsafeContinuation<Void, any Error>?
        /// The attempt that connected, taken by `run` once resumed.
        var winner: UVTCP?
        var staggerTimer: TimerHandle?
        var deadlineTimer: TimerHandle?
        var finished = false
    }

    private let state: LoopBound<State>
    private let staggerDelay: Double?
    private let timeout: Double?
    private let localAddresses: [UVSocketAddress]
    /// "connect(host port N)", the start of the error's text.
    private let operation: String

    init(loop: EventLoop, addresses: [UVSocketAddress], staggerDelay: Double?, timeout: Double?,
         localAddresses: [UVSocketAddress], operation: String) {
        state = LoopBound(State(queue: ConnectRace.interleaved(addresses)[...]), loop: loop)
        self.staggerDelay = staggerDelay
        self.timeout = timeout
        self.localAddresses = localAddresses
        self.operation = operation
    }

    /// RFC 8305 section 4: alternate the families, starting with the first address's.
    static func interleaved(_ addresses: [UVSocketAddress]) -> [UVSocketAddress] {
        guard let first = addresses.first else { return [] }
        let preferred = addresses.filter { $0.family == first.family }
        let other = addresses.filter { $0.family != first.family }
        var result: [UVSocketAddress] = []
        result.reserveCapacity(addresses.count)
        for index in 0..<max(preferred.count, other.count) {
            if index < preferred.count { result.append(preferred[index]) }
            if index < other.count { result.append(other[index]) }
        }
        return result
    }

    /// Races the attempts; returns the connected handle. Loop thread.
    /// - Throws: `UVError` naming every address's failure (ETIMEDOUT past the deadline);
    ///   `CancellationError`; `EventLoopError.loopClosed`.
    func run() async throws -> UVTCP {
        let loop = state.loop
        try loop.checkLoopThread()
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                do { try loop.checkLoopThread() } catch { return continuation.resume(throwing: error) }
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                state.value.continuation = continuation
                if let timeout {
                    state.value.deadlineTimer = loop.callLater(timeout) { [self] in
                        finish(.failure(combinedError(timedOut: timeout)))
                    }
                }
                launchNext()
            }
        } onCancel: {
            _ = loop.schedule { self.finish(.failure(CancellationError())) }
        }
        try loop.checkLoopThread()
        guard let winner = state.value.winner else { throw EventLoopError.loopClosed }
        state.value.winner = nil
        return winner
    }

    /// Starts the next attempt that can start (skipping those that fail at once), and arms the
    /// stagger timer for the one after; ends the race when nothing is left to wait for.
    private func launchNext() {
        guard !state.value.finished else { return }
        state.value.staggerTimer?.cancel()
        state.value.staggerTimer = nil
        while let address = state.value.queue.popFirst() {
            let index = state.value.started
            state.value.started += 1
            do {
                let tcp = try start(address, index: index)
                state.value.running[index] = (tcp, address)
                if let staggerDelay, !state.value.queue.isEmpty {
                    state.value.staggerTimer = state.loop.callLater(staggerDelay) { [self] in launchNext() }
                }
                return
            } catch {
                state.value.failures.append((SocketAddress(address), error))
            }
        }
        if state.value.running.isEmpty { finish(.failure(combinedError(timedOut: nil))) }
    }

    private func start(_ address: UVSocketAddress, index: Int) throws(UVError) -> UVTCP {
        let tcp = try UVTCP(loop: state.loop.uvLoop, family: address.family)
        do throws(UVError) {
            if !localAddresses.isEmpty {
                guard let local = localAddresses.first(where: { $0.family == address.family }) else {
                    throw UVError(errno: EAFNOSUPPORT, operation: "no local address of this family to bind")
                }
                try tcp.bind(local)
            }
            try tcp.connect(address) { [self] status in attemptDidFinish(index, address: address, status: status) }
            return tcp
        } catch {
            tcp.close()
            throw error
        }
    }

    private func attemptDidFinish(_ index: Int, address: UVSocketAddress, status: Int32) {
        // A loser closed by `finish` completes with ECANCELED: nothing more to do.
        guard !state.value.finished, let tcp = state.value.running.removeValue(forKey: index)?.tcp else { return }
        if status == 0 {
            finish(.success(tcp))
            return
        }
        tcp.close()
        state.value.failures.append((SocketAddress(address), UVError(code: status, operation: "connect")))
        launchNext()
    }

    /// Ends the race once: closes every other attempt and the timers, resumes the caller.
    private func finish(_ result: Result<UVTCP, any Error>) {
        guard !state.value.finished else { return }
        state.value.finished = true
        state.value.staggerTimer?.cancel()
        state.value.deadlineTimer?.cancel()
        state.value.staggerTimer = nil
        state.value.deadlineTimer = nil
        let winner = try? result.get()
        for attempt in state.value.running.values where attempt.tcp !== winner { attempt.tcp.close() }
        state.value.running = [:]
        state.value.queue = []
        let continuation = state.value.continuation
        state.value.continuation = nil
        switch result {
        case .success(let tcp):
            state.value.winner = tcp
            continuation?.resume()
        case .failure(let error):
            continuation?.resume(throwing: state.loop.isClosed ? EventLoopError.loopClosed : error)
        }
    }

    /// One error for the whole race: every address with its failure. Its code is ETIMEDOUT past
    /// the deadline, else the first address's failure.
    private func combinedError(timedOut: Double?) -> UVError {
        let failures = state.value.failures
        var parts = failures.map { "\($0.address): \($0.error.name) (\($0.error.message))" }
        let code: Int32
        if let timedOut {
            let waiting = state.value.running.sorted { $0.key < $1.key }.map { SocketAddress($0.value.address) }
            parts += waiting.map { "\($0): no answer within \(timedOut) s" }
            parts += state.value.queue.map { "\(SocketAddress($0)): not tried before the deadline" }
            code = UVError.ETIMEDOUT.code
        } else if let first = failures.first {
            code = first.error.code
        } else {
            code = UVError.EAI_NONAME.code
        }
        return UVError(code: code, operation: "\(operation): " + parts.joined(separator: "; "))
    }
}
