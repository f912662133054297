import CUVLoopOS

/// How a child process ended, and asyncio's return code for it: the one place that rule lives.
///
/// Both reaping paths produce it: a wait status from `waitpid`/`waitid` (every watcher but
/// Libuv), and libuv's exit callback's exit status and signal number (`UVProcess`).
enum Termination: Sendable, Equatable {
    /// The child called `exit` (or returned from `main`) with this status.
    case exited(Int32)
    /// A signal ended the child.
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

    /// asyncio's return code: the exit status, or minus the signal number.
    var returnCode: Int32 {
        switch self {
        case .exited(let status): return status
        case .signaled(let signal, _): return -signal
        }
    }
}
