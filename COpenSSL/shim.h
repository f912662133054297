// The OpenSSL calls UVLoopTLS makes, with OpenSSL's function-like macros (which Swift cannot
// import) as inline functions.
#ifndef UVLOOP_COPENSSL_SHIM_H
#define UVLOOP_COPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>

static inline int uvtls_ctx_set_min_proto(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline long uvtls_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }

static inline int uvtls_set_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

/// A BIO of ours with nothing to read now: "retry", as a non-blocking socket.
static inline void uvtls_bio_set_retry_read(BIO *bio) { BIO_set_retry_read(bio); }

static inline void uvtls_bio_clear_retry_flags(BIO *bio) { BIO_clear_retry_flags(bio); }

typedef int (*uvtls_servername_cb)(SSL *ssl, int *alert, void *arg);

static inline void uvtls_ctx_set_servername_callback(SSL_CTX *ctx, uvtls_servername_cb callback, void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, callback);
    SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

static inline int uvtls_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return (int)SSL_CTX_set_session_cache_mode(ctx, mode);
}

/// No renegotiation (a memory-BIO record layer never has to write while it reads), no
/// compression (CRIME), and servers choose the cipher.
static inline void uvtls_ctx_set_default_options(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
}

#endif
