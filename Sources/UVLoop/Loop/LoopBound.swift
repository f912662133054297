/// A value confined to one loop's thread that must cross threads on its way there: inside a
/// `@Sendable` closure run by `execute(_:)`, in a locked table of a child watcher (SwiftNIO's
/// `NIOLoopBound` and `NIOLoopBoundBox` in one).
///
/// Every access checks, in debug builds, that nothing but the loop's thread can be touching it
/// (`EventLoop.mayTouchConfinedState`); release builds pay nothing.
///
/// `@unchecked Sendable`: the loop's thread is the guard (checked in debug builds); the box itself
/// only carries the value between threads.
final class LoopBound<Value>: @unchecked Sendable {
    let loop: EventLoop
    @exclusivity(unchecked) private var _value: Value

    /// Boxes `value` for `loop`.
    init(_ value: Value, loop: EventLoop) {
        self.loop = loop
        self._value = value
    }

    /// The value. Debug builds trap when it is touched from another thread while the loop runs.
    var value: Value {
        get {
            assert(loop.mayTouchConfinedState, "loop-confined state read from another thread while its loop runs")
            return _value
        }
        _modify {
            assert(loop.mayTouchConfinedState, "loop-confined state changed from another thread while its loop runs")
            yield &_value
        }
    }
}
