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
    /// A new pseudo-terminal, shared by every stream given `.pty`, which becomes the child's
    /// controlling terminal (the child then leads a new session, as with `startNewSession`).
    ///
    /// The parent holds the terminal's master side: `ChildProcess.stdin` writes to it (what the
    /// child reads as typed input; the terminal echoes it and turns "\n" into "\r\n", as a real
    /// one does), and `ChildProcess.stdout` reads everything the child writes to any stream on the
    /// terminal (`ChildProcess.stderr` when only stderr is `.pty`: a terminal has one output).
    /// Reading ends with end of file once the child and everything it started have closed the
    /// terminal (the kernel's EIO there is not an error); `writeEOF()` sends the terminal's
    /// end-of-file character. `ChildProcess.setTerminalSize(rows:columns:)` resizes it (24×80 at
    /// the start). Not with `processGroup`; `LibuvChildWatcher` refuses it (ENOTSUP: `uv_spawn`
    /// cannot give the child a controlling terminal).
    case pty
}
