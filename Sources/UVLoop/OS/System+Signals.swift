import Glibc

extension System {
    /// Ignores SIGPIPE for the whole process, once. libuv does not: a write to a closed pipe or
    /// socket would kill the process instead of failing with EPIPE (ARCHITECTURE fact 8).
    static let ignoreSIGPIPE: Void = {
        signal(SIGPIPE, SIG_IGN)
    }()

    /// Sets SIGPIPE back to ignored if its action is the default one. libuv restores SIG_DFL when
    /// the last `uv_signal_t` of a signal stops; while any still watches SIGPIPE, its handler is
    /// installed and left alone.
    static func ignoreSIGPIPEIfDefault() {
        var current = sigaction()
        guard sigaction(SIGPIPE, nil, &current) == 0 else { return }
        if current.__sigaction_handler.sa_handler == nil && current.sa_flags & SA_SIGINFO == 0 {
            signal(SIGPIPE, SIG_IGN)
        }
    }

    /// Unblocks `signal` on the calling thread.
    ///
    /// A process started from a thread that blocks signals (a libdispatch worker, for one) begins
    /// with them blocked on every thread; then no thread takes the signal, it stays pending, and
    /// libuv never sees it. Unblocking it on the loop thread gives the kernel a thread to deliver to.
    static func unblockOnThisThread(_ signal: Int32) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}
