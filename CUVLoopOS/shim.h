// CUVLoopOS: the Linux system calls UVLoop's OS layer makes that Swift's Glibc module does not
// export as callable functions (variadic syscall(2), W* macros, _GNU_SOURCE-only declarations).
// Every helper has the cos_ prefix, returns -errno on failure and keeps no state. Only
// Sources/UVLoop/OS imports this module; libuv's own module is CLibUV.
#ifndef CUVLOOPOS_SHIM_H
#define CUVLOOPOS_SHIM_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/sendfile.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/wait.h>
#include <termios.h>

#pragma clang assume_nonnull begin

// MARK: Socket types and flags (glibc declares them as an enum that Swift's Glibc module does not
// export in every build configuration; these constants always import)

static const int cos_sock_stream = SOCK_STREAM;
static const int cos_sock_nonblock = SOCK_NONBLOCK;
static const int cos_sock_cloexec = SOCK_CLOEXEC;

// MARK: Servers and connections made by hand (libuv 1.44 has no way to pause accepting, to back
// off when descriptors run out, to adopt a listening socket or to sendfile to a socket)

/// A TCP socket bound to `address` and listening: non-blocking, close-on-exec, SO_REUSEADDR (as
/// libuv sets it), SO_REUSEPORT when asked, IPV6_V6ONLY for an IPv6 address when asked. Returns the
/// descriptor, or -errno (nothing is left open then); `*failed_step` names the failing call
/// (0 socket, 1 setsockopt, 2 bind, 3 listen).
static inline int cos_tcp_listener(const struct sockaddr *address, socklen_t length, int reuse_port,
                                   int v6only, int backlog, int *failed_step) {
    int fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { *failed_step = 0; return -errno; }
    int on = 1;
    int step = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) goto fail;
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) goto fail;
    if (address->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) != 0) goto fail;
    step = 2;
    if (bind(fd, address, length) != 0) goto fail;
    step = 3;
    if (listen(fd, backlog) != 0) goto fail;
    return fd;
fail: {
        int error = errno;
        close(fd);
        *failed_step = step;
        return -error;
    }
}

/// accept4(2), non-blocking and close-on-exec, EINTR retried: the new descriptor, or -errno; the
/// peer's address is filled in (`*length` is set to its size).
static inline int cos_accept_with_peer(int fd, struct sockaddr_storage *peer, socklen_t *length) {
    int client;
    do {
        *length = sizeof *peer;
        client = accept4(fd, (struct sockaddr *)peer, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (client < 0 && errno == EINTR);
    return client >= 0 ? client : -errno;
}

/// A socket's domain (AF_INET, AF_INET6, AF_UNIX), type (SOCK_STREAM, ...) and whether it listens:
/// 0, or -errno (-ENOTSOCK for a descriptor that is not a socket, -EBADF for one not open).
static inline int cos_socket_info(int fd, int *domain, int *type, int *listening) {
    socklen_t length = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, domain, &length) != 0) return -errno;
    length = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, type, &length) != 0) return -errno;
    length = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, listening, &length) != 0) return -errno;
    return 0;
}

/// Makes `fd` non-blocking and close-on-exec: 0 or -errno.
static inline int cos_set_nonblock_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -errno;
    int fdflags = fcntl(fd, F_GETFD);
    if (fdflags < 0 || fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC) != 0) return -errno;
    return 0;
}

/// SO_KEEPALIVE, and with it TCP_KEEPIDLE (the idle seconds before the first probe): 0 or -errno.
static inline int cos_set_keepalive(int fd, int enable, int idle_seconds) {
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &enable, sizeof enable) != 0) return -errno;
    if (enable && setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_seconds, sizeof idle_seconds) != 0) return -errno;
    return 0;
}

/// TCP_NODELAY: 0 or -errno (-EOPNOTSUPP for a socket that is not TCP).
static inline int cos_set_nodelay(int fd, int enable) {
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &enable, sizeof enable) == 0 ? 0 : -errno;
}

/// 1 when `fd` is open on a regular file, 0 when on something else, or -errno (-EBADF).
static inline int cos_fd_is_regular_file(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    return S_ISREG(st.st_mode) ? 1 : 0;
}

