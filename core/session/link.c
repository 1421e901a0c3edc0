/* TLS + yamux session transport. See link.h. */
#include "link.h"

#include <stdlib.h>
#include <string.h>

#include <burrow/error.h>

#include "control.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#define LINGER_MS 500

struct bw_link {
    bw_link_config_t cfg;
    bw_link_cbs_t cbs;
    void *ud;
    bw_tls_t *tls;
    bw_mux_t *mux;
    uv_timer_t timer;
    uint64_t last_input_ms;
    int handles; /* open libuv handles (TLS connection, timer) */
    unsigned dead : 1;
    unsigned user_closed : 1;
    unsigned ready : 1;     /* TLS handshake done */
    unsigned lingering : 1; /* flushing a go-away before closing */
    char server_name[256];
    char peer[BW_ADDRSTRLEN];
};

static void link_maybe_free(bw_link_t *l)
{
    if (l->handles == 0)
        free(l);
}

static void timer_closed(uv_handle_t *h)
{
    bw_link_t *l = BW_CONTAINER_OF(h, bw_link_t, timer);
    l->handles--;
    link_maybe_free(l);
}

/* Close both handles now. The mux is freed from the TLS close callback,
 * outside every engine callback. */
static void link_close_now(bw_link_t *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->timer))
        uv_close((uv_handle_t *)&l->timer, timer_closed);
    bw_tls_close(l->tls);
}

static void linger_done(uv_timer_t *h)
{
    link_close_now(BW_CONTAINER_OF(h, bw_link_t, timer));
}

/* Tear down once. `graceful`: what is queued (a go-away, a refusal) still
 * goes out: close_notify follows it and the handles close when the peer
 * hangs up or after LINGER_MS, whichever comes first. */
static void link_teardown(bw_link_t *l, int graceful)
{
    if (!graceful || !l->ready) {
        link_close_now(l);
        return;
    }
    l->lingering = 1;
    bw_tls_read_start(l->tls);
    bw_tls_shutdown(l->tls);
    uv_timer_start(&l->timer, linger_done, LINGER_MS, 0);
}

static void link_fail(bw_link_t *l, int err, const char *reason, int graceful)
{
    if (l->dead)
        return;
    l->dead = 1;
    if (!l->user_closed && l->cbs.on_closed)
        l->cbs.on_closed(l, l->ud, err, reason);
    link_teardown(l, graceful);
}

/* --- TLS callbacks --- */

static void heartbeat(uv_timer_t *h);

/* Server: the handshake's own bound ran out. */
static void handshake_timeout(uv_timer_t *h)
{
    link_fail(BW_CONTAINER_OF(h, bw_link_t, timer), BW_ETIMEDOUT, "TLS handshake timeout", 0);
}

/* Server: the idle clock starts once TLS is up, so a slow handshake does
 * not spend the idle budget. */
static void start_idle_clock(bw_link_t *l)
{
    uint64_t every = l->cfg.idle_ms / 3;
    l->last_input_ms = uv_now(l->timer.loop);
    uv_timer_stop(&l->timer);
    if (every)
        uv_timer_start(&l->timer, heartbeat, every, every);
}

static void tls_handshake(bw_tls_t *t, void *ud, int status)
{
    bw_link_t *l = ud;
    if (status == 0)
        l->ready = 1;
    if (status == 0 && !l->cfg.is_client && !l->dead)
        start_idle_clock(l);
    if (status == 0)
        snprintf(l->peer, sizeof l->peer, "%s", bw_tls_peer(t));
    if (l->cbs.on_ready && !l->dead)
        l->cbs.on_ready(l, l->ud, status);
    if (status < 0)
        link_fail(l, status, bw_tls_error(t), 0);
}

static void tls_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
    bw_link_t *l = ud;
    if (l->dead)
        return;
    l->last_input_ms = uv_now(l->timer.loop);
    int rc = bw_mux_input(l->mux, data, len);
    if (rc < 0)
        link_fail(l, rc, bw_mux_error(l->mux), 1); /* the go-away goes out */
}

static void tls_eof(bw_tls_t *t, void *ud)
{
    bw_link_t *l = ud;
    if (l->lingering)
        link_close_now(l);
    else
        link_fail(l, BW_ECONNRESET, "connection closed by peer", 0);
}

static void tls_drain(bw_tls_t *t, void *ud)
{
    bw_link_t *l = ud;
    if (!l->dead)
        bw_mux_transport_drained(l->mux);
}

static void tls_error(bw_tls_t *t, void *ud, int err)
{
    bw_link_t *l = ud;
    const char *why = bw_tls_error(t);
    if (l->lingering)
        link_close_now(l);
    else
        link_fail(l, err, why && *why ? why : bw_strerror(err), 0);
}

static void tls_closed(bw_tls_t *t, void *ud)
{
    bw_link_t *l = ud;
    l->dead = 1;
    bw_mux_free(l->mux); /* aborts every stream still open */
    l->mux = NULL;
    l->handles--;
    link_maybe_free(l);
}

