import Glibc

/// The result of `runSubprocessExec`/`runSubprocessShell` (Python's `subprocess.CompletedProcess`).
public struct CompletedProcess: Sendable, Equatable {
    /// The child's process id (reaped: the number may already belong to another process).
    public var pid: pid_t
    /// The return code: the exit status, or minus the signal number that killed the child.
    public var returnCode: Int32
    /// How the child ended.
    public var termination: Termination
    /// What the child wrote to its standard output (at most `maxOutput` bytes).
    public var stdout: [UInt8]
    /// What the child wrote to its standard error (at most `maxOutput` bytes).
    public var stderr: [UInt8]
    /// True when the child wrote more than `maxOutput` bytes to standard output (the rest was
    /// read and dropped).
    public var stdoutTruncated: Bool
    /// The same, for standard error.
    public var stderrTruncated: Bool

    public init(pid: pid_t, termination: Termination, stdout: [UInt8] = [], stderr: [UInt8] = [],
                stdoutTruncated: Bool = false, stderrTruncated: Bool = false) {
        self.pid = pid
        self.returnCode = termination.returnCode
        self.termination = termination
        self.stdout = stdout
        self.stderr = stderr
        self.stdoutTruncated = stdoutTruncated
        self.stderrTruncated = stderrTruncated
    }
}

extension CompletedProcess: CustomStringConvertible {
    public var description: String {
        "CompletedProcess(pid: \(pid), returnCode: \(returnCode), stdout: \(stdout.count) bytes"
            + "\(stdoutTruncated ? " (truncated)" : ""), stderr: \(stderr.count) bytes\(stderrTruncated ? " (truncated)" : ""))"
    }
}

/// How `runSubprocessExec`/`runSubprocessShell` can fail after the child started.
public enum SubprocessError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The timeout passed: the child's process group was torn down and the child reaped; the
    /// value holds what it wrote until then, and how it ended.
    case timedOut(CompletedProcess)

    public var description: String {
        switch self {
        case .timedOut(let completed): "subprocess timed out and was torn down: \(completed)"
        }
    }
}

/// Runs `program` with `arguments` on the running loop to its end, with its output captured
/// (Python's `subprocess.run(..., capture_output=True)`), and returns how it ended.
///
/// The child runs in a new process group it leads, started with `posix_spawn` under every
/// watcher (`LibuvChildWatcher`, whose `uv_spawn` cannot set a group, then watches it as any
/// other child of the process). Its standard input is `input` through a pipe, or `/dev/null`
/// when `input` is nil (never this process's own). Standard output and standard error are read
/// concurrently with feeding the input, each kept up to `maxOutput` bytes: what comes beyond is
/// read and dropped, so the child never blocks on a full pipe, and the `…Truncated` flag says
/// so. The call returns once the child has exited and both outputs have reached end of file (a
/// background process still holding them open keeps it waiting, as Python's does; a `timeout`
/// bounds that too).
///
/// On timeout, or when the awaiting task is cancelled, the whole group is torn down before the
/// call throws: SIGTERM to the group; once the child has exited and its outputs closed, or after
/// `gracePeriod` seconds, SIGKILL to the group, with a process of ours parked in it meanwhile so
/// that members that outlive the child are still reached and a recycled group never is; then
/// the child is reaped (a process that left the group, with `setsid`, is not reached). What the
/// pipes still hold is read for up to a second more. Then it throws
/// `SubprocessError.timedOut` with what was read, or `CancellationError`.
///
/// - Parameters:
///   - timeout: seconds on the loop's clock from the start; nil or `.infinity`: none; 0: tear
///     down at once.
///   - gracePeriod: seconds between SIGTERM and SIGKILL in a teardown.
///   - maxOutput: the cap on each captured stream, in bytes; nil: none.
/// - Throws: `EventLoopError.invalidArgument` (nothing started) for a negative or NaN `timeout`
///   or `gracePeriod`, or a negative `maxOutput`; `SubprocessError.timedOut`;
///   `CancellationError`; what `createSubprocessExec` throws (ENOENT...), and a read error of the
///   outputs (after the child was reaped).
public func runSubprocessExec(_ program: String, _ arguments: [String] = [], input: [UInt8]? = nil,
                              environment: [String: String]? = nil, workingDirectory: String? = nil,
                              timeout: Double? = nil, gracePeriod: Double = 2,
                              maxOutput: Int? = nil) async throws -> CompletedProcess {
    try await SubprocessRun.run(program, arguments, input: input, environment: environment,
                                workingDirectory: workingDirectory, timeout: timeout,
                                gracePeriod: gracePeriod, maxOutput: maxOutput)
}

/// `runSubprocessExec` for `command` run by `/bin/sh -c`. Parameters, guarantees and errors as
/// `runSubprocessExec`; the teardown reaches the commands the shell started, as they are in
/// its process group.
public func runSubprocessShell(_ command: String, input: [UInt8]? = nil,
                               environment: [String: String]? = nil, workingDirectory: String? = nil,
                               timeout: Double? = nil, gracePeriod: Double = 2,
                               maxOutput: Int? = nil) async throws -> CompletedProcess {
    try await SubprocessRun.run("/bin/sh", ["-c", command], input: input, environment: environment,
                                workingDirectory: workingDirectory, timeout: timeout,
                                gracePeriod: gracePeriod, maxOutput: maxOutput)
}

