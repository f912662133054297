import Glibc

/// A child process started by `createSubprocessExec`/`createSubprocessShell` (asyncio.subprocess.Process).
///
/// Thread-safe. The child is registered with the policy's child watcher; its termination is
/// recorded once and resolves every `wait()`. A `ChildProcess` dropped while its child runs
/// leaves no zombie: the watcher keeps it until the exit and reaps it.
public final class ChildProcess: Sendable {
    /// The child's process id.
    public let pid: pid_t

    /// Whether the child was started with a pseudo-terminal (`Stdio.pty`).
    let hasTerminal: Bool

    /// Whether the child leads its own process group (started with `startNewSession`, with
    /// `processGroup: 0`, or with a `.pty`): then `terminate(gracePeriod:)` signals the whole group.
    public let leadsProcessGroup: Bool

    /// The loop that spawned the child; its timers time `wait(timeout:)` and the grace period.
    let loop: EventLoop

    /// The parent's end of the child's standard input, for `.pipe` (nil otherwise).
    public var stdin: StreamWriter? { pipes.withLock { $0.stdin } }
    /// The parent's end of the child's standard output, for `.pipe` (nil otherwise).
    public var stdout: StreamReader? { pipes.withLock { $0.stdout } }
    /// The parent's end of the child's standard error, for `.pipe` (nil otherwise).
    public var stderr: StreamReader? { pipes.withLock { $0.stderr } }

    struct Pipes: Sendable {
        var stdin: StreamWriter?
        var stdout: StreamReader?
        var stderr: StreamReader?
    }

    /// Set once, on the loop thread, right after the spawn.
    let pipes = LockedValue(Pipes())

    private typealias Waiter = CheckedContinuation<Termination, any Error>

    private struct State: Sendable {
        var termination: Termination?
        /// The pseudo-terminal's master, for `.pty` children, until the child is reaped.
        var terminal: Int32?
        /// The pid's claim against the orphan reaper, until the exit is known.
        var claim: ChildClaim?
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }

    /// Guards the termination and the waiters. Taken before the reaper's lock in `sendSignal`,
    /// never while holding it.
    private let state = LockedValue(State())
    /// How signals reach the child (through its pidfd for libuv-reaped children).
    private let signaller: ChildSignaller
    /// How signals reach the group the child leads, while the child is unreaped.
    private let groupSignaller: GroupSignaller

    /// - Parameter terminal: the `.pty` master this object then owns (closed at the reap).
    init(pid: pid_t, loop: EventLoop, claim: ChildClaim? = nil, leadsProcessGroup: Bool, terminal: Int32? = nil,
         signaller: @escaping ChildSignaller = Reaper.system.signal,
         groupSignaller: @escaping GroupSignaller = { try Reaper.system.signalGroup($0, $1) }) {
        self.pid = pid
        self.loop = loop
        self.leadsProcessGroup = leadsProcessGroup
        self.hasTerminal = terminal != nil
        self.signaller = signaller
        self.groupSignaller = groupSignaller
        state.withLock { state in
            state.terminal = terminal
            state.claim = claim
        }
    }

    deinit {
        if let terminal = state.withLock({ $0.terminal }) { System.closeDescriptor(terminal) }
    }

    /// How the child ended, once the watcher reported it; nil before.
    public var termination: Termination? { state.withLock { $0.termination } }

    /// The return code once the watcher reported the exit (minus the signal number when a signal
    /// killed the child), nil before.
    public var returnCode: Int32? { termination?.returnCode }

    /// Called by the watcher's callback, on any thread: records the exit and resumes the waiters.
    func didExit(_ termination: Termination) {
        let (waiters, terminal) = state.withLock { state -> ([Waiter], Int32?) in
            guard state.termination == nil else { return ([], nil) }
            state.termination = termination
            defer { state.waiters = [:]; state.terminal = nil; state.claim = nil }
            return (Array(state.waiters.values), state.terminal)
        }
        // The streams hold their own copies of the master: what the child wrote stays readable.
        if let terminal { System.closeDescriptor(terminal) }
        for waiter in waiters { waiter.resume(returning: termination) }
    }

