/// The exception handler: where errors go that no caller can receive (a throwing callback, a
/// failed accept, a NaN delay), as asyncio's `call_exception_handler`.
extension EventLoop {
    /// Sets the handler that receives errors thrown by callbacks and other failures the loop
    /// cannot throw to anyone; nil restores the default, which logs through swift-log.
    /// Callable from any thread; the handler runs on the loop's thread.
    public func setExceptionHandler(_ handler: ((EventLoop, ExceptionContext) -> Void)?) {
        exceptionHandler.withLock { $0 = handler }
    }

    /// The handler set with `setExceptionHandler`, if any.
    public func getExceptionHandler() -> ((EventLoop, ExceptionContext) -> Void)? {
        exceptionHandler.withLock { $0 }
    }

    /// Passes `context` to the exception handler, or to `defaultExceptionHandler`.
    public func callExceptionHandler(_ context: ExceptionContext) {
        // Called outside the lock: the handler may set another handler.
        if let handler = getExceptionHandler() {
            handler(self, context)
        } else {
            defaultExceptionHandler(context)
        }
    }

    /// Logs `context` at error level with the label `uvloop.loop`.
    public func defaultExceptionHandler(_ context: ExceptionContext) {
        if let error = context.error {
            logger.error("\(context.message)", metadata: ["error": "\(error)"])
        } else {
            logger.error("\(context.message)")
        }
    }
}
