/*
 * Raw libuv participant: the baseline UVLoop is measured against.
 *
 * Usage: bench_libuv BENCH N      (BENCH is B1, B2 or B3)
 *        bench_libuv B4 1         (a TCP echo server for B4, see below)
 *        bench_libuv B5|B5b N     (spawn and reap /bin/true with uv_spawn, see bench_b5)
 * Prints one JSON line per metric, like every other participant.
 *
 * It does the same work as the UVLoop participant with the scheme UVLoop uses
 * (ARCHITECTURE.md, fact 7):
 *   - a ready queue of (fn, arg) entries in a growable array, drained in batches
 *     by a uv_idle_t that is active only while the queue is non-empty;
 *   - for other threads, a mutex-protected array that the loop swaps out, with
 *     one uv_async_t woken only on the empty -> non-empty transition;
 *   - one uv_timer_t per timer.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static const char *IMPL = "libuv";

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *bench, const char *metric, double value, long n) {
    printf("{\"bench\":\"%s\",\"impl\":\"%s\",\"metric\":\"%s\",\"value\":%.6f,\"n\":%ld}\n",
           bench, IMPL, metric, value, n);
}

static void check(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", what, uv_strerror(rc));
        exit(1);
    }
}

/* ---- a growable array of callbacks ------------------------------------- */

typedef void (*callback_fn)(void *arg);
typedef struct { callback_fn fn; void *arg; } entry;
typedef struct { entry *items; size_t count, capacity; } entry_array;

static void array_push(entry_array *a, callback_fn fn, void *arg) {
    if (a->count == a->capacity) {
        a->capacity = a->capacity ? a->capacity * 2 : 64;
        a->items = realloc(a->items, a->capacity * sizeof(entry));
        if (!a->items) { perror("realloc"); exit(1); }
    }
    a->items[a->count++] = (entry){fn, arg};
}

static void array_swap(entry_array *a, entry_array *b) {
    entry_array t = *a; *a = *b; *b = t;
}

/* ---- the loop: ready queue + idle drain + thread-safe queue + async ---- */

typedef struct {
    uv_loop_t uv;
    uv_idle_t idle;             /* active only while `ready` is non-empty */
    entry_array ready, running; /* loop thread only */
    uv_async_t async;           /* woken on the empty -> non-empty transition of `incoming` */
    pthread_mutex_t lock;       /* guards `incoming` */
    entry_array incoming, draining;
} loop_t;

static void run_batch(entry_array *batch) {
    for (size_t i = 0; i < batch->count; i++) batch->items[i].fn(batch->items[i].arg);
    batch->count = 0;
}

/* Runs the callbacks queued before this iteration; ones they queue wait for the next. */
static void on_idle(uv_idle_t *handle) {
    loop_t *loop = handle->data;
    array_swap(&loop->ready, &loop->running);
    run_batch(&loop->running);
    if (loop->ready.count == 0) uv_idle_stop(&loop->idle);
}

static void call_soon(loop_t *loop, callback_fn fn, void *arg) {
    if (loop->ready.count == 0) uv_idle_start(&loop->idle, on_idle);
    array_push(&loop->ready, fn, arg);
}

static void on_async(uv_async_t *handle) {
    loop_t *loop = handle->data;
    pthread_mutex_lock(&loop->lock);
    array_swap(&loop->incoming, &loop->draining);
    pthread_mutex_unlock(&loop->lock);
    run_batch(&loop->draining);
}

static void call_soon_threadsafe(loop_t *loop, callback_fn fn, void *arg) {
    pthread_mutex_lock(&loop->lock);
    int was_empty = loop->incoming.count == 0;
    array_push(&loop->incoming, fn, arg);
    pthread_mutex_unlock(&loop->lock);
    if (was_empty) uv_async_send(&loop->async);
}

static void loop_init(loop_t *loop) {
    memset(loop, 0, sizeof *loop);
    check(uv_loop_init(&loop->uv), "uv_loop_init");
    check(uv_idle_init(&loop->uv, &loop->idle), "uv_idle_init");
    check(uv_async_init(&loop->uv, &loop->async, on_async), "uv_async_init");
    loop->idle.data = loop->async.data = loop;
    pthread_mutex_init(&loop->lock, NULL);
}

static void on_close(uv_handle_t *handle) { (void)handle; }

static void loop_close(loop_t *loop) {
    uv_close((uv_handle_t *)&loop->idle, on_close);
    uv_close((uv_handle_t *)&loop->async, on_close);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    check(uv_loop_close(&loop->uv), "uv_loop_close");
    free(loop->ready.items); free(loop->running.items);
    free(loop->incoming.items); free(loop->draining.items);
    pthread_mutex_destroy(&loop->lock);
}

/* ---- the benchmarks ------------------------------------------------------ */

static loop_t LOOP;
static long N, counter;
static double t_start, t_end;

static void count_and_stop(void *arg) {
    (void)arg;
    if (++counter == N) {
        t_end = now_seconds();
        uv_stop(&LOOP.uv);
    }
}

