/* TLS over a libuv TCP handle, or over a transport the caller drives
 * (tls_lower.c), with an in-memory BIO.
 *
 * The BIO is ours rather than two BIO_s_mem: a mem BIO zeroes every region it
 * grows into and every buffer it resets, and needs one more copy each way,
 * which perf showed as ~15 % of the CPU of a bulk transfer. Ours reads the
 * ciphertext straight from the buffer libuv filled, and appends SSL's output
 * to a buffer that is itself the uv_write request, handed over without a
 * copy when the socket cannot take it all at once.
 *
 * Data path: SSL_read drains the input into a plaintext buffer handed to
 * on_read in chunks of up to 64 KiB. bw_tls_write coalesces the caller's
 * buffers into full 16 KiB records; flush() moves the ciphertext to the
 * socket with uv_try_write, the rest with uv_write.
 *
 * Small writes share records: bytes that do not fill a record wait in
 * `stage` until more arrive or the loop turn ends (the idle handle seals
 * them before the loop polls again), so the many small frames a multiplexer
 * writes in one turn leave as full records, and latency does not change.
 *
 * The 64 KiB socket read buffer and the plaintext buffer are per thread, not
 * per connection: each is used only until the read callback returns (input
 * SSL has not consumed by then is copied to `held`). Together with `stage`
 * and `out` being freed once empty, an idle connection holds no buffers.
 *
 * Nothing is called back from inside an API call: work that would (starting
 * the handshake, reporting a write error, resuming delivery of buffered data)
 * goes through the `kick` idle handle to the next loop turn. The object is
 * freed only once both handles are closed.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "burrow/error.h"
#include "tls_int.h"

void bw__tls_set_err(bw_tls_t *t, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t->err, sizeof(t->err), fmt, ap);
    va_end(ap);
}

int bw__tls_dead(const bw_tls_t *t)
{
    return t->closing || t->failed || t->pending_err != 0;
}

/* Report a fatal error once: on_handshake(err) before the handshake
 * completed, on_error(err) after. Nothing but on_close follows. */
void bw__tls_fail(bw_tls_t *t, int err)
{
    if (t->closing || t->failed)
        return;
    t->failed = 1;
    t->pending_err = 0;
    if (t->reading) {
        bw__tls_lower_read(t, 0);
        t->reading = 0;
    }
    if (!t->handshake_done) {
        if (t->cbs.on_handshake)
            t->cbs.on_handshake(t, t->ud, err);
    } else if (t->cbs.on_error) {
        t->cbs.on_error(t, t->ud, err);
    }
}

/* Report `err` on the next loop turn: API calls never call back. */
void bw__tls_fail_later(bw_tls_t *t, int err)
{
    if (bw__tls_dead(t))
        return;
    t->pending_err = err;
    uv_idle_start(&t->kick, bw__tls_kick_cb);
}

/* Describe the failed OpenSSL call in t->err and map it to a BW_E* code.
 * Must run before anything else touches this thread's OpenSSL error queue. */
int bw__tls_ssl_failure(bw_tls_t *t, int ssl_err, const char *what)
{
    unsigned long e = ERR_peek_error();
    long v = SSL_get_verify_result(t->ssl);
    int code = BW_EPROTO;

    if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK) {
        bw__tls_set_err(t, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        code = BW_EACCES;
    } else if (e != 0) {
        const char *reason = ERR_reason_error_string(e);
        bw__tls_set_err(t, "%s: %s", what, reason ? reason : "unknown OpenSSL error");
    } else {
        bw__tls_set_err(t, "%s: unexpected OpenSSL state (SSL_get_error %d)", what, ssl_err);
    }
    ERR_clear_error();
    return code;
}

static bw_tls_t *tls_new(uv_loop_t *loop, SSL_CTX *ctx, int is_server, const char *server_name,
                         const bw_tls_lower_t *lower, void *lower_ud, const bw_tls_cbs_t *cbs,
                         void *ud)
{
    bw_tls_t *t;

    if (loop == NULL || ctx == NULL || cbs == NULL || (!is_server && server_name == NULL))
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->lower = lower;
    t->lower_ud = lower_ud;
    ERR_clear_error();
    t->ssl = bw__tls_ssl_new(t, ctx, is_server, server_name);
    if (t->ssl == NULL || bw__tls_lower_init(t, loop) < 0)
        goto err;
    t->cbs = *cbs;
    t->ud = ud;
    t->is_server = is_server != 0;
    return t;

err:
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
    return NULL;
}

