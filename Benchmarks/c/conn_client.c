/*
 * B10's and B11's one client, used against every server.
 *
 * Usage: conn_client churn PORT WORKERS MESSAGE_BYTES WARMUP_SECONDS SECONDS SERVER_PID
 *        conn_client idle PORT CONNECTIONS
 *
 * churn (B10, connection churn): WORKERS threads, each with plain blocking sockets, loop: connect
 *   to 127.0.0.1:PORT, send MESSAGE_BYTES, read them all back (checked), close. The first
 *   WARMUP_SECONDS are not counted; then the window of SECONDS is: at its start and at its end the
 *   main thread reads the cycles finished so far, the server's CPU time (utime and stime of
 *   /proc/SERVER_PID/stat: every thread of the server process, in clock ticks) and this process's
 *   own (getrusage). Prints one JSON line:
 *     {"cycles": C, "seconds": S, "server_cpu_seconds": X (user + system), "server_user_seconds": U,
 *      "server_system_seconds": K, "client_cpu_seconds": Y, "workers": W, "message_bytes": M}
 *   The client closes first, so its side of each connection goes to TIME_WAIT. To keep a run from
 *   exhausting the ephemeral ports to one server port (about 28,000 here, each held 60 s, or 1 s
 *   with tcp_tw_reuse on loopback), worker w connects from source address 127.0.0.(1 + w % 254)
 *   (IP_BIND_ADDRESS_NO_PORT: the port is still chosen at connect time, per 4-tuple).
 *
 * idle (B11, idle connections): raises its RLIMIT_NOFILE to the hard limit, opens CONNECTIONS
 *   connections one after another (blocking connect; source addresses spread the same way), sends
 *   nothing, waits until the server has accepted them all, prints
 *   {"connected": N, "seconds": S, "paced": P} and then holds them until its standard input reaches
 *   end of file; then closes them all and exits 0. run.py watches the server meanwhile.
 *   Pacing: a connection the server has not accepted yet waits in the listening socket's accept
 *   queue (511 long), and once that is full the kernel drops new SYNs, each costing its connect a
 *   1 s retransmission. So every 32 connects the client reads the queue's length (sock_diag: the
 *   listener's idiag_rqueue, what `ss -lt` shows as Recv-Q) and waits while it holds 256 or more;
 *   at the end it waits until the queue is empty. P is 1 when that worked; 0 when sock_diag is
 *   unavailable (then the connects are unpaced and only run.py's own wait, on the server's
 *   descriptors, tells when all are accepted).
 *
 * Exits 1 on any error (connection refused or reset, short or wrong echo), with the reason on
 * standard error; an alarm ends a churn run that makes no progress.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static int port;
static size_t message_bytes;
static unsigned char *message;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "conn_client: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* A blocking TCP connection to 127.0.0.1:port from 127.0.0.(1 + source % 254). */
static int connect_from(int source) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0) die("IP_BIND_ADDRESS_NO_PORT");
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = 0};
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)(source % 254));
    if (bind(fd, (struct sockaddr *)&local, sizeof local) != 0) die("bind");
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (connect(fd, (struct sockaddr *)&server, sizeof server) != 0) {
        if (errno != EINTR) die("connect");
    }
    return fd;
}

/* ---- churn ---- */

typedef struct {
    int index;
    pthread_t thread;
    /* Cycles finished; read by the main thread (relaxed atomics, a cache line per worker). */
    long cycles;
    char padding[64 - sizeof(long)];
} worker;

static int stopping;  /* set by the main thread at the end of the window */

static void *churn(void *argument) {
    worker *self = argument;
    unsigned char *reply = malloc(message_bytes);
    while (!__atomic_load_n(&stopping, __ATOMIC_RELAXED)) {
        int fd = connect_from(self->index);
        size_t sent = 0, received = 0;
        while (sent < message_bytes) {
            ssize_t n = send(fd, message + sent, message_bytes - sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                die("send");
            }
            sent += (size_t)n;
        }
        while (received < message_bytes) {
            ssize_t n = recv(fd, reply + received, message_bytes - received, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                die("recv");
            }
            if (n == 0) { fprintf(stderr, "conn_client: the server closed before echoing it all\n"); exit(1); }
            received += (size_t)n;
        }
        if (memcmp(reply, message, message_bytes) != 0) {
            fprintf(stderr, "conn_client: the echo differs from the message\n");
            exit(1);
        }
        close(fd);
        __atomic_store_n(&self->cycles, self->cycles + 1, __ATOMIC_RELAXED);
    }
    free(reply);
    return NULL;
}

static long total_cycles(worker *workers, int count) {
    long total = 0;
    for (int i = 0; i < count; i++) total += __atomic_load_n(&workers[i].cycles, __ATOMIC_RELAXED);
    return total;
}

/* utime and stime of a process (all its threads, live and exited), in seconds. */
typedef struct {
    double user, system;
} cpu_times;