    /// Waits for the child to exit and returns its return code; later calls return the same value.
    ///
    /// Resolves when the process exits, whatever its pipes do: a grandchild holding stdout open
    /// does not hold it up (asyncio waits for the pipes too; UVLoop does not).
    /// - Throws: `CancellationError` when the waiting task is cancelled (the child is untouched).
    public func wait() async throws -> Int32 {
        try await awaitTermination(deadline: nil, cancellable: true).returnCode
    }

    /// `wait()` with a deadline on the loop's clock: the return code if the child exits within
    /// `timeout` seconds (zero or less: only if it has already exited; `.infinity`: `wait()`).
    /// - Throws: `TimeoutError` when the time passes first (the child keeps running, untouched);
    ///   `CancellationError` when the waiting task is cancelled; `EventLoopError.invalidArgument`
    ///   for NaN; `EventLoopError.loopClosed` when the spawning loop closes during the wait.
    public func wait(timeout: Double) async throws -> Int32 {
        guard !timeout.isNaN else { throw EventLoopError.invalidArgument }
        let deadline = timeout == .infinity ? nil : loop.time() + timeout
        return try await awaitTermination(deadline: deadline, cancellable: true).returnCode
    }

    /// Ends the child and waits for its reap: SIGTERM, then after `gracePeriod` seconds, if it
    /// has not exited, SIGKILL; returns its return code.
    ///
    /// When the child leads a process group (`leadsProcessGroup`) both signals go to the whole
    /// group, so a shell's grandchildren end with it; a member that left the group (by `setsid`
    /// or `setpgid`) is not reached. Signals are sent only while the child is unreaped: its pid,
    /// and its group's id, cannot then belong to anyone else. Once the child is reaped nothing is
    /// sent, so group members that survived the SIGTERM while the leader died are not killed (the
    /// group's id could already be recycled; a subreaper, `becomeChildSubreaper()`, reaps them).
    /// An exited child's code is returned at once, without a signal.
    ///
    /// Not cancellable: a teardown, once started, always finishes (in at most `gracePeriod` plus
    /// the time the kernel takes to kill), so a cancelled task can call it to clean up; it then
    /// returns normally.
    /// - Throws: `EventLoopError.invalidArgument` for a negative or NaN grace period (nothing is
    ///   sent); `UVError` from `kill` other than ESRCH (EPERM).
    public func terminate(gracePeriod: Double) async throws -> Int32 {
        guard !gracePeriod.isNaN, gracePeriod >= 0 else { throw EventLoopError.invalidArgument }
        if let code = returnCode { return code }
        try await signalChildOrGroup(SIGTERM)
        let deadline = gracePeriod == .infinity ? nil : loop.time() + gracePeriod
        do {
            return try await awaitTermination(deadline: deadline, cancellable: false).returnCode
        } catch is TimeoutError {
        } catch EventLoopError.loopClosed {
            // No timer left to wait on: escalate now rather than never.
        }
        try await signalChildOrGroup(SIGKILL)
        return try await awaitTermination(deadline: nil, cancellable: false).returnCode
    }

    /// Sends `signal` to the group the child leads, or to the child; nothing once it has exited.
    private func signalChildOrGroup(_ signal: Int32) async throws {
        do {
            if leadsProcessGroup {
                if termination == nil { try await groupSignaller(pid, signal) }
            } else {
                try sendSignal(signal)
            }
        } catch let error as UVError where error.code == UVError.ESRCH.code {
            // Exited, or reaped, meanwhile: the wait that follows returns its code.
        }
    }

