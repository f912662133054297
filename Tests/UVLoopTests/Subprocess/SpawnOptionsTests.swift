import Foundation
import Testing
@testable import UVLoop

/// The process group and session of a running process, from `/proc/<pid>/stat`.
private func groupAndSession(_ pid: pid_t) -> (group: pid_t, session: pid_t)? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 3, let group = pid_t(fields[2]), let session = pid_t(fields[3]) else { return nil }
    return (group, session)
}

/// An open descriptor without close-on-exec, as Swift's and C's defaults make them.
private func inheritableDescriptor() -> Int32 { open("/dev/null", O_RDONLY) }

/// The shell line that says whether descriptor `fd` is open in the child.
private func probe(_ fd: Int32) -> String { "test -e /proc/self/fd/\(fd) && echo open || echo closed" }

/// The spawn options (sessions, groups, descriptors, executable, limit), under the default watcher
/// (posix_spawn) and under LibuvChildWatcher (uv_spawn) where the spawner matters.
extension ProcessWide {
@Suite("Subprocess: sessions, groups, descriptors, executable")
struct SpawnOptionsTests {
    static let spawners: [String] = ["posix_spawn", "uv_spawn"]

    func watcher(_ spawner: String) -> (any ChildWatcher)? { spawner == "uv_spawn" ? LibuvChildWatcher() : nil }

    @Test(.timeLimit(.minutes(1)), arguments: spawners)
    func inheritableDescriptorsAreClosedInTheChildByDefault(_ spawner: String) throws {
        let fd = inheritableDescriptor()
        defer { close(fd) }
        let (closedByDefault, keptWhenAsked) = try onPolicyLoop(watcher: watcher(spawner)) { () async throws -> (String, String) in
            let first = try await createSubprocessShell(probe(fd), stdout: .pipe).communicate().stdout
            let second = try await createSubprocessShell(probe(fd), stdout: .pipe, closeFDs: false).communicate().stdout
            return (String(decoding: first, as: UTF8.self), String(decoding: second, as: UTF8.self))
        }
        #expect(closedByDefault == "closed\n")
        #expect(keptWhenAsked == "open\n")
        // uv_spawn's path marks descriptors close-on-exec for the fork only: the parent's flag is back.
        #expect(!System.isCloseOnExec(fd))
    }

    @Test(.timeLimit(.minutes(1)), arguments: spawners)
    func passedDescriptorsStayOpenUnderTheirNumbers(_ spawner: String) throws {
        let pipe = try System.makePipe(nonBlockingRead: false, nonBlockingWrite: false)   // both close-on-exec
        defer { close(pipe.read) }
        let other = inheritableDescriptor()
        defer { close(other) }
        let output = try onPolicyLoop(watcher: watcher(spawner)) { () async throws -> String in
            // Through /proc: dash's `>&N` takes one digit, and under TSan the pipe is above fd 9.
            let child = try await createSubprocessShell("echo passed > /proc/self/fd/\(pipe.write); \(probe(other))",
                                                        stdout: .pipe, passFDs: [pipe.write, pipe.write])
            let output = try await child.communicate().stdout
            return String(decoding: output, as: UTF8.self)
        }
        close(pipe.write)
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(pipe.read, &buffer, 64)
        #expect(String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self) == "passed\n")
        #expect(output == "closed\n")   // closeFDs still closes what was not passed
    }

    @Test(.timeLimit(.minutes(1)), arguments: spawners)
    func aNewSessionIsLedByTheChild(_ spawner: String) throws {
        let ours = getsid(0)
        let ids = try onPolicyLoop(watcher: watcher(spawner)) { () async throws -> [pid_t] in
            let child = try await createSubprocessExec("/bin/sleep", ["30"], startNewSession: true)
            defer { try? child.kill() }
            try await getRunningLoop().sleep(0.05)
            let ids = groupAndSession(child.pid)
            try child.kill()
            _ = try await child.wait()
            return [child.pid, ids?.group ?? -1, ids?.session ?? -1]
        }
        #expect(ids[1] == ids[0])
        #expect(ids[2] == ids[0])
        #expect(ids[2] != ours)
    }

