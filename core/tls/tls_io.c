/* The TLS engine: the handshake, delivery of plaintext, writes coalesced
 * into records, backpressure, shutdown and close, the same over a TCP
 * handle or a caller's transport (tls_lower.c moves the ciphertext). The
 * data path is described at the top of tls.c. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "burrow/error.h"
#include "tls_int.h"
#include "util.h"

static void handshake(bw_tls_t *t);
static void pump(bw_tls_t *t);
static int seal_stage(bw_tls_t *t);

static _Thread_local uint8_t plain_buf[PLAIN_BUF_SIZE];

/* ---- moving ciphertext ---- */

/* On_drain is owed and the transport's queue fell (tls_lower.c decides). */
void bw__tls_drained(bw_tls_t *t)
{
    t->over_hwm = 0;
    if (!bw__tls_dead(t) && t->cbs.on_drain)
        t->cbs.on_drain(t, t->ud);
}

/* Move all pending output to the transport. Returns 0 or < 0. */
static int flush(bw_tls_t *t)
{
    struct write_req *w = t->out;
    size_t len = t->out_len;

    if (len == 0)
        return 0;
    t->out = NULL;
    t->out_len = 0;
    t->out_cap = 0;
    return bw__tls_send(t, w, len);
}

/* Input still unconsumed when the read callback returns must leave the
 * shared read buffer. Returns 0 or BW_ENOMEM. */
/* gcc 12 -fanalyzer false positive: `copy` is stored in t->held (freed by
 * take_input, keep_input or the close path), which it reports as a leak. */
BW_ANALYZER_IGNORE("-Wanalyzer-malloc-leak")
static int keep_input(bw_tls_t *t)
{
    uint8_t *copy;

    if (t->in_len == 0) {
        free(t->held);
        t->held = NULL;
        t->in = NULL;
        return 0;
    }
    if (t->held != NULL)
        return 0; /* `in` already points into it (take_input merged) */
    copy = malloc(t->in_len);
    if (copy == NULL)
        return BW_ENOMEM;
    memcpy(copy, t->in, t->in_len);
    t->held = copy;
    t->in = copy;
    return 0;
}
BW_ANALYZER_END

/* Add newly read bytes behind input still held. Returns 0 or BW_ENOMEM. */
static int take_input(bw_tls_t *t, const uint8_t *p, size_t n)
{
    uint8_t *all;

    if (t->in_len == 0) {
        t->in = p;
        t->in_len = n;
        return 0;
    }
    all = malloc(t->in_len + n);
    if (all == NULL)
        return BW_ENOMEM;
    memcpy(all, t->in, t->in_len);
    memcpy(all + t->in_len, p, n);
    free(t->held);
    t->held = all;
    t->in = all;
    t->in_len += n;
    return 0;
}

/* Ciphertext arrived: advance the handshake, deliver plaintext, and keep
 * what SSL left unconsumed (p is the caller's until we return). */
void bw__tls_input(bw_tls_t *t, const uint8_t *p, size_t n)
{
    if (bw__tls_dead(t))
        return;
    if (t->peek) {
        int r = t->peek(t, t->peek_ud, p, n, &p, &n);
        if (r == BW_TLS_PEEK_WAIT || bw__tls_dead(t))
            return;
        if (r == BW_TLS_PEEK_STOP) {
            if (t->reading)
                bw__tls_lower_read(t, 0);
            t->reading = 0;
            return;
        }
        t->peek = NULL;
    }
    if (take_input(t, p, n) < 0) {
        bw__tls_set_err(t, "read: out of memory");
        bw__tls_fail(t, BW_ENOMEM);
        return;
    }
    pump(t);
    if (keep_input(t) < 0) {
        bw__tls_set_err(t, "read: out of memory");
        bw__tls_fail(t, BW_ENOMEM);
    }
}

/* The transport ended: deliver the records still buffered, then EOF. */
void bw__tls_eof(bw_tls_t *t)
{
    if (bw__tls_dead(t))
        return;
    t->tcp_eof = 1;
    if (t->reading) {
        bw__tls_lower_read(t, 0);
        t->reading = 0;
    }
    pump(t);
    if (keep_input(t) < 0) {
        bw__tls_set_err(t, "read: out of memory");
        bw__tls_fail(t, BW_ENOMEM);
    }
}