static cpu_times process_cpu_seconds(long pid) {
    char path[64], text[4096];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *file = fopen(path, "r");
    if (!file) die("open the server's /proc/PID/stat");
    size_t length = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[length] = 0;
    /* After the command name's closing parenthesis: state is field 3, utime 14, stime 15. */
    char *cursor = strrchr(text, ')');
    if (!cursor) { fprintf(stderr, "conn_client: cannot parse %s\n", path); exit(1); }
    unsigned long long utime = 0, stime = 0;
    if (sscanf(cursor + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
        fprintf(stderr, "conn_client: cannot parse %s\n", path);
        exit(1);
    }
    double tick = (double)sysconf(_SC_CLK_TCK);
    return (cpu_times){(double)utime / tick, (double)stime / tick};
}

static double own_cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
           (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

static void sleep_seconds(double seconds) {
    struct timespec ts = {.tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void no_progress(int signal_number) {
    (void)signal_number;
    static const char text[] = "conn_client: no progress (a worker waited 30 s past the window)\n";
    ssize_t ignored = write(STDERR_FILENO, text, sizeof text - 1);
    (void)ignored;
    _exit(1);
}

static int run_churn(int count, double warm_up, double seconds, long server_pid) {
    message = malloc(message_bytes);
    for (size_t i = 0; i < message_bytes; i++) message[i] = (unsigned char)(i * 31 + 7);
    /* A server that stops answering must not hang the run (run.py has its own timeout too). */
    signal(SIGALRM, no_progress);
    alarm((unsigned)(warm_up + seconds) + 30);
    worker *workers = calloc((size_t)count, sizeof *workers);
    for (int i = 0; i < count; i++) {
        workers[i].index = i + 1;
        if (pthread_create(&workers[i].thread, NULL, churn, &workers[i]) != 0) die("pthread_create");
    }
    sleep_seconds(warm_up);
    double start = now();
    long cycles_before = total_cycles(workers, count);
    cpu_times server_before = process_cpu_seconds(server_pid);
    double client_before = own_cpu_seconds();
    sleep_seconds(seconds);
    double end = now();
    long cycles = total_cycles(workers, count) - cycles_before;
    cpu_times server_after = process_cpu_seconds(server_pid);
    double client_cpu = own_cpu_seconds() - client_before;
    double server_user = server_after.user - server_before.user;
    double server_system = server_after.system - server_before.system;
    __atomic_store_n(&stopping, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < count; i++) pthread_join(workers[i].thread, NULL);
    printf("{\"cycles\": %ld, \"seconds\": %.6f, \"server_cpu_seconds\": %.3f, \"server_user_seconds\": %.3f, "
           "\"server_system_seconds\": %.3f, \"client_cpu_seconds\": %.6f, \"workers\": %d, \"message_bytes\": %zu}\n",
           cycles, end - start, server_user + server_system, server_user, server_system, client_cpu, count, message_bytes);
    return 0;
}

/* ---- idle ---- */

/* The accept queue's length of the listener on 127.0.0.1:port (sock_diag), or -1 if unknown. */
static int accept_queue_length(void) {
    static int diag = -2;
    if (diag == -2) diag = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (diag < 0) return -1;
    struct {
        struct nlmsghdr header;
        struct inet_diag_req_v2 request;
    } message = {
        .header = {.nlmsg_len = sizeof message, .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
        .request = {.sdiag_family = AF_INET, .sdiag_protocol = IPPROTO_TCP, .idiag_states = 1u << 10 /* TCP_LISTEN */},
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(diag, &message, sizeof message, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return -1;
    int length = -1;
    long buffer[8192 / sizeof(long)];
    for (;;) {
        ssize_t n = recv(diag, buffer, sizeof buffer, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) return length;
            if (h->nlmsg_type == NLMSG_ERROR) return -1;
            struct inet_diag_msg *entry = NLMSG_DATA(h);
            if (ntohs(entry->id.idiag_sport) == port && entry->id.idiag_src[0] == htonl(INADDR_LOOPBACK)) {
                length = (int)entry->idiag_rqueue;
            }
        }
    }
}

/* Waits while the accept queue holds more than `most`; returns 0 if its length is unknown. */
static int wait_for_accepts(int most) {
    int length;
    double deadline = now() + 60;
    while ((length = accept_queue_length()) > most) {
        if (now() > deadline) {
            fprintf(stderr, "conn_client: the server left %d connections unaccepted for 60 s\n", length);
            exit(1);
        }
        sleep_seconds(0.0005);
    }
    return length >= 0;
}

static int run_idle(int count) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur < (rlim_t)count + 16) {
        fprintf(stderr, "conn_client: RLIMIT_NOFILE's hard limit %llu is below %d connections\n",
                (unsigned long long)limit.rlim_max, count);
        return 1;
    }
    int *fds = malloc((size_t)count * sizeof *fds);
    double start = now();
    int paced = 1;
    for (int i = 0; i < count; i++) {
        if (paced && i % 32 == 0) paced = wait_for_accepts(255);
        fds[i] = connect_from(i);
    }
    if (paced) paced = wait_for_accepts(0);
    printf("{\"connected\": %d, \"seconds\": %.6f, \"paced\": %d}\n", count, now() - start, paced);
    fflush(stdout);
    char buffer[256];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buffer, sizeof buffer);
        if (n == 0 || (n < 0 && errno != EINTR)) break;
    }
    for (int i = 0; i < count; i++) close(fds[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 8 && strcmp(argv[1], "churn") == 0) {
        port = atoi(argv[2]);
        int workers = atoi(argv[3]);
        message_bytes = (size_t)atol(argv[4]);
        double warm_up = atof(argv[5]), seconds = atof(argv[6]);
        long server_pid = atol(argv[7]);
        if (port <= 0 || workers <= 0 || message_bytes == 0 || warm_up < 0 || seconds <= 0 || server_pid <= 0) {
            fprintf(stderr, "conn_client: bad arguments\n");
            return 2;
        }
        return run_churn(workers, warm_up, seconds, server_pid);
    }
    if (argc == 4 && strcmp(argv[1], "idle") == 0) {
        port = atoi(argv[2]);
        int connections = atoi(argv[3]);
        if (port <= 0 || connections <= 0) {
            fprintf(stderr, "conn_client: bad arguments\n");
            return 2;
        }
        return run_idle(connections);
    }
    fprintf(stderr,
            "usage: %s churn PORT WORKERS MESSAGE_BYTES WARMUP_SECONDS SECONDS SERVER_PID\n"
            "       %s idle PORT CONNECTIONS\n",
            argv[0], argv[0]);
    return 2;
}
