import Foundation
import Testing
@testable import UVLoop

/// A connected pair of Unix stream sockets.
func socketPair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
    return (fds[0], fds[1])
}

@Suite("EventLoop: addReader and addWriter")
struct DescriptorWatcherTests {
    @Test(.timeLimit(.minutes(1))) func readerRunsWhenTheSocketIsReadable() throws {
        let (mine, theirs) = socketPair()
        defer { close(mine); close(theirs) }
        let loop = try EventLoop()
        defer { try? loop.close() }
        let received = Box<[UInt8]>([])
        try loop.addReader(mine) {
            var buffer = [UInt8](repeating: 0, count: 16)
            let count = buffer.withUnsafeMutableBytes { read(mine, $0.baseAddress, 16) }
            if count > 0 { received.mutate { $0 += buffer[..<count] } }
            if received.value.count >= 5 { loop.stop() }
        }
        let join = startThread {
            usleep(10_000)
            _ = write(theirs, "hello", 5)
        }
        try loop.runForever()
        join()
        #expect(received.value == Array("hello".utf8))
        #expect(loop.removeReader(mine))
        #expect(!loop.removeReader(mine))
    }

    @Test(.timeLimit(.minutes(1))) func writerRunsWhileWritableAndSharesThePollWithTheReader() throws {
        let (mine, theirs) = socketPair()
        defer { close(mine); close(theirs) }
        let loop = try EventLoop()
        defer { try? loop.close() }
        let handlesBefore = loop.uvLoop.handleCount
        let events = Box<[String]>([])
        try loop.addWriter(mine) {
            events.mutate { $0.append("writable") }
            loop.removeWriter(mine)
            _ = write(mine, "x", 1)
        }
        try loop.addReader(theirs) {
            events.mutate { $0.append("readable") }
            loop.stop()
        }
        try loop.addReader(mine) {}
        // Reader and writer of one descriptor share one uv_poll_t: two handles for two fds.
        #expect(loop.uvLoop.handleCount == handlesBefore + 2)
        try loop.runForever()
        #expect(events.value == ["writable", "readable"])
        #expect(loop.removeReader(theirs))
        #expect(loop.removeReader(mine))
        #expect(!loop.removeWriter(mine))
        loop.callSoon { loop.stop() }
        try loop.runForever()   // lets the closed polls' close callbacks run
        #expect(loop.uvLoop.handleCount == handlesBefore)
    }

    @Test(.timeLimit(.minutes(1))) func addingAgainReplacesTheCallback() throws {
        let (mine, theirs) = socketPair()
        defer { close(mine); close(theirs) }
        let loop = try EventLoop()
        defer { try? loop.close() }
        let calls = Box<[String]>([])
        try loop.addReader(mine) { calls.mutate { $0.append("first") } }
        try loop.addReader(mine) {
            calls.mutate { $0.append("second") }
            var byte: UInt8 = 0
            _ = read(mine, &byte, 1)
            loop.stop()
        }
        _ = write(theirs, "x", 1)
        try loop.runForever()
        #expect(calls.value == ["second"])
        #expect(loop.removeReader(mine))
    }

