/* TLS over a libuv TCP handle with an in-memory BIO.
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
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "burrow/error.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define PLAIN_BUF_SIZE (64u * 1024u)
#define RECORD_SIZE    16384u /* largest TLS plaintext record */

static _Thread_local uint8_t read_buf[BW_READ_BUF_SIZE];
static _Thread_local uint8_t plain_buf[PLAIN_BUF_SIZE];

struct write_req {
    uv_write_t req;
    bw_tls_t *t;
    uint8_t data[];
};

struct bw_tls {
    uv_tcp_t tcp;
    uv_idle_t kick; /* next-turn work: handshake start, resume, async errors */
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    SSL *ssl;
    const uint8_t *in; /* ciphertext SSL has not consumed yet */
    size_t in_len;
    uint8_t *held;         /* owns `in` when it outlived the read callback */
    struct write_req *out; /* ciphertext not yet given to the socket */
    size_t out_len, out_cap;
    uint8_t *stage; /* RECORD_SIZE bytes: plaintext of a partial record */
    size_t stage_len;
    bw_tls_cbs_t cbs;
    void *ud;
    int pending_err; /* error to report from the kick handle */
    int open_handles;
    unsigned is_server : 1;
    unsigned connecting : 1;
    unsigned started : 1; /* socket connected/accepted, handshake running */
    unsigned handshake_done : 1;
    unsigned paused : 1;  /* owner called read_stop */
    unsigned reading : 1; /* uv_read_start is active */
    unsigned tcp_eof : 1; /* FIN seen; buffered records may remain */
    unsigned rx_done : 1; /* on_eof delivered */
    unsigned failed : 1;  /* on_error / failed on_handshake delivered */
    unsigned shut : 1;    /* bw_tls_shutdown called */
    unsigned closing : 1;
    unsigned over_hwm : 1;
    unsigned want_pump : 1; /* the kick must also deliver buffered input */
    char err[256];
    char peer[64];
};

static void handshake(bw_tls_t *t);
static void pump(bw_tls_t *t);
static void kick_cb(uv_idle_t *h);
static int seal_stage(bw_tls_t *t);

static void set_err(bw_tls_t *t, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t->err, sizeof(t->err), fmt, ap);
    va_end(ap);
}

static int dead(const bw_tls_t *t)
{
    return t->closing || t->failed || t->pending_err != 0;
}

/* Report a fatal error once: on_handshake(err) before the handshake
 * completed, on_error(err) after. Nothing but on_close follows. */