/// sendfile(2) from `in_fd` at `*offset` (advanced) to `out_fd`, EINTR retried: the bytes sent
/// (0 at the file's end), or -errno (-EAGAIN when `out_fd` is full).
static inline long cos_sendfile(int out_fd, int in_fd, long long *offset, unsigned long count) {
    off_t position = (off_t)*offset;
    ssize_t sent;
    do { sent = sendfile(out_fd, in_fd, &position, count); } while (sent < 0 && errno == EINTR);
    if (sent < 0) return -errno;
    *offset = (long long)position;
    return (long)sent;
}

/// The kernel thread id of the calling thread.
static inline pid_t cos_gettid(void) { return (pid_t)syscall(SYS_gettid); }

/// True on the process's main thread (its thread id equals the process id).
static inline int cos_is_main_thread(void) { return cos_gettid() == getpid(); }

/// The process's environment (`environ`, declared by unistd.h only under _GNU_SOURCE).
static inline char *_Nullable *_Nonnull cos_environ(void) {
    extern char **environ;
    return environ;
}

/// posix_spawn_file_actions_addchdir_np (glibc 2.29+), declared here because spawn.h shows it only
/// under _GNU_SOURCE, which would change other system types this module shares with Swift's.
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *__restrict actions,
                                                const char *__restrict path);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+: closes every descriptor from `from`
/// up in the child, with close_range where the kernel has it); ENOSYS where glibc lacks it, and
/// the caller closes descriptor by descriptor instead.
static inline int cos_spawn_add_closefrom(posix_spawn_file_actions_t *actions, int from) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *, int);
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
#else
    (void)actions; (void)from;
    return ENOSYS;
#endif
}

/// POSIX_SPAWN_SETSID (glibc 2.26+), defined by spawn.h only under _GNU_SOURCE.
static const short cos_spawn_setsid = 0x80;
/// POSIX_SPAWN_SETPGROUP.
static const short cos_spawn_setpgroup = POSIX_SPAWN_SETPGROUP;

// MARK: Wait statuses (the W* macros are not importable as such)

static inline int cos_wifexited(int status) { return WIFEXITED(status); }
static inline int cos_wexitstatus(int status) { return WEXITSTATUS(status); }
static inline int cos_wifsignaled(int status) { return WIFSIGNALED(status); }
static inline int cos_wtermsig(int status) { return WTERMSIG(status); }
static inline int cos_wcoredump(int status) { return WCOREDUMP(status); }

/// waitid(P_PID, pid, ..., options). Returns 0 or -errno; `*child_pid` is 0 when WNOHANG found no
/// state change.
static inline int cos_waitid_pid(pid_t pid, int options, pid_t *child_pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, options) != 0) return -errno;
    *child_pid = info.si_pid;
    return 0;
}

/// waitpid with the status; returns the pid, 0, or -errno.
static inline pid_t cos_waitpid(pid_t pid, int *status, int options) {
    pid_t result = waitpid(pid, status, options);
    return result < 0 ? -errno : result;
}

/// kill(2); returns 0 or -errno.
static inline int cos_kill(pid_t pid, int sig) { return kill(pid, sig) == 0 ? 0 : -errno; }

/// pidfd_open(2) (Linux 5.3+); returns a close-on-exec descriptor or -errno (-ENOSYS where unavailable).
static inline int cos_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
#else
    return -ENOSYS;
#endif
}

/// pidfd_send_signal(2) (Linux 5.1+); returns 0 or -errno.
static inline int cos_pidfd_send_signal(int pidfd, int sig) {
#ifdef SYS_pidfd_send_signal
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0 ? 0 : -errno;
#else
    return -ENOSYS;
#endif
}

/// Blocks until `fd` is readable (one poll(2)); returns 0, or -errno (EINTR included: the caller
/// decides whether to retry).
static inline int cos_wait_readable(int fd) {
    struct pollfd entry = { .fd = fd, .events = POLLIN, .revents = 0 };
    int ready = poll(&entry, 1, -1);
    return ready < 0 ? -errno : 0;
}

