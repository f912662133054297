#if os(Windows)
/// The policy whose loops are libuv loops on Windows' select-style backend. Windows only.
/// Child watchers do not exist on Windows: the watcher methods trap, like asyncio's
/// NotImplementedError.
public final class WindowsSelectorEventLoopPolicy: DefaultEventLoopPolicy, @unchecked Sendable {
    public override func getChildWatcher() -> any ChildWatcher {
        fatalError("WindowsSelectorEventLoopPolicy has no child watcher")
    }
    public override func setChildWatcher(_ watcher: (any ChildWatcher)?) {
        fatalError("WindowsSelectorEventLoopPolicy has no child watcher")
    }
}

/// The policy whose loops are libuv loops on Windows' IOCP (proactor) backend. Windows only.
public final class WindowsProactorEventLoopPolicy: DefaultEventLoopPolicy, @unchecked Sendable {
    public override func getChildWatcher() -> any ChildWatcher {
        fatalError("WindowsProactorEventLoopPolicy has no child watcher")
    }
    public override func setChildWatcher(_ watcher: (any ChildWatcher)?) {
        fatalError("WindowsProactorEventLoopPolicy has no child watcher")
    }
}
#else
/// Windows only: asyncio's selector-loop policy for Windows. Not available on this platform.
@available(*, unavailable, message: "WindowsSelectorEventLoopPolicy is available on Windows only; use DefaultEventLoopPolicy")
public final class WindowsSelectorEventLoopPolicy {}

/// Windows only: asyncio's proactor-loop policy for Windows. Not available on this platform.
@available(*, unavailable, message: "WindowsProactorEventLoopPolicy is available on Windows only; use DefaultEventLoopPolicy")
public final class WindowsProactorEventLoopPolicy {}
#endif