/* B1: schedule N trivial callbacks from inside the running loop. */
static void b1_start(void *arg) {
    (void)arg;
    t_start = now_seconds();
    for (long i = 0; i < N; i++) call_soon(&LOOP, count_and_stop, NULL);
}

static void bench_b1(void) {
    call_soon(&LOOP, b1_start, NULL);
    uv_run(&LOOP.uv, UV_RUN_DEFAULT);
    report("B1", "callbacks/s", (double)N / (t_end - t_start), N);
}

/* B2: N timers, delays 0..100 ms from the shared xorshift32 sequence (seed 42). */
static uint32_t xorshift_state = 42;
static uint64_t next_delay_ms(void) {
    uint32_t x = xorshift_state;
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    xorshift_state = x;
    return x % 101;
}

static uv_timer_t *timers;
static uint64_t max_delay_ms;

static void on_timer(uv_timer_t *timer) { count_and_stop(timer); }

static void b2_start(void *arg) {
    (void)arg;
    t_start = now_seconds();
    for (long i = 0; i < N; i++) {
        uint64_t delay = next_delay_ms();
        if (delay > max_delay_ms) max_delay_ms = delay;
        uv_timer_init(&LOOP.uv, &timers[i]);
        uv_timer_start(&timers[i], on_timer, delay, 0);
    }
}

static void bench_b2(void) {
    timers = malloc((size_t)N * sizeof(uv_timer_t));
    call_soon(&LOOP, b2_start, NULL);
    uv_run(&LOOP.uv, UV_RUN_DEFAULT);
    double wall_ms = (t_end - t_start) * 1000.0;
    report("B2", "wall ms", wall_ms, N);
    report("B2", "overhead ms", wall_ms - (double)max_delay_ms, N);
    /* Their close callbacks run in loop_close; `timers` is freed after it. */
    for (long i = 0; i < N; i++) uv_close((uv_handle_t *)&timers[i], on_close);
}

/* B3: 4 producer threads post N callbacks in total to the loop running here. */
enum { PRODUCERS = 4 };
static pthread_barrier_t start_gate;

static void *producer(void *arg) {
    long count = (long)(intptr_t)arg;
    pthread_barrier_wait(&start_gate);
    for (long i = 0; i < count; i++) call_soon_threadsafe(&LOOP, count_and_stop, NULL);
    return NULL;
}

static void b3_start(void *arg) {
    (void)arg;
    t_start = now_seconds();
    pthread_barrier_wait(&start_gate); /* releases the producers */
}

static void bench_b3(void) {
    pthread_t threads[PRODUCERS];
    pthread_barrier_init(&start_gate, NULL, PRODUCERS + 1);
    for (int i = 0; i < PRODUCERS; i++) {
        long share = N / PRODUCERS + (i < N % PRODUCERS ? 1 : 0);
        pthread_create(&threads[i], NULL, producer, (void *)(intptr_t)share);
    }
    call_soon(&LOOP, b3_start, NULL);
    uv_run(&LOOP.uv, UV_RUN_DEFAULT);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start_gate);
    report("B3", "callbacks/s", (double)N / (t_end - t_start), N);
}

/* B4: the raw libuv echo server, the way libuv's own examples write one: a 64 KiB buffer
 * malloc'ed per read, handed as is to uv_write, freed when the write completes. It listens on
 * 127.0.0.1 (any port), prints "listening on 127.0.0.1:PORT", and serves until SIGTERM. The
 * client (c/echo_client.c, run by run.py) does the measuring. */
typedef struct { uv_write_t request; uv_buf_t buffer; } echo_write;

static void echo_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buffer) {
    (void)handle; (void)suggested;
    buffer->base = malloc(65536);
    buffer->len = 65536;
}

static void echo_free_handle(uv_handle_t *handle) { free(handle); }

static void echo_written(uv_write_t *request, int status) {
    (void)status;
    echo_write *write = (echo_write *)request;
    free(write->buffer.base);
    free(write);
}

static void echo_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buffer) {
    if (nread > 0) {
        echo_write *write = malloc(sizeof *write);
        write->buffer = uv_buf_init(buffer->base, (unsigned int)nread);
        if (uv_write(&write->request, stream, &write->buffer, 1, echo_written) != 0) {
            free(buffer->base);
            free(write);
        }
        return;
    }
    free(buffer->base);
    if (nread < 0) uv_close((uv_handle_t *)stream, echo_free_handle);
}

static void echo_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    uv_tcp_t *client = malloc(sizeof *client);
    uv_tcp_init(server->loop, client);
    if (uv_accept(server, (uv_stream_t *)client) != 0) {
        uv_close((uv_handle_t *)client, echo_free_handle);
        return;
    }
    uv_tcp_nodelay(client, 1);
    uv_read_start((uv_stream_t *)client, echo_alloc, echo_read);
}

static void echo_stop(uv_signal_t *signal, int signum) {
    (void)signal; (void)signum;
    exit(0);
}

