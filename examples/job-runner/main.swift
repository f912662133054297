// job-runner: a TCP service that runs shell commands for its clients, with deadlines, and
// streams their output back line by line.
//
//   swift run job-runner --port 7070
//   printf 'run 5 for i in 1 2 3; do echo line $i; sleep 1; done\n' | nc 127.0.0.1 7070
//
// One job per connection. The client sends one line:
//   run SECONDS COMMAND      each line the command writes (stdout and stderr merged) comes back
//                            as "out: LINE"; then "exit: CODE", or "timeout: CODE" when SECONDS
//                            passed first (its process group got SIGTERM, then SIGKILL after the
//                            grace period)
//   capture SECONDS COMMAND  runSubprocessShell: the output (kept up to 64 KiB, the rest drained)
//                            comes back at the end, then "exit: CODE" or "timeout: CODE"
// A client that leaves while its job runs gets the job killed (the whole group, reaped).
// SIGTERM or SIGINT: stop accepting, end the running jobs (SIGTERM, grace, SIGKILL), let their
// clients read the result, exit 0.
import ArgumentParser
import Foundation
import UVLoop

struct JobRunner: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job-runner", abstract: "Runs shell commands for TCP clients, with deadlines.")

    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port (0: a free one, printed at start).") var port = 7070
    @Option(help: "Seconds between SIGTERM and SIGKILL when a job is ended.") var grace = 1.0

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        guard grace >= 0 else { throw ValidationError("--grace must not be negative") }
    }
}

/// The jobs running now, so that a shutdown can end them. Every access is on the loop's thread
/// (handlers and the signal handler run there); the lock keeps that claim checkable.
final class RunningJobs: @unchecked Sendable {   // guarded by `lock`
    private let lock = NSLock()
    private var jobs: [Int32: ChildProcess] = [:]

    func add(_ job: ChildProcess) { lock.withLock { jobs[job.pid] = job } }
    func remove(_ job: ChildProcess) { _ = lock.withLock { jobs.removeValue(forKey: job.pid) } }
    var all: [ChildProcess] { lock.withLock { Array(jobs.values) } }
}

let options = JobRunner.parseOrExit()
let jobs = RunningJobs()
let grace = options.grace

/// How a streamed job ended.
enum JobEnd: Sendable {
    case exited(Int32)
    case timedOut
    case clientLeft
}

/// `run SECONDS COMMAND`: streams the job's lines until it exits, its time is up, or the client
/// leaves, whichever comes first; then ends it if needed.
func streamJob(_ command: String, seconds: Double, _ reader: StreamReader, _ writer: StreamWriter) async throws {
    let loop = try getRunningLoop()
    // A group of its own, so that ending it ends what the shell started too.
    let job = try await createSubprocessShell(command, stdin: .devNull, stdout: .pipe, stderr: .stdout,
                                              processGroup: 0)
    jobs.add(job)
    defer { jobs.remove(job) }
    print("job \(job.pid) started: \(command)")
    fflush(nil)
    let end = await withTaskGroup(of: JobEnd.self) { group in
        group.addTask {
            do {
                for try await line in job.stdout!.lines {
                    try writer.write("out: \(line)\n")
                    try await writer.drain()
                }
                return .exited(try await job.wait())
            } catch is CancellationError {
                return .timedOut   // not used: another event came first
            } catch {
                return .clientLeft   // the write failed: nobody is listening any more
            }
        }
        group.addTask {
            // Anything the client sends after its request is ignored; its end of file (or a
            // reset) means it left.
            while let chunk = try? await reader.read(4096), !chunk.isEmpty {}
            return .clientLeft
        }
        group.addTask {
            do { try await loop.sleep(seconds) } catch { return .clientLeft }
            return .timedOut
        }
        let first = await group.next()!
        group.cancelAll()
        return first
    }
    switch end {
    case .exited(let code):
        try writer.write("exit: \(code)\n")
    case .timedOut:
        let code = try await job.terminate(gracePeriod: grace)
        try writer.write("timeout: \(code)\n")
    case .clientLeft:
        let code = try await job.terminate(gracePeriod: grace)
        print("job \(job.pid) ended with \(code): its client left")
        fflush(nil)
    }
}

