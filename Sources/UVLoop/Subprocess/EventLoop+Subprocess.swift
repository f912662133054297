import Glibc

/// A watcher that starts the children it watches itself (LibuvChildWatcher: `uv_spawn` keeps a
/// process handle whose exit callback reports the exit).
protocol SpawningChildWatcher: ChildWatcher {
    /// Starts the child on `loop` (its thread) and returns its pid and how to signal it.
    func spawn(path: String, request: SpawnRequest, actions: [Spawner.FileAction],
               on loop: EventLoop) throws -> (pid: pid_t, signaller: @Sendable (pid_t, Int32) throws -> Void)
}

/// The descriptors and child-side file actions for one spawn.
struct StdioPlan {
    var actions: [Spawner.FileAction] = []
    /// Closed in the parent once the child has started (or failed to).
    var childEnds: [Int32] = []
    /// The parent's ends of `.pipe`s: it writes to stdin, reads stdout and stderr.
    var stdinWriter: Int32?
    var stdoutReader: Int32?
    var stderrReader: Int32?

    /// Creates the pipes and descriptors `request` asks for.
    /// - Throws: `UVError` (EMFILE); everything created so far is closed first.
    init(_ request: SpawnRequest) throws {
        do {
            try add(request.stdin, target: 0)
            try add(request.stdout, target: 1)
            try add(request.stderr, target: 2)
        } catch {
            closeAll()
            throw error
        }
    }

    private mutating func add(_ stdio: Stdio, target: Int32) throws {
        switch stdio {
        case .inherit:
            break
        case .devNull:
            actions.append(.open(path: "/dev/null", flags: target == 0 ? O_RDONLY : O_WRONLY, target: target))
        case .fileDescriptor(let fd):
            // A source among 0...2 may be replaced in the child before it is used: pass a copy.
            let source = fd < 3 && fd != target ? try duplicateAbove(fd) : fd
            actions.append(.duplicate(source: source, target: target))
        case .stdout:
            actions.append(.duplicate(source: 1, target: 2))
        case .pipe:
            // The parent's end is non-blocking (the loop reads and writes it); the child's is not.
            let pipe = try System.makePipe(nonBlockingRead: target != 0, nonBlockingWrite: target == 0)
            let (childEnd, parentEnd) = target == 0 ? (pipe.read, pipe.write) : (pipe.write, pipe.read)
            switch target {
            case 0: stdinWriter = parentEnd
            case 1: stdoutReader = parentEnd
            default: stderrReader = parentEnd
            }
            let movedChildEnd = try System.moveAboveStandardDescriptors(childEnd)
            childEnds.append(movedChildEnd)
            actions.append(.duplicate(source: movedChildEnd, target: target))
        }
    }

    private mutating func duplicateAbove(_ fd: Int32) throws -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        if copy < 0 { throw UVError(code: -errno, operation: "fcntl(F_DUPFD_CLOEXEC, \(fd))") }
        childEnds.append(copy)
        return copy
    }

    func closeChildEnds() {
        childEnds.forEach(System.closeDescriptor)
    }

    func closeAll() {
        closeChildEnds()
        [stdinWriter, stdoutReader, stderrReader].compactMap { $0 }.forEach(System.closeDescriptor)
    }
}

extension EventLoop {
    /// Starts `program` with `arguments` as a child process watched by the policy's child watcher
    /// (asyncio's `loop.subprocess_exec`, returning a `ChildProcess`).
    ///
    /// `program` without a slash is looked up on PATH (the `environment`'s PATH when given).
    /// - Parameters:
    ///   - program: the program's path, or a name looked up on PATH.
    ///   - arguments: the arguments after argv[0] (which is `program`).
    ///   - stdin: where the child's standard input comes from; `.pipe` makes `ChildProcess.stdin`.
    ///   - stdout: where its standard output goes; `.pipe` makes `ChildProcess.stdout`.
    ///   - stderr: where its standard error goes; `.pipe` makes `ChildProcess.stderr`, `.stdout`
    ///     merges it into standard output.
    ///   - environment: the child's whole environment, or nil to inherit this process's.
    ///   - workingDirectory: the child's working directory, or nil to inherit.
    /// - Throws: `EventLoopError.childWatcherNotActive` (nothing spawned) when the watcher is not
    ///   active; `UVError` ENOENT/EACCES for a missing or non-executable program or directory,
    ///   EINVAL for bad strings, EBADF for a closed descriptor, EMFILE/EAGAIN when out of
    ///   descriptors or processes; `EventLoopError.loopClosed`. A failed spawn leaves no child,
    ///   zombie or descriptor behind.
    public func subprocessExec(_ program: String, _ arguments: [String] = [], stdin: Stdio = .inherit,
                               stdout: Stdio = .inherit, stderr: Stdio = .inherit,
                               environment: [String: String]? = nil,
                               workingDirectory: String? = nil) async throws -> ChildProcess {
        let request = try SpawnRequest(program: program, arguments: arguments, environment: environment,
                                       workingDirectory: workingDirectory, stdin: stdin, stdout: stdout, stderr: stderr)
        return try await performOnLoop { try self.spawn(request) }
    }

