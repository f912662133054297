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
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#pragma clang assume_nonnull begin

/// The kernel thread id of the calling thread.
static inline pid_t cuv_gettid(void) { return (pid_t)syscall(SYS_gettid); }

/// True on the process's main thread (its thread id equals the process id).
static inline int cuv_is_main_thread(void) { return cuv_gettid() == getpid(); }

/// Copies the calling thread's name (at most 16 bytes with the NUL) into `buffer`.
static inline int cuv_thread_name(char *buffer) { return prctl(PR_GET_NAME, buffer, 0, 0, 0); }

/// Negative libuv error code for the current errno.
static inline int cuv_errno(void) { return -errno; }

#pragma clang assume_nonnull end

#endif
