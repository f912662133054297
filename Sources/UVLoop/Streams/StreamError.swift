/// Errors of streams and servers that are not system errors (those are `UVError`s: ECONNRESET,
/// EPIPE, ECONNREFUSED, ...).
public enum StreamError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `readExactly` or `readUntil` met end of file first (asyncio's `IncompleteReadError`).
    /// `partial` holds the bytes read (they are consumed); `expected` is nil for `readUntil`.
    case incompleteRead(partial: [UInt8], expected: Int?)
    /// `readUntil`/`readLine`: the separator was not found within the reader's limit (asyncio's
    /// `LimitOverrunError`). `consumed` bytes are in the buffer before the point where the search
    /// gave up (`readUntil` leaves them there; `readLine` discards them).
    case limitOverrun(consumed: Int)
    /// A write, `writeEOF` or `drain` after `close()`/`writeEOF()`, or a read on a stream whose
    /// transport was closed.
    case closed
    /// Another task is already waiting for data on this reader (asyncio's RuntimeError).
    case readInProgress
    /// An argument out of its domain (a negative count, an empty separator).
    case invalidArgument(String)
    /// This reader or writer was replaced by the ones `startTLS` returned.
    case replacedByTLS

    /// What went wrong, in words.
    public var description: String {
        switch self {
        case .incompleteRead(let partial, let expected):
            return "\(partial.count) bytes read on a total of \(expected.map(String.init) ?? "undefined") expected bytes"
        case .limitOverrun(let consumed):
            return "Separator is not found within the limit (\(consumed) bytes)"
        case .closed: return "The stream is closed"
        case .readInProgress: return "Another task is already waiting for incoming data on this StreamReader"
        case .invalidArgument(let message): return message
        case .replacedByTLS: return "This stream was upgraded to TLS: use the reader and writer startTLS returned"
        }
    }
}
