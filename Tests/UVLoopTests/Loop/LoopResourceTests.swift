import Foundation
import Testing
@testable import UVLoop

/// libuv opens one process-wide pipe for signal delivery the first time any loop is created;
/// baselines are taken after that.
func warmUp() throws {
    try EventLoop().close()
}

/// Descriptor and thread counts are process-wide, so these run in their own process (exit tests).
/// The child prints only what went wrong; the parent expects it to exit 0 having printed nothing.
@Suite("EventLoop: nothing left behind")
struct LoopResourceTests {
    @Test(.timeLimit(.minutes(1))) func closeReleasesEveryDescriptorAndCreatesNoThread() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            try warmUp()
            let fdsBefore = openDescriptors()
            let timerfdsBefore = timerDescriptorCount()
            let threadsBefore = threadCount()
            for _ in 0..<20 {
                let loop = try EventLoop()
                let join = startThread { for _ in 0..<100 { loop.callSoonThreadsafe {} } }
                loop.callLater(0.002) { loop.stop() }
                loop.callLater(3600) {}          // a pending timer left behind on purpose
                try loop.runForever()
                join()
                try loop.close()
            }
            reportDescriptorChanges(since: fdsBefore, "after close()")
            if threadCount() != threadsBefore { print("threads: \(threadsBefore) -> \(threadCount())") }
            // A loop dropped without close() is closed by its deinit.
            for _ in 0..<20 { _ = try EventLoop() }
            reportDescriptorChanges(since: fdsBefore, "after deinit")
            // Each loop had a timerfd of its own; libdispatch may have opened one meanwhile.
            if timerDescriptorCount() > timerfdsBefore + 1 {
                print("timerfds: \(timerfdsBefore) -> \(timerDescriptorCount())")
            }
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }

    @Test(.timeLimit(.minutes(1))) func aThreadExitingWithALoopInItsSlotLeavesNothing() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let policy = DefaultEventLoopPolicy()
            try warmUp()
            let fdsBefore = openDescriptors()
            for _ in 0..<10 {
                try onNewThread {
                    let loop = try policy.newEventLoop()
                    policy.setEventLoop(loop)
                    _ = try loop.runUntilComplete { 1 }
                }
            }
            reportDescriptorChanges(since: fdsBefore, "after the threads exited")
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }

    @Test(.timeLimit(.minutes(1))) func sigpipeIsIgnoredOnceALoopExists() async {
        await #expect(processExitsWith: .success) {
            let loop = try EventLoop()
            defer { try? loop.close() }
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { exit(3) }
            close(fds[0])
            // Without SIG_IGN this write would kill the process with SIGPIPE.
            let written = write(fds[1], "x", 1)
            guard written == -1, errno == EPIPE else { exit(4) }
            close(fds[1])
        }
    }

    @Test(.timeLimit(.minutes(1))) func aForkedChildCanRunItsOwnLoop() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let status = try loop.runUntilComplete { () throws -> Int32 in
            let pid = fork()
            if pid == 0 {
                // In the child: no running loop is inherited, and a new loop runs.
                let inherited = (try? getRunningLoop()) != nil
                let child = try? EventLoop()
                let value = try? child?.runUntilComplete { 7 }
                try? child?.close()
                _exit(!inherited && value == 7 ? 0 : 1)
            }
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            return status
        }
        #expect(status == 0)
    }
}
