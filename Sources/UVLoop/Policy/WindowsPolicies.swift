// asyncio's Windows policies exist on Windows only. UVLoop runs on Linux (its child watchers and
// spawn path are Linux's), so here both names are unavailable: using them is a clear compile
// error naming the policy to use instead, as the contract asks.

/// Windows only: asyncio's selector-loop policy for Windows. Not available on this platform.
@available(*, unavailable, message: "WindowsSelectorEventLoopPolicy is available on Windows only; use DefaultEventLoopPolicy")
public final class WindowsSelectorEventLoopPolicy {}

/// Windows only: asyncio's proactor-loop policy for Windows. Not available on this platform.
@available(*, unavailable, message: "WindowsProactorEventLoopPolicy is available on Windows only; use DefaultEventLoopPolicy")
public final class WindowsProactorEventLoopPolicy {}