static void set_reading(bw_tls_t *t)
{
    int want = t->started && !bw__tls_dead(t) && !t->tcp_eof && !t->rx_done &&
               (!t->paused || !t->handshake_done);
    int r;

    if (want && !t->reading) {
        r = bw__tls_lower_read(t, 1);
        if (r < 0) {
            bw__tls_fail_later(t, r);
            return;
        }
        t->reading = 1;
    } else if (!want && t->reading) {
        bw__tls_lower_read(t, 0);
        t->reading = 0;
    }
}

static void deliver_eof(bw_tls_t *t)
{
    t->rx_done = 1;
    set_reading(t);
    if (t->cbs.on_eof)
        t->cbs.on_eof(t, t->ud);
}

/* Decrypt up to one plaintext buffer and hand it to on_read. Returns 1 when
 * more records may be waiting, 0 when input ran out or delivery stopped. */
static int deliver_some(bw_tls_t *t)
{
    size_t fill = 0;
    int r = 1, e = SSL_ERROR_NONE, code = 0;

    ERR_clear_error();
    while (fill < PLAIN_BUF_SIZE) {
        r = SSL_read(t->ssl, plain_buf + fill, (int)(PLAIN_BUF_SIZE - fill));
        if (r <= 0)
            break;
        fill += (size_t)r;
    }
    if (r <= 0) {
        e = SSL_get_error(t->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_ZERO_RETURN)
            code = bw__tls_ssl_failure(t, e, "TLS read failed");
    }
    if (fill > 0 && t->cbs.on_read)
        t->cbs.on_read(t, t->ud, plain_buf, fill);
    if (bw__tls_dead(t))
        return 0;
    if (code != 0) {
        bw__tls_fail(t, code);
        return 0;
    }
    if (t->paused || e == SSL_ERROR_NONE)
        return e == SSL_ERROR_NONE;
    if (e == SSL_ERROR_ZERO_RETURN || t->tcp_eof)
        deliver_eof(t);
    return 0;
}

/* Advance the handshake, then deliver whatever plaintext is buffered. */
static void pump(bw_tls_t *t)
{
    int r;

    if (bw__tls_dead(t) || t->rx_done)
        return;
    if (!t->handshake_done) {
        handshake(t);
        if (!t->handshake_done || bw__tls_dead(t))
            return;
    }
    while (!t->paused && deliver_some(t))
        ;
    /* SSL_read may have produced records of its own (alerts, key updates). */
    if (!t->closing && !t->failed && (r = flush(t)) < 0)
        bw__tls_fail(t, r);
}

static void handshake(bw_tls_t *t)
{
    int r, e, code = 0, fr;

    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ)
        code = bw__tls_ssl_failure(t, e, "TLS handshake failed");
    /* Send our flight, or the alert that tells the peer why we give up. */
    fr = flush(t);
    if (code != 0) {
        bw__tls_fail(t, code);
    } else if (fr < 0) {
        bw__tls_fail(t, fr);
    } else if (e == SSL_ERROR_WANT_READ) {
        if (t->tcp_eof) {
            bw__tls_set_err(t, "TLS handshake failed: connection closed by peer");
            bw__tls_fail(t, BW_ECONNRESET);
        }
    } else {
        t->handshake_done = 1;
        set_reading(t);
        if (t->cbs.on_handshake)
            t->cbs.on_handshake(t, t->ud, 0);
    }
}

void bw__tls_kick_cb(uv_idle_t *h)
{
    bw_tls_t *t = h->data;
    int err = t->pending_err;

    uv_idle_stop(h);
    if (t->closing || t->failed)
        return;
    if (err != 0) {
        t->pending_err = 0;
        bw__tls_fail(t, err);
        return;
    }
    if ((err = seal_stage(t)) < 0) {
        bw__tls_fail(t, err);
        return;
    }
    if (!t->want_pump)
        return;
    t->want_pump = 0;
    pump(t);
    if (keep_input(t) < 0) {
        bw__tls_set_err(t, "read: out of memory");
        bw__tls_fail(t, BW_ENOMEM);
    }
}

