import CUVLoopOS
import Glibc

/// The process-wide facts and small system calls the layers above need that are not libuv's:
/// thread identity, the environment, descriptors and pipes, signal dispositions.
enum System {
    /// `pthread_self()` of the calling thread, as an integer (never 0).
    @inline(__always)
    static var currentThreadID: UInt { UInt(pthread_self()) }

    /// True on the process's main thread.
    static var isMainThread: Bool { cos_is_main_thread() != 0 }

    /// The value of an environment variable.
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }

    /// This process's environment, as the `envp` a spawn passes on.
    static var environmentPointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> { cos_environ() }

    /// Runs `handler` in the child after every `fork()` (registered once per call).
    static func atForkChild(_ handler: @convention(c) () -> Void) {
        pthread_atfork(nil, nil, handler)
    }

    // MARK: Descriptors

    /// Closes a descriptor, ignoring EINTR (Linux always releases the descriptor).
    static func closeDescriptor(_ fd: Int32) { _ = Glibc.close(fd) }

    /// True when `fd` is an open descriptor.
    static func isOpenDescriptor(_ fd: Int32) -> Bool { cos_fd_is_open(fd) != 0 }

    /// Creates a pipe; both ends close-on-exec, the chosen ends non-blocking.
    /// - Throws: `UVError` (EMFILE when out of descriptors).
    static func makePipe(nonBlockingRead: Bool, nonBlockingWrite: Bool) throws(UVError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let rc = cos_pipe_cloexec(&fds)
        if rc < 0 { throw UVError(code: rc, operation: "pipe2") }
        if nonBlockingRead { setNonBlocking(fds[0]) }
        if nonBlockingWrite { setNonBlocking(fds[1]) }
        return (fds[0], fds[1])
    }

    /// Sets O_NONBLOCK (cannot fail on a descriptor just created).
    private static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// A close-on-exec duplicate of `fd` numbered 3 or above.
    /// - Throws: `UVError` (EBADF, EMFILE).
    static func duplicateAboveStandardDescriptors(_ fd: Int32) throws(UVError) -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        if copy < 0 { throw UVError.lastError("fcntl(F_DUPFD_CLOEXEC, \(fd))") }
        return copy
    }

    /// Returns `fd` if it is above the standard descriptors, else a close-on-exec duplicate of it
    /// at 3 or above (closing `fd`). A child's 0, 1 and 2 are set with dup2 in order, so a source
    /// below 3 could be overwritten before it is used.
    static func moveAboveStandardDescriptors(_ fd: Int32) throws(UVError) -> Int32 {
        guard fd < 3 else { return fd }
        let moved = try duplicateAboveStandardDescriptors(fd)
        closeDescriptor(fd)
        return moved
    }

    /// The descriptors open in this process right now, ascending (from `/proc/self/fd`; the
    /// directory's own descriptor left out). Empty when `/proc` cannot be read.
    static func openDescriptors() -> [Int32] {
        guard let directory = opendir("/proc/self/fd") else { return [] }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var result: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let fd = Int32(name), fd != own { result.append(fd) }
        }
        return result.sorted()
    }

    /// Whether `fd` has FD_CLOEXEC (false for a descriptor that is not open).
    static func isCloseOnExec(_ fd: Int32) -> Bool {
        let flags = fcntl(fd, F_GETFD)
        return flags >= 0 && flags & FD_CLOEXEC != 0
    }

    /// Sets or clears FD_CLOEXEC on `fd` (best effort: a descriptor closed meanwhile is skipped).
    static func setCloseOnExec(_ fd: Int32, _ enabled: Bool) {
        let flags = fcntl(fd, F_GETFD)
        guard flags >= 0 else { return }
        _ = fcntl(fd, F_SETFD, enabled ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC)
    }

    /// The access mode of `fd` (`O_RDONLY`, `O_WRONLY` or `O_RDWR`).
    /// - Throws: `UVError.EBADF` for a descriptor that is not open.
    static func accessMode(_ fd: Int32) throws(UVError) -> Int32 {
        let flags = fcntl(fd, F_GETFL)
        if flags < 0 { throw UVError.lastError("fcntl(fd \(fd), F_GETFL)") }
        return flags & O_ACCMODE
    }

    /// Whether `fd` can be a stream: a pipe or FIFO, a socket or a character device (a terminal);
    /// a regular file or a directory cannot (epoll refuses them).
    /// - Throws: `UVError.EBADF` for a descriptor that is not open; `UVError.EINVAL` for one that
    ///   cannot be a stream.
    static func checkStreamDescriptor(_ fd: Int32, _ operation: String) throws(UVError) {
        let kind = cos_stream_kind(fd)
        if kind < 0 { throw UVError(code: kind, operation: "\(operation)(fd \(fd))") }
        if kind == 0 {
            throw UVError(errno: EINVAL, operation: "\(operation): fd \(fd) is not a pipe, socket or character device")
        }
    }

    enum PathCheck { case executable, notExecutable, missing }

    /// Whether `path` names an executable regular file.
    static func checkExecutable(_ path: String) -> PathCheck {
        guard cos_is_regular_file(path) != 0 else { return .missing }
        return cos_access_executable(path) == 0 ? .executable : .notExecutable
    }
}