    @Test(.timeLimit(.minutes(1))) func pipeEndsWork() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let (readEnd, writeEnd) = (fds[0], fds[1])
        defer { close(readEnd); close(writeEnd) }
        let loop = try EventLoop()
        defer { try? loop.close() }
        let got = Box(false)
        try loop.addWriter(writeEnd) {
            _ = write(writeEnd, "p", 1)
            loop.removeWriter(writeEnd)
        }
        try loop.addReader(readEnd) {
            var byte: UInt8 = 0
            got.value = read(readEnd, &byte, 1) == 1 && byte == UInt8(ascii: "p")
            loop.removeReader(readEnd)
            loop.stop()
        }
        try loop.runForever()
        #expect(got.value)
    }

    @Test(.timeLimit(.minutes(1))) func badDescriptors() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        #expect(throws: UVError.EBADF) { try loop.addReader(-1) {} }
        #expect(throws: UVError.EBADF) { try loop.addWriter(-3) {} }
        #expect(fcntl(closedDescriptor, F_GETFD) == -1)
        #expect(throws: UVError.EBADF) { try loop.addReader(closedDescriptor) {} }
        // epoll refuses regular files.
        let path = "/tmp/uvloop-watcher-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let file = open(path, O_CREAT | O_RDWR, 0o600)
        defer { close(file); unlink(path) }
        #expect(throws: UVError.EPERM) { try loop.addReader(file) {} }
        #expect(!loop.removeReader(12345))
        #expect(!loop.removeWriter(-1))
    }

    @Test(.timeLimit(.minutes(1))) func aClosedLoopRefuses() throws {
        let (a, b) = socketPair()
        defer { close(a); close(b) }
        let loop = try EventLoop()
        try loop.addReader(a) {}
        try loop.close()
        #expect(throws: EventLoopError.loopClosed) { try loop.addReader(a) {} }
        #expect(throws: EventLoopError.loopClosed) { try loop.addWriter(a) {} }
        #expect(!loop.removeReader(a))
        // The loop's close() freed the poll handle; a new loop can watch the descriptor.
        let other = try EventLoop()
        defer { try? other.close() }
        try other.addReader(a) {}
        #expect(other.removeReader(a))
    }

    @Test(.timeLimit(.minutes(1))) func addReaderFromAnotherThreadWhileRunningThrows() throws {
        let (a, b) = socketPair()
        defer { close(a); close(b) }
        let loop = try EventLoop()
        defer { try? loop.close() }
        let error = Box<EventLoopError?>(nil)
        loop.callSoon {
            let join = startThread {
                do { try loop.addReader(a) {} } catch let e as EventLoopError { error.value = e } catch {}
            }
            join()
            loop.stop()
        }
        try loop.runForever()
        #expect(error.value == .wrongThread)
    }
}

/// Signal handlers are process-wide: these run one at a time, and each removes its handlers
/// before it ends (libuv then restores the default action).
@Suite("EventLoop: signal handlers", .serialized)
struct SignalHandlerTests {
    @Test(.timeLimit(.minutes(1))) func handlerRunsOnTheLoopForARealSignal() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let onLoopThread = Box(false)
        try loop.addSignalHandler(SIGUSR1) {
            onLoopThread.value = loop.inLoopThread
            loop.stop()
        }
        loop.callSoon { kill(getpid(), SIGUSR1) }
        try loop.runForever()
        #expect(onLoopThread.value)
        #expect(loop.removeSignalHandler(SIGUSR1))
        #expect(!loop.removeSignalHandler(SIGUSR1))
    }

    @Test(.timeLimit(.minutes(1))) func addingAgainReplacesAndEveryLoopHears() throws {
        let first = try EventLoop()
        let second = try EventLoop()
        defer { try? first.close(); try? second.close() }
        let heard = Box<[String]>([])
        try first.addSignalHandler(SIGUSR2) { heard.mutate { $0.append("old") } }
        try first.addSignalHandler(SIGUSR2) { heard.mutate { $0.append("first") }; first.stop() }
        try second.addSignalHandler(SIGUSR2) { heard.mutate { $0.append("second") }; second.stop() }
        let join = startThread { try? second.runForever() }
        first.callSoon { kill(getpid(), SIGUSR2) }
        try first.runForever()
        join()
        #expect(heard.value.sorted() == ["first", "second"])
        #expect(first.removeSignalHandler(SIGUSR2))
        #expect(second.removeSignalHandler(SIGUSR2))
    }

    @Test(.timeLimit(.minutes(1))) func uncatchableAndInvalidSignals() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        for signal in [SIGKILL, SIGSTOP, 0, -1, 65, 1000] {
            #expect(throws: UVError.EINVAL, "signal \(signal)") { try loop.addSignalHandler(signal) {} }
        }
        #expect(!loop.removeSignalHandler(SIGKILL))
        try loop.close()
        #expect(throws: EventLoopError.loopClosed) { try loop.addSignalHandler(SIGUSR1) {} }
        #expect(!loop.removeSignalHandler(SIGUSR1))
    }

    @Test(.timeLimit(.minutes(1))) func sigpipeStaysIgnoredAfterItsHandlerGoes() async throws {
        await #expect(processExitsWith: .success) {
            let loop = try EventLoop()
            try loop.addSignalHandler(SIGPIPE) {}
            #expect(loop.removeSignalHandler(SIGPIPE))
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { exit(3) }
            close(fds[0])
            // Without SIG_IGN restored, this write would kill the process with SIGPIPE.
            guard write(fds[1], "x", 1) == -1, errno == EPIPE else { exit(4) }
            try loop.close()
        }
    }
}
