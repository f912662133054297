import Foundation
import Testing
@testable import UVLoop

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Hardened stream controls (issue 13): NUL bytes in host names, pipes of the program's own,
/// and the reader's defined position after `limitOverrun`.
@Suite("Streams: controls and defined positions")
struct StreamControlTests {
    @Test(.timeLimit(.minutes(1))) func hostNamesWithANulByteAreRefused() throws {
        try onFreshLoop { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { _, writer in writer.close() }
            defer { server.close() }
            await #expect(throws: UVError.EINVAL) {
                _ = try await loop.openConnection(host: "127.0.0.1\0junk", port: server.port)
            }
            await #expect(throws: UVError.EINVAL) {
                _ = try await loop.startServer(host: "127.0.0.1\0junk", port: 0) { _, _ in }
            }
            await #expect(throws: UVError.EINVAL) { _ = try await loop.getaddrinfo("localhost\0evil.example") }
            // The same names without the tail still work.
            let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            writer.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func connectReadPipeAndConnectWritePipeWrapTheProgramsOwnPipes() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let (readEnd, writeEnd) = (fds[0], fds[1])
        let echoed = try onFreshLoop { loop -> [UInt8] in
            let writer = try loop.connectWritePipe(writeEnd)
            let reader = try loop.connectReadPipe(readEnd, limit: 1024)
            #expect(reader.limit == 1024)
            try writer.write("through a pipe\n")
            try await writer.drain()
            writer.close()
            return try await reader.read()
        }
        #expect(echoed == bytes("through a pipe\n"))
    }

    @Test(.timeLimit(.minutes(1))) func connectPipeRefusesWhatIsNotAPipeAndLeavesTheDescriptorAlone() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("uvloop-pipe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let file = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(file); unlink(path) }
        var pair: [Int32] = [0, 0]
        #expect(pipe(&pair) == 0)
        let fds = pair
        defer { close(fds[0]); close(fds[1]) }
        // Never open: above any descriptor limit (a number just closed could be reused at once by
        // a test running beside this one).
        let closed: Int32 = 1_000_000
        try onFreshLoop { loop in
            #expect(throws: UVError.EINVAL) { _ = try loop.connectReadPipe(file) }
            #expect(throws: UVError.EINVAL) { _ = try loop.connectWritePipe(file) }
            #expect(throws: UVError.EBADF) { _ = try loop.connectReadPipe(closed) }
            #expect(throws: UVError.EBADF) { _ = try loop.connectReadPipe(-1) }
            #expect(throws: UVError.EBADF) { _ = try loop.connectReadPipe(fds[1]) }    // the write end
            #expect(throws: UVError.EBADF) { _ = try loop.connectWritePipe(fds[0]) }   // the read end
            #expect(throws: EventLoopError.invalidArgument) { _ = try loop.connectReadPipe(fds[0], limit: 0) }
        }
        // Refused descriptors are still the caller's, open.
        #expect(fcntl(file, F_GETFD) >= 0 && fcntl(fds[0], F_GETFD) >= 0 && fcntl(fds[1], F_GETFD) >= 0)
    }

    @Test(.timeLimit(.minutes(1))) func afterAnOverrunTheReaderIsPastTheRecordWhateverWasBuffered() throws {
        // Limit 16. Record 1: 40 bytes, its ";" in the same read (buffered when detected).
        // Record 2: 5,000 bytes over many reads, its ";" arriving long after the overrun.
        // Then "next;" must come back from readUntil, and then "tail" from read().
        let long = [UInt8](repeating: UInt8(ascii: "y"), count: 5_000)
        var chunks = [bytes(String(repeating: "x", count: 40) + ";ok;")]
        chunks += stride(from: 0, to: long.count, by: 700).map { Array(long[$0..<min($0 + 700, long.count)]) }
        chunks += [bytes(";next;"), bytes("tail")]
        let feed = FedPipe(chunks)
        defer { feed.join() }
        let results = try onFreshLoop { loop -> [String] in
            let reader = try StreamReader(loop: loop, pipe: feed.output, limit: 16)
            var results: [String] = []
            for _ in 0..<4 {
                do {
                    results.append(String(decoding: try await reader.readUntil(bytes(";")), as: UTF8.self))
                } catch StreamError.limitOverrun {
                    results.append("overrun")
                }
            }
            results.append(String(decoding: try await reader.read(), as: UTF8.self))
            return results
        }
        #expect(results == ["overrun", "ok;", "overrun", "next;", "tail"])
    }

    @Test(.timeLimit(.minutes(1))) func aSeparatorSplitAcrossReadsEndsTheSkip() throws {
        // "\r\n" records; the over-long one's "\r" and "\n" arrive in different reads.
        let feed = FedPipe([bytes(String(repeating: "z", count: 100) + "\r"), bytes("\nfine\r\n")])
        defer { feed.join() }
        let results = try onFreshLoop { loop -> [String] in
            let reader = try StreamReader(loop: loop, pipe: feed.output, limit: 16)
            var results: [String] = []
            do { _ = try await reader.readUntil(bytes("\r\n")) } catch StreamError.limitOverrun { results.append("overrun") }
            results.append(String(decoding: try await reader.readUntil(bytes("\r\n")), as: UTF8.self))
            return results
        }
        #expect(results == ["overrun", "fine\r\n"])
    }

    @Test(.timeLimit(.minutes(1))) func readLineAndReadAgreeOnThePositionAfterAnOverlongLine() throws {
        // readLine drops the whole 300 KB line (asyncio returned its tail as the next command),
        // and a read() after an overrun also starts after the line.
        let huge = [UInt8](repeating: UInt8(ascii: "h"), count: 300_000)
        var chunks = stride(from: 0, to: huge.count, by: 65_536).map { Array(huge[$0..<min($0 + 65_536, huge.count)]) }
        chunks += [bytes("\nQUIT\n"), bytes(String(repeating: "w", count: 2_000)), bytes("\nafter")]
        let feed = FedPipe(chunks)
        defer { feed.join() }
        let results = try onFreshLoop { loop -> [String] in
            let reader = try StreamReader(loop: loop, pipe: feed.output, limit: 1024)
            var results: [String] = []
            do { _ = try await reader.readLine() } catch StreamError.limitOverrun { results.append("overrun") }
            results.append(String(decoding: try await reader.readLine(), as: UTF8.self))
            do { _ = try await reader.readLine() } catch StreamError.limitOverrun { results.append("overrun") }
            results.append(String(decoding: try await reader.read(), as: UTF8.self))
            return results
        }
        #expect(results == ["overrun", "QUIT\n", "overrun", "after"])
    }
}

