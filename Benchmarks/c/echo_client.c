/*
 * B4's one client, used against every echo server.
 *
 * Usage: echo_client PORT CONNECTIONS MESSAGE_BYTES ROUND_TRIPS
 *
 * Opens CONNECTIONS TCP connections to 127.0.0.1:PORT (TCP_NODELAY). Each connection ping-pongs:
 * it sends one message of MESSAGE_BYTES, waits until all of it has come back, checks it, and sends
 * the next. All connections run at once, driven by one epoll thread (so the client takes as little
 * of the machine as possible from the server; EPOLLOUT is armed only while a send waits for room). A warm-up of ROUND_TRIPS/10 (at least one per
 * connection) is not timed; then ROUND_TRIPS round trips in total are timed, from the first send
 * to the last reply.
 *
 * Prints one JSON line: {"round_trips": R, "seconds": S, "message_bytes": M, "connections": C}
 * Exits 1 on any error (connection refused, short or wrong echo, timeout of 60 s).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

typedef struct {
    int fd;
    int watching_out;        /* EPOLLOUT is armed: a send is waiting for room */
    size_t sent, received;   /* of the current message */
    long remaining;          /* round trips this connection still has to do in this phase */
} connection;

static size_t message_bytes;
static int epoll_fd;
static unsigned char *message, *reply;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "echo_client: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Arms or disarms EPOLLOUT (armed only while a send waits for room, or epoll would spin). */
static void watch_out(connection *c, int on) {
    if (c->watching_out == on) return;
    struct epoll_event event = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &event) != 0) die("epoll_ctl");
    c->watching_out = on;
}

/* Sends what the kernel takes of the current message; returns 1 when it is all sent. */
static int pump_send(connection *c) {
    while (c->sent < message_bytes) {
        ssize_t n = send(c->fd, message + c->sent, message_bytes - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) { watch_out(c, 1); return 0; }
            die("send");
        }
        c->sent += (size_t)n;
    }
    watch_out(c, 0);
    return 1;
}

/* Reads what has come back; returns 1 when the whole message has. */
static int pump_receive(connection *c) {
    while (c->received < message_bytes) {
        ssize_t n = recv(c->fd, reply + c->received, message_bytes - c->received, 0);
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            die("recv");
        }
        if (n == 0) { fprintf(stderr, "echo_client: the server closed the connection\n"); exit(1); }
        c->received += (size_t)n;
    }
    return 1;
}

/* Runs `total` round trips spread over the connections; returns the seconds taken. */
static double run_phase(int epoll, connection *connections, int count, long total) {
    long active = 0;
    for (int i = 0; i < count; i++) {
        connections[i].remaining = total / count + (i < total % count ? 1 : 0);
        connections[i].sent = connections[i].received = 0;
        if (connections[i].remaining > 0) active++;
    }
    double start = now();
    for (int i = 0; i < count; i++) {
        if (connections[i].remaining > 0) pump_send(&connections[i]);
    }
    struct epoll_event events[64];
    while (active > 0) {
        int ready = epoll_wait(epoll, events, 64, 60000);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        if (ready == 0) { fprintf(stderr, "echo_client: no progress for 60 s\n"); exit(1); }
        for (int k = 0; k < ready; k++) {
            connection *c = events[k].data.ptr;
            if (c->remaining == 0) continue;
            if (!pump_send(c)) continue;
            if (!pump_receive(c)) continue;
            /* Spot check: the echo must be the message (the first, middle and last bytes). */
            if (reply[0] != message[0] || reply[message_bytes / 2] != message[message_bytes / 2] ||
                reply[message_bytes - 1] != message[message_bytes - 1]) {
                fprintf(stderr, "echo_client: the echo differs from the message\n");
                exit(1);
            }
            c->sent = c->received = 0;
            if (--c->remaining == 0) { active--; continue; }
            pump_send(c);
        }
    }
    return now() - start;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s PORT CONNECTIONS MESSAGE_BYTES ROUND_TRIPS\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int count = atoi(argv[2]);
    message_bytes = (size_t)atol(argv[3]);
    long round_trips = atol(argv[4]);
    if (port <= 0 || count <= 0 || message_bytes == 0 || round_trips < count) {
        fprintf(stderr, "echo_client: bad arguments\n");
        return 2;
    }
    message = malloc(message_bytes);
    reply = malloc(message_bytes);
    for (size_t i = 0; i < message_bytes; i++) message[i] = (unsigned char)(i * 31 + 7);

    int epoll = epoll_create1(0);
    if (epoll < 0) die("epoll_create1");
    epoll_fd = epoll;
    connection *connections = calloc((size_t)count, sizeof *connections);
    for (int i = 0; i < count; i++) {
        connections[i].fd = connect_to(port);
        /* Level-triggered, readable; writable only while a send waits for room. */
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = &connections[i]};
        if (epoll_ctl(epoll, EPOLL_CTL_ADD, connections[i].fd, &event) != 0) die("epoll_ctl");
    }
    long warm_up = round_trips / 10 > count ? round_trips / 10 : count;
    run_phase(epoll, connections, count, warm_up);
    double seconds = run_phase(epoll, connections, count, round_trips);
    printf("{\"round_trips\": %ld, \"seconds\": %.6f, \"message_bytes\": %zu, \"connections\": %d}\n",
           round_trips, seconds, message_bytes, count);
    for (int i = 0; i < count; i++) close(connections[i].fd);
    return 0;
}
