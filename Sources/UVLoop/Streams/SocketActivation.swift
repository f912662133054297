import Glibc

/// systemd's socket activation (`sd_listen_fds`): the listening sockets a service manager opened
/// for this process and passed as descriptors 3, 4, ... with `LISTEN_FDS` and `LISTEN_PID` in the
/// environment. Serve each with `EventLoop.startServer(socket:)`.
extension EventLoop {
    /// The descriptors passed to this process by socket activation, first one 3; [] when none
    /// were (no `LISTEN_FDS`, or a `LISTEN_PID` naming another process, which inherited the
    /// variables by mistake). Each is made close-on-exec, so the program's children do not
    /// inherit them, and the variables are removed from the environment (as
    /// `sd_listen_fds(1)` does), so that they are not passed on either: a second call returns [].
    ///
    /// - Warning: Changes the environment: call it early, before other threads read it.
    public static func inheritedListeners() -> [Int32] {
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pidText = getenv("LISTEN_PID").map({ String(cString: $0) }),
              let pid = Int32(pidText), pid == getpid(),
              let countText = getenv("LISTEN_FDS").map({ String(cString: $0) }),
              let count = Int32(countText), count > 0, count < 1 << 16 else { return [] }
        let first: Int32 = 3
        return (first..<first + count).filter { fd in
            let flags = fcntl(fd, F_GETFD)
            guard flags >= 0 else { return false }
            _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC)
            return true
        }
    }
}
