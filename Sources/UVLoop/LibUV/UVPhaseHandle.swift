import CLibUV

/// `uv_idle_t`, `uv_prepare_t` or `uv_check_t`: a callback at one phase of every loop iteration
/// while started.
///
/// - `.idle`: runs once per iteration and makes the poll for I/O non-blocking (the loop's ready
///   queue drains there).
/// - `.prepare`: runs once per iteration right before the poll for I/O (the deadline timer is
///   armed there).
/// - `.check`: runs once per iteration right after the poll for I/O (the loop's statistics are
///   published there).
final class UVPhaseHandle: UVHandle {
    enum Phase { case idle, prepare, check }

    let phase: Phase
    var callback: () -> Void

    init(loop: UVRunLoop, phase: Phase, _ callback: @escaping () -> Void) throws(UVError) {
        self.phase = phase
        self.callback = callback
        switch phase {
        case .idle:
            try super.init(type: UV_IDLE, operation: "uv_idle_init") {
                uv_idle_init(loop.pointer, $0.assumingMemoryBound(to: uv_idle_t.self))
            }
        case .prepare:
            try super.init(type: UV_PREPARE, operation: "uv_prepare_init") {
                uv_prepare_init(loop.pointer, $0.assumingMemoryBound(to: uv_prepare_t.self))
            }
        case .check:
            try super.init(type: UV_CHECK, operation: "uv_check_init") {
                uv_check_init(loop.pointer, $0.assumingMemoryBound(to: uv_check_t.self))
            }
        }
    }

    /// Starts calling back each iteration (harmless when started).
    func start() {
        switch phase {
        case .idle:
            uv_idle_start(raw.assumingMemoryBound(to: uv_idle_t.self)) { h in uvWrapper(h, as: UVPhaseHandle.self)?.callback() }
        case .prepare:
            uv_prepare_start(raw.assumingMemoryBound(to: uv_prepare_t.self)) { h in uvWrapper(h, as: UVPhaseHandle.self)?.callback() }
        case .check:
            uv_check_start(raw.assumingMemoryBound(to: uv_check_t.self)) { h in uvWrapper(h, as: UVPhaseHandle.self)?.callback() }
        }
    }

    /// Stops calling back (harmless when stopped).
    func stop() {
        switch phase {
        case .idle: uv_idle_stop(raw.assumingMemoryBound(to: uv_idle_t.self))
        case .prepare: uv_prepare_stop(raw.assumingMemoryBound(to: uv_prepare_t.self))
        case .check: uv_check_stop(raw.assumingMemoryBound(to: uv_check_t.self))
        }
    }

    override func didClose() { callback = {} }
}
