import Dispatch
import Glibc

/// A plain OS thread for B3's producers (a thread pool might run fewer than four at once).
public final class ProducerThread {
    private let thread: pthread_t

    /// Starts a thread that runs `body`.
    public init(_ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { context in
            Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(status == 0, "pthread_create failed: \(status)")
        self.thread = thread
    }

    /// Waits for the thread to finish.
    public func join() {
        pthread_join(thread, nil)
    }

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}

/// Starts B3's producers: each waits until `openGate` is called, then runs `produce(share)`,
/// where the shares add up to `total`. Returns the threads (to join) and the gate opener.
public func startProducers(
    total: Int, _ produce: @escaping @Sendable (_ share: Int) -> Void
) -> (threads: [ProducerThread], openGate: @Sendable () -> Void) {
    let gate = DispatchSemaphore(value: 0)
    let threads = (0..<producerCount).map { index in
        let share = total / producerCount + (index < total % producerCount ? 1 : 0)
        return ProducerThread {
            gate.wait()
            produce(share)
        }
    }
    let openGate: @Sendable () -> Void = {
        for _ in 0..<producerCount { gate.signal() }
    }
    return (threads, openGate)
}
