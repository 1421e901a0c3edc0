/* TLS as a filter over any bw_stream_t (TCP, a yamux stream, an upgraded
 * connection), and the https:// upstream built on it: TCP, then the filter
 * as a client. The engine is core/tls's (bw_tls_new_over); this file only
 * wires it between the stream below and the plaintext stream above, which
 * follows the shared discipline of stream.c. See stream.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "log.h"
#include "stream.h"
#include "stream_impl.h"
#include "tls.h"

typedef struct tls_filter {
    bw_stream_t base;
    bw_stream_t *below;  /* owned until our close */
    bw_tls_t *tls;       /* until its on_close */
    bw_tls_filter_cb cb; /* until the handshake ends */
    void *ud;
} tls_filter_t;

static const bw__stream_ops_t filter_ops;

static tls_filter_t *as_filter(bw_stream_t *s)
{
    return (tls_filter_t *)s;
}

/* ---- the engine's transport: the stream below ---- */

static int lower_write(void *ud, const uint8_t *data, size_t len)
{
    return bw_stream_write(((tls_filter_t *)ud)->below, data, len);
}

static size_t lower_queued(void *ud)
{
    return bw_stream_queued(((tls_filter_t *)ud)->below);
}

static void lower_read_ctl(void *ud, int on)
{
    tls_filter_t *f = ud;
    if (on)
        bw_stream_read_start(f->below);
    else
        bw_stream_read_stop(f->below);
}

static void lower_shutdown(void *ud)
{
    (void)bw_stream_shutdown(((tls_filter_t *)ud)->below);
}

static const bw_tls_lower_t lower_ops = {
    .write = lower_write,
    .queued = lower_queued,
    .read_ctl = lower_read_ctl,
    .shutdown = lower_shutdown,
};

/* ---- events of the stream below ---- */

static void below_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    bw_tls_lower_input(((tls_filter_t *)ud)->tls, data, len);
}

static void below_eof(bw_stream_t *s, void *ud)
{
    bw_tls_lower_eof(((tls_filter_t *)ud)->tls);
}

static void below_drain(bw_stream_t *s, void *ud)
{
    bw_tls_lower_drain(((tls_filter_t *)ud)->tls);
}

static void below_error(bw_stream_t *s, void *ud, int err)
{
    char why[96];
    snprintf(why, sizeof why, "transport failed: %s", bw_strerror(err));
    bw_tls_lower_error(((tls_filter_t *)ud)->tls, err, why);
}

static const bw_stream_cbs_t below_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = below_read,
    .on_eof = below_eof,
    .on_drain = below_drain,
    .on_error = below_error,
};

/* ---- events of the TLS engine ---- */

/* Let go of the engine and the stream below; the memory goes once the
 * engine's on_close released it and the owner closed the filter. */
static void drop_lower(tls_filter_t *f, int abort)
{
    bw_stream_t *below = f->below;
    f->below = NULL;
    bw_stream_close(below, abort);
    bw_tls_close(f->tls);
}

static void on_handshake(bw_tls_t *t, void *ud, int status)
{
    tls_filter_t *f = ud;
    bw_tls_filter_cb cb = f->cb;
    f->cb = NULL;
    if (status < 0) {
        /* Never handed out: it is ours to drop. */
        f->base.closed = 1;
        cb(f->ud, NULL, status, *bw_tls_error(t) ? bw_tls_error(t) : bw_strerror(status));
        drop_lower(f, 1);
        return;
    }
    /* Hold plaintext in the engine until the owner installs callbacks. */
    bw_tls_read_stop(t);
    cb(f->ud, &f->base, 0, NULL);
}

static void on_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
    bw_stream_t *s = ud;
    s->depth++;
    bw__stream_input(s, data, len);
    s->depth--;
    bw__stream_maybe_free(s);
}

static void on_eof(bw_tls_t *t, void *ud)
{
    bw_stream_t *s = ud;
    s->depth++;
    bw__stream_eof(s);
    s->depth--;
    bw__stream_maybe_free(s);
}

static void on_drain(bw_tls_t *t, void *ud)
{
    bw_stream_t *s = ud;
    s->depth++;
    bw__stream_drain(s);
    s->depth--;
    bw__stream_maybe_free(s);
}

static void on_error(bw_tls_t *t, void *ud, int err)
{
    bw_stream_t *s = ud;
    bw_log(BW_LOG_DEBUG, "TLS stream failed", "obj", "tls", "peer", s->peer, "err", bw_tls_error(t),
           NULL);
    s->depth++;
    bw__stream_error(s, err);
    s->depth--;
    bw__stream_maybe_free(s);
}

static void on_close(bw_tls_t *t, void *ud)
{
    tls_filter_t *f = ud;
    f->tls = NULL;
    bw__stream_released(&f->base);
}

static const bw_tls_cbs_t tls_cbs = {
    .on_handshake = on_handshake,
    .on_read = on_read,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_error = on_error,
    .on_close = on_close,
};

/* ---- stream operations ---- */

static int tf_write(bw_stream_t *s, const void *data, size_t len)
{
    tls_filter_t *f = as_filter(s);
    const void *bufs[1] = {data};
    int rc = bw_tls_write(f->tls, bufs, &len, 1);
    if (rc < 0)
        return rc;
    /* The stream below pushed back: its on_drain becomes ours. */
    return bw_tls_write_blocked(f->tls) ? BW_EAGAIN : 0;
}

static size_t tf_queued(bw_stream_t *s)
{
    return bw_tls_queued(as_filter(s)->tls);
}

static int tf_shutdown(bw_stream_t *s)
{
    bw_tls_shutdown(as_filter(s)->tls); /* close_notify, then shut down below */
    return 0;
}