    /// Runs `command` with `/bin/sh -c` (asyncio's `loop.subprocess_shell`). Parameters and errors
    /// as `subprocessExec`.
    public func subprocessShell(_ command: String, stdin: Stdio = .inherit, stdout: Stdio = .inherit,
                                stderr: Stdio = .inherit, environment: [String: String]? = nil,
                                workingDirectory: String? = nil) async throws -> ChildProcess {
        try await subprocessExec("/bin/sh", ["-c", command], stdin: stdin, stdout: stdout, stderr: stderr,
                                 environment: environment, workingDirectory: workingDirectory)
    }

    /// Runs `body` on the loop's thread and returns its result.
    /// - Throws: what `body` throws; `EventLoopError.loopClosed`.
    func performOnLoop<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        if inLoopThread { return try body() }
        return try await withCheckedThrowingContinuation { continuation in
            if !trySubmit({ continuation.resume(with: Result { try body() }) }) {
                continuation.resume(throwing: EventLoopError.loopClosed)
            }
        }
    }

    /// The spawn path, on the loop thread: check the watcher, create the pipes, spawn, register.
    private func spawn(_ request: SpawnRequest) throws -> ChildProcess {
        if isClosed { throw EventLoopError.loopClosed }
        let watcher = getChildWatcher()
        // Before anything exists: an inactive watcher means no child at all (asyncio gh-90493).
        guard watcher.isActive() else { throw EventLoopError.childWatcherNotActive }
        let path = try request.resolvedPath()
        let plan = try StdioPlan(request)
        let pid: pid_t
        let signaller: @Sendable (pid_t, Int32) throws -> Void
        do {
            if let spawning = watcher as? SpawningChildWatcher {
                (pid, signaller) = try spawning.spawn(path: path, request: request, actions: plan.actions, on: self)
            } else {
                pid = try Spawner.spawn(path: path, arguments: request.arguments, environment: request.environment,
                                        workingDirectory: request.workingDirectory, actions: plan.actions)
                signaller = Reaper.signal
            }
        } catch {
            plan.closeAll()
            throw error
        }
        plan.closeChildEnds()
        let process = ChildProcess(pid: pid, signaller: signaller)
        do {
            try process.attachPipes(loop: self, stdin: plan.stdinWriter, stdout: plan.stdoutReader, stderr: plan.stderrReader)
            try watcher.addChildHandler(pid) { [process] _, returnCode in
                process.didExit(returnCode: returnCode)
            }
        } catch {
            // The child exists but cannot be watched: kill it and reap it elsewhere (asyncio 11.6).
            try? process.kill()
            OrphanReaper.adopt(pid)
            process.closePipes()
            throw error
        }
        return process
    }
}

/// Starts `program` on the loop running the calling task (asyncio's `create_subprocess_exec`).
/// Parameters and errors as `EventLoop.subprocessExec`.
/// - Throws: also `EventLoopError.noRunningEventLoop` when the calling task is not running on an
///   `EventLoop`.
public func createSubprocessExec(_ program: String, _ arguments: [String] = [], stdin: Stdio = .inherit,
                                 stdout: Stdio = .inherit, stderr: Stdio = .inherit,
                                 environment: [String: String]? = nil,
                                 workingDirectory: String? = nil) async throws -> ChildProcess {
    let loop = try getRunningLoop()
    return try await loop.subprocessExec(program, arguments, stdin: stdin, stdout: stdout, stderr: stderr,
                                         environment: environment, workingDirectory: workingDirectory)
}

/// Runs `command` with `/bin/sh -c` on the loop running the calling task (asyncio's
/// `create_subprocess_shell`). Parameters and errors as `createSubprocessExec`.
public func createSubprocessShell(_ command: String, stdin: Stdio = .inherit, stdout: Stdio = .inherit,
                                  stderr: Stdio = .inherit, environment: [String: String]? = nil,
                                  workingDirectory: String? = nil) async throws -> ChildProcess {
    let loop = try getRunningLoop()
    return try await loop.subprocessShell(command, stdin: stdin, stdout: stdout, stderr: stderr,
                                          environment: environment, workingDirectory: workingDirectory)
}
