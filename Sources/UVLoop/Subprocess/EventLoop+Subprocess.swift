import Glibc

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
        return try await onLoop {
            try checkLoopThread()
            return try spawn(request)
        }
    }

    /// Runs `command` with `/bin/sh -c` (asyncio's `loop.subprocess_shell`). Parameters and errors
    /// as `subprocessExec`.
    public func subprocessShell(_ command: String, stdin: Stdio = .inherit, stdout: Stdio = .inherit,
                                stderr: Stdio = .inherit, environment: [String: String]? = nil,
                                workingDirectory: String? = nil) async throws -> ChildProcess {
        try await subprocessExec("/bin/sh", ["-c", command], stdin: stdin, stdout: stdout, stderr: stderr,
                                 environment: environment, workingDirectory: workingDirectory)
    }

    /// The spawn path, on the loop thread: check the watcher, create the pipes, spawn, register.
    private func spawn(_ request: SpawnRequest) throws -> ChildProcess {
        let watcher = getChildWatcher()
        // Before anything exists: an inactive watcher means no child at all (asyncio gh-90493).
        guard watcher.isActive() else { throw EventLoopError.childWatcherNotActive }
        let setup = try SpawnSetup(request)
        let pid: pid_t
        let signaller: ChildSignaller
        do {
            if let spawning = watcher as? SpawningChildWatcher {
                (pid, signaller) = try spawning.spawn(setup.plan, on: self)
            } else {
                pid = try PosixSpawn.spawn(setup.plan)
                signaller = Reaper.system.signal
            }
        } catch {
            setup.closeAll()
            throw error
        }
        setup.closeChildEnds()
        let process = ChildProcess(pid: pid, signaller: signaller)
        do {
            try process.attachPipes(loop: self, stdin: setup.stdinWriter, stdout: setup.stdoutReader,
                                    stderr: setup.stderrReader)
            try watcher.addChildHandler(pid) { [process] _, returnCode in
                process.didExit(returnCode: returnCode)
            }
        } catch {
            // The child exists but cannot be watched: kill it and reap it elsewhere (asyncio 11.6).
            try? process.kill()
            Reaper.system.adopt(pid)
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