/* Returns a new connection (ends with bw_tls_close) or NULL. Clients must
 * name the server: there is no unverified mode. */
bw_tls_t *bw_tls_new(uv_loop_t *loop, SSL_CTX *ctx, int is_server, const char *server_name,
                     const bw_tls_cbs_t *cbs, void *ud)
{
    return tls_new(loop, ctx, is_server, server_name, NULL, NULL, cbs, ud);
}

/* Returns a new connection over `lower` (ends with bw_tls_close) or NULL. */
bw_tls_t *bw_tls_new_over(uv_loop_t *loop, SSL_CTX *ctx, int is_server, const char *server_name,
                          const bw_tls_lower_t *lower, void *lower_ud, const bw_tls_cbs_t *cbs,
                          void *ud)
{
    if (lower == NULL || lower->write == NULL || lower->queued == NULL || lower->read_ctl == NULL ||
        lower->shutdown == NULL)
        return NULL;
    return tls_new(loop, ctx, is_server, server_name, lower, lower_ud, cbs, ud);
}

/* Returns 0, BW_EINVAL (an empty or too long name, after the start) or
 * BW_ENOMEM. The list in wire format: length-prefixed names. */
int bw_tls_set_alpn(bw_tls_t *t, const char *const *protos)
{
    size_t len = 0, off = 0, n;
    unsigned char *w;

    if (t->started || protos == NULL)
        return BW_EINVAL;
    for (size_t i = 0; protos[i] != NULL; i++) {
        n = strlen(protos[i]);
        if (n == 0 || n > 255)
            return BW_EINVAL;
        len += 1 + n;
    }
    if (len == 0)
        return 0;
    if ((w = malloc(len)) == NULL)
        return BW_ENOMEM;
    for (size_t i = 0; protos[i] != NULL; i++) {
        n = strlen(protos[i]);
        w[off++] = (unsigned char)n;
        memcpy(w + off, protos[i], n);
        off += n;
    }
    free(t->alpn);
    t->alpn = w;
    t->alpn_len = len;
    /* A server chooses in bw__tls_alpn_select; a client offers the list. */
    if (!t->is_server && SSL_set_alpn_protos(t->ssl, w, (unsigned)len) != 0)
        return BW_ENOMEM;
    return 0;
}

/* Returns 1 when the peer's certificate was presented and verified. */
int bw_tls_peer_verified(bw_tls_t *t)
{
    return SSL_get0_peer_certificate(t->ssl) != NULL && SSL_get_verify_result(t->ssl) == X509_V_OK;
}

/* Returns the embedded handle (owned by t). */
uv_tcp_t *bw_tls_tcp(bw_tls_t *t)
{
    return &t->tcp;
}

/* Returns the OpenSSL connection (owned by t), e.g. for SSL_get_servername. */
SSL *bw_tls_ssl(bw_tls_t *t)
{
    return t->ssl;
}

/* Returns t's last error text (owned by t), "" when none. */
const char *bw_tls_error(const bw_tls_t *t)
{
    return t->err;
}

/* Returns "ip:port" ("[ip]:port" for IPv6) owned by t, or "" when unknown. */
const char *bw_tls_peer(bw_tls_t *t)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "";

    if (t->peer[0] != '\0' || !t->started || t->lower != NULL)
        return t->peer;
    if (uv_tcp_getpeername(&t->tcp, (struct sockaddr *)&ss, &len) < 0)
        return t->peer;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;

        uv_ip4_name(in, ip, sizeof(ip));
        snprintf(t->peer, sizeof(t->peer), "%s:%u", ip, ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;

        uv_ip6_name(in6, ip, sizeof(ip));
        snprintf(t->peer, sizeof(t->peer), "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
    return t->peer;
}
