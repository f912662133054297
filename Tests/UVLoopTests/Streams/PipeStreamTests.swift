import Foundation
import Testing
@testable import UVLoop

/// Two pipes with a plain thread copying from the first to the second with blocking I/O (an
/// in-process `cat`): the test writes `input` and reads `output`.
struct CatPipes {
    let input: Int32      // write end of the first pipe: for the StreamWriter
    let output: Int32     // read end of the second pipe: for the StreamReader
    let join: @Sendable () -> Void

    init() {
        var first: [Int32] = [0, 0]
        var second: [Int32] = [0, 0]
        precondition(pipe(&first) == 0 && pipe(&second) == 0)
        let source = first[0], sink = second[1]
        input = first[1]
        output = second[0]
        join = startThread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, 65536) }
                if count <= 0 { break }
                var offset = 0
                while offset < count {
                    let written = buffer.withUnsafeBytes { write(sink, $0.baseAddress! + offset, count - offset) }
                    if written <= 0 { break }
                    offset += written
                }
            }
            close(source)
            close(sink)
        }
    }
}

@Suite("Streams: pipes")
struct PipeStreamTests {
    @Test(.timeLimit(.minutes(1))) func megabytesBothWaysWithoutDeadlock() throws {
        let cat = CatPipes()
        defer { cat.join() }
        let total = 8 * 1024 * 1024
        let received = try onFreshLoop { loop in
            let writer = try StreamWriter(loop: loop, pipe: cat.input)
            let reader = try StreamReader(loop: loop, pipe: cat.output)
            let payload = patternBytes(total, seed: 7)
            // Write everything (with backpressure) while reading concurrently: a pipe holds only
            // 64 KiB, so doing one after the other would deadlock.
            let sender = loop.createTask {
                var offset = 0
                while offset < payload.count {
                    let end = min(offset + 100_000, payload.count)
                    try writer.write(Array(payload[offset..<end]))
                    try await writer.drain()
                    offset = end
                }
                writer.close()
                try await writer.waitClosed()
            }
            let all = try await reader.read()
            try await sender.value
            #expect(reader.atEOF)
            return all
        }
        #expect(received.count == total)
        #expect(received == patternBytes(total, seed: 7))
    }

    @Test(.timeLimit(.minutes(1))) func writeEOFClosesAPipeAndReadsEndAtEOF() throws {
        let cat = CatPipes()
        defer { cat.join() }
        let lines = try onFreshLoop { loop in
            let writer = try StreamWriter(loop: loop, pipe: cat.input)
            let reader = try StreamReader(loop: loop, pipe: cat.output)
            try writer.write("one\ntwo\nthree")
            try writer.writeEOF()
            #expect(throws: StreamError.closed) { try writer.write([1]) }
            var lines: [String] = []
            while true {
                let line = try await reader.readLine()
                if line.isEmpty { break }
                lines.append(String(decoding: line, as: UTF8.self))
            }
            try await writer.waitClosed()
            return lines
        }
        #expect(lines == ["one\n", "two\n", "three"])
    }

    @Test(.timeLimit(.minutes(1))) func writingToAPipeWithoutReaderIsEPIPE() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        close(fds[0])
        let writeEnd = fds[1]
        try onFreshLoop { loop in
            let writer = try StreamWriter(loop: loop, pipe: writeEnd)
            #expect(throws: UVError.EPIPE) { try writer.write([1, 2, 3]) }
            await #expect(throws: UVError.EPIPE) { try await writer.drain() }
            try await writer.waitClosed()
        }
    }

    @Test(.timeLimit(.minutes(1))) func badDescriptors() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let loop = try EventLoop()
        defer { try? loop.close() }
        #expect(throws: UVError.EBADF) { try StreamReader(loop: loop, pipe: -1) }
        #expect(throws: UVError.EBADF) { try StreamWriter(loop: loop, pipe: -5) }
        // Wrong direction: the descriptor stays open and ours.
        #expect(throws: UVError.EBADF) { try StreamReader(loop: loop, pipe: fds[1]) }
        #expect(throws: UVError.EBADF) { try StreamWriter(loop: loop, pipe: fds[0]) }
        #expect(fcntl(fds[0], F_GETFD) != -1 && fcntl(fds[1], F_GETFD) != -1)
        // A descriptor that is not open.
        #expect(fcntl(closedDescriptor, F_GETFD) == -1)
        #expect(throws: UVError.EBADF) { try StreamReader(loop: loop, pipe: closedDescriptor) }
    }

    @Test(.timeLimit(.minutes(1))) func droppingAPipeReaderClosesItsDescriptor() async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let loop = try EventLoop()
            try loop.close()   // libuv's process-wide signal pipe exists from here on
            let loop2 = try EventLoop()
            let before = openDescriptors()
            var fds: [Int32] = [0, 0]
            _ = pipe(&fds)
            let (readEnd, writeEnd) = (fds[0], fds[1])
            // The pipe's identity: a number that is open again afterwards may be something else
            // the process opened meanwhile (the test harness's own channel, say).
            func inode(_ fd: Int32) -> UInt64? {
                var info = stat()
                return fstat(fd, &info) == 0 ? UInt64(info.st_ino) : nil
            }
            let pipeInode = inode(readEnd)
            try loop2.runUntilComplete {
                do {
                    let reader = try StreamReader(loop: loop2, pipe: readEnd)
                    let writer = try StreamWriter(loop: loop2, pipe: writeEnd)
                    try writer.write([1, 2, 3])
                    if try await reader.readExactly(3) != [1, 2, 3] { print("wrong bytes") }
                }
                // Both dropped: their closes are posted to the loop; let it run them.
                for _ in 0..<10 { await Task.yield() }
            }
            // (libuv keeps one /dev/null descriptor per loop with streams, for its EMFILE trick,
            // until the loop closes; so check the pipe's descriptors themselves here.)
            if inode(readEnd) == pipeInode || inode(writeEnd) == pipeInode {
                print("the pipe descriptors are still open after dropping their streams")
            }
            try loop2.close()
            reportDescriptorChanges(since: before, "after close()")
        }
        #expect(childOutput(result).isEmpty, "\(childOutput(result))")
    }
}