/// `capture SECONDS COMMAND`: runSubprocessShell, cancelled when the client leaves (which tears
/// the job's group down before it returns).
func captureJob(_ command: String, seconds: Double, _ reader: StreamReader, _ writer: StreamWriter) async throws {
    let loop = try getRunningLoop()
    let run = loop.createTask {
        try await runSubprocessShell(command, timeout: seconds, gracePeriod: grace, maxOutput: 65_536)
    }
    let watcher = loop.createTask {
        while let chunk = try? await reader.read(4096), !chunk.isEmpty {}
        run.cancel()
    }
    defer { watcher.cancel() }
    do {
        let completed = try await run.value
        try writer.write(completed.stdout)
        if completed.stdout.last.map({ $0 != UInt8(ascii: "\n") }) ?? false { try writer.write("\n") }
        try writer.write("\(completed.stdoutTruncated ? "truncated: 65536 bytes kept\n" : "")exit: \(completed.returnCode)\n")
    } catch SubprocessError.timedOut(let completed) {
        try writer.write(completed.stdout)
        if completed.stdout.last.map({ $0 != UInt8(ascii: "\n") }) ?? false { try writer.write("\n") }
        try writer.write("timeout: \(completed.returnCode)\n")
    } catch is CancellationError {
        print("a captured job was torn down: its client left")
        fflush(nil)
    }
}

/// One connection: one request line, one job.
func serve(_ reader: StreamReader, _ writer: StreamWriter) async {
    defer { writer.close() }
    do {
        var lines = reader.lines.makeAsyncIterator()
        guard let request = try await lines.next() else { return }
        let parts = request.split(separator: " ", maxSplits: 2).map(String.init)
        guard parts.count == 3, let seconds = Double(parts[1]), seconds >= 0 else {
            try writer.write("error: send 'run SECONDS COMMAND' or 'capture SECONDS COMMAND'\n")
            return
        }
        switch parts[0] {
        case "run": try await streamJob(parts[2], seconds: seconds, reader, writer)
        case "capture": try await captureJob(parts[2], seconds: seconds, reader, writer)
        default: try writer.write("error: unknown request '\(parts[0])'\n")
        }
        try await writer.drain()
    } catch {
        // A client that reset, or a command that could not start.
        try? writer.write("error: \(error)\n")
    }
}

let loop = try getEventLoop()
try loop.runUntilComplete {
    let server = try await loop.startServer(host: options.host, port: options.port) { reader, writer in
        await serve(reader, writer)
    }
    print("job-runner listening on \(options.host):\(server.port) (SIGINT or SIGTERM stops)")
    fflush(nil)
    let signal = await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
        let once = NSLock()
        nonisolated(unsafe) var resumed = false
        for signal in [SIGINT, SIGTERM] {
            try? loop.addSignalHandler(signal) {
                once.withLock {
                    if !resumed { resumed = true; continuation.resume(returning: signal) }
                }
            }
        }
    }
    print("signal \(signal): stopping; \(jobs.all.count) job(s) running")
    fflush(nil)
    server.close()   // no new clients
    // End the running jobs; their handlers then tell their clients and close.
    await withTaskGroup(of: Void.self) { group in
        for job in jobs.all { group.addTask { _ = try? await job.terminate(gracePeriod: grace) } }
    }
    // Give the handlers a moment to send the last lines, then cut whatever is left.
    try? await loop.sleep(0.2)
    server.closeClients()
    try await server.waitClosed()
    _ = loop.removeSignalHandler(SIGINT)
    _ = loop.removeSignalHandler(SIGTERM)
}
try loop.close()
print("job-runner stopped")
