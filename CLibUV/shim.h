// CLibUV: the system-library module for libuv, plus a few static inline helpers.
// Every helper has the cuv_ prefix; nothing here keeps state.
#ifndef CLIBUV_SHIM_H
#define CLIBUV_SHIM_H


#include <uv.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#pragma clang assume_nonnull begin

/// The kernel thread id of the calling thread.
static inline pid_t cuv_gettid(void) { return (pid_t)syscall(SYS_gettid); }

/// True on the process's main thread (its thread id equals the process id).
static inline int cuv_is_main_thread(void) { return cuv_gettid() == getpid(); }

/// Copies the calling thread's name (at most 16 bytes with the NUL) into `buffer`.
static inline int cuv_thread_name(char *buffer) { return prctl(PR_GET_NAME, buffer, 0, 0, 0); }

/// glibc's name for an errno value ("ENOEXEC"), or NULL (declared here: _GNU_SOURCE only).
extern const char *_Nullable strerrorname_np(int errnum);

/// Negative libuv error code for the current errno.
static inline int cuv_errno(void) { return -errno; }

/// posix_spawn_file_actions_addchdir_np (glibc 2.29+), declared here because spawn.h shows it only
/// under _GNU_SOURCE, which would change other system types this module shares with Swift's.
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *__restrict actions,
                                                const char *__restrict path);

/// The process's environment (`environ`).
static inline char *_Nullable *_Nonnull cuv_environ(void) {
    extern char **environ;
    return environ;
}

// MARK: Wait statuses (the W* macros are not importable as such)

static inline int cuv_wifexited(int status) { return WIFEXITED(status); }
static inline int cuv_wexitstatus(int status) { return WEXITSTATUS(status); }
static inline int cuv_wifsignaled(int status) { return WIFSIGNALED(status); }
static inline int cuv_wtermsig(int status) { return WTERMSIG(status); }

/// waitid(P_PID, pid, ..., options) with the siginfo fields the caller needs.
/// Returns 0 or -errno; `*child_pid` is 0 when WNOHANG found no state change.
static inline int cuv_waitid_pid(pid_t pid, int options, pid_t *child_pid, int *code, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, options) != 0) return -errno;
    *child_pid = info.si_pid;
    *code = info.si_code;
    *status = info.si_status;
    return 0;
}

/// waitpid with the status; returns the pid, 0, or -errno.
static inline pid_t cuv_waitpid(pid_t pid, int *status, int options) {
    pid_t result = waitpid(pid, status, options);
    return result < 0 ? -errno : result;
}

/// kill(2); returns 0 or -errno.
static inline int cuv_kill(pid_t pid, int sig) { return kill(pid, sig) == 0 ? 0 : -errno; }

/// pidfd_open(2) (Linux 5.3+); returns the descriptor or -errno (-ENOSYS where unavailable).
static inline int cuv_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
#else
    return -ENOSYS;
#endif
}

/// pidfd_send_signal(2) (Linux 5.1+); returns 0 or -errno.
static inline int cuv_pidfd_send_signal(int pidfd, int sig) {
#ifdef SYS_pidfd_send_signal
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0 ? 0 : -errno;
#else
    return -ENOSYS;
#endif
}

/// Blocks until `fd` is readable (poll(2), retrying EINTR); returns 0 or -errno.
static inline int cuv_wait_readable(int fd) {
    struct pollfd entry = { .fd = fd, .events = POLLIN, .revents = 0 };
    for (;;) {
        int ready = poll(&entry, 1, -1);
        if (ready > 0) return 0;
        if (ready < 0 && errno != EINTR) return -errno;
    }
}

/// Sets FD_CLOEXEC on a descriptor; returns 0 or -errno.
static inline int cuv_set_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) return -errno;
    return 0;
}

/// A non-blocking, close-on-exec timerfd on CLOCK_MONOTONIC (uv_hrtime's clock); fd or -errno.
static inline int cuv_timerfd_create(void) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

/// Arms the timerfd to expire once at `deadline` nanoseconds of CLOCK_MONOTONIC (0 disarms);
/// returns 0 or -errno.
static inline int cuv_timerfd_arm(int fd, uint64_t deadline) {
    struct itimerspec spec = {
        .it_interval = { 0, 0 },
        .it_value = { (time_t)(deadline / 1000000000u), (long)(deadline % 1000000000u) },
    };
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL) == 0 ? 0 : -errno;
}

/// Reads the expiration count, so the timerfd is no longer readable.
static inline void cuv_timerfd_clear(int fd) {
    uint64_t expirations;
    ssize_t ignored = read(fd, &expirations, sizeof expirations);
    (void)ignored;
}

/// True when `fd` is an open descriptor.
static inline int cuv_fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/// access(2) with X_OK; returns 0 or -errno.
static inline int cuv_access_executable(const char *path) { return access(path, X_OK) == 0 ? 0 : -errno; }

/// 1 for a regular file, 0 otherwise (missing included).
static inline int cuv_is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

#pragma clang assume_nonnull end

#endif