static void bench_b4(void) {
    static uv_tcp_t server;
    static uv_signal_t term;
    struct sockaddr_in address;
    uv_ip4_addr("127.0.0.1", 0, &address);
    check(uv_tcp_init(&LOOP.uv, &server), "uv_tcp_init");
    check(uv_tcp_bind(&server, (const struct sockaddr *)&address, 0), "uv_tcp_bind");
    check(uv_listen((uv_stream_t *)&server, 511, echo_connection), "uv_listen");
    int length = sizeof address;
    uv_tcp_getsockname(&server, (struct sockaddr *)&address, &length);
    uv_signal_init(&LOOP.uv, &term);
    uv_signal_start(&term, echo_stop, SIGTERM);
    printf("listening on 127.0.0.1:%d\n", ntohs(address.sin_port));
    fflush(stdout);
    uv_run(&LOOP.uv, UV_RUN_DEFAULT);
}

/* ---- B5/B5b: spawn and reap /bin/true with uv_spawn ----------------------
 * The plain libuv way (what uvloop does): uv_spawn (fork + exec), a uv_process_t per child whose
 * exit callback closes it and starts the next one. Sequential (one at a time), then 64 in flight.
 * B5b first allocates 1 GiB and writes every page, so that fork has a big parent to copy. */

static uv_loop_t SPAWN_LOOP;
static long spawn_target, spawn_started, spawn_failed;

static void spawn_one(void);

static void spawn_closed(uv_handle_t *handle) { free(handle); }

static void spawn_exited(uv_process_t *process, int64_t status, int term_signal) {
    if (status != 0 || term_signal != 0) spawn_failed++;
    uv_close((uv_handle_t *)process, spawn_closed);
    if (spawn_started < spawn_target) spawn_one();
}

static void spawn_one(void) {
    static char *args[] = {"/bin/true", NULL};
    uv_process_t *process = malloc(sizeof *process);
    if (!process) { perror("malloc"); exit(1); }
    uv_stdio_container_t stdio[3];
    for (int fd = 0; fd < 3; fd++) {  /* inherited, as every participant does */
        stdio[fd].flags = UV_INHERIT_FD;
        stdio[fd].data.fd = fd;
    }
    uv_process_options_t options;
    memset(&options, 0, sizeof options);
    options.file = args[0];
    options.args = args;
    options.exit_cb = spawn_exited;
    options.stdio_count = 3;
    options.stdio = stdio;
    check(uv_spawn(&SPAWN_LOOP, process, &options), "uv_spawn");
    spawn_started++;
}

/* Spawns and reaps n children, `width` at a time; returns spawns per second. */
static double spawn_rate(long n, int width) {
    spawn_target = n;
    spawn_started = 0;
    double start = now_seconds();
    for (int i = 0; i < width && spawn_started < n; i++) spawn_one();
    uv_run(&SPAWN_LOOP, UV_RUN_DEFAULT);
    double seconds = now_seconds() - start;
    if (spawn_failed) { fprintf(stderr, "%ld children did not exit with 0\n", spawn_failed); exit(1); }
    return (double)n / seconds;
}

static void bench_b5(const char *bench, size_t ballast_bytes) {
    if (ballast_bytes) {
        char *ballast = malloc(ballast_bytes);
        if (!ballast) { perror("malloc"); exit(1); }
        for (size_t i = 0; i < ballast_bytes; i += 4096) ballast[i] = (char)i | 1;  /* every page */
    }  /* (never freed: the parent keeps it until exit) */
    check(uv_loop_init(&SPAWN_LOOP), "uv_loop_init");
    spawn_rate(1, 1);  /* warm-up, not timed */
    report(bench, "seq spawns/s [best]", spawn_rate(N, 1), N);
    report(bench, "64 spawns/s [best]", spawn_rate(N, 64), N);
    check(uv_loop_close(&SPAWN_LOOP), "uv_loop_close");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s B1|B2|B3|B4|B5|B5b N\n", argv[0]);
        return 2;
    }
    N = atol(argv[2]);
    if (N <= 0) { fprintf(stderr, "N must be positive\n"); return 2; }
    if (strcmp(argv[1], "B5") == 0 || strcmp(argv[1], "B5b") == 0) {
        bench_b5(argv[1], strcmp(argv[1], "B5b") == 0 ? (size_t)1 << 30 : 0);
        return 0;
    }
    if (strcmp(argv[1], "B4") == 0) {
        loop_init(&LOOP);
        bench_b4();
        return 0;
    }
    loop_init(&LOOP);
    if (strcmp(argv[1], "B1") == 0) bench_b1();
    else if (strcmp(argv[1], "B2") == 0) bench_b2();
    else if (strcmp(argv[1], "B3") == 0) bench_b3();
    else { fprintf(stderr, "unknown benchmark %s\n", argv[1]); return 2; }
    loop_close(&LOOP);
    free(timers);
    return 0;
}
