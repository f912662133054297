import Glibc

/// What SafeChildWatcher and FastChildWatcher share: attachment to the main thread's loop, a
/// `uv_signal_t` on SIGCHLD there, and the two ways of reaping on it.
///
/// Lock order: `state`, then the reaper's lock. Callbacks run outside both.
final class MainLoopSIGCHLD: Sendable {
    /// How a SIGCHLD is answered.
    enum Reaping {
        /// SafeChildWatcher: `waitpid(pid, WNOHANG)` for each registered pid.
        case registered
        /// FastChildWatcher: `waitpid(-1, WNOHANG)` until nothing is left, keeping the exits of
        /// pids not registered yet.
        case everyChild
    }

    struct State: Sendable {
        var handlers: [pid_t: ChildRegistration] = [:]
        /// `.everyChild`: exits of pids nobody registered yet, and their order (oldest first).
        var storedExits: [pid_t: Termination] = [:]
        var storedOrder: [pid_t] = []
        var attached: EventLoop?
        /// The SIGCHLD handle on `attached`.
        var signal: LoopBound<UVSignal>?
        /// Bumped on every attach, so a late install for a replaced loop does nothing.
        var generation = 0
    }

    /// How many exits of unregistered pids `.everyChild` keeps.
    static let storedExitLimit = 4096

    let reaping: Reaping
    let reaper: Reaper
    let state = LockedValue(State())

    init(reaping: Reaping, reaper: Reaper) {
        self.reaping = reaping
        self.reaper = reaper
    }

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
        let (previousSignal, generation, pending) = state.withLock { state -> (LoopBound<UVSignal>?, Int, Int) in
            guard state.attached !== loop else { return (nil, -1, 0) }
            let previous = state.signal
            state.attached = loop
            state.signal = nil
            state.generation += 1
            return (previous, state.generation, state.handlers.count)
        }
        guard generation >= 0 else { return }
        if let previousSignal {
            previousSignal.loop.execute { previousSignal.value.close() }
        }
        guard let loop else {
            if pending > 0 { reaper.logger.warning("A loop is being detached from a child watcher with pending handlers") }
            return
        }
        if loop.isClosed {
            reaper.logger.error("attachLoop: the loop is closed; the watcher stays detached")
            state.withLock { if $0.generation == generation { $0.attached = nil } }
            return
        }
        loop.execute { [self] in install(on: loop, generation: generation) }
    }

    /// Creates and starts the SIGCHLD handle on `loop` (its thread), then reaps once, so exits
    /// that happened while detached are reported.
    private func install(on loop: EventLoop, generation: Int) {
        let signal: UVSignal
        do {
            signal = try UVSignal(loop: loop.uvLoop) { [weak self] _ in self?.reapPass() }
            try signal.start(SIGCHLD)
        } catch {
            reaper.logger.error("Cannot watch SIGCHLD on the attached loop: \(error)")
            return
        }
        let bound = LoopBound(signal, loop: loop)
        let installed = state.withLock { state -> Bool in
            guard state.generation == generation else { return false }
            state.signal = bound
            return true
        }
        guard installed else {
            signal.close()
            return
        }
        signal.whenClosed = { [weak self] in
            // The loop closed the handle (or we replaced it): forget it.
            self?.state.withLock { if $0.signal === bound { $0.signal = nil } }
        }
        reapPass()
    }

    /// Registers `callback` (after looking up a stored exit for `.everyChild`), then reaps `pid`
    /// at once for `.registered`: a child that already exited is reported synchronously, on the
    /// calling thread.
    /// - Throws: `EventLoopError.childWatcherHasNoLoop` when no loop is attached (before any
    ///   waitpid, so no status is lost).
    func register(_ pid: pid_t, _ callback: @escaping TerminationCallback) throws {
        let registration = ChildRegistration(pid: pid, callback: callback, loop: nil)
        let reaper = self.reaper
        let immediate = try state.withLock { state -> [ChildExit] in
            guard state.attached != nil else { throw EventLoopError.childWatcherHasNoLoop }
            switch reaping {
            case .registered:
                state.handlers[pid] = registration
                return reaper.reapRegistered([pid], in: &state.handlers)
            case .everyChild:
                if let termination = state.storedExits.removeValue(forKey: pid) {
                    state.storedOrder.removeAll { $0 == pid }
                    return [ChildExit(registration: registration, pid: pid, termination: termination)]
                }
                // Neither stored nor an unreaped child: someone else took its status (D5).
                if !reaper.isUnreapedChild(pid) {
                    reaper.logger.warning("Unknown child process pid \(pid), will report returncode 255")
                    return [ChildExit(registration: registration, pid: pid, termination: .exited(255))]
                }
                state.handlers[pid] = registration
                return []
            }
        }
        ChildExit.deliver(immediate, logger: reaper.logger)
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
        for (pid, registration) in pending { reaper.adopt(pid, registration) }
    }

    // MARK: Reaping on SIGCHLD (the attached loop's thread)

    /// Answers one SIGCHLD (or an attach): reaps what has exited and delivers it.
    func reapPass() {
        let exits: [ChildExit]
        switch reaping {
        case .registered:
            let reaper = self.reaper
            exits = state.withLock { reaper.reapRegistered(nil, in: &$0.handlers) }
        case .everyChild:
            exits = state.withLock { reapEveryChild(&$0) }
        }
        ChildExit.deliver(exits, logger: reaper.logger)
    }

    /// `.everyChild`: reap until nothing is left. Under `state`'s lock.
    private func reapEveryChild(_ state: inout State) -> [ChildExit] {
        var exits: [ChildExit] = []
        var noChildrenLeft = false
        reaper.lock.withLock {
            reaping: while true {
                switch reaper.reapAnyLocked() {
                case .exited(let pid, let termination):
                    if let registration = state.handlers.removeValue(forKey: pid) {
                        exits.append(ChildExit(registration: registration, pid: pid, termination: termination))
                    } else {
                        store(pid, termination, in: &state)
                    }
                case .none:
                    break reaping
                case .noChildren:
                    noChildrenLeft = true
                    break reaping
                }
            }
        }
        if noChildrenLeft && !state.handlers.isEmpty {
            // Registered, yet no child is left: their statuses went to another reaper.
            for (pid, registration) in state.handlers {
                reaper.logger.warning("Child process pid \(pid) was reaped elsewhere, will report returncode 255")
                exits.append(ChildExit(registration: registration, pid: pid, termination: .exited(255)))
            }
            state.handlers = [:]
        }
        return exits
    }

    /// Keeps an exit for a later `register`, dropping the oldest beyond `storedExitLimit`.
    private func store(_ pid: pid_t, _ termination: Termination, in state: inout State) {
        if state.storedExits.updateValue(termination, forKey: pid) == nil { state.storedOrder.append(pid) }
        if state.storedOrder.count > Self.storedExitLimit {
            let dropped = state.storedOrder.removeFirst()
            if let termination = state.storedExits.removeValue(forKey: dropped) {
                reaper.logger.warning("Caught subprocess termination from unknown pid: \(dropped) -> \(termination.returnCode) (dropped)")
            }
        }
    }
}
