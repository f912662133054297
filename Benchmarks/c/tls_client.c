/*
 * B12's and B12b's one client, used against every TLS server (OpenSSL, -lssl -lcrypto).
 *
 * Usage: tls_client echo|handshake PORT CONNECTIONS MESSAGE_BYTES WARMUP_SECONDS SECONDS SERVER_PID CA_FILE
 *
 * Every connection is TLS 1.3 only, with the one cipher suite TLS_AES_128_GCM_SHA256 and the one
 * key-exchange group X25519, to 127.0.0.1:PORT (TCP_NODELAY); the server's certificate is
 * verified against CA_FILE (the self-signed certificate run.py made) and the name "localhost",
 * which is also sent as SNI. Session tickets are off and no session is ever offered again
 * (SSL_OP_NO_TICKET, the session cache off, no SSL_set_session): every handshake is a full one,
 * and each is checked to be TLS 1.3, TLS_AES_128_GCM_SHA256 and not resumed.
 *
 * echo (B12): CONNECTIONS connections, each ping-ponging one message of MESSAGE_BYTES at a time:
 *   send it, read until all of it is back, check every byte, send the next.
 * handshake (B12b): CONNECTIONS clients, each looping: connect, full handshake, one message of
 *   MESSAGE_BYTES sent and its echo read back (checked), close_notify sent, then wait for the
 *   server's close_notify (or its end of file) and close. One cycle per handshake.
 *
 * One thread drives every connection with non-blocking sockets and epoll (level-triggered;
 * EPOLLOUT armed only while a write waits for room), so the client takes at most one of the
 * machine's cores and the server always has the other. Connects are blocking (on loopback they
 * take microseconds); client w connects from 127.0.0.(1 + w % 254) with IP_BIND_ADDRESS_NO_PORT,
 * so that a handshake run's tens of thousands of connections cannot exhaust the ephemeral ports.
 *
 * The first WARMUP_SECONDS are not counted (echo: the connections' handshakes are in them); then
 * the window of SECONDS is: at its start and at its end the operations finished so far (round
 * trips, or handshake cycles), the server's CPU time (utime and stime of /proc/SERVER_PID/stat:
 * every thread of the server, in clock ticks) and this process's own (getrusage) are read.
 * Prints one JSON line:
 *   {"operations": N, "seconds": S, "server_cpu_seconds": X (user + system), "server_user_seconds": U,
 *    "server_system_seconds": K, "client_cpu_seconds": Y, "connections": C, "message_bytes": M,
 *    "tickets": T (NewSessionTicket messages the server sent in the window, received and dropped),
 *    "eof_without_close_notify": E (handshake: cycles the server ended without its close_notify)}
 *
 * Exits 1 on any error (refused or reset connection, a failed handshake, another version, cipher
 * or a resumed session, a short or wrong echo), with the reason on standard error; an alarm ends
 * a run that makes no progress.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define CIPHER_SUITE "TLS_AES_128_GCM_SHA256"
#define SERVER_NAME "localhost"

enum phase { HANDSHAKING, ECHOING, CLOSING };

typedef struct {
    int index;          /* 1..CONNECTIONS: picks the source address */
    int fd;
    SSL *ssl;
    enum phase phase;
    unsigned events;    /* what epoll watches: EPOLLIN, and EPOLLOUT while a write waits for room */
    size_t sent, received;  /* of the current message */
} connection;

static int port, handshake_mode, epoll_fd;
static size_t message_bytes;
static unsigned char *message, *reply;
static SSL_CTX *context;
static long operations;  /* round trips (echo) or cycles (handshake) finished */
static long tickets, eof_without_close_notify;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "tls_client: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void fail(const char *what) {
    fprintf(stderr, "tls_client: %s\n", what);
    exit(1);
}

/* An OpenSSL failure: the reason on the error queue, or the system's. */
static void fail_tls(const char *what, SSL *ssl, int rc) {
    int code = SSL_get_error(ssl, rc);
    unsigned long queued = ERR_peek_error();
    char reason[256];
    if (queued != 0) {
        ERR_error_string_n(queued, reason, sizeof reason);
    } else if (code == SSL_ERROR_SYSCALL) {
        snprintf(reason, sizeof reason, "%s", errno ? strerror(errno) : "unexpected end of file");
    } else if (code == SSL_ERROR_ZERO_RETURN) {
        snprintf(reason, sizeof reason, "the server sent close_notify");
    } else {
        snprintf(reason, sizeof reason, "SSL error %d", code);
    }
    fprintf(stderr, "tls_client: %s: %s\n", what, reason);
    exit(1);
}

