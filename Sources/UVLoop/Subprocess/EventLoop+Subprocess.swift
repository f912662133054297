import Glibc

extension EventLoop {
    /// Starts `program` with `arguments` as a child process watched by the policy's child watcher
    /// (asyncio's `loop.subprocess_exec`, returning a `ChildProcess`).
    ///
    /// `program` without a slash is looked up on PATH (the `environment`'s PATH when given).
    /// - Parameters:
    ///   - program: the program's path, or a name looked up on PATH (with `executable`: only
    ///     argv[0]).
    ///   - arguments: the arguments after argv[0] (which is `program`).
    ///   - stdin: where the child's standard input comes from; `.pipe` makes `ChildProcess.stdin`.
    ///   - stdout: where its standard output goes; `.pipe` makes `ChildProcess.stdout`.
    ///   - stderr: where its standard error goes; `.pipe` makes `ChildProcess.stderr`, `.stdout`
    ///     merges it into standard output.
    ///   - environment: the child's whole environment, or nil to inherit this process's.
    ///   - workingDirectory: the child's working directory, or nil to inherit.
    ///   - limit: the pipe readers' limit (asyncio's `limit=`): reading pauses above twice this
    ///     many buffered bytes, and `readLine`/`readUntil` give up beyond it.
    ///   - startNewSession: `setsid()` in the child: a new session and a new process group, both
    ///     led by the child (`POSIX_SPAWN_SETSID`).
    ///   - processGroup: `setpgid` in the child: 0 makes a new group led by the child, a pid
    ///     joins that process's group. Not with `startNewSession`.
    ///   - passFDs: descriptors the child keeps under the same numbers (even close-on-exec ones).
    ///   - closeFDs: every other descriptor above 2 is closed in the child, also those this
    ///     process opened without close-on-exec (Python's `close_fds=True`, the default).
    ///   - executable: the file executed (looked up on PATH without a slash); `program` is then
    ///     only argv[0].
    /// - Throws: `EventLoopError.childWatcherNotActive` (nothing spawned) when the watcher is not
    ///   active; `UVError` ENOENT/EACCES for a missing or non-executable program or directory,
    ///   EINVAL for bad strings, a negative process group or a session together with a group,
    ///   EPERM for a process group that does not exist (or belongs to another session), EBADF
    ///   for a closed descriptor (in `passFDs` too), EMFILE/EAGAIN when out of descriptors or
    ///   processes, ENOTSUP for `processGroup` under `LibuvChildWatcher`;
    ///   `EventLoopError.invalidArgument` for a `limit` below 1; `EventLoopError.loopClosed`. A
    ///   failed spawn leaves no child, zombie or descriptor behind.
    public func subprocessExec(_ program: String, _ arguments: [String] = [], stdin: Stdio = .inherit,
                               stdout: Stdio = .inherit, stderr: Stdio = .inherit,
                               environment: [String: String]? = nil,
                               workingDirectory: String? = nil, limit: Int = 65_536,
                               startNewSession: Bool = false, processGroup: pid_t? = nil,
                               passFDs: [Int32] = [], closeFDs: Bool = true,
                               executable: String? = nil) async throws -> ChildProcess {
        let options = SpawnOptions(limit: limit, startNewSession: startNewSession, processGroup: processGroup,
                                   passFDs: passFDs, closeFDs: closeFDs, executable: executable)
        return try await subprocessExec(program, arguments, stdin: stdin, stdout: stdout, stderr: stderr,
                                        environment: environment, workingDirectory: workingDirectory, options: options)
    }

    /// `subprocessExec` with the options as one value (and the internal ones).
    func subprocessExec(_ program: String, _ arguments: [String], stdin: Stdio, stdout: Stdio, stderr: Stdio,
                        environment: [String: String]?, workingDirectory: String?,
                        options: SpawnOptions) async throws -> ChildProcess {
        let request = try SpawnRequest(program: program, arguments: arguments, environment: environment,
                                       workingDirectory: workingDirectory, stdin: stdin, stdout: stdout,
                                       stderr: stderr, options: options)
        return try await onLoop {
            try checkLoopThread()
            return try await spawn(request)
        }
    }

    /// Runs `command` with `/bin/sh -c` (asyncio's `loop.subprocess_shell`). Parameters and errors
    /// as `subprocessExec` (`executable` replaces `/bin/sh`).
    public func subprocessShell(_ command: String, stdin: Stdio = .inherit, stdout: Stdio = .inherit,
                                stderr: Stdio = .inherit, environment: [String: String]? = nil,
                                workingDirectory: String? = nil, limit: Int = 65_536,
                                startNewSession: Bool = false, processGroup: pid_t? = nil,
                                passFDs: [Int32] = [], closeFDs: Bool = true,
                                executable: String? = nil) async throws -> ChildProcess {
        try await subprocessExec("/bin/sh", ["-c", command], stdin: stdin, stdout: stdout, stderr: stderr,
                                 environment: environment, workingDirectory: workingDirectory, limit: limit,
                                 startNewSession: startNewSession, processGroup: processGroup,
                                 passFDs: passFDs, closeFDs: closeFDs, executable: executable)
    }

