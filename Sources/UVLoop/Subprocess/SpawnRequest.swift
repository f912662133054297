import Glibc

/// The 0.2 spawn options (asyncio/subprocess `limit`, `start_new_session`, `process_group`,
/// `pass_fds`, `close_fds`, `executable`), as the public functions take them.
struct SpawnOptions: Sendable {
    /// The pipe readers' limit (asyncio's `limit=`).
    var limit = 65_536
    /// `setsid()` in the child: a new session and process group, led by the child.
    var startNewSession = false
    /// `setpgid(0, group)` in the child; 0: a new group led by the child.
    var processGroup: pid_t?
    /// Descriptors kept open in the child under the same numbers.
    var passFDs: [Int32] = []
    /// Every other descriptor above 2 is closed in the child.
    var closeFDs = true
    /// The file executed; the program name is then only argv[0].
    var executable: String?
    /// Spawn with `posix_spawn` even under a watcher that spawns itself (`LibuvChildWatcher`,
    /// which then watches the child as any other child of the process): for process groups.
    var alwaysPosixSpawn = false
}

/// A validated request to start a program: every string checked before anything is created.
/// `SpawnRequest+Plan.swift` turns it into pipes and the `SpawnPlan` both spawners read.
struct SpawnRequest: Sendable {
    let program: String
    /// argv, argv[0] included.
    let arguments: [String]
    /// `KEY=value` strings, sorted; nil to inherit this process's environment.
    let environment: [String]?
    /// The PATH used to find `program` when it has no slash.
    let searchPath: String
    let workingDirectory: String?
    let stdin: Stdio
    let stdout: Stdio
    let stderr: Stdio
    /// The options, with `passFDs` sorted and deduplicated.
    let options: SpawnOptions

    /// - Throws: `UVError.EINVAL` for an empty program name, a NUL byte in any string, an
    ///   environment key that is empty or contains "=", `.stdout` used for stdin or stdout, a
    ///   negative process group, or a new session (or a `.pty`) together with a process group (the
    ///   new session's group is the child's own); `UVError.EBADF` for a `.fileDescriptor` or a passed descriptor
    ///   that is not open (or negative); `EventLoopError.invalidArgument` for a `limit` below 1.
    init(program: String, arguments: [String], environment: [String: String]?, workingDirectory: String?,
         stdin: Stdio, stdout: Stdio, stderr: Stdio, options: SpawnOptions = SpawnOptions()) throws {
        func invalid(_ what: String) -> UVError { UVError(code: UVError.EINVAL.code, operation: what) }
        guard !program.isEmpty else { throw invalid("spawn: empty program name") }
        let strings = [program] + arguments + [workingDirectory ?? "", options.executable ?? ""]
        for string in strings where string.utf8.contains(0) {
            throw invalid("spawn: NUL byte in the program, an argument, the executable or the working directory")
        }
        if options.executable?.isEmpty == true { throw invalid("spawn: empty executable") }
        if let environment {
            for (key, value) in environment {
                if key.isEmpty || key.contains("=") { throw invalid("spawn: invalid environment key '\(key)'") }
                if key.utf8.contains(0) || value.utf8.contains(0) { throw invalid("spawn: NUL byte in the environment") }
            }
        }
        if stdin == .stdout || stdout == .stdout { throw invalid("spawn: .stdout is only valid for stderr") }
        for case .fileDescriptor(let fd) in [stdin, stdout, stderr] where !System.isOpenDescriptor(fd) {
            throw UVError(code: UVError.EBADF.code, operation: "spawn: descriptor \(fd) is not open")
        }
        guard options.limit >= 1 else { throw EventLoopError.invalidArgument }
        if let group = options.processGroup, group < 0 {
            throw invalid("spawn: process group \(group) is negative (0 makes a new group)")
        }
        if options.startNewSession && options.processGroup != nil {
            throw invalid("spawn: startNewSession already makes a new process group led by the child; processGroup cannot be set too")
        }
        if [stdin, stdout, stderr].contains(.pty) && options.processGroup != nil {
            throw invalid("spawn: a .pty child leads a new session and its own process group; processGroup cannot be set too")
        }
        for fd in options.passFDs where fd < 0 || !System.isOpenDescriptor(fd) {
            throw UVError(code: UVError.EBADF.code, operation: "spawn: passFDs: descriptor \(fd) is not open")
        }
        var options = options
        options.passFDs = Array(Set(options.passFDs)).sorted()
        self.program = program
        self.arguments = [program] + arguments
        self.environment = environment.map { $0.map { "\($0.key)=\($0.value)" }.sorted() }
        self.searchPath = environment?["PATH"] ?? System.environment("PATH") ?? "/usr/local/bin:/usr/bin:/bin"
        self.workingDirectory = workingDirectory
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.options = options
    }

    /// Whether any of the child's streams is the pseudo-terminal.
    var usesTerminal: Bool { [stdin, stdout, stderr].contains(.pty) }

    /// Whether the child leads its own process group (a new session, `.pty` included, or group 0).
    var leadsProcessGroup: Bool { options.startNewSession || options.processGroup == 0 || usesTerminal }

    /// The program's path: as given when it contains a slash, else the first executable match on
    /// PATH (execvp's rules).
    /// - Throws: `UVError.ENOENT` when no match exists, `UVError.EACCES` when matches exist but
    ///   none is executable.
    func resolvedPath() throws -> String {
        let program = options.executable ?? self.program
        if program.contains("/") { return program }
        var sawNonExecutable = false
        for directory in searchPath.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + program
            switch System.checkExecutable(candidate) {
            case .executable: return candidate
            case .notExecutable: sawNonExecutable = true
            case .missing: continue
            }
        }
        let code = sawNonExecutable ? UVError.EACCES.code : UVError.ENOENT.code
        throw UVError(code: code, operation: "spawn \(program)")
    }
}