    @Test(.timeLimit(.minutes(1))) func processGroupZeroMakesAGroupAndAPidJoinsIt() throws {
        let ids = try onPolicyLoop { () async throws -> [pid_t] in
            let leader = try await createSubprocessExec("/bin/sleep", ["30"], processGroup: 0)
            let member = try await createSubprocessExec("/bin/sleep", ["30"], processGroup: leader.pid)
            try await getRunningLoop().sleep(0.05)
            let leaderIDs = groupAndSession(leader.pid), memberIDs = groupAndSession(member.pid)
            try member.kill()
            try leader.kill()
            _ = try await member.wait()
            _ = try await leader.wait()
            return [leader.pid, leaderIDs?.group ?? -1, memberIDs?.group ?? -1, leaderIDs?.session ?? -1]
        }
        #expect(ids[1] == ids[0])
        #expect(ids[2] == ids[0])
        #expect(ids[3] == getsid(0))   // a group, not a session
    }

    @Test(.timeLimit(.minutes(1)), arguments: spawners)
    func theExecutableRunsUnderTheProgramsName(_ spawner: String) throws {
        let output = try onPolicyLoop(watcher: watcher(spawner)) { () async throws -> String in
            let child = try await createSubprocessExec("my-job", ["-c", "echo $0"], stdout: .pipe, executable: "sh")
            return String(decoding: try await child.communicate().stdout, as: UTF8.self)
        }
        #expect(output == "my-job\n")
    }

    @Test(.timeLimit(.minutes(1))) func thePipesUseTheLimit() throws {
        let outcome = try onPolicyLoop { () async throws -> String in
            let child = try await createSubprocessShell("echo a-line-longer-than-ten-bytes; echo ok", stdout: .pipe, limit: 10)
            guard let reader = child.stdout else { return "no pipe" }
            #expect(reader.limit == 10)
            do {
                _ = try await reader.readLine()
                return "no overrun"
            } catch StreamError.limitOverrun {
                _ = try await child.wait()
                return "overrun"
            }
        }
        #expect(outcome == "overrun")
    }

    @Test(.timeLimit(.minutes(1))) func badInputThrowsAndSpawnsNothing() throws {
        try onPolicyLoop {
            await #expect(throws: UVError.EBADF) { try await createSubprocessExec("/bin/true", passFDs: [-1]) }
            await #expect(throws: UVError.EBADF) { try await createSubprocessExec("/bin/true", passFDs: [closedDescriptor]) }
            await #expect(throws: UVError.EINVAL) { try await createSubprocessExec("/bin/true", processGroup: -1) }
            await #expect(throws: UVError.EINVAL) {
                try await createSubprocessExec("/bin/true", startNewSession: true, processGroup: 0)
            }
            await #expect(throws: EventLoopError.invalidArgument) { try await createSubprocessExec("/bin/true", limit: 0) }
            await #expect(throws: UVError.EINVAL) { try await createSubprocessExec("x", executable: "") }
            await #expect(throws: UVError.ENOENT) { try await createSubprocessExec("x", executable: "/no/such/file") }
            // A group that does not exist: setpgid in the child fails, posix_spawn reports it.
            do {
                _ = try await createSubprocessExec("/bin/true", processGroup: 4_000_000)
                Issue.record("spawned into a process group that does not exist")
            } catch let error as UVError {
                #expect(error == .EPERM || error == .ESRCH, "\(error)")
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func theLibuvWatcherRefusesAProcessGroup() throws {
        try onPolicyLoop(watcher: LibuvChildWatcher()) {
            await #expect(throws: UVError.ENOTSUP) { try await createSubprocessExec("/bin/true", processGroup: 0) }
        }
    }
}
}
