import Glibc

/// Everything needed to start one child process, decided once by the Subprocess layer and read
/// as it is by both spawners (`PosixSpawn` and libuv's `UVProcess`), never decoded back.
///
/// New spawn options (sessions, process groups, descriptors to pass or close, terminals) are new
/// fields here, written by the Subprocess layer and honoured by each spawner.
struct SpawnPlan: Sendable {
    /// The file executed (already resolved on PATH).
    var executable: String
    /// argv, argv[0] included.
    var arguments: [String]
    /// `KEY=value` strings, or nil to pass this process's environment on.
    var environment: [String]?
    /// The child's working directory, or nil to inherit this process's.
    var workingDirectory: String?
    /// What the child's descriptors 0, 1 and 2 are.
    var stdin: ChildStdio = .inherit
    var stdout: ChildStdio = .inherit
    var stderr: ChildStdio = .inherit
    /// `setsid()` in the child: a new session and process group, both led by the child.
    var newSession = false
    /// `setpgid(0, group)` in the child (0: a new group led by the child); nil: this process's.
    var processGroup: pid_t?
    /// Descriptors the child keeps under the same numbers (sorted, no duplicates), whatever
    /// their close-on-exec flag.
    var passedDescriptors: [Int32] = []
    /// Every descriptor above 2 that is not passed is closed in the child, also those this
    /// process opened without close-on-exec (Python's `close_fds=True`).
    var closeOtherDescriptors = true
    /// Start the child with every signal blocked (a group pin: only SIGKILL and SIGSTOP reach it)
    /// instead of an empty mask.
    var blockAllSignals = false
    /// The slave path of the pseudo-terminal the `.terminal` descriptors open, when any do;
    /// `newSession` is then set too, so that the terminal becomes the controlling one.
    var terminal: String?

    /// The plan's stdio in descriptor order (0, 1, 2).
    var stdio: [ChildStdio] { [stdin, stdout, stderr] }
}

/// What one of a child's standard descriptors is connected to.
enum ChildStdio: Sendable, Equatable {
    /// This process's descriptor of the same number.
    case inherit
    /// A descriptor of this process, numbered 3 or above (so setting up 0...2 cannot overwrite
    /// it first) or the target's own number; the child gets a copy. The descriptor stays the
    /// caller's.
    case descriptor(Int32)
    /// `/dev/null`, opened for reading (stdin) or writing (stdout, stderr).
    case null
    /// stderr only: whatever the child's stdout is (asyncio's `subprocess.STDOUT`).
    case sameAsStdout
    /// The plan's pseudo-terminal (`SpawnPlan.terminal`), opened in the child by its path after
    /// the new session begins, which makes it the child's controlling terminal.
    case terminal
}

/// A NULL-terminated array of C strings (argv, envp), freed explicitly.
struct CStringArray {
    let pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

    init(_ strings: [String]) {
        pointer = .allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() {
            pointer[index] = strdup(string)
        }
        pointer[strings.count] = nil
    }

    func free() {
        var index = 0
        while let string = pointer[index] {
            Glibc.free(string)
            index += 1
        }
        pointer.deallocate()
    }
}
