/// What `callExceptionHandler` receives (asyncio's exception-handler context dictionary).
public struct ExceptionContext: Sendable, CustomStringConvertible {
    /// What went wrong, in words.
    public var message: String
    /// The error that was thrown, if any.
    public var error: (any Error)?

    /// Creates a context for `callExceptionHandler`.
    public init(message: String, error: (any Error)? = nil) {
        self.message = message
        self.error = error
    }

    /// The message, followed by the error when there is one.
    public var description: String {
        if let error { return "\(message): \(error)" }
        return message
    }
}