static void close_cb(uv_handle_t *h)
{
    bw_tls_t *t = h->data;

    if (--t->open_handles > 0)
        return;
    if (t->cbs.on_close)
        t->cbs.on_close(t, t->ud);
    SSL_free(t->ssl);
    free(t->alpn);
    free(t->held);
    free(t->out);
    free(t->stage);
    free(t);
}

/* gcc 12 -fanalyzer false positive: it reads container_of's subtraction as an
 * index far past `req` and reports t->connecting as uninitialized. */
BW_ANALYZER_IGNORE("-Wanalyzer-use-of-uninitialized-value")
static void connect_cb(uv_connect_t *req, int status)
{
    bw_tls_t *t = container_of(req, bw_tls_t, connect_req);

    t->connecting = 0;
    if (t->closing)
        return;
    if (status < 0) {
        bw__tls_set_err(t, "connect: %s", uv_strerror(status));
        bw__tls_fail(t, status);
        return;
    }
    uv_tcp_nodelay(&t->tcp, 1);
    t->started = 1;
    set_reading(t);
    if (!bw__tls_dead(t))
        handshake(t);
}
BW_ANALYZER_END

/* Returns 0 (the outcome arrives as on_handshake) or < 0 (no callback). */
int bw_tls_connect(bw_tls_t *t, const struct sockaddr *addr)
{
    int r;

    if (t->closing || t->started || t->connecting || t->lower)
        return BW_EINVAL;
    r = uv_tcp_connect(&t->connect_req, &t->tcp, addr, connect_cb);
    if (r < 0) {
        bw__tls_set_err(t, "connect: %s", uv_strerror(r));
        return r;
    }
    t->connecting = 1;
    return 0;
}

void bw_tls_set_peek(bw_tls_t *t, bw_tls_peek_cb cb, void *ud)
{
    t->peek = cb;
    t->peek_ud = ud;
}

/* Returns 0 (the outcome arrives as on_handshake) or < 0 (no callback). */
int bw_tls_start(bw_tls_t *t)
{
    int r;

    if (t->closing || t->started || t->connecting)
        return BW_EINVAL;
    if (!t->lower && (r = uv_tcp_nodelay(&t->tcp, 1)) < 0) {
        bw__tls_set_err(t, "TCP_NODELAY: %s", uv_strerror(r));
        return r;
    }
    t->started = 1;
    r = bw__tls_lower_read(t, 1);
    if (r < 0) {
        t->started = 0;
        return r;
    }
    t->reading = 1;
    /* The first handshake step may fail; report that from the loop. */
    t->want_pump = 1;
    uv_idle_start(&t->kick, bw__tls_kick_cb);
    return 0;
}

/* SSL_write all of p[len]; t->err and a BW_E* code on failure. */
static int ssl_write_all(bw_tls_t *t, const uint8_t *p, size_t len)
{
    while (len > 0) {
        size_t n = len < BW_TLS_FLUSH_EVERY ? len : BW_TLS_FLUSH_EVERY;
        int r;

        /* Room for the records up front: growing while SSL appends would
         * copy the ciphertext again. 64 bytes covers any record overhead. */
        if (bw__tls_reserve(t, n + (n / RECORD_SIZE + 1) * 64) < 0)
            return BW_ENOMEM;
        r = SSL_write(t->ssl, p, (int)n);
        if (r <= 0)
            return bw__tls_ssl_failure(t, SSL_get_error(t->ssl, r), "TLS write failed");
        p += r;
        len -= (size_t)r;
        if (t->out_len >= BW_TLS_FLUSH_EVERY && (r = flush(t)) < 0)
            return r;
    }
    return 0;
}

/* Encrypt the partial record waiting in `stage`. Returns 0 or < 0. */
static int seal_stage(bw_tls_t *t)
{
    int r;

    if (t->stage_len == 0)
        return 0;
    ERR_clear_error();
    r = ssl_write_all(t, t->stage, t->stage_len);
    t->stage_len = 0;
    free(t->stage);
    t->stage = NULL;
    return r < 0 ? r : flush(t);
}