@Suite("Streams: writeLines")
struct WriteLinesTests {
    @Test(.timeLimit(.minutes(1))) func tenThousandChunksArriveWholeAndInOrder() throws {
        var pair: [Int32] = [0, 0]
        #expect(pipe(&pair) == 0)
        let fds = pair
        let chunks = (0..<10_000).map { Array("line \($0)\n".utf8) }
        let received = try onFreshLoop { loop -> [UInt8] in
            let writer = try loop.connectWritePipe(fds[1])
            let reader = try loop.connectReadPipe(fds[0])
            async let all = reader.read()
            try writer.writeLines(chunks)
            try writer.writeLines([])
            try writer.writeLines([Array("end\n".utf8)])
            try await writer.drain()
            writer.close()
            return try await all
        }
        #expect(received == chunks.flatMap { $0 } + Array("end\n".utf8))
    }
}

@Suite("Streams: cancellable waitClosed")
struct CancellableWaitClosedTests {
    @Test(.timeLimit(.minutes(1))) func cancellingAWaitEndsItAndLeavesTheServerAndTheStreamAlone() throws {
        let outcome = try onFreshLoop { loop -> [String] in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                if let line = try? await reader.readLine() { try? writer.write(line) }
                writer.close()
            }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            var outcome: [String] = []
            for waiting in [loop.createTask { try await server.waitClosed() },
                            loop.createTask { try await writer.waitClosed() }] {
                try await loop.sleep(0.02)
                waiting.cancel()
                do {
                    try await waiting.value
                    outcome.append("returned")
                } catch is CancellationError {
                    outcome.append("cancelled")
                }
            }
            // Both still work: the connection echoes, then the server closes as asked.
            try writer.write("still here\n")
            outcome.append(String(decoding: try await reader.readLine(), as: UTF8.self))
            writer.close()
            try await writer.waitClosed()
            server.close()
            try await server.waitClosed()
            outcome.append("closed")
            return outcome
        }
        #expect(outcome == ["cancelled", "cancelled", "still here\n", "closed"])
    }
}

@Suite("Streams: pauseReading and resumeReading")
struct PauseReadingTests {
    @Test(.timeLimit(.minutes(1))) func aPausedReaderReadsNothingMoreAndTheSenderFeelsItThenAllArrives() throws {
        let total = 4 << 20   // far more than the socket buffers hold
        let (whilePaused, sent, received) = try onFreshLoop { loop -> ([Int], Int, Int) in
            let sentCount = LockedValue(0)
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                // Floods only once the client says go (after it paused).
                guard (try? await reader.readLine()) != nil else { return writer.close() }
                let block = [UInt8](repeating: 7, count: 64 * 1024)
                for _ in 0..<(total / block.count) {
                    guard (try? writer.write(block)) != nil, (try? await writer.drain()) != nil else { break }
                    sentCount.withLock { $0 += block.count }
                }
                writer.close()
            }
            defer { server.close() }
            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: server.port)
            reader.pauseReading()
            try writer.write("go\n")
            try await loop.sleep(0.1)
            var samples: [Int] = []
            for _ in 0..<3 {
                samples.append(reader.bufferedByteCount)
                try await loop.sleep(0.05)
            }
            let sentWhilePaused = sentCount.withLock { $0 }
            reader.resumeReading()
            let rest = try await reader.read()
            writer.close()
            return (samples, sentWhilePaused, rest.count)
        }
        #expect(Set(whilePaused).count == 1, "nothing was read while paused: \(whilePaused)")
        // Nothing at all: paused before the first byte; flow control alone would have let it
        // grow past twice the limit (128 KiB) before stopping.
        #expect(whilePaused.allSatisfy { $0 == 0 }, "\(whilePaused)")
        #expect(sent < total, "the sender was held back (\(sent) of \(total) bytes sent while paused)")
        #expect(received == total)
    }
}
