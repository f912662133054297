import CUVLoopOS

/// How a child process ended: its exit status, or the signal that killed it (Python's
/// `returncode`, split in two). `ChildProcess.termination` and `CompletedProcess.termination`.
///
/// Both reaping paths produce it: a wait status from `waitpid`/`waitid` (every watcher but
/// Libuv), and libuv's exit callback's exit status and signal number (`UVProcess`). `returnCode`
/// is asyncio's rule, and the one place it is computed.
public enum Termination: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The child called `exit` (or returned from `main`) with this status.
    case exited(Int32)
    /// A signal ended the child; `coreDumped` when it dumped core.
    case signaled(Int32, coreDumped: Bool)

    /// From a raw wait status. Only exits and deaths by signal are reported (UVLoop never waits
    /// with `WUNTRACED`/`WCONTINUED`); anything else is kept as `.exited(status)`.
    init(waitStatus status: Int32) {
        if cos_wifexited(status) != 0 {
            self = .exited(cos_wexitstatus(status))
        } else if cos_wifsignaled(status) != 0 {
            self = .signaled(cos_wtermsig(status), coreDumped: cos_wcoredump(status) != 0)
        } else {
            self = .exited(status)
        }
    }

    /// From libuv's exit callback (`exit_status`, `term_signal`); libuv does not report core dumps.
    init(exitStatus: Int64, signal: Int32) {
        self = signal != 0 ? .signaled(signal, coreDumped: false) : .exited(Int32(truncatingIfNeeded: exitStatus))
    }

    /// From an asyncio return code, as a `ChildWatcher` of the user's own reports it (whether the
    /// child dumped core is not known then).
    init(returnCode: Int32) {
        self = returnCode < 0 ? .signaled(-returnCode, coreDumped: false) : .exited(returnCode)
    }

    /// asyncio's return code: the exit status, or minus the signal number.
    public var returnCode: Int32 {
        switch self {
        case .exited(let status): return status
        case .signaled(let signal, _): return -signal
        }
    }

    /// `exited(3)`, `signaled(9)`, `signaled(11, core dumped)`.
    public var description: String {
        switch self {
        case .exited(let status): return "exited(\(status))"
        case .signaled(let signal, let core): return core ? "signaled(\(signal), core dumped)" : "signaled(\(signal))"
        }
    }
}