static const bw_tls_cbs_t tls_cbs = {
    .on_handshake = tls_handshake,
    .on_read = tls_read,
    .on_eof = tls_eof,
    .on_drain = tls_drain,
    .on_error = tls_error,
    .on_close = tls_closed,
};

/* --- yamux callbacks --- */

static int mux_send(void *ud, const void *const *bufs, const size_t *lens, unsigned n)
{
    bw_link_t *l = ud;
    if (l->dead)
        return BW_EPIPE;
    return bw_tls_write(l->tls, bufs, lens, n);
}

static size_t mux_send_queued(void *ud)
{
    bw_link_t *l = ud;
    return bw_tls_queued(l->tls);
}

static void mux_stream(void *ud, bw_mux_stream_t *ms)
{
    bw_link_t *l = ud;
    if (l->dead || !l->cbs.on_stream)
        bw_mux_stream_reset(ms);
    else
        l->cbs.on_stream(l, l->ud, ms);
}

static void mux_go_away(void *ud, uint32_t code)
{
    char c[16];
    snprintf(c, sizeof c, "%u", code);
    bw_log(BW_LOG_DEBUG, "peer sent go-away", "obj", "link", "code", c, NULL);
}

static const bw_mux_callbacks_t mux_cbs = {
    .send = mux_send,
    .send_queued = mux_send_queued,
    .on_stream = mux_stream,
    .on_go_away = mux_go_away,
};

/* --- heartbeat --- */

static void heartbeat(uv_timer_t *h)
{
    bw_link_t *l = BW_CONTAINER_OF(h, bw_link_t, timer);
    if (l->dead)
        return;
    if (l->cfg.is_client) {
        if (bw_mux_since_pong(l->mux) / 1000000 > l->cfg.tolerance_ms) {
            link_fail(l, BW_ETIMEDOUT, "heartbeat timeout", 0);
            return;
        }
        bw_mux_ping(l->mux);
    } else if (uv_now(h->loop) - l->last_input_ms > l->cfg.idle_ms) {
        link_fail(l, BW_ETIMEDOUT, "no heartbeat from agent", 1);
    }
}

/* --- public --- */

bw_link_t *bw_link_new(uv_loop_t *loop, SSL_CTX *ctx, const bw_link_config_t *cfg,
                       const bw_link_cbs_t *cbs, void *ud)
{
    bw_link_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->cfg = *cfg;
    if (cfg->server_name)
        snprintf(l->server_name, sizeof l->server_name, "%s", cfg->server_name);
    l->cfg.server_name = l->server_name;
    l->cbs = *cbs;
    l->ud = ud;

    bw_mux_config_t mc;
    bw_mux_config_default(&mc, cfg->is_client);
    if (cfg->max_window)
        mc.max_window = cfg->max_window;
    l->mux = bw_mux_new(&mc, &mux_cbs, l);
    if (!l->mux)
        goto err_mux;
    l->tls =
        bw_tls_new(loop, ctx, !cfg->is_client, cfg->is_client ? l->server_name : NULL, &tls_cbs, l);
    if (!l->tls)
        goto err_tls;
    uv_timer_init(loop, &l->timer);
    l->handles = 2;
    l->last_input_ms = uv_now(loop);
    return l;

err_tls:
    bw_mux_free(l->mux);
err_mux:
    free(l);
    return NULL;
}

uv_tcp_t *bw_link_tcp(bw_link_t *l)
{
    return bw_tls_tcp(l->tls);
}

int bw_link_start(bw_link_t *l, const struct sockaddr *addr)
{
    uint64_t every = l->cfg.heartbeat_ms;
    int rc = addr ? bw_tls_connect(l->tls, addr) : bw_tls_start(l->tls);
    if (rc == 0 && l->cfg.is_client && every)
        uv_timer_start(&l->timer, heartbeat, every, every);
    else if (rc == 0 && !l->cfg.is_client && l->cfg.handshake_ms)
        uv_timer_start(&l->timer, handshake_timeout, l->cfg.handshake_ms, 0);
    if (!addr) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (uv_tcp_getpeername(bw_tls_tcp(l->tls), (struct sockaddr *)&ss, &len) == 0)
            bw_sockaddr_str((struct sockaddr *)&ss, l->peer, sizeof l->peer);
    }
    return rc;
}

bw_mux_t *bw_link_mux(bw_link_t *l)
{
    return l->mux;
}

const char *bw_link_peer(bw_link_t *l)
{
    return l->peer;
}

uint64_t bw_link_rtt(bw_link_t *l)
{
    return l->mux ? bw_mux_rtt(l->mux) : 0;
}

void bw_link_close(bw_link_t *l, uint32_t code)
{
    if (!l || l->user_closed)
        return;
    l->user_closed = 1;
    if (l->dead)
        return;
    bw_mux_go_away(l->mux, code);
    l->dead = 1;
    link_teardown(l, 1);
}

int bw_link_send_msg(bw_mux_stream_t *ms, json_t *msg)
{
    uint8_t *buf;
    size_t len;
    int rc = bw_frame_encode(msg, &buf, &len);
    if (rc < 0)
        return rc;
    rc = bw_mux_stream_write(ms, buf, len);
    free(buf);
    return rc == BW_EAGAIN ? 0 : rc;
}
