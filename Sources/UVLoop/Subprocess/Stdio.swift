/// What a child's standard input, output or error is connected to.
public enum Stdio: Sendable, Equatable {
    /// The parent's own descriptor (the default for `createSubprocessExec`).
    case inherit
    /// A new pipe: the child's end is its descriptor, the parent's end becomes
    /// `ChildProcess.stdin`/`stdout`/`stderr`.
    case pipe
    /// `/dev/null`.
    case devNull
    /// An open descriptor of this process (duplicated into the child; the caller keeps it).
    case fileDescriptor(Int32)
    /// For `stderr` only: the same destination as the child's standard output (asyncio's
    /// `subprocess.STDOUT`).
    case stdout
}
