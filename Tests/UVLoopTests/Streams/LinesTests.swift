import Foundation
import Testing
@testable import UVLoop

/// Every line `lines` yields, with "overrun" for each `limitOverrun`, iterating on after it.
private func collectLines(_ reader: StreamReader) async throws -> [String] {
    var lines: [String] = []
    var iterator = reader.lines.makeAsyncIterator()
    while true {
        do {
            guard let line = try await iterator.next() else { return lines }
            lines.append(line)
        } catch StreamError.limitOverrun {
            lines.append("overrun")
        }
    }
}

@Suite("Streams: lines")
struct LinesTests {
    @Test(.timeLimit(.minutes(1))) func linesEndAtLFOrCRLFAndTheLastNeedsNone() throws {
        let feed = FedPipe("one\r\ntwo\n", "\n", "thr", "ee\r\n", "lone\rcr\n", "last")
        defer { feed.join() }
        let lines = try onFreshLoop { loop in
            try await collectLines(try StreamReader(loop: loop, pipe: feed.output))
        }
        #expect(lines == ["one", "two", "", "three", "lone\rcr", "last"])
    }

    @Test(.timeLimit(.minutes(1))) func anEmptyStreamHasNoLinesAndAFinalNewlineMakesNoEmptyOne() throws {
        let empty = FedPipe([[UInt8]]())
        defer { empty.join() }
        let terminated = FedPipe("a\nb\n")
        defer { terminated.join() }
        let (none, two) = try onFreshLoop { loop in
            (try await collectLines(try StreamReader(loop: loop, pipe: empty.output)),
             try await collectLines(try StreamReader(loop: loop, pipe: terminated.output)))
        }
        #expect(none.isEmpty)
        #expect(two == ["a", "b"])
    }

    @Test(.timeLimit(.minutes(1))) func anOverlongLineThrowsAndTheNextLineFollows() throws {
        // Limit 16: the long line's newline is buffered (17 bytes) in one case and arrives in
        // later reads in the other (100 KB, many chunks, far past twice the limit).
        let long = Array(repeating: UInt8(ascii: "x"), count: 100_000)
        var chunks: [[UInt8]] = [Array("short\n".utf8), Array("seventeen-bytes-!\nnext\n".utf8)]
        chunks += stride(from: 0, to: long.count, by: 4096).map { Array(long[$0..<min($0 + 4096, long.count)]) }
        chunks += [Array("\nafter\n".utf8), Array(repeating: UInt8(ascii: "y"), count: 40)]
        let feed = FedPipe(chunks)
        defer { feed.join() }
        let lines = try onFreshLoop { loop in
            try await collectLines(try StreamReader(loop: loop, pipe: feed.output, limit: 16))
        }
        #expect(lines == ["short", "overrun", "next", "overrun", "after", "overrun"])
    }

    @Test(.timeLimit(.minutes(1))) func aNewSequenceAlsoResumesAfterTheOverlongLine() throws {
        let feed = FedPipe([Array("ok\n".utf8), Array(repeating: UInt8(ascii: "z"), count: 5_000), Array("\nback\n".utf8)])
        defer { feed.join() }
        let lines = try onFreshLoop { loop -> [String] in
            let reader = try StreamReader(loop: loop, pipe: feed.output, limit: 64)
            var lines: [String] = []
            for _ in 0..<3 {   // for-in ends at the error; a new loop over `lines` goes on
                do {
                    for try await line in reader.lines { lines.append(line) }
                    break
                } catch StreamError.limitOverrun {
                    lines.append("overrun")
                }
            }
            return lines
        }
        #expect(lines == ["ok", "overrun", "back"])
    }

    @Test(.timeLimit(.minutes(1))) func invalidUTF8BecomesReplacementCharacters() throws {
        let feed = FedPipe([[0x61, 0xFF, 0x62, 0x0A], Array("é\n".utf8)])
        defer { feed.join() }
        let lines = try onFreshLoop { loop in
            try await collectLines(try StreamReader(loop: loop, pipe: feed.output))
        }
        #expect(lines == ["a\u{FFFD}b", "é"])
    }
}

/// A child's output by lines (the policy's child watcher is process-wide state).
extension ProcessWide {
@Suite("Streams: a child's lines")
struct ChildLinesTests {
    @Test(.timeLimit(.minutes(1))) func aChildsOutputReadByLinesFromAnotherTask() throws {
        setEventLoopPolicy(nil)
        let lines = try onFreshLoop { _ -> [String] in
            let child = try await createSubprocessShell("for i in 1 2 3; do echo line $i; done; printf tail", stdout: .pipe)
            // From a task off the loop: each step hops to the loop.
            let lines = try await Task.detached { try await collectLines(child.stdout!) }.value
            _ = try await child.wait()
            return lines
        }
        #expect(lines == ["line 1", "line 2", "line 3", "tail"])
    }
}
}