static void fail(bw_tls_t *t, int err)
{
    if (t->closing || t->failed)
        return;
    t->failed = 1;
    t->pending_err = 0;
    if (t->reading) {
        uv_read_stop((uv_stream_t *)&t->tcp);
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
static void fail_later(bw_tls_t *t, int err)
{
    if (dead(t))
        return;
    t->pending_err = err;
    uv_idle_start(&t->kick, kick_cb);
}

/* Describe the failed OpenSSL call in t->err and map it to a BW_E* code.
 * Must run before anything else touches this thread's OpenSSL error queue. */
static int ssl_failure(bw_tls_t *t, int ssl_err, const char *what)
{
    unsigned long e = ERR_peek_error();
    long v = SSL_get_verify_result(t->ssl);
    int code = BW_EPROTO;

    if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK) {
        set_err(t, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        code = BW_EACCES;
    } else if (e != 0) {
        const char *reason = ERR_reason_error_string(e);
        set_err(t, "%s: %s", what, reason ? reason : "unknown OpenSSL error");
    } else {
        set_err(t, "%s: unexpected OpenSSL state (SSL_get_error %d)", what, ssl_err);
    }
    ERR_clear_error();
    return code;
}

/* ---- the BIO between SSL and libuv ---- */

static int bio_read(BIO *b, char *out, int outl)
{
    bw_tls_t *t = BIO_get_data(b);
    size_t n = t->in_len < (size_t)outl ? t->in_len : (size_t)outl;

    BIO_clear_retry_flags(b);
    if (n == 0) {
        BIO_set_retry_read(b); /* "no data yet", never EOF: we track FIN */
        return -1;
    }
    memcpy(out, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

/* Make room for `extra` more bytes of output. Returns 0 or BW_ENOMEM. */
static int reserve(bw_tls_t *t, size_t extra)
{
    size_t need = t->out_len + extra, cap = t->out_cap * 2;
    struct write_req *w;

    if (need <= t->out_cap)
        return 0;
    if (cap < need)
        cap = need;
    w = realloc(t->out, sizeof(*w) + cap);
    if (w == NULL)
        return BW_ENOMEM;
    t->out = w;
    t->out_cap = cap;
    return 0;
}

static int bio_write(BIO *b, const char *data, int len)
{
    bw_tls_t *t = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (len <= 0 || reserve(t, (size_t)len) < 0)
        return -1;
    memcpy(t->out->data + t->out_len, data, (size_t)len);
    t->out_len += (size_t)len;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    bw_tls_t *t = BIO_get_data(b);

    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* flush() runs after every SSL call */
    case BIO_CTRL_PENDING:
        return t ? (long)t->in_len : 0;
    case BIO_CTRL_WPENDING:
        return t ? (long)t->out_len : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "burrow-uv");

    if (m == NULL)
        return;
    if (!BIO_meth_set_read(m, bio_read) || !BIO_meth_set_write(m, bio_write) ||
        !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return;
    }
    bio_method = m; /* lives as long as the process, like OpenSSL's own */
}

/* ---- socket I/O ---- */

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *w = container_of(req, struct write_req, req);
    bw_tls_t *t = w->t;

    free(w);
    if (t->closing)
        return;
    if (status < 0) {
        set_err(t, "write: %s", uv_strerror(status));
        fail(t, status);
        return;
    }
    if (t->over_hwm && bw_tls_queued(t) <= BW_TLS_LOW_WATER) {
        t->over_hwm = 0;
        if (!dead(t) && t->cbs.on_drain)
            t->cbs.on_drain(t, t->ud);
    }
}

/* Move all pending output to the socket: what the kernel takes now, the
 * rest as a uv_write that owns the buffer. Returns 0 or a libuv error. */
static int flush(bw_tls_t *t)
{
    struct write_req *w = t->out;
    size_t len = t->out_len, off = 0;
    uv_buf_t b;
    int r;

    if (len == 0)
        return 0;
    t->out = NULL;
    t->out_len = 0;
    t->out_cap = 0;
    b = uv_buf_init((char *)w->data, (unsigned)len);
    r = uv_try_write((uv_stream_t *)&t->tcp, &b, 1);
    if (r >= 0)
        off = (size_t)r;
    else if (r != UV_EAGAIN)
        goto err;
    if (off == len) {
        free(w);
        return 0;
    }
    w->t = t;
    b = uv_buf_init((char *)w->data + off, (unsigned)(len - off));
    r = uv_write(&w->req, (uv_stream_t *)&t->tcp, &b, 1, write_cb);
    if (r < 0)
        goto err;
    if (bw_tls_queued(t) > BW_TLS_HIGH_WATER)
        t->over_hwm = 1;
    return 0;

err:
    free(w);
    set_err(t, "write: %s", uv_strerror(r));
    return r;
}

/* Input still unconsumed when the read callback returns must leave the
 * shared read buffer. Returns 0 or BW_ENOMEM. */
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

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    buf->base = (char *)read_buf;
    buf->len = sizeof(read_buf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bw_tls_t *t = container_of(s, bw_tls_t, tcp);

    if (nread == 0 || dead(t))
        return;
    if (nread == UV_EOF) {
        t->tcp_eof = 1;
        uv_read_stop(s);
        t->reading = 0;
    } else if (nread < 0) {
        set_err(t, "read: %s", uv_strerror((int)nread));
        fail(t, (int)nread);
        return;
    } else if (take_input(t, (const uint8_t *)buf->base, (size_t)nread) < 0) {
        set_err(t, "read: out of memory");
        fail(t, BW_ENOMEM);
        return;
    }
    pump(t);
    if (keep_input(t) < 0) {
        set_err(t, "read: out of memory");
        fail(t, BW_ENOMEM);
    }
}

static void set_reading(bw_tls_t *t)
{
    int want =
        t->started && !dead(t) && !t->tcp_eof && !t->rx_done && (!t->paused || !t->handshake_done);
    int r;

    if (want && !t->reading) {
        r = uv_read_start((uv_stream_t *)&t->tcp, alloc_cb, read_cb);
        if (r < 0) {
            set_err(t, "read: %s", uv_strerror(r));
            fail_later(t, r);
            return;
        }
        t->reading = 1;
    } else if (!want && t->reading) {
        uv_read_stop((uv_stream_t *)&t->tcp);
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
            code = ssl_failure(t, e, "TLS read failed");
    }
    if (fill > 0 && t->cbs.on_read)
        t->cbs.on_read(t, t->ud, plain_buf, fill);
    if (dead(t))
        return 0;
    if (code != 0) {
        fail(t, code);
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

    if (dead(t) || t->rx_done)
        return;
    if (!t->handshake_done) {
        handshake(t);
        if (!t->handshake_done || dead(t))
            return;
    }
    while (!t->paused && deliver_some(t))
        ;
    /* SSL_read may have produced records of its own (alerts, key updates). */
    if (!t->closing && !t->failed && (r = flush(t)) < 0)
        fail(t, r);
}

static void handshake(bw_tls_t *t)
{
    int r, e, code = 0, fr;

    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ)
        code = ssl_failure(t, e, "TLS handshake failed");
    /* Send our flight, or the alert that tells the peer why we give up. */
    fr = flush(t);
    if (code != 0) {
        fail(t, code);
    } else if (fr < 0) {
        fail(t, fr);
    } else if (e == SSL_ERROR_WANT_READ) {
        if (t->tcp_eof) {
            set_err(t, "TLS handshake failed: connection closed by peer");
            fail(t, BW_ECONNRESET);
        }
    } else {
        t->handshake_done = 1;
        set_reading(t);
        if (t->cbs.on_handshake)
            t->cbs.on_handshake(t, t->ud, 0);
    }
}

static void kick_cb(uv_idle_t *h)
{
    bw_tls_t *t = h->data;
    int err = t->pending_err;

    uv_idle_stop(h);
    if (t->closing || t->failed)
        return;
    if (err != 0) {
        t->pending_err = 0;
        fail(t, err);
        return;
    }
    if ((err = seal_stage(t)) < 0) {
        fail(t, err);
        return;
    }
    if (!t->want_pump)
        return;
    t->want_pump = 0;
    pump(t);
    if (keep_input(t) < 0) {
        set_err(t, "read: out of memory");
        fail(t, BW_ENOMEM);
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
    free(t->held);
    free(t->out);
    free(t->stage);
    free(t);
}

static void connect_cb(uv_connect_t *req, int status)
{
    bw_tls_t *t = container_of(req, bw_tls_t, connect_req);

    t->connecting = 0;
    if (t->closing)
        return;
    if (status < 0) {
        set_err(t, "connect: %s", uv_strerror(status));
        fail(t, status);
        return;
    }
    uv_tcp_nodelay(&t->tcp, 1);
    t->started = 1;
    set_reading(t);
    if (!dead(t))
        handshake(t);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    /* Errors of the write side surface through write_cb or the read side. */
}

static SSL_CTX *ctx_fail(SSL_CTX *ctx, const char *what, const char *path, char *err, size_t errlen)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;

    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
                 reason ? reason : "unknown OpenSSL error");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *ctx_new(const SSL_METHOD *method)
{
    SSL_CTX *ctx = SSL_CTX_new(method);

    if (ctx == NULL)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Idle connections give their 16 KiB record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* Returns a new SSL_CTX (caller frees with SSL_CTX_free) or NULL + err. */
SSL_CTX *bw_tls_client_ctx(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_client_method());
    int ok;

    ERR_clear_error();
    if (ctx == NULL)
        return ctx_fail(NULL, "cannot create TLS client context", NULL, err, errlen);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file != NULL)
        ok = SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
    else
        ok = SSL_CTX_set_default_verify_paths(ctx);
    if (!ok)
        return ctx_fail(ctx, "cannot load CA certificates", ca_file, err, errlen);
    return ctx;
}

/* Returns a new SSL_CTX (caller frees with SSL_CTX_free) or NULL + err. */
SSL_CTX *bw_tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_server_method());

    ERR_clear_error();
    if (ctx == NULL)
        return ctx_fail(NULL, "cannot create TLS server context", NULL, err, errlen);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        return ctx_fail(ctx, "cannot load certificate", cert_file, err, errlen);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        return ctx_fail(ctx, "cannot load private key", key_file, err, errlen);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return ctx_fail(ctx, "private key does not match certificate", key_file, err, errlen);
    return ctx;
}