/* Encrypt one caller buffer: whole records straight from the buffer, the
 * rest through `stage` so it shares a record with what follows. */
static int write_one(bw_tls_t *t, const uint8_t *p, size_t len)
{
    int r;

    while (len > 0) {
        if (t->stage_len == 0 && len >= RECORD_SIZE) {
            size_t whole = len - len % RECORD_SIZE;

            if ((r = ssl_write_all(t, p, whole)) < 0)
                return r;
            p += whole;
            len -= whole;
            continue;
        }
        if (t->stage == NULL && (t->stage = malloc(RECORD_SIZE)) == NULL)
            return BW_ENOMEM;
        size_t n = RECORD_SIZE - t->stage_len < len ? RECORD_SIZE - t->stage_len : len;

        memcpy(t->stage + t->stage_len, p, n);
        t->stage_len += n;
        p += n;
        len -= n;
        if (t->stage_len == RECORD_SIZE) {
            t->stage_len = 0;
            if ((r = ssl_write_all(t, t->stage, RECORD_SIZE)) < 0)
                return r;
        }
    }
    return 0;
}

/* Copies and encrypts the buffers. Returns 0, BW_EINVAL before the
 * handshake completed, BW_EPIPE after shutdown/close/failure, or another
 * error (which is also reported through on_error on the next loop turn). */
int bw_tls_write(bw_tls_t *t, const void *const *bufs, const size_t *lens, unsigned n)
{
    unsigned i;
    int r = 0;

    if (bw__tls_dead(t) || t->shut)
        return BW_EPIPE;
    if (!t->handshake_done)
        return BW_EINVAL;
    ERR_clear_error();
    for (i = 0; i < n && r == 0; i++)
        r = write_one(t, bufs[i], lens[i]);
    if (r == 0 && t->stage_len > 0)
        uv_idle_start(&t->kick, bw__tls_kick_cb); /* seal it before the loop polls */
    if (r == 0)
        r = flush(t);
    if (r < 0)
        bw__tls_fail_later(t, r);
    return r;
}

/* Returns 1 while the transport pushes back (on_drain follows). */
int bw_tls_write_blocked(const bw_tls_t *t)
{
    return t->over_hwm;
}

/* Returns the ciphertext bytes accepted but not yet written to the socket. */
size_t bw_tls_queued(const bw_tls_t *t)
{
    return bw__tls_lower_queued(t) + t->out_len + t->stage_len;
}

/* Stop delivering on_read/on_eof and reading the socket, so the peer
 * feels TCP backpressure. The handshake still completes. */
void bw_tls_read_stop(bw_tls_t *t)
{
    t->paused = 1;
    set_reading(t);
}

/* Resume delivery; input buffered while paused arrives on the next loop
 * turn, never from inside this call. */
void bw_tls_read_start(bw_tls_t *t)
{
    if (!t->paused)
        return;
    t->paused = 0;
    set_reading(t);
    /* Records (or a close_notify, or the FIN) already buffered will not make
     * the socket readable again; a pump that finds nothing costs nothing. */
    if (t->handshake_done && !bw__tls_dead(t) && !t->rx_done) {
        t->want_pump = 1;
        uv_idle_start(&t->kick, bw__tls_kick_cb);
    }
}

/* Seal pending bytes, queue close_notify, then the FIN once libuv has
 * written everything queued. Failures arrive as on_error. */
void bw_tls_shutdown(bw_tls_t *t)
{
    int r;

    if (bw__tls_dead(t) || t->shut)
        return;
    t->shut = 1;
    if (t->handshake_done) {
        if ((r = seal_stage(t)) < 0) {
            bw__tls_fail_later(t, r);
            return;
        }
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
        ERR_clear_error();
        if ((r = flush(t)) < 0) {
            bw__tls_fail_later(t, r);
            return;
        }
    }
    if (t->started)
        bw__tls_lower_shutdown(t);
}

/* Close both handles; on_close and the free follow from close_cb. */
void bw_tls_close(bw_tls_t *t)
{
    if (t == NULL || t->closing)
        return;
    t->closing = 1;
    bw__tls_lower_close(t, close_cb);
}
