/*
 * B12's and B12b's floor: a TLS echo server in C on libuv and OpenSSL, the way a libuv program
 * adds TLS (OpenSSL's memory BIOs between the socket and the SSL object), with what UVLoopTLS's
 * server is given: the certificate and key in BENCH_TLS_CERT and BENCH_TLS_KEY, TLS 1.3 at least,
 * OpenSSL's defaults otherwise (two session tickets per handshake, as every server here sends).
 *
 * Usage: tls_server_libuv
 *
 * Listens on 127.0.0.1 (any port), prints "listening on 127.0.0.1:PORT", and serves until SIGTERM.
 * Per connection: every read goes into the input BIO, then the handshake (until done) or
 * SSL_read, each message written back with SSL_write; whatever OpenSSL put in the output BIO is
 * written with one uv_write. The peer's close_notify is answered with ours, then the connection
 * is shut down (after its writes) and closed. It takes no backpressure: c/tls_client.c ping-pongs.
 *
 * It measures nothing itself: c/tls_client.c reads this process's CPU time from /proc. Against
 * it, UVLoop's figure is OpenSSL's cost plus UVLoop's plumbing (streams, tasks, the reader and
 * writer), so the two together say how much of a TLS server's time is UVLoop's own.
 */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
    uv_tcp_t handle;
    SSL *ssl;
    BIO *input, *output;
    int handshaken;
} connection;

typedef struct {
    uv_write_t request;
    uv_buf_t buffer;
} write_request;

static uv_loop_t *loop;
static uv_tcp_t listener;
static uv_signal_t terminate;
static SSL_CTX *context;
static char ciphertext[65536], plaintext[65536];

static void die(const char *what) {
    fprintf(stderr, "tls_server_libuv: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void check(int rc, const char *what) {
    if (rc < 0) {
        fprintf(stderr, "tls_server_libuv: %s: %s\n", what, uv_strerror(rc));
        exit(1);
    }
}

static void on_closed(uv_handle_t *handle) {
    connection *c = (connection *)handle;
    SSL_free(c->ssl); /* frees both BIOs */
    free(c);
}

static void close_connection(connection *c) {
    if (!uv_is_closing((uv_handle_t *)&c->handle)) uv_close((uv_handle_t *)&c->handle, on_closed);
}

static void on_written(uv_write_t *request, int status) {
    write_request *w = (write_request *)request;
    connection *c = (connection *)request->handle;
    free(w->buffer.base);
    free(w);
    if (status < 0) close_connection(c);
}

/* Writes what OpenSSL has put in the output BIO, in one uv_write. */
static void flush(connection *c) {
    size_t pending = BIO_ctrl_pending(c->output);
    if (pending == 0) return;
    write_request *w = malloc(sizeof *w);
    char *bytes = malloc(pending);
    if (!w || !bytes) die("out of memory");
    int n = BIO_read(c->output, bytes, (int)pending);
    w->buffer = uv_buf_init(bytes, (unsigned)n);
    if (uv_write(&w->request, (uv_stream_t *)&c->handle, &w->buffer, 1, on_written) < 0) {
        free(bytes);
        free(w);
        close_connection(c);
    }
}

static void on_shut_down(uv_shutdown_t *request, int status) {
    (void)status;
    close_connection((connection *)request->handle);
    free(request);
}

static void finish(connection *c) {
    uv_shutdown_t *request = malloc(sizeof *request);
    if (!request) die("out of memory");
    if (uv_shutdown(request, (uv_stream_t *)&c->handle, on_shut_down) < 0) {
        free(request);
        close_connection(c);
    }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buffer) {
    (void)handle;
    (void)suggested;
    *buffer = uv_buf_init(ciphertext, sizeof ciphertext);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buffer) {
    connection *c = (connection *)stream;
    if (nread < 0) {
        close_connection(c);
        return;
    }
    if (nread == 0) return;
    BIO_write(c->input, buffer->base, (int)nread);
    if (!c->handshaken) {
        int rc = SSL_do_handshake(c->ssl);
        if (rc == 1) {
            c->handshaken = 1;
        } else if (SSL_get_error(c->ssl, rc) != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            flush(c); /* the alert */
            close_connection(c);
            return;
        }
    }
    if (c->handshaken) {
        for (;;) {
            int n = SSL_read(c->ssl, plaintext, sizeof plaintext);
            if (n > 0) {
                if (SSL_write(c->ssl, plaintext, n) <= 0) die("SSL_write");
                continue;
            }
            int error = SSL_get_error(c->ssl, n);
            if (error == SSL_ERROR_WANT_READ) break;
            ERR_clear_error();
            if (error == SSL_ERROR_ZERO_RETURN) SSL_shutdown(c->ssl); /* our close_notify */
            flush(c);
            uv_read_stop(stream);
            finish(c);
            return;
        }
    }
    flush(c);
}

static void on_connection(uv_stream_t *server, int status) {
    check(status, "listen");
    connection *c = calloc(1, sizeof *c);
    if (!c) die("out of memory");
    check(uv_tcp_init(loop, &c->handle), "uv_tcp_init");
    if (uv_accept(server, (uv_stream_t *)&c->handle) < 0) {
        uv_close((uv_handle_t *)&c->handle, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(&c->handle, 1);
    c->ssl = SSL_new(context);
    c->input = BIO_new(BIO_s_mem());
    c->output = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->input || !c->output) die("SSL_new");
    SSL_set_bio(c->ssl, c->input, c->output);
    SSL_set_accept_state(c->ssl);
    check(uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read), "uv_read_start");
}

static void close_any(uv_handle_t *handle, void *argument) {
    (void)argument;
    if (uv_is_closing(handle)) return;
    if (handle->type == UV_TCP && handle != (uv_handle_t *)&listener) {
        uv_close(handle, on_closed);
    } else {
        uv_close(handle, NULL);
    }
}

static void on_terminate(uv_signal_t *signal, int number) {
    (void)signal;
    (void)number;
    uv_walk(loop, close_any, NULL);
}

int main(void) {
    const char *certificate = getenv("BENCH_TLS_CERT"), *key = getenv("BENCH_TLS_KEY");
    if (!certificate || !key) die("BENCH_TLS_CERT and BENCH_TLS_KEY must name the PEM files");
    signal(SIGPIPE, SIG_IGN);
    context = SSL_CTX_new(TLS_server_method());
    if (!context || SSL_CTX_set_min_proto_version(context, TLS1_3_VERSION) != 1
        || SSL_CTX_use_certificate_chain_file(context, certificate) != 1
        || SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) != 1) {
        die("the certificate or key cannot be used");
    }
    loop = uv_default_loop();
    struct sockaddr_in address;
    check(uv_ip4_addr("127.0.0.1", 0, &address), "uv_ip4_addr");
    check(uv_tcp_init(loop, &listener), "uv_tcp_init");
    check(uv_tcp_bind(&listener, (const struct sockaddr *)&address, 0), "bind");
    check(uv_listen((uv_stream_t *)&listener, 511, on_connection), "listen");
    int length = sizeof address;
    check(uv_tcp_getsockname(&listener, (struct sockaddr *)&address, &length), "getsockname");
    printf("listening on 127.0.0.1:%d\n", ntohs(address.sin_port));
    fflush(stdout);
    check(uv_signal_init(loop, &terminate), "uv_signal_init");
    check(uv_signal_start(&terminate, on_terminate, SIGTERM), "uv_signal_start");
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    SSL_CTX_free(context);
    return 0;
}
