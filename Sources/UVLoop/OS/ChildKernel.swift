import CUVLoopOS
import Glibc

/// The system calls that reap and signal child processes, and nothing else: each requirement is
/// one call with the kernel's result (a pid, 0, or minus the errno value; EINTR included).
///
/// The reaping logic above (`Reaper` and the child watchers) makes every such call through this
/// protocol, so that it also runs against a fake kernel in unit tests: a status stolen by another
/// reaper, ECHILD, EINTR, a pidfd that cannot be opened, a child that exits before it is
/// registered. `LinuxChildKernel` is the real one.
protocol ChildKernel: Sendable {
    /// `waitpid(pid, &status, options)`: the pid reaped, 0 (WNOHANG, still running), or -errno.
    func waitpid(_ pid: pid_t, _ status: inout Int32, _ options: Int32) -> pid_t
    /// `waitid(P_PID, pid, ..., options)`: 0 or -errno; `childPid` is 0 when WNOHANG found nothing.
    func waitid(_ pid: pid_t, _ options: Int32, _ childPid: inout pid_t) -> Int32
    /// `kill(pid, signal)`: 0 or -errno.
    func kill(_ pid: pid_t, _ signal: Int32) -> Int32
    /// `pidfd_open(pid, 0)`: a descriptor, or -errno (-ENOSYS where unsupported).
    func pidfdOpen(_ pid: pid_t) -> Int32
    /// `pidfd_send_signal(pidfd, signal, NULL, 0)`: 0 or -errno.
    func pidfdSendSignal(_ pidfd: Int32, _ signal: Int32) -> Int32
    /// One blocking `poll` for `fd` to become readable: 0 or -errno (EINTR included).
    func waitReadable(_ fd: Int32) -> Int32
    /// `close(fd)`.
    func close(_ fd: Int32)
    /// This process's pid (the pidfd probe opens a pidfd on it).
    var processID: pid_t { get }
}

/// The real kernel.
struct LinuxChildKernel: ChildKernel {
    func waitpid(_ pid: pid_t, _ status: inout Int32, _ options: Int32) -> pid_t { cos_waitpid(pid, &status, options) }
    func waitid(_ pid: pid_t, _ options: Int32, _ childPid: inout pid_t) -> Int32 { cos_waitid_pid(pid, options, &childPid) }
    func kill(_ pid: pid_t, _ signal: Int32) -> Int32 { cos_kill(pid, signal) }
    func pidfdOpen(_ pid: pid_t) -> Int32 { cos_pidfd_open(pid) }
    func pidfdSendSignal(_ pidfd: Int32, _ signal: Int32) -> Int32 { cos_pidfd_send_signal(pidfd, signal) }
    func waitReadable(_ fd: Int32) -> Int32 { cos_wait_readable(fd) }
    func close(_ fd: Int32) { System.closeDescriptor(fd) }
    var processID: pid_t { getpid() }
}
