// CLibUV: the system-library module for libuv, plus the few static inline helpers its wrappers
// need. Every helper has the cuv_ prefix; nothing here keeps state. Only Sources/UVLoop/LibUV
// imports this module (the OS layer's system calls have their own module, CUVLoopOS).
#ifndef CLIBUV_SHIM_H
#define CLIBUV_SHIM_H

#include <uv.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/timerfd.h>

#pragma clang assume_nonnull begin

/// glibc's name for an errno value ("ENOEXEC"), or NULL (declared here: _GNU_SOURCE only). For
/// the codes libuv's own table does not name.
extern const char *_Nullable strerrorname_np(int errnum);

/// Has the loop measure the time it spends idle in the poll for I/O (`uv_metrics_idle_time`);
/// `uv_loop_configure` is variadic, which Swift cannot call. Returns 0 or a libuv error.
static inline int cuv_loop_measure_idle_time(uv_loop_t *loop) {
    return uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
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

#pragma clang assume_nonnull end

#endif
