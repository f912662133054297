import Glibc

/// A child process started by `createSubprocessExec`/`createSubprocessShell` (asyncio.subprocess.Process).
///
/// Thread-safe. The child is registered with the policy's child watcher; its exit is recorded
/// once and resolves every `wait()`. A `ChildProcess` dropped while its child runs leaves no
/// zombie: the watcher keeps it until the exit and reaps it.
public final class ChildProcess: Sendable {
    /// The child's process id.
    public let pid: pid_t

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

    private struct State: Sendable {
        var returnCode: Int32?
        var waiters: [UInt64: CheckedContinuation<Int32, any Error>] = [:]
        var nextWaiter: UInt64 = 0
    }

    /// Guards the exit status and the waiters. Taken before the reaper's lock in `sendSignal`,
    /// never while holding it.
    private let state = LockedValue(State())
    /// How signals reach the child (through its pidfd for libuv-reaped children).
    private let signaller: ChildSignaller

    init(pid: pid_t, signaller: @escaping ChildSignaller = Reaper.system.signal) {
        self.pid = pid
        self.signaller = signaller
    }

    /// The return code once the watcher reported the exit (minus the signal number when a signal
    /// killed the child), nil before.
    public var returnCode: Int32? { state.withLock { $0.returnCode } }

    /// Called by the watcher's callback, on any thread: records the exit and resumes the waiters.
    func didExit(returnCode: Int32) {
        let waiters = state.withLock { state -> [CheckedContinuation<Int32, any Error>] in
            guard state.returnCode == nil else { return [] }
            state.returnCode = returnCode
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: returnCode) }
    }

    /// Waits for the child to exit and returns its return code; later calls return the same value.
    ///
    /// Resolves when the process exits, whatever its pipes do: a grandchild holding stdout open
    /// does not hold it up (asyncio waits for the pipes too; UVLoop does not).
    /// - Throws: `CancellationError` when the waiting task is cancelled (the child is untouched).
    public func wait() async throws -> Int32 {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                enum Registered { case exited(Int32), cancelled, waiting }
                let registered = state.withLock { state -> Registered in
                    if let code = state.returnCode { return .exited(code) }
                    if Task.isCancelled { return .cancelled }
                    state.waiters[id] = continuation
                    return .waiting
                }
                switch registered {
                case .exited(let code): continuation.resume(returning: code)
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .waiting: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Sends `signal` to the child.
    /// - Throws: `UVError.ESRCH` once the exit is known or the child has been reaped (its pid may
    ///   already belong to another process: it is never signalled); `UVError.EINVAL` for an
    ///   invalid signal number.
    public func sendSignal(_ signal: Int32) throws {
        try state.withLock { state in
            if state.returnCode != nil {
                throw UVError(code: UVError.ESRCH.code, operation: "sendSignal: process \(pid) has exited")
            }
            try signaller(pid, signal)
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
