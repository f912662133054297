/// The lines of a stream, as `String`s (`StreamReader.lines`).
///
/// Each line comes without its `"\n"` or `"\r\n"`; the last one too when the stream ends without
/// a newline; the sequence ends at end of file. Bytes that are not UTF-8 become U+FFFD.
///
/// A line longer than the reader's `limit` throws `StreamError.limitOverrun` and is dropped
/// whole: iterating again (the same iterator, or a new `lines`) resumes at the line after it,
/// however long it was, without buffering more of it than one read brings (the rule of
/// `readUntil` and `readLine` too).
public struct StreamLines: AsyncSequence, Sendable {
    public typealias Element = String

    let reader: StreamReader

    public struct AsyncIterator: AsyncIteratorProtocol {
        let reader: StreamReader

        /// The next line, or nil at end of file.
        /// - Throws: `StreamError.limitOverrun(consumed:)` for a line longer than `limit` (the
        ///   next call goes on after it); what `StreamReader.read` throws.
        public mutating func next() async throws -> String? {
            let transport = reader.transport
            guard let line = try await transport.loop.onLoop({ try await transport.nextLine() }) else { return nil }
            var end = line.count
            if end > 0 && line[end - 1] == 0x0A {
                end -= 1
                if end > 0 && line[end - 1] == 0x0D { end -= 1 }
            }
            return String(decoding: line[..<end], as: UTF8.self)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(reader: reader) }
}

extension StreamReader {
    /// The stream's lines, without their terminators (`"\n"` or `"\r\n"`); see `StreamLines`.
    /// ```swift
    /// for try await line in child.stdout!.lines { print("child:", line) }
    /// ```
    public var lines: StreamLines { StreamLines(reader: self) }
}