/// True when `fd` is an open descriptor.
static inline int cos_fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/// access(2) with X_OK; returns 0 or -errno.
static inline int cos_access_executable(const char *path) { return access(path, X_OK) == 0 ? 0 : -errno; }

/// 1 for a regular file, 0 otherwise (missing included).
static inline int cos_is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/// What kind of file `fd` is: 1 a pipe or FIFO, 2 a socket, 3 a character device, 0 anything else
/// (a regular file, a directory), or -errno (-EBADF for a descriptor that is not open).
static inline int cos_stream_kind(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    if (S_ISFIFO(st.st_mode)) return 1;
    if (S_ISSOCK(st.st_mode)) return 2;
    if (S_ISCHR(st.st_mode)) return 3;
    return 0;
}

/// pipe2(2) with O_CLOEXEC; returns 0 or -errno.
static inline int cos_pipe_cloexec(int fds[_Nonnull 2]) { return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno; }

// MARK: Pseudo-terminals (ioctl is variadic; posix_openpt and ptsname_r need feature macros)

/// Opens a new pseudo-terminal: `*master` (/dev/ptmx, unlocked) and `*slave` (opened by path),
/// both close-on-exec and neither this process's controlling terminal; the slave's path goes to
/// `path`. The master is non-blocking (the loop reads and writes it), the slave is not. Returns
/// 0 or -errno; on failure nothing stays open.
static inline int cos_open_pty(int *master, int *slave, char *path, size_t length) {
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (m < 0) return -errno;
    int unlock = 0, number = -1;
    if (ioctl(m, TIOCSPTLCK, &unlock) != 0 || ioctl(m, TIOCGPTN, &number) != 0) {
        int error = errno;
        close(m);
        return -error;
    }
    int written = snprintf(path, length, "/dev/pts/%d", number);
    if (written < 0 || (size_t)written >= length) { close(m); return -ENAMETOOLONG; }
    int s = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) { int error = errno; close(m); return -error; }
    *master = m;
    *slave = s;
    return 0;
}

/// TIOCSWINSZ: sets a terminal's size (the kernel sends SIGWINCH to its foreground group).
/// Returns 0 or -errno (-ENOTTY for a descriptor that is not a terminal).
static inline int cos_set_window_size(int fd, unsigned short rows, unsigned short columns) {
    struct winsize size = { .ws_row = rows, .ws_col = columns, .ws_xpixel = 0, .ws_ypixel = 0 };
    return ioctl(fd, TIOCSWINSZ, &size) == 0 ? 0 : -errno;
}

/// The terminal's end-of-file character (VEOF, normally ^D), or -errno.
static inline int cos_terminal_eof_char(int fd) {
    struct termios attributes;
    if (tcgetattr(fd, &attributes) != 0) return -errno;
    return (unsigned char)attributes.c_cc[VEOF];
}

/// Initializes a read-write lock that prefers writers (glibc's default prefers readers, so a
/// steady stream of readers would starve a writer). Returns 0 or an error number.
static inline int cos_rwlock_init_prefer_writer(pthread_rwlock_t *lock) {
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
#ifdef __GLIBC__
    extern int pthread_rwlockattr_setkind_np(pthread_rwlockattr_t *, int);
    pthread_rwlockattr_setkind_np(&attributes, 2 /* PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP */);
#endif
    int rc = pthread_rwlock_init(lock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    return rc;
}

// MARK: Subreaper

/// prctl(PR_SET_CHILD_SUBREAPER, on): orphaned descendants are re-parented to this process
/// (Linux 3.4+). Returns 0 or -errno.
static inline int cos_set_child_subreaper(int on) {
    return prctl(PR_SET_CHILD_SUBREAPER, (unsigned long)on, 0UL, 0UL, 0UL) == 0 ? 0 : -errno;
}

/// prctl(PR_GET_CHILD_SUBREAPER): 1 or 0, or -errno.
static inline int cos_is_child_subreaper(void) {
    int value = 0;
    return prctl(PR_GET_CHILD_SUBREAPER, (unsigned long)&value, 0UL, 0UL, 0UL) == 0 ? (value != 0) : -errno;
}

#pragma clang assume_nonnull end

#endif
