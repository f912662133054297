import Foundation
import Testing
@testable import UVLoop

/// Spawning uses the process-wide policy's watcher: nested in ProcessWide, never beside the
/// policy tests. The default watcher (ThreadedChildWatcher) serves these.
extension ProcessWide {
@Suite("Subprocess: spawning, pipes, errors")
struct SubprocessTests {
    func onLoop<T: Sendable>(_ body: sending @escaping () async throws -> T) throws -> T {
        setEventLoopPolicy(nil)
        let loop = try EventLoop()
        defer { try? loop.close() }
        return try loop.runUntilComplete(body)
    }

    @Test(.timeLimit(.minutes(1))) func readsStdoutLineByLine() throws {
        let lines = try onLoop { () async throws -> [String] in
            let process = try await createSubprocessShell("printf 'one\\ntwo\\nthree'", stdout: .pipe)
            var lines: [String] = []
            while let reader = process.stdout, !reader.atEOF {
                let line = try await reader.readLine()
                if line.isEmpty { break }
                lines.append(String(decoding: line, as: UTF8.self))
            }
            #expect(try await process.wait() == 0)
            return lines
        }
        #expect(lines == ["one\n", "two\n", "three"])
    }

    @Test(.timeLimit(.minutes(1))) func communicateMovesMegabytesBothWaysWithoutDeadlock() throws {
        let size = 4 * 1024 * 1024
        let input = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let (output, errors, code) = try onLoop { () async throws -> ([UInt8], [UInt8], Int32) in
            // cat echoes everything while the parent is still writing: both pipes fill up.
            let process = try await createSubprocessShell("cat; echo done >&2", stdin: .pipe, stdout: .pipe, stderr: .pipe)
            let (output, errors) = try await process.communicate(input)
            return (output, errors, process.returnCode ?? -1000)
        }
        #expect(output.count == size)
        #expect(output == input)
        #expect(errors == Array("done\n".utf8))
        #expect(code == 0)
    }

    @Test(.timeLimit(.minutes(1))) func stderrMergedIntoStdout() throws {
        let output = try onLoop { () async throws -> String in
            let process = try await createSubprocessShell("echo out; echo err >&2", stdout: .pipe, stderr: .stdout)
            #expect(process.stderr == nil)
            let (output, _) = try await process.communicate()
            return String(decoding: output, as: UTF8.self)
        }
        #expect(output == "out\nerr\n")
    }

    @Test(.timeLimit(.minutes(1))) func devNullAndFileDescriptors() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("uvloop-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o600)
        #expect(fd >= 0)
        defer { close(fd); unlink(path) }
        let codes = try onLoop { () async throws -> [Int32] in
            // stdin from /dev/null: cat sees EOF at once.
            let cat = try await createSubprocessExec("cat", stdin: .devNull, stdout: .devNull)
            let toFile = try await createSubprocessShell("echo to-file; echo also >&2", stdout: .fileDescriptor(fd), stderr: .fileDescriptor(fd))
            return [try await cat.wait(), try await toFile.wait()]
        }
        #expect(codes == [0, 0])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "to-file\nalso\n")
    }

    @Test(.timeLimit(.minutes(1))) func environmentAndWorkingDirectory() throws {
        let (env, pwd) = try onLoop { () async throws -> (String, String) in
            let env = try await createSubprocessExec("/bin/sh", ["-c", "echo \"$GREETING:${HOME:-unset}\""], stdout: .pipe,
                                                     environment: ["GREETING": "hello world"])
            let pwd = try await createSubprocessExec("pwd", stdout: .pipe, workingDirectory: "/tmp")
            return (String(decoding: try await env.communicate().stdout, as: UTF8.self),
                    String(decoding: try await pwd.communicate().stdout, as: UTF8.self))
        }
        #expect(env == "hello world:unset\n")   // the environment replaces the parent's entirely
        #expect(pwd == "/tmp\n")
    }

    @Test(.timeLimit(.minutes(1))) func badInputThrowsClearErrorsAndSpawnsNothing() throws {
        let notExecutable = FileManager.default.temporaryDirectory.appendingPathComponent("uvloop-noexec-\(getpid())").path
        _ = FileManager.default.createFile(atPath: notExecutable, contents: Array("#!/bin/sh\n".utf8).withUnsafeBytes { Data($0) },
                                       attributes: [.posixPermissions: 0o644])
        defer { unlink(notExecutable) }
        let failures = try onLoop { () async -> [String] in
            func failure(_ body: () async throws -> ChildProcess) async -> String {
                do {
                    let process = try await body()
                    _ = try? await process.wait()
                    return "spawned"
                } catch let error as UVError {
                    return error.name
                } catch {
                    return "\(error)"
                }
            }
            return [
                await failure { try await createSubprocessExec("/no/such/program") },
                await failure { try await createSubprocessExec("no-such-program-on-path") },
                await failure { try await createSubprocessExec(notExecutable) },
                await failure { try await createSubprocessExec("/bin/true", workingDirectory: "/no/such/directory") },
                await failure { try await createSubprocessExec("") },
                await failure { try await createSubprocessExec("/bin/echo", ["a\u{0}b"]) },
                await failure { try await createSubprocessExec("/bin/true", environment: ["A=B": "c"]) },
                await failure { try await createSubprocessExec("/bin/true", environment: ["": "c"]) },
                await failure { try await createSubprocessExec("/bin/true", stdin: .fileDescriptor(987)) },
                await failure { try await createSubprocessExec("/bin/true", stdout: .stdout) },
            ]
        }
        #expect(failures == ["ENOENT", "ENOENT", "EACCES", "ENOENT", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EBADF", "EINVAL"])
    }