static int is_ip_literal(const char *name)
{
    unsigned char a[16];

    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

/* Client side: SNI for DNS names, and what the certificate must match. */
static int set_peer_name(SSL *ssl, const char *name)
{
    if (is_ip_literal(name))
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set_tlsext_host_name(ssl, name) == 1 && SSL_set1_host(ssl, name) == 1;
}

static SSL *ssl_new(bw_tls_t *t, SSL_CTX *ctx, int is_server, const char *server_name)
{
    SSL *ssl;
    BIO *bio;

    if (pthread_once(&bio_once, bio_method_init) != 0 || bio_method == NULL)
        return NULL;
    ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    bio = BIO_new(bio_method);
    if (bio == NULL)
        goto err;
    BIO_set_data(bio, t);
    SSL_set_bio(ssl, bio, bio); /* one reference, now owned by ssl */
    if (is_server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (!set_peer_name(ssl, server_name))
            goto err;
    }
    return ssl;

err:
    SSL_free(ssl);
    return NULL;
}

/* Returns a new connection (ends with bw_tls_close) or NULL. Clients must
 * name the server: there is no unverified mode. */
bw_tls_t *bw_tls_new(uv_loop_t *loop, SSL_CTX *ctx, int is_server, const char *server_name,
                     const bw_tls_cbs_t *cbs, void *ud)
{
    bw_tls_t *t;

    if (loop == NULL || ctx == NULL || cbs == NULL || (!is_server && server_name == NULL))
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    ERR_clear_error();
    t->ssl = ssl_new(t, ctx, is_server, server_name);
    if (t->ssl == NULL)
        goto err;
    if (uv_tcp_init(loop, &t->tcp) < 0)
        goto err;
    uv_idle_init(loop, &t->kick);
    t->tcp.data = t;
    t->kick.data = t;
    t->open_handles = 2;
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

/* Returns 0 (the outcome arrives as on_handshake) or < 0 (no callback). */
int bw_tls_connect(bw_tls_t *t, const struct sockaddr *addr)
{
    int r;

    if (t->closing || t->started || t->connecting)
        return BW_EINVAL;
    r = uv_tcp_connect(&t->connect_req, &t->tcp, addr, connect_cb);
    if (r < 0) {
        set_err(t, "connect: %s", uv_strerror(r));
        return r;
    }
    t->connecting = 1;
    return 0;
}

/* Returns 0 (the outcome arrives as on_handshake) or < 0 (no callback). */
int bw_tls_start(bw_tls_t *t)
{
    int r;

    if (t->closing || t->started || t->connecting)
        return BW_EINVAL;
    r = uv_tcp_nodelay(&t->tcp, 1);
    if (r < 0) {
        set_err(t, "TCP_NODELAY: %s", uv_strerror(r));
        return r;
    }
    t->started = 1;
    r = uv_read_start((uv_stream_t *)&t->tcp, alloc_cb, read_cb);
    if (r < 0) {
        t->started = 0;
        set_err(t, "read: %s", uv_strerror(r));
        return r;
    }
    t->reading = 1;
    /* The first handshake step may fail; report that from the loop. */
    t->want_pump = 1;
    uv_idle_start(&t->kick, kick_cb);
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
        if (reserve(t, n + (n / RECORD_SIZE + 1) * 64) < 0)
            return BW_ENOMEM;
        r = SSL_write(t->ssl, p, (int)n);
        if (r <= 0)
            return ssl_failure(t, SSL_get_error(t->ssl, r), "TLS write failed");
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

    if (dead(t) || t->shut)
        return BW_EPIPE;
    if (!t->handshake_done)
        return BW_EINVAL;
    ERR_clear_error();
    for (i = 0; i < n && r == 0; i++)
        r = write_one(t, bufs[i], lens[i]);
    if (r == 0 && t->stage_len > 0)
        uv_idle_start(&t->kick, kick_cb); /* seal it before the loop polls */
    if (r == 0)
        r = flush(t);
    if (r < 0)
        fail_later(t, r);
    return r;
}

/* Returns the ciphertext bytes accepted but not yet written to the socket. */
size_t bw_tls_queued(const bw_tls_t *t)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&t->tcp) + t->out_len + t->stage_len;
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
    if (t->handshake_done && !dead(t) && !t->rx_done) {
        t->want_pump = 1;
        uv_idle_start(&t->kick, kick_cb);
    }
}

/* Seal pending bytes, queue close_notify, then the FIN once libuv has
 * written everything queued. Failures arrive as on_error. */
void bw_tls_shutdown(bw_tls_t *t)
{
    int r;

    if (dead(t) || t->shut)
        return;
    t->shut = 1;
    if (t->handshake_done) {
        if ((r = seal_stage(t)) < 0) {
            fail_later(t, r);
            return;
        }
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
        ERR_clear_error();
        if ((r = flush(t)) < 0) {
            fail_later(t, r);
            return;
        }
    }
    if (t->started)
        (void)uv_shutdown(&t->shutdown_req, (uv_stream_t *)&t->tcp, shutdown_cb);
}

/* Close both handles; on_close and the free follow from close_cb. */
void bw_tls_close(bw_tls_t *t)
{
    if (t == NULL || t->closing)
        return;
    t->closing = 1;
    uv_close((uv_handle_t *)&t->kick, close_cb);
    uv_close((uv_handle_t *)&t->tcp, close_cb);
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

    if (t->peer[0] != '\0' || !t->started)
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