/// One stream's capture: the bytes kept, and whether more came.
private final class Capture: Sendable {
    private struct State: Sendable {
        var bytes: [UInt8] = []
        var truncated = false
        var error: (any Error)?
    }

    private let state = LockedValue(State())
    private let cap: Int

    init(cap: Int?) { self.cap = cap ?? .max }

    var bytes: [UInt8] { state.withLock { $0.bytes } }
    var truncated: Bool { state.withLock { $0.truncated } }
    var error: (any Error)? { state.withLock { $0.error } }

    /// Reads `reader` to its end, keeping up to the cap. A read error ends it (kept for later).
    func drain(_ reader: StreamReader) async {
        do {
            while true {
                let chunk = try await reader.read(64 * 1024)
                if chunk.isEmpty { return }
                state.withLock { state in
                    let room = cap - state.bytes.count
                    if chunk.count <= room {
                        state.bytes += chunk
                    } else {
                        state.bytes += chunk.prefix(max(room, 0))
                        state.truncated = true
                    }
                }
            }
        } catch {
            state.withLock { $0.error = error }
        }
    }
}

/// The steps of one `runSubprocessExec`.
private enum SubprocessRun {
    enum Outcome: Sendable { case finished, timedOut, cancelled }

    static func run(_ program: String, _ arguments: [String], input: [UInt8]?, environment: [String: String]?,
                    workingDirectory: String?, timeout: Double?, gracePeriod: Double,
                    maxOutput: Int?) async throws -> CompletedProcess {
        if let timeout, timeout.isNaN || timeout < 0 { throw EventLoopError.invalidArgument }
        guard !gracePeriod.isNaN, gracePeriod >= 0 else { throw EventLoopError.invalidArgument }
        if let maxOutput, maxOutput < 0 { throw EventLoopError.invalidArgument }
        let loop = try getRunningLoop()
        // A group of its own; posix_spawn under every watcher, as libuv's spawn cannot set one.
        var options = SpawnOptions(processGroup: 0)
        options.alwaysPosixSpawn = true
        let child = try await loop.subprocessExec(program, arguments, stdin: input == nil ? .devNull : .pipe,
                                                  stdout: .pipe, stderr: .pipe, environment: environment,
                                                  workingDirectory: workingDirectory, options: options)
        return try await supervise(child, on: loop, input: input, timeout: timeout, gracePeriod: gracePeriod,
                                   maxOutput: maxOutput)
    }

    private static func supervise(_ child: ChildProcess, on loop: EventLoop, input: [UInt8]?, timeout: Double?,
                                  gracePeriod: Double, maxOutput: Int?) async throws -> CompletedProcess {
        let executor = loop.taskExecutor!
        let outputs = (Capture(cap: maxOutput), Capture(cap: maxOutput))
        // Unstructured tasks on the loop: a cancelled caller must not stop the draining, which
        // the teardown relies on (a child blocked on a full pipe would not exit).
        let readers = (child.stdout, child.stderr)
        let stdoutTask = Task(executorPreference: executor) { if let reader = readers.0 { await outputs.0.drain(reader) } }
        let stderrTask = Task(executorPreference: executor) { if let reader = readers.1 { await outputs.1.drain(reader) } }
        let writer = child.stdin
        let feeder = Task(executorPreference: executor) {
            // Other write errors show in the exit status and the outputs.
            if let writer { try? await ChildProcess.feed(writer, input ?? []) }
        }
        let outputsClosed = LoopEvent()
        let decided = LoopEvent()
        let outcome = LockedValue<Outcome?>(nil)
        let decide: @Sendable (Outcome) -> Void = { result in
            if outcome.withLock({ current in
                guard current == nil else { return false }
                current = result
                return true
            }) { decided.fire() }
        }
        Task(executorPreference: executor) {
            await stdoutTask.value
            await stderrTask.value
            outputsClosed.fire()
            _ = try? await child.awaitTermination(deadline: nil, cancellable: false)
            decide(.finished)
        }
        let timer = timeout.flatMap { timeout in
            timeout == .infinity ? nil : loop.scheduleTimer(at: loop.time() + timeout, onLoopClose: nil) { decide(.timedOut) }
        }
        await withTaskCancellationHandler {
            _ = await decided.wait(on: loop)
        } onCancel: {
            decide(.cancelled)
        }
        timer?.cancel()
        let result = outcome.withLock { $0 } ?? .finished
        if result != .finished {
            _ = try await child.tearDownGroup(gracePeriod: gracePeriod, quiet: outputsClosed)
            // What the pipes still hold; then they are closed (a process outside the group may
            // hold them open).
            _ = await outputsClosed.wait(until: loop.time() + 1, on: loop)
            child.stdout?.close()
            child.stderr?.close()
            await stdoutTask.value
            await stderrTask.value
        }
        // Input the child never read is moot once it is gone (a background process could hold
        // the pipe open unread forever).
        writer?.abort()
        await feeder.value
        let termination = try await child.awaitTermination(deadline: nil, cancellable: false)
        let completed = CompletedProcess(pid: child.pid, termination: termination,
                                         stdout: outputs.0.bytes, stderr: outputs.1.bytes,
                                         stdoutTruncated: outputs.0.truncated, stderrTruncated: outputs.1.truncated)
        switch result {
        case .finished:
            if let error = outputs.0.error ?? outputs.1.error { throw error }
            return completed
        case .timedOut:
            throw SubprocessError.timedOut(completed)
        case .cancelled:
            throw CancellationError()
        }
    }
}