    /// The spawn path, on the loop thread: check the watcher, create the pipes, spawn, register.
    private func spawn(_ request: SpawnRequest) async throws -> ChildProcess {
        let watcher = getChildWatcher()
        // Before anything exists: an inactive watcher means no child at all (asyncio gh-90493).
        guard watcher.isActive() else { throw EventLoopError.childWatcherNotActive }
        let setup = try SpawnSetup(request)
        let child: SpawnedChild
        let claim: ChildClaim
        do {
            // Until the child is claimed, the orphan reaper waits (becomeChildSubreaper()).
            if let spawning = watcher as? SpawningChildWatcher, !request.options.alwaysPosixSpawn {
                (child, claim) = try ChildClaims.shared.spawning {
                    let child = try spawning.spawn(setup.plan, on: self)
                    return (child, ChildClaim(child.pid))
                }
            } else {
                let (pid, pidClaim) = try await spawnOffTheLoop(setup.plan)
                child = SpawnedChild(pid: pid, signaller: Reaper.system.signal,
                                     groupSignaller: { try Reaper.system.signalGroup($0, $1) })
                claim = pidClaim
            }
        } catch {
            setup.closeAll()
            throw error
        }
        do {
            try checkLoopThread()
        } catch {
            // The loop closed while the child started: nothing will read its pipes or watch it.
            try? Reaper.system.signal(child.pid, SIGKILL)
            Reaper.system.adopt(child.pid)
            setup.closeAll()
            throw error
        }
        setup.closeChildEnds()
        let process = ChildProcess(pid: child.pid, loop: self, claim: claim,
                                   leadsProcessGroup: request.leadsProcessGroup,
                                   terminal: setup.terminal,
                                   signaller: child.signaller, groupSignaller: child.groupSignaller)
        do {
            try process.attachPipes(loop: self, stdin: setup.stdinWriter, stdout: setup.stdoutReader,
                                    stderr: setup.stderrReader, limit: request.options.limit,
                                    onTerminal: (request.stdin == .pty, request.stdout == .pty, request.stderr == .pty))
            if let reporting = watcher as? TerminationReporting {
                try reporting.addTerminationHandler(child.pid) { [process] _, termination in
                    process.didExit(termination)
                }
            } else {
                // A watcher of the user's own reports only the return code.
                try watcher.addChildHandler(child.pid) { [process] _, returnCode in
                    process.didExit(Termination(returnCode: returnCode))
                }
            }
        } catch {
            // The child exists but cannot be watched: kill it and reap it elsewhere (asyncio 11.6).
            try? process.kill()
            Reaper.system.adopt(child.pid)
            process.closePipes()
            throw error
        }
        return process
    }
}

extension EventLoop {
    /// `posix_spawn` on a worker of the loop's built-in pool. The parent's side of a vfork-style
    /// spawn waits until the child has called `execve` (0.3-1 ms here, more on a loaded machine):
    /// on the loop's thread that stalled every timer and connection for as long, once per child
    /// (B9). Not cancellable: the child exists once this starts. The pid is claimed before the
    /// orphan reaper can look.
    /// - Throws: `UVError` from posix_spawn; `EventLoopError.loopClosed` (nothing spawned).
    fileprivate func spawnOffTheLoop(_ plan: SpawnPlan) async throws -> (pid_t, ChildClaim) {
        let pool = try builtInExecutor()
        return try await withCheckedThrowingContinuation { continuation in
            do {
                try pool.submit {
                    continuation.resume(with: Result {
                        try ChildClaims.shared.spawning {
                            let pid = try PosixSpawn.spawn(plan)
                            return (pid, ChildClaim(pid))
                        }
                    })
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }
}

/// Starts `program` on the loop running the calling task (asyncio's `create_subprocess_exec`).
/// Parameters and errors as `EventLoop.subprocessExec`.
/// - Throws: also `EventLoopError.noRunningEventLoop` when the calling task is not running on an
///   `EventLoop`.
public func createSubprocessExec(_ program: String, _ arguments: [String] = [], stdin: Stdio = .inherit,
                                 stdout: Stdio = .inherit, stderr: Stdio = .inherit,
                                 environment: [String: String]? = nil,
                                 workingDirectory: String? = nil, limit: Int = 65_536,
                                 startNewSession: Bool = false, processGroup: pid_t? = nil,
                                 passFDs: [Int32] = [], closeFDs: Bool = true,
                                 executable: String? = nil) async throws -> ChildProcess {
    let loop = try getRunningLoop()
    return try await loop.subprocessExec(program, arguments, stdin: stdin, stdout: stdout, stderr: stderr,
                                         environment: environment, workingDirectory: workingDirectory, limit: limit,
                                         startNewSession: startNewSession, processGroup: processGroup,
                                         passFDs: passFDs, closeFDs: closeFDs, executable: executable)
}

/// Runs `command` with `/bin/sh -c` on the loop running the calling task (asyncio's
/// `create_subprocess_shell`). Parameters and errors as `createSubprocessExec`.
public func createSubprocessShell(_ command: String, stdin: Stdio = .inherit, stdout: Stdio = .inherit,
                                  stderr: Stdio = .inherit, environment: [String: String]? = nil,
                                  workingDirectory: String? = nil, limit: Int = 65_536,
                                  startNewSession: Bool = false, processGroup: pid_t? = nil,
                                  passFDs: [Int32] = [], closeFDs: Bool = true,
                                  executable: String? = nil) async throws -> ChildProcess {
    let loop = try getRunningLoop()
    return try await loop.subprocessShell(command, stdin: stdin, stdout: stdout, stderr: stderr,
                                          environment: environment, workingDirectory: workingDirectory, limit: limit,
                                          startNewSession: startNewSession, processGroup: processGroup,
                                          passFDs: passFDs, closeFDs: closeFDs, executable: executable)
}
