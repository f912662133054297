import Foundation
import Testing
@testable import UVLoop

/// Faults from outside: resource limits, signal storms, signal dispositions set by others, loops
/// closed under running children. Each runs in its own process (limits and dispositions are
/// process-wide); the child prints only what went wrong.
@Suite("Reliability: faults")
struct FaultTests {
    @Test(.timeLimit(.minutes(1))) func descriptorLimitMakesSpawnFailWithEMFILEAndTheLoopKeepsServing() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let loop = try EventLoop()
            try loop.runUntilComplete {
                _ = try await createSubprocessExec("/bin/true").wait()       // warm up
                let open = openDescriptors().count
                let saved = leaveFreeDescriptors(2)                        // room for one pipe, not three
                do {
                    _ = try await createSubprocessExec("/bin/true", stdin: .pipe, stdout: .pipe, stderr: .pipe)
                    print("spawn with three pipes succeeded with two descriptors free")
                } catch let error as UVError where error == .EMFILE {
                } catch {
                    print("unexpected error: \(error)")
                }
                restoreDescriptors(saved)
                if openDescriptors().count > open { print("descriptors leaked by the failed spawn") }
                // The loop still serves: timers, and a spawn once descriptors are available.
                let code = try await createSubprocessShell("exit 4", stdout: .pipe).wait()
                if code != 4 { print("spawn after the limit was lifted returned \(code)") }
            }
            try loop.close()
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }

    @Test(.timeLimit(.minutes(1))) func descriptorLimitMakesConnectAndAcceptFailAndTheServerKeepsServing() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let loop = try EventLoop()
            try loop.runUntilComplete {
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                    while let chunk = try? await reader.read(1024), !chunk.isEmpty { try? writer.write(chunk) }
                    writer.close()
                }
                let saved = leaveFreeDescriptors(8)
                // Connect until the limit: each connection costs a client and an accepted socket.
                var connections: [(StreamReader, StreamWriter)] = []
                var sawEMFILE = false
                for _ in 0..<20 {
                    do {
                        connections.append(try await loop.openConnection(host: "127.0.0.1", port: server.port))
                    } catch let error as UVError where error == .EMFILE {
                        sawEMFILE = true
                        break
                    }
                }
                if !sawEMFILE { print("connect never failed with EMFILE with 8 descriptors free") }
                await loopSleep(loop, 0.05)          // let accept run into the limit too
                // Release: close the clients and lift the limit; the server must still serve.
                for (_, writer) in connections { writer.close() }
                restoreDescriptors(saved)
                await loopSleep(loop, 0.05)
                let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
                try writer.write(Array("still serving".utf8))
                let reply = try await reader.readExactly(13)
                if reply != Array("still serving".utf8) { print("the server did not echo after the limit was lifted") }
                writer.close()
                server.close()
                try await server.waitClosed()
            }
            try loop.close()
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }

    @Test(.timeLimit(.minutes(1))) func processLimitMakesSpawnFailWithEAGAIN() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            // Root ignores RLIMIT_NPROC: drop to nobody first (this process only).
            if getuid() == 0 {
                guard setgid(65534) == 0, setuid(65534) == 0 else { print("cannot drop privileges"); return }
            }
            let loop = try EventLoop()
            try loop.runUntilComplete {
                var saved = rlimit()
                getrlimit(6 /* RLIMIT_NPROC */, &saved)
                var limit = rlimit(rlim_cur: 0, rlim_max: saved.rlim_max)
                setrlimit(6, &limit)                                  // no new process for this user
                // Lifted again before exit: LeakSanitizer needs a new process for its tracer.
                defer { setrlimit(6, &saved) }
                do {
                    _ = try await createSubprocessExec("/bin/true")
                    print("spawn succeeded with RLIMIT_NPROC = 0")
                } catch let error as UVError where error == .EAGAIN {
                } catch {
                    print("unexpected error: \(error)")
                }
                // The loop itself keeps working.
                try await Task.sleep(for: .milliseconds(5))
            }
            try loop.close()
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }

    @Test(.timeLimit(.minutes(1))) func aSIGCHLDStormReportsEveryExit() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let loop = try EventLoop()
            try loop.runUntilComplete {
                // 300 children that all exit at the same moment: signals coalesce, none is lost.
                let gate = "/tmp/uvloop-storm-\(getpid())"
                var processes: [ChildProcess] = []
                for index in 0..<300 {
                    processes.append(try await createSubprocessShell(
                        "while [ ! -e \(gate) ]; do sleep 0.01; done; exit \(index % 100)"))
                }
                _ = FileManager.default.createFile(atPath: gate, contents: nil)
                defer { try? FileManager.default.removeItem(atPath: gate) }
                for (index, process) in processes.enumerated() {
                    let code = try await process.wait()
                    if code != Int32(index % 100) { print("child \(index) reported \(code)") }
                }
            }
            try loop.close()
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }

    @Test(.timeLimit(.minutes(1))) func sigchldIgnoredBySomeoneElseGives255WithoutHanging() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            // With SIGCHLD ignored the kernel reaps children itself: their status is gone.
            signal(SIGCHLD, SIG_IGN)
            for watcher in [ThreadedChildWatcher(), PidfdChildWatcher()] as [any ChildWatcher] {
                setChildWatcher(watcher)
                let loop = try EventLoop()
                let code = try loop.runUntilComplete { try await createSubprocessShell("exit 3").wait() }
                if code != 255 { print("\(type(of: watcher)) reported \(code), expected 255") }
                try loop.close()
            }
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }

    @Test(.timeLimit(.minutes(1)), arguments: ["threaded", "pidfd", "libuv", "multiloop"])
    func aLoopClosedWithRunningChildrenLeavesNoZombie(_ name: String) async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) { [name] in
            let watchers: [String: () -> any ChildWatcher] = [
                "threaded": { ThreadedChildWatcher() }, "pidfd": { PidfdChildWatcher() },
                "libuv": { LibuvChildWatcher() }, "multiloop": { MultiLoopChildWatcher() },
            ]
            let watcher = watchers[name]!()
            setChildWatcher(watcher)
            watcher.attachLoop(nil)
            let loop = try EventLoop()
            let processes = try loop.runUntilComplete { () async throws -> [ChildProcess] in
                var processes: [ChildProcess] = []
                for _ in 0..<5 { processes.append(try await createSubprocessExec("sleep", ["0.3"])) }
                return processes
            }
            // Close the loop while its children run (and its timers and pipes are gone): no hang.
            try loop.close()
            // Documented outcome: the children run to completion, are reaped, and still report.
            let deadline = Date().addingTimeInterval(10)
            while processes.contains(where: { $0.returnCode == nil }) && Date() < deadline { usleep(10_000) }
            for process in processes where process.returnCode != 0 {
                print("pid \(process.pid) reported \(String(describing: process.returnCode))")
            }
            var info = siginfo_t()
            while waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && Date() < deadline { usleep(10_000) }
            if waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 { print("a child or zombie is left") }
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }
}