    /// Waits for the termination, until `deadline` on the loop's clock when given.
    /// - Throws: `TimeoutError` at the deadline; `CancellationError` when `cancellable` and the
    ///   task is cancelled; `EventLoopError.loopClosed` when the loop closes before the deadline.
    func awaitTermination(deadline: Double?, cancellable: Bool) async throws -> Termination {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        // Removes the waiter if it is still there, and resumes it with `error`.
        let abandon: @Sendable (any Error) -> Void = { [state] error in
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(throwing: error)
        }
        let timer = LockedValue<TimerHandle?>(nil)
        defer { timer.withLock { $0 }?.cancel() }
        let wait = {
            try await withCheckedThrowingContinuation { (continuation: Waiter) in
                enum Registered { case exited(Termination), cancelled, expired, waiting }
                let registered = self.state.withLock { state -> Registered in
                    if let termination = state.termination { return .exited(termination) }
                    if cancellable && Task.isCancelled { return .cancelled }
                    if let deadline, deadline <= self.loop.time() { return .expired }
                    state.waiters[id] = continuation
                    return .waiting
                }
                switch registered {
                case .exited(let termination): continuation.resume(returning: termination)
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .expired: continuation.resume(throwing: TimeoutError())
                case .waiting:
                    guard let deadline else { return }
                    let handle = self.loop.scheduleTimer(at: deadline, onLoopClose: {
                        abandon(EventLoopError.loopClosed)
                    }) {
                        abandon(TimeoutError())
                    }
                    timer.withLock { $0 = handle }
                    // A closed loop hands back a cancelled timer that never fires.
                    if handle.isCancelled { abandon(EventLoopError.loopClosed) }
                }
            }
        }
        guard cancellable else { return try await wait() }
        return try await withTaskCancellationHandler(operation: wait) {
            abandon(CancellationError())
        }
    }

    /// Sends `signal` to the child.
    /// - Throws: `UVError.ESRCH` once the exit is known or the child has been reaped (its pid may
    ///   already belong to another process: it is never signalled); `UVError.EINVAL` for an
    ///   invalid signal number.
    public func sendSignal(_ signal: Int32) throws {
        try state.withLock { state in
            if state.termination != nil {
                throw UVError(code: UVError.ESRCH.code, operation: "sendSignal: process \(pid) has exited")
            }
            try signaller(pid, signal)
        }
    }

    /// Sets the size of the child's pseudo-terminal (`Stdio.pty`); the kernel sends SIGWINCH to
    /// the terminal's foreground process group. 0 means unknown, as for the kernel.
    /// - Throws: `UVError.ENOTTY` for a child without a pseudo-terminal;
    ///   `EventLoopError.invalidArgument` for a size outside 0...65535; `UVError.ESRCH` once the
    ///   child has been reaped (its terminal is closed then).
    public func setTerminalSize(rows: Int, columns: Int) throws {
        guard let rows = UInt16(exactly: rows), let columns = UInt16(exactly: columns) else {
            throw EventLoopError.invalidArgument
        }
        try state.withLock { state in
            guard let terminal = state.terminal else {
                if state.termination != nil && hasTerminal {
                    throw UVError(code: UVError.ESRCH.code, operation: "setTerminalSize: process \(pid) has exited")
                }
                throw UVError(code: UVError.ENOTTY.code, operation: "setTerminalSize: process \(pid) has no pseudo-terminal")
            }
            try System.setWindowSize(terminal, rows: rows, columns: columns)
        }
    }

    /// Sends SIGTERM. - Throws: as `sendSignal`.
    public func terminate() throws { try sendSignal(SIGTERM) }

    /// Sends SIGKILL. - Throws: as `sendSignal`.
    public func kill() throws { try sendSignal(SIGKILL) }
}

extension ChildProcess: CustomStringConvertible {
    /// asyncio's form: `<ChildProcess pid=N running>` or `<ChildProcess pid=N returncode=R>`.
    public var description: String {
        if let code = returnCode { return "<ChildProcess pid=\(pid) returncode=\(code)>" }
        return "<ChildProcess pid=\(pid) running>"
    }
}
