import Glibc
import Logging

/// What SafeChildWatcher and FastChildWatcher share: attachment to the main thread's loop and a
/// `uv_signal_t` on SIGCHLD there. The owner decides how to reap (`onSIGCHLD`).
///
/// Lock order: `state`, then `Reaper.lock`. Callbacks run outside both.
final class MainLoopSIGCHLD: @unchecked Sendable {
    struct State {
        var handlers: [pid_t: ChildRegistration] = [:]
        /// FastChildWatcher: exits of pids nobody registered yet, and their order (oldest first).
        var storedExits: [pid_t: Int32] = [:]
        var storedOrder: [pid_t] = []
        var attached: EventLoop?
        /// The SIGCHLD handle on `attached`, touched only on that loop's thread.
        var signal: UVSignal?
        /// Bumped on every attach, so a late install for a replaced loop does nothing.
        var generation = 0
    }

    let state = LockedValue(State())
    let logger = Logger(label: "uvloop.watcher")
    /// Reaps and reports; runs on the attached loop's thread. Set once by the owner.
    var onSIGCHLD: @Sendable () -> Void = {}

    init() {}

    /// True while attached to a loop that runs on the main thread with SIGCHLD installed.
    func isActive() -> Bool {
        state.withLock { state in
            guard let loop = state.attached else { return false }
            return state.signal != nil && loop.isRunning && loop.isRunningOnMainThread
        }
    }

    /// Moves the watcher to `loop` (nil detaches). Attaching the loop already attached does
    /// nothing; pending registrations stay registered across moves and are polled once the new
    /// loop has SIGCHLD installed.
    func attachLoop(_ loop: EventLoop?) {
        let (previous, previousSignal, generation, pending) = state.withLock { state in
            guard state.attached !== loop else { return (nil as EventLoop?, nil as UVSignal?, -1, 0) }
            let previous = (state.attached, state.signal)
            state.attached = loop
            state.signal = nil
            state.generation += 1
            return (previous.0, previous.1, state.generation, state.handlers.count)
        }
        guard generation >= 0 else { return }
        if let previous, let previousSignal {
            let signal = LoopBound(previousSignal)
            previous.runOnLoopThread { signal.value.close() }
        }
        guard let loop else {
            if pending > 0 { logger.warning("A loop is being detached from a child watcher with pending handlers") }
            return
        }
        if loop.isClosed {
            logger.error("attachLoop: the loop is closed; the watcher stays detached")
            state.withLock { if $0.generation == generation { $0.attached = nil } }
            return
        }
        loop.runOnLoopThread { [self] in install(on: loop, generation: generation) }
    }

    /// Creates and starts the SIGCHLD handle on `loop` (its thread), then polls every child once,
    /// so exits that happened while detached are reported.
    private func install(on loop: EventLoop, generation: Int) {
        let signal: UVSignal
        do {
            signal = try UVSignal(loop: loop.core) { [weak self] _ in self?.onSIGCHLD() }
            try signal.start(SIGCHLD)
        } catch {
            logger.error("Cannot watch SIGCHLD on the attached loop: \(error)")
            return
        }
        let installed = state.withLock { state -> Bool in
            guard state.generation == generation else { return false }
            state.signal = signal
            return true
        }
        guard installed else {
            signal.close()
            return
        }
        signal.whenClosed = { [weak self] in
            // The loop closed the handle (or we replaced it): forget it.
            self?.state.withLock { if $0.signal === signal { $0.signal = nil } }
        }
        onSIGCHLD()
    }

    /// Registers `callback`; subclasses poll or look up stored exits.
    /// - Throws: `EventLoopError.childWatcherHasNoLoop` when no loop is attached (before any
    ///   waitpid, so no status is lost).
    func register(_ pid: pid_t, _ callback: @escaping @Sendable (pid_t, Int32) -> Void) throws {
        try state.withLock { state in
            guard state.attached != nil else { throw EventLoopError.childWatcherHasNoLoop }
            state.handlers[pid] = ChildRegistration(callback: callback, loop: nil)
        }
    }

    func removeChildHandler(_ pid: pid_t) -> Bool {
        state.withLock { $0.handlers.removeValue(forKey: pid) != nil }
    }

    /// Detaches and forgets stored exits. Children still pending are handed to a waiting thread
    /// that still reports them: closing or replacing a watcher never loses an exit.
    func close() {
        let pending = state.withLock { state -> [pid_t: ChildRegistration] in
            defer {
                state.handlers = [:]
                state.storedExits = [:]
                state.storedOrder = []
            }
            return state.handlers
        }
        attachLoop(nil)
        for (pid, registration) in pending { OrphanReaper.adopt(pid, registration) }
    }

    /// Delivers exits collected under the lock, outside it, on the calling thread.
    func deliver(_ exits: [(ChildRegistration, pid_t, Int32)]) {
        for (registration, pid, returnCode) in exits {
            registration.deliver(pid: pid, returnCode: returnCode, logger: logger)
        }
    }

}
