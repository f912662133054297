import Glibc

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

    /// - Throws: `UVError.EINVAL` for an empty program name, a NUL byte in any string, an
    ///   environment key that is empty or contains "=", or `.stdout` used for stdin or stdout;
    ///   `UVError.EBADF` for a `.fileDescriptor` that is not open.
    init(program: String, arguments: [String], environment: [String: String]?, workingDirectory: String?,
         stdin: Stdio, stdout: Stdio, stderr: Stdio) throws {
        func invalid(_ what: String) -> UVError { UVError(code: UVError.EINVAL.code, operation: what) }
        guard !program.isEmpty else { throw invalid("spawn: empty program name") }
        for string in [program] + arguments + [workingDirectory ?? ""] where string.utf8.contains(0) {
            throw invalid("spawn: NUL byte in the program, an argument or the working directory")
        }
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
        self.program = program
        self.arguments = [program] + arguments
        self.environment = environment.map { $0.map { "\($0.key)=\($0.value)" }.sorted() }
        self.searchPath = environment?["PATH"] ?? System.environment("PATH") ?? "/usr/local/bin:/usr/bin:/bin"
        self.workingDirectory = workingDirectory
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }

    /// The program's path: as given when it contains a slash, else the first executable match on
    /// PATH (execvp's rules).
    /// - Throws: `UVError.ENOENT` when no match exists, `UVError.EACCES` when matches exist but
    ///   none is executable.
    func resolvedPath() throws -> String {
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