/* Counts the NewSessionTicket messages the server sends (they are received, never kept). */
static void count_tickets(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg) {
    (void)version, (void)ssl, (void)arg;
    if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
        ((const unsigned char *)buf)[0] == SSL3_MT_NEWSESSION_TICKET) {
        tickets++;
    }
}

static SSL_CTX *make_context(const char *ca_file) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) fail("SSL_CTX_new failed");
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 || SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
        fail("cannot restrict the versions to TLS 1.3");
    if (SSL_CTX_set_ciphersuites(ctx, CIPHER_SUITE) != 1) fail("cannot set the cipher suite " CIPHER_SUITE);
    if (SSL_CTX_set1_groups_list(ctx, "X25519") != 1) fail("cannot set the group X25519");
    /* No resumption: no tickets asked for, no session cached, none offered. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* Non-blocking writes: a write may end after any whole record, and be retried from there. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        fprintf(stderr, "tls_client: cannot load the CA file %s\n", ca_file);
        exit(1);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (handshake_mode) SSL_CTX_set_msg_callback(ctx, count_tickets);
    return ctx;
}

/* A TCP connection to 127.0.0.1:port from 127.0.0.(1 + source % 254), non-blocking once connected. */
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
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) die("O_NONBLOCK");
    return fd;
}

static void watch(connection *c, unsigned events) {
    if (c->events == events) return;
    struct epoll_event event = {.events = events, .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &event) != 0) die("epoll_ctl");
    c->events = events;
}

/* Connects and starts a new TLS session (a full handshake: nothing to resume from). */
static void open_connection(connection *c) {
    c->fd = connect_from(c->index);
    c->ssl = SSL_new(context);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) fail("SSL_new failed");
    if (SSL_set_tlsext_host_name(c->ssl, SERVER_NAME) != 1 || SSL_set1_host(c->ssl, SERVER_NAME) != 1)
        fail("cannot set the server name");
    SSL_set_connect_state(c->ssl);
    c->phase = HANDSHAKING;
    c->sent = c->received = 0;
    c->events = EPOLLIN;
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &event) != 0) die("epoll_ctl");
}

static void close_connection(connection *c) {
    SSL_free(c->ssl);
    close(c->fd);  /* also takes it out of the epoll set */
    c->ssl = NULL;
    c->fd = -1;
}

/* What the handshake agreed on must be what the benchmark says. */
static void check_session(connection *c) {
    if (SSL_version(c->ssl) != TLS1_3_VERSION) fail("the server negotiated a version other than TLS 1.3");
    if (strcmp(SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl)), CIPHER_SUITE) != 0)
        fail("the server negotiated a cipher suite other than " CIPHER_SUITE);
    if (SSL_session_reused(c->ssl)) fail("a session was resumed");
}

/* EPOLLIN always (the client waits for the server in every phase), EPOLLOUT when OpenSSL must write. */
static void wait_for(connection *c, int code, const char *what, int rc) {
    if (code == SSL_ERROR_WANT_READ) watch(c, EPOLLIN);
    else if (code == SSL_ERROR_WANT_WRITE) watch(c, EPOLLIN | EPOLLOUT);
    else fail_tls(what, c->ssl, rc);
}

