/// What `callExceptionHandler` receives (asyncio's exception-handler context dictionary).
public struct ExceptionContext: Sendable, CustomStringConvertible {
    /// What went wrong, in words.
    public var message: String
    /// The error that was thrown, if any.
    public var error: (any Error)?

    public init(message: String, error: (any Error)? = nil) {
        self.message = message
        self.error = error
    }

    public var description: String {
        if let error { return "\(message): \(error)" }
        return message
    }
}