    @Test(.timeLimit(.minutes(1))) func waitResolvesAtExitNotWhenPipesClose() throws {
        let (code, elapsed) = try onLoop { () async throws -> (Int32, Double) in
            // The grandchild keeps stdout open for 2 s; the child exits at once.
            let start = Date()
            let process = try await createSubprocessShell("sleep 2 & exit 3", stdout: .pipe)
            let code = try await process.wait()
            let elapsed = Date().timeIntervalSince(start)
            process.stdout?.close()
            return (code, elapsed)
        }
        #expect(code == 3)
        #expect(elapsed < 1.5)
    }

    @Test(.timeLimit(.minutes(1))) func cancellingOneWaitLeavesTheProcessAlone() throws {
        let (cancelled, code) = try onLoop { () async throws -> (Bool, Int32) in
            let process = try await createSubprocessExec("sleep", ["30"])
            let waiter = (try getRunningLoop()).createTask { try await process.wait() }
            try await Task.sleep(for: .milliseconds(20))
            waiter.cancel()
            var cancelled = false
            do { _ = try await waiter.value } catch is CancellationError { cancelled = true }
            #expect(process.returnCode == nil)
            try process.kill()
            return (cancelled, try await process.wait())
        }
        #expect(cancelled)
        #expect(code == -9)
    }

    @Test(.timeLimit(.minutes(1))) func aDroppedChildProcessLeavesNoZombie() throws {
        let pid = try onLoop { () async throws -> pid_t in
            let process = try await createSubprocessExec("/bin/true")
            return process.pid   // the ChildProcess itself is dropped here
        }
        // The watcher still reaps it: soon the pid is no child of ours (no zombie).
        let deadline = Date().addingTimeInterval(5)
        while Reaper.system.isUnreapedChild(pid) && Date() < deadline { usleep(5_000) }
        #expect(!Reaper.system.isUnreapedChild(pid))
    }

    @Test(.timeLimit(.minutes(1))) func anInactiveWatcherRefusesBeforeSpawning() throws {
        let policy = DefaultEventLoopPolicy()
        setEventLoopPolicy(policy)
        defer { setEventLoopPolicy(nil) }
        let watcher = SafeChildWatcher()     // never attached: inactive
        policy.setChildWatcher(watcher)
        let loop = try EventLoop()
        defer { try? loop.close() }
        let result = try loop.runUntilComplete { () async -> String in
            do {
                _ = try await createSubprocessExec("/bin/sh", ["-c", "touch /tmp/uvloop-should-not-exist-\(getpid())"])
                return "spawned"
            } catch {
                return "\(error)"
            }
        }
        #expect(result == "\(EventLoopError.childWatcherNotActive)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/uvloop-should-not-exist-\(getpid())"))
    }

    @Test func spawningNeedsARunningLoop() async {
        await #expect(throws: EventLoopError.noRunningEventLoop) {
            _ = try await createSubprocessExec("/bin/true")
        }
    }

    @Test(.timeLimit(.minutes(1))) func stdoutIsAnAsyncSequenceOfChunks() throws {
        let total = try onLoop { () async throws -> Int in
            let process = try await createSubprocessShell("head -c 300000 /dev/zero", stdout: .pipe)
            var total = 0
            for try await chunk in process.stdout! { total += chunk.count }
            _ = try await process.wait()
            return total
        }
        #expect(total == 300_000)
    }
}
}

/// Failed spawns leave nothing behind: checked in a child process, where descriptor and child
/// counts are exact.
@Suite("Subprocess: nothing left behind")
struct SubprocessResourceTests {
    @Test(.timeLimit(.minutes(1))) func failedAndFinishedSpawnsLeaveNoDescriptorOrChild() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let loop = try EventLoop()
            _ = try loop.runUntilComplete {
                // Warm-up: the watcher, libuv's signal pipe, libdispatch's descriptors.
                try await Task.sleep(for: .milliseconds(1))
                _ = try await loop.runInExecutor { 0 }
                return try await createSubprocessExec("/bin/true", stdout: .pipe).communicate()
            }
            let before = openDescriptors()
            try loop.runUntilComplete {
                for program in ["/no/such", "/dev/null", "nope-not-on-path"] {
                    _ = try? await createSubprocessExec(program, stdin: .pipe, stdout: .pipe, stderr: .pipe)
                }
                _ = try? await createSubprocessExec("/bin/true", stdin: .pipe, stdout: .pipe, workingDirectory: "/no/dir")
                for _ in 0..<20 {
                    let process = try await createSubprocessShell("echo hi; cat", stdin: .pipe, stdout: .pipe, stderr: .pipe)
                    _ = try await process.communicate(Array("x".utf8))
                }
            }
            try loop.close()
            let deadline = Date().addingTimeInterval(5)
            var info = siginfo_t()
            while waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && Date() < deadline { usleep(5_000) }
            if waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 { print("a child or zombie is left") }
            reportDescriptorChanges(since: before, "after spawning")
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }
}