/* Runs a connection as far as it goes without waiting. */
static void advance(connection *c) {
    for (;;) {
        if (c->phase == HANDSHAKING) {
            ERR_clear_error();
            int rc = SSL_do_handshake(c->ssl);
            if (rc != 1) {
                wait_for(c, SSL_get_error(c->ssl, rc), "handshake", rc);
                return;
            }
            check_session(c);
            c->phase = ECHOING;
            continue;
        }
        if (c->phase == CLOSING) {
            /* The first call sends close_notify (and returns 0); later ones wait for the server's. */
            ERR_clear_error();
            int rc = SSL_shutdown(c->ssl);
            if (rc == 0) continue;
            if (rc < 0) {
                int code = SSL_get_error(c->ssl, rc);
                if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
                    wait_for(c, code, "shutdown", rc);
                    return;
                }
                /* A close without close_notify ends the cycle too (counted); a reset does not. */
                if (code == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
                    eof_without_close_notify++;
                } else {
                    fail_tls("shutdown", c->ssl, rc);
                }
            }
            close_connection(c);
            operations++;
            open_connection(c);
            continue;
        }
        /* ECHOING: send what the socket takes, read what came back (never more than was sent). */
        int want_out = 0;
        while (c->sent < message_bytes) {
            ERR_clear_error();
            int rc = SSL_write(c->ssl, message + c->sent, (int)(message_bytes - c->sent));
            if (rc > 0) {
                c->sent += (size_t)rc;
                continue;
            }
            int code = SSL_get_error(c->ssl, rc);
            if (code == SSL_ERROR_WANT_WRITE) want_out = 1;
            else if (code != SSL_ERROR_WANT_READ) fail_tls("write", c->ssl, rc);
            break;
        }
        while (c->received < c->sent) {
            ERR_clear_error();
            int rc = SSL_read(c->ssl, reply + c->received, (int)(message_bytes - c->received));
            if (rc > 0) {
                c->received += (size_t)rc;
                continue;
            }
            int code = SSL_get_error(c->ssl, rc);
            if (code == SSL_ERROR_WANT_WRITE) want_out = 1;
            else if (code != SSL_ERROR_WANT_READ) fail_tls("read (the server closed before echoing it all?)", c->ssl, rc);
            break;
        }
        if (c->received < message_bytes) {
            watch(c, EPOLLIN | (want_out ? EPOLLOUT : 0));
            return;
        }
        if (memcmp(reply, message, message_bytes) != 0) fail("the echo differs from the message");
        c->sent = c->received = 0;
        if (handshake_mode) {
            c->phase = CLOSING;
        } else {
            operations++;
        }
    }
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
    unsigned long long utime = 0, stime = 0;
    if (!cursor || sscanf(cursor + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
        fprintf(stderr, "tls_client: cannot parse %s\n", path);
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

static void no_progress(int signal_number) {
    (void)signal_number;
    static const char text[] = "tls_client: no progress (the run went 30 s past its window)\n";
    ssize_t ignored = write(STDERR_FILENO, text, sizeof text - 1);
    (void)ignored;
    _exit(1);
}

int main(int argc, char **argv) {
    if (argc != 9 || (strcmp(argv[1], "echo") != 0 && strcmp(argv[1], "handshake") != 0)) {
        fprintf(stderr, "usage: %s echo|handshake PORT CONNECTIONS MESSAGE_BYTES WARMUP_SECONDS SECONDS SERVER_PID CA_FILE\n",
                argv[0]);
        return 2;
    }
    handshake_mode = strcmp(argv[1], "handshake") == 0;
    port = atoi(argv[2]);
    int count = atoi(argv[3]);
    message_bytes = (size_t)atol(argv[4]);
    double warm_up = atof(argv[5]), seconds = atof(argv[6]);
    long server_pid = atol(argv[7]);
    if (port <= 0 || count <= 0 || message_bytes == 0 || message_bytes > (1u << 30) || warm_up < 0 || seconds <= 0 ||
        server_pid <= 0) {
        fprintf(stderr, "tls_client: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);  /* a write to a reset connection fails with EPIPE instead */
    signal(SIGALRM, no_progress);
    alarm((unsigned)(warm_up + seconds) + 30);
    message = malloc(message_bytes);
    reply = malloc(message_bytes);
    for (size_t i = 0; i < message_bytes; i++) message[i] = (unsigned char)(i * 31 + 7);
    context = make_context(argv[8]);

    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) die("epoll_create1");
    connection *connections = calloc((size_t)count, sizeof *connections);
    for (int i = 0; i < count; i++) {
        connections[i].index = i + 1;
        open_connection(&connections[i]);
    }
    for (int i = 0; i < count; i++) advance(&connections[i]);

    /* The warm-up, then the window; the figures are read at both of its ends. */
    double start = now(), deadline = start + warm_up, end = 0;
    int counting = 0;
    long operations_before = 0, tickets_before = 0, eof_before = 0;
    cpu_times server_before = {0, 0};
    double client_before = 0;
    struct epoll_event events[64];
    for (;;) {
        double left = deadline - now();
        if (left <= 0) {
            if (counting) {
                end = now();
                break;
            }
            counting = 1;
            start = now();
            operations_before = operations;
            tickets_before = tickets;
            eof_before = eof_without_close_notify;
            server_before = process_cpu_seconds(server_pid);
            client_before = own_cpu_seconds();
            deadline = start + seconds;
            continue;
        }
        int ready = epoll_wait(epoll_fd, events, 64, (int)(left * 1000) + 1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < ready; k++) advance(events[k].data.ptr);
    }
    long done = operations - operations_before;
    cpu_times server_after = process_cpu_seconds(server_pid);
    double client_cpu = own_cpu_seconds() - client_before;
    double server_user = server_after.user - server_before.user;
    double server_system = server_after.system - server_before.system;
    printf("{\"operations\": %ld, \"seconds\": %.6f, \"server_cpu_seconds\": %.3f, \"server_user_seconds\": %.3f, "
           "\"server_system_seconds\": %.3f, \"client_cpu_seconds\": %.6f, \"connections\": %d, \"message_bytes\": %zu, "
           "\"tickets\": %ld, \"eof_without_close_notify\": %ld}\n",
           done, end - start, server_user + server_system, server_user, server_system, client_cpu, count, message_bytes,
           tickets - tickets_before, eof_without_close_notify - eof_before);
    return 0;
}
