import CLibUV

/// Owns one heap-allocated `uv_loop_t`. Internal: only the libuv layer sees the pointer.
///
/// Threading: every method but `hrtime()` must be called on the thread that runs the loop (or, while
/// nothing runs it, by its owner).
final class UVRunLoop {
    let pointer: UnsafeMutablePointer<uv_loop_t>
    private var isClosed = false

    init() throws(UVError) {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: uv_loop_size(), alignment: 16)
        let loop = raw.bindMemory(to: uv_loop_t.self, capacity: 1)
        let rc = uv_loop_init(loop)
        if rc < 0 {
            raw.deallocate()
            throw UVError(code: rc, operation: "uv_loop_init")
        }
        // Idle time is what utilization is computed from (two clock reads around each poll).
        _ = cuv_loop_measure_idle_time(loop)
        pointer = loop
    }

    /// Nanoseconds the loop has spent idle in the poll for I/O since it was created.
    var idleTime: UInt64 { uv_metrics_idle_time(pointer) }

    /// Runs `uv_run` (`UV_RUN_DEFAULT`) until `stop()` or until nothing keeps the loop alive;
    /// returns true when handles or requests are still alive.
    @discardableResult
    func run() -> Bool {
        uv_run(pointer, UV_RUN_DEFAULT) != 0
    }

    /// `uv_stop`: `run` returns after the current iteration.
    func stop() { uv_stop(pointer) }

    /// The loop's cached clock, in milliseconds.
    var now: UInt64 { uv_now(pointer) }

    /// Monotonic clock in nanoseconds (any thread).
    static func hrtime() -> UInt64 { uv_hrtime() }

    /// Number of handles libuv still has on this loop (closing ones included).
    var handleCount: Int {
        guard !isClosed else { return 0 }
        var count = 0
        withUnsafeMutablePointer(to: &count) { counter in
            uv_walk(pointer, { _, arg in arg!.assumingMemoryBound(to: Int.self).pointee += 1 }, counter)
        }
        return count
    }

    /// Closes every handle (through its wrapper when it has one), runs the loop until their close
    /// callbacks have run, then closes and frees the `uv_loop_t`.
    ///
    /// - Returns: 0, or libuv's error when `uv_loop_close` still refuses (a request in flight).
    @discardableResult
    func close() -> Int32 {
        guard !isClosed else { return 0 }
        uv_walk(pointer, { handle, _ in
            guard let handle, uv_is_closing(handle) == 0 else { return }
            UVHandle.close(handle)
        }, nil)
        // Closing handles keep the loop alive until their callbacks ran; requests in flight
        // (a getaddrinfo, a queued work item) complete first.
        while uv_run(pointer, UV_RUN_DEFAULT) != 0 {}
        let rc = uv_loop_close(pointer)
        if rc == 0 {
            isClosed = true
            UnsafeMutableRawPointer(pointer).deallocate()
        }
        return rc
    }
}
