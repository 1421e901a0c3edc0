/* bw_stream over TLS to a local service (host->connect with
 * BW_CONNECT_TLS): the plugin sees the plaintext, exactly like a TCP
 * stream. See stream.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "log.h"
#include "stream.h"
#include "stream_impl.h"
#include "tls.h"

#define LINGER_POLL_MS 20
#define LINGER_MAX_MS  10000

typedef struct tls_stream {
    bw_stream_t base;
    bw_tls_t *tls;
    bw_connect_cb cb; /* until the handshake ends */
    void *ud;
    uv_timer_t *linger; /* closing once the queue drains */
    uint64_t linger_ms;
    char host[256];
    int port;
} tls_stream_t;

static SSL_CTX *g_ctx[2]; /* [0] no verification, [1] verified */

static tls_stream_t *as_tls(bw_stream_t *s)
{
    return (tls_stream_t *)s;
}

static SSL_CTX *client_ctx(int verify)
{
    static const unsigned char alpn[] = "\x08http/1.1";
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
    if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
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

/* ---- events from the TLS connection ---- */

static void finish_connect(tls_stream_t *ts, int status)
{
    bw_connect_cb cb = ts->cb;
    ts->cb = NULL;
    if (status < 0) {
        /* Never handed out: it is ours to drop. */
        ts->base.closed = 1;
        bw_tls_close(ts->tls);
        cb(ts->ud, NULL, status);
        return;
    }
    snprintf(ts->base.peer, sizeof ts->base.peer, "%s", bw_tls_peer(ts->tls));
    /* Hold plaintext in the TLS layer until the owner installs callbacks. */
    bw_tls_read_stop(ts->tls);
    cb(ts->ud, &ts->base, 0);
}

static void on_handshake(bw_tls_t *t, void *ud, int status)
{
    tls_stream_t *ts = ud;
    char addr[300];
    if (status < 0) {
        snprintf(addr, sizeof addr, "%s:%d", ts->host, ts->port);
        bw_log(BW_LOG_WARN, "TLS connection to local service failed", "obj", "join", "addr", addr,
               "err", *bw_tls_error(t) ? bw_tls_error(t) : bw_strerror(status), NULL);
    }
    finish_connect(ts, status);
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
    bw_log(BW_LOG_DEBUG, "TLS stream to local service failed", "obj", "join", "err",
           bw_tls_error(t), NULL);
    if (s->closed) { /* lingering: nothing left to flush */
        bw_tls_close(t);
        return;
    }
    s->depth++;
    bw__stream_error(s, err);
    s->depth--;
    bw__stream_maybe_free(s);
}

static void linger_closed(uv_handle_t *h)
{
    free(h);
}

static void on_close(bw_tls_t *t, void *ud)
{
    tls_stream_t *ts = ud;
    ts->tls = NULL;
    if (ts->linger) {
        uv_close((uv_handle_t *)ts->linger, linger_closed);
        ts->linger = NULL;
    }
    bw__stream_released(&ts->base);
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

static int ts_write(bw_stream_t *s, const void *data, size_t len)
{
    tls_stream_t *ts = as_tls(s);
    const void *bufs[1] = {data};
    int rc = bw_tls_write(ts->tls, bufs, &len, 1);
    if (rc < 0)
        return rc;
    /* The TLS layer arms on_drain above its own high-water mark. */
    return bw_tls_queued(ts->tls) > BW_TLS_HIGH_WATER ? BW_EAGAIN : 0;
}

static size_t ts_queued(bw_stream_t *s)
{
    return bw_tls_queued(as_tls(s)->tls);
}

static int ts_shutdown(bw_stream_t *s)
{
    bw_tls_shutdown(as_tls(s)->tls); /* close_notify, then the FIN */
    return 0;
}

static void ts_read_ctl(bw_stream_t *s, int on)
{
    if (on)
        bw_tls_read_start(as_tls(s)->tls);
    else
        bw_tls_read_stop(as_tls(s)->tls);
}

static void linger_tick(uv_timer_t *h)
{
    tls_stream_t *ts = h->data;
    ts->linger_ms += LINGER_POLL_MS;
    if (bw_tls_queued(ts->tls) == 0 || ts->linger_ms >= LINGER_MAX_MS)
        bw_tls_close(ts->tls);
}

/* A graceful close sends what is queued and a close_notify first; the TLS
 * layer has no "flushed" event, so poll the queue for a bounded time. */
static void ts_close(bw_stream_t *s, int abort)
{
    tls_stream_t *ts = as_tls(s);
    bw_tls_read_stop(ts->tls);
    if (!abort) {
        bw_tls_shutdown(ts->tls);
        if (bw_tls_queued(ts->tls) > 0 && (ts->linger = malloc(sizeof *ts->linger))) {
            uv_timer_init(s->io->loop, ts->linger);
            ts->linger->data = ts;
            uv_timer_start(ts->linger, linger_tick, LINGER_POLL_MS, LINGER_POLL_MS);
            return;
        }
    }
    bw_tls_close(ts->tls);
}

static const bw__stream_ops_t tls_ops = {
    .write = ts_write,
    .queued = ts_queued,
    .shutdown = ts_shutdown,
    .read_ctl = ts_read_ctl,
    .close = ts_close,
};

/* ---- connecting ---- */

/* The TCP connection is up (connect.c, the same path and address choice as
 * a plain TCP connection: "localhost" tries 127.0.0.1, then ::1): move its
 * socket under the TLS connection and start the client handshake. */
static void tcp_connected(void *ud, bw_stream_t *tcp, int status)
{
    tls_stream_t *ts = ud;
    uv_os_fd_t fd;
    int nfd = -1;
    if (status < 0) {
        char addr[300];
        snprintf(addr, sizeof addr, "%s:%d", ts->host, ts->port);
        bw_log(BW_LOG_WARN, "TLS connection to local service failed", "obj", "join", "addr", addr,
               "err", uv_strerror(status), NULL);
        finish_connect(ts, status);
        return;
    }
    /* The TLS layer owns its handle: give it a duplicate of the socket and
     * close the TCP stream's (the connection stays up while one is open). */
    status = uv_fileno((uv_handle_t *)bw_stream_tcp_handle(tcp), &fd);
    if (status == 0 && (nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
        status = -errno;
    bw_stream_close(tcp, 0);
    if (status < 0) {
        finish_connect(ts, status);
        return;
    }
    status = uv_tcp_open(bw_tls_tcp(ts->tls), nfd);
    if (status < 0) {
        close(nfd);
        finish_connect(ts, status);
        return;
    }
    status = bw_tls_start(ts->tls);
    if (status < 0)
        finish_connect(ts, status);
}

int bw_stream_tls_connect(bw_io_t *io, const char *host, int port, int verify, bw_connect_cb cb,
                          void *ud)
{
    SSL_CTX *ctx = client_ctx(verify != 0);
    if (!ctx)
        return BW_ENOMEM;
    tls_stream_t *ts = calloc(1, sizeof *ts);
    if (!ts)
        return BW_ENOMEM;
    ts->base.ops = &tls_ops;
    ts->base.io = io;
    ts->cb = cb;
    ts->ud = ud;
    ts->port = port;
    snprintf(ts->host, sizeof ts->host, "%s", host && *host ? host : "localhost");
    ts->tls = bw_tls_new(io->loop, ctx, 0, ts->host, &tls_cbs, ts);
    if (!ts->tls) {
        free(ts);
        return BW_ENOMEM;
    }
    int rc = bw_stream_tcp_connect(io, ts->host, port, tcp_connected, ts);
    if (rc < 0) {
        /* No callback: on_close frees the stream on a later turn. */
        ts->cb = NULL;
        ts->base.closed = 1;
        bw_tls_close(ts->tls);
    }
    return rc;
}