static void tf_read_ctl(bw_stream_t *s, int on)
{
    if (on)
        bw_tls_read_start(as_filter(s)->tls);
    else
        bw_tls_read_stop(as_filter(s)->tls);
}

/* A graceful close seals what is pending and the close_notify into the
 * stream below, which sends its queue before it closes; an abort resets it. */
static void tf_close(bw_stream_t *s, int abort)
{
    tls_filter_t *f = as_filter(s);
    if (!abort)
        bw_tls_shutdown(f->tls);
    drop_lower(f, abort);
}

static const bw__stream_ops_t filter_ops = {
    .write = tf_write,
    .queued = tf_queued,
    .shutdown = tf_shutdown,
    .read_ctl = tf_read_ctl,
    .close = tf_close,
};

int bw_stream_tls_over(bw_io_t *io, bw_stream_t *below, const bw_tls_filter_opts_t *o,
                       bw_tls_filter_cb cb, void *ud)
{
    if (!io || !below || !o || !o->ctx || !cb || (!o->is_server && !o->server_name))
        return BW_EINVAL;
    tls_filter_t *f = calloc(1, sizeof *f);
    if (!f)
        return BW_ENOMEM;
    f->base.ops = &filter_ops;
    f->base.io = io;
    f->below = below;
    f->cb = cb;
    f->ud = ud;
    snprintf(f->base.peer, sizeof f->base.peer, "%s", bw_stream_peer(below));
    f->tls =
        bw_tls_new_over(io->loop, o->ctx, o->is_server, o->server_name, &lower_ops, f, &tls_cbs, f);
    if (!f->tls) {
        free(f);
        return BW_ENOMEM;
    }
    int rc = o->alpn ? bw_tls_set_alpn(f->tls, o->alpn) : 0;
    if (rc == 0)
        rc = bw_tls_start(f->tls); /* the handshake begins on a later turn */
    if (rc == 0) {
        /* Input the owner left held below (sent after a STARTTLS) is ours. */
        bw_stream_set_callbacks(below, &below_cbs, f);
        return 0;
    }
    /* Nothing was called back: the engine goes on a later turn and frees f
     * from on_close; `below` stays the caller's. */
    f->below = NULL;
    f->base.closed = 1;
    bw_tls_close(f->tls);
    return rc;
}

SSL *bw_stream_tls_ssl(bw_stream_t *s)
{
    if (!s || s->ops != &filter_ops || !as_filter(s)->tls)
        return NULL;
    return bw_tls_ssl(as_filter(s)->tls);
}

/* ---- TLS to a local service (BW_CONNECT_TLS) ---- */

typedef struct tls_connect {
    bw_io_t *io;
    bw_connect_cb cb;
    void *ud;
    int verify;
    int port;
    char host[256];
} tls_connect_t;

static SSL_CTX *g_ctx[2]; /* [0] no verification, [1] verified */

static SSL_CTX *client_ctx(int verify)
{
    char err[256];
    if (g_ctx[verify])
        return g_ctx[verify];
    SSL_CTX *ctx = bw_tls_client_ctx(NULL, err, sizeof err);
    if (!ctx) {
        bw_log(BW_LOG_ERROR, "cannot create TLS context for local services", "err", err, NULL);
        return NULL;
    }
    /* Local services mostly run self-signed certificates: like ngrok, only
     * check them when asked to. */
    if (!verify)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    g_ctx[verify] = ctx;
    return ctx;
}

void bw_stream_tls_done(void)
{
    for (int i = 0; i < 2; i++) {
        SSL_CTX_free(g_ctx[i]);
        g_ctx[i] = NULL;
    }
}

static void connect_done(tls_connect_t *c, bw_stream_t *s, int status, const char *why)
{
    if (status < 0) {
        char addr[300];
        snprintf(addr, sizeof addr, "%s:%d", c->host, c->port);
        bw_log(BW_LOG_WARN, "TLS connection to local service failed", "obj", "join", "addr", addr,
               "err", why ? why : bw_strerror(status), NULL);
    }
    c->cb(c->ud, s, status);
    free(c);
}

static void handshake_done(void *ud, bw_stream_t *s, int status, const char *why)
{
    connect_done(ud, s, status, why);
}

/* The TCP connection is up (connect.c, the same path and address choice as
 * a plain TCP connection: "localhost" tries 127.0.0.1, then ::1): run the
 * client handshake over it. */
static void tcp_connected(void *ud, bw_stream_t *tcp, int status)
{
    static const char *const alpn[] = {"http/1.1", NULL};
    tls_connect_t *c = ud;
    if (status < 0) {
        connect_done(c, NULL, status, uv_strerror(status));
        return;
    }
    bw_tls_filter_opts_t o = {.ctx = client_ctx(c->verify), .server_name = c->host, .alpn = alpn};
    status = o.ctx ? bw_stream_tls_over(c->io, tcp, &o, handshake_done, c) : BW_ENOMEM;
    if (status < 0) {
        bw_stream_close(tcp, 1);
        connect_done(c, NULL, status, NULL);
    }
}

int bw_stream_tls_connect(bw_io_t *io, const char *host, int port, int verify, bw_connect_cb cb,
                          void *ud)
{
    if (!client_ctx(verify != 0))
        return BW_ENOMEM;
    tls_connect_t *c = calloc(1, sizeof *c);
    if (!c)
        return BW_ENOMEM;
    c->io = io;
    c->cb = cb;
    c->ud = ud;
    c->verify = verify != 0;
    c->port = port;
    snprintf(c->host, sizeof c->host, "%s", host && *host ? host : "localhost");
    int rc = bw_stream_tcp_connect(io, c->host, port, tcp_connected, c);
    if (rc < 0)
        free(c);
    return rc;
}
