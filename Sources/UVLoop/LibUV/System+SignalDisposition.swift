import Glibc

extension System {
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
}
