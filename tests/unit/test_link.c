/* The link (core/session/link.c): TLS + yamux between two real peers on
 * 127.0.0.1 with dev certificates made in a temporary directory. The far end
 * is either another link or a bare TLS connection the test drives byte by
 * byte, so it can misbehave: reset the socket, send what is not yamux, never
 * answer a ping. Every way a session dies must end in exactly one on_closed.
 *
 * Nothing waits on time except the heartbeat tests, and those only need time
 * to pass: every wait runs the loop until a condition holds, bounded by a
 * watchdog that fails the test with the condition's name. Every test ends
 * with uv_loop_close() == 0, which proves each handle was closed.
 *
 * Over 600 lines on purpose: the scenarios share one fixture and its
 * callbacks, and splitting them would mean two copies of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "burrow/error.h"
#include "control.h"
#include "dev_certs.h"
#include "link.h"
#include "tls.h"

#define WATCHDOG_MS 60000 /* generous: valgrind and a loaded machine */

typedef struct fixture fixture_t;

/* One side: a link, or a bare TLS connection (raw). */
typedef struct side {
    fixture_t *fx;
    bw_link_t *link;
    bw_tls_t *raw;
    int readies, ready_status;
    int closes, close_err;
    char reason[256];
    int streams;
    bw_mux_stream_t *ms; /* first stream the peer opened */
    bw_frame_reader_t reader;
    json_t *msg; /* first control message received on ms */
    /* raw side: bytes received, and the first go-away seen in them */
    uint8_t rx[4096];
    size_t rx_len;
    int raw_handshakes, raw_hs_status, raw_closes, raw_eofs, raw_errors;
    int close_in_on_closed; /* call bw_link_close from on_closed */
} side_t;

struct fixture {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_timer_t watchdog;
    int listening, timed_out;
    struct sockaddr_in addr;
    SSL_CTX *sctx, *cctx, *other_cctx;
    /* What the accepted connection becomes. */
    int srv_raw;
    bw_link_config_t srv_cfg;
    const bw_tls_cbs_t *srv_raw_cbs;
    side_t srv, cli;
};

/* ---- link callbacks: count, remember ---- */

static void rec_ready(bw_link_t *l, void *ud, int status)
{
    side_t *s = ud;
    s->readies++;
    s->ready_status = status;
}

static int rec_msg(void *ud, const json_t *m)
{
    side_t *s = ud;
    if (!s->msg)
        s->msg = json_deep_copy(m);
    return 0;
}

static void stream_data(bw_mux_stream_t *ms, void *ud, const uint8_t *data, size_t len)
{
    side_t *s = ud;
    char err[256];
    assert_int_equal(bw_frame_reader_each(&s->reader, data, len, rec_msg, s, err, sizeof err), 0);
    bw_mux_stream_consumed(ms, len);
}

static void stream_close(bw_mux_stream_t *ms, void *ud, int err)
{
    side_t *s = ud;
    if (s->ms == ms)
        s->ms = NULL;
}

static const bw_mux_stream_cbs_t stream_cbs = {
    .on_data = stream_data,
    .on_close = stream_close,
};

static void rec_stream(bw_link_t *l, void *ud, bw_mux_stream_t *ms)
{
    side_t *s = ud;
    s->streams++;
    if (s->ms) {
        bw_mux_stream_reset(ms);
        return;
    }
    s->ms = ms;
    bw_mux_stream_set_callbacks(ms, &stream_cbs, s);
}

static void rec_closed(bw_link_t *l, void *ud, int err, const char *reason)
{
    side_t *s = ud;
    s->closes++;
    s->close_err = err;
    snprintf(s->reason, sizeof s->reason, "%s", reason ? reason : "(null)");
    if (s->close_in_on_closed)
        bw_link_close(l, BW_MUX_GOAWAY_NORMAL); /* must be a no-op now */
    s->link = NULL;                             /* dead: it frees itself */
    s->ms = NULL;
}

static const bw_link_cbs_t rec_cbs = {
    .on_ready = rec_ready,
    .on_stream = rec_stream,
    .on_closed = rec_closed,
};

/* ---- raw TLS callbacks ---- */

static void raw_handshake(bw_tls_t *t, void *ud, int status)
{
    side_t *s = ud;
    s->raw_handshakes++;
    s->raw_hs_status = status;
    if (status < 0)
        bw_tls_close(t);
}

static void raw_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
    side_t *s = ud;
    size_t room = sizeof s->rx - s->rx_len, n = len < room ? len : room;
    memcpy(s->rx + s->rx_len, data, n);
    s->rx_len += n;
}

static void raw_eof(bw_tls_t *t, void *ud)
{
    side_t *s = ud;
    s->raw_eofs++;
    bw_tls_close(t);
}

static void raw_error(bw_tls_t *t, void *ud, int err)
{
    side_t *s = ud;
    s->raw_errors++;
    bw_tls_close(t);
}

static void raw_closed(bw_tls_t *t, void *ud)
{
    side_t *s = ud;
    s->raw_closes++;
    s->raw = NULL;
}

static const bw_tls_cbs_t raw_cbs = {
    .on_handshake = raw_handshake,
    .on_read = raw_read,
    .on_eof = raw_eof,
    .on_error = raw_error,
    .on_close = raw_closed,
};

/* The first go-away frame in what a raw side received: its code, or -1. */
static long raw_go_away(const side_t *s)
{
    size_t off = 0;
    while (off + BW_MUX_HEADER_SIZE <= s->rx_len) {
        bw_mux_header_t h;
        if (bw_mux_header_decode(s->rx + off, &h) != 0)
            return -1;
        if (h.type == BW_MUX_TYPE_GO_AWAY)
            return (long)h.length;
        off += BW_MUX_HEADER_SIZE + (h.type == BW_MUX_TYPE_DATA ? h.length : 0);
    }
    return -1;
}

/* ---- fixture ---- */

static void watchdog_cb(uv_timer_t *h)
{
    fixture_t *fx = h->data;
    fx->timed_out = 1;
}

/* Run the loop until cond(fx) holds; fail naming `what` when the watchdog
 * fires first. */
static void run_until(fixture_t *fx, int (*cond)(fixture_t *), const char *what)
{
    uv_timer_start(&fx->watchdog, watchdog_cb, WATCHDOG_MS, 0);
    while (!cond(fx) && !fx->timed_out)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_timer_stop(&fx->watchdog);
    if (fx->timed_out)
        fail_msg("timed out after %d ms waiting for %s", WATCHDOG_MS, what);
}

static void on_connection(uv_stream_t *server, int status)
{
    fixture_t *fx = server->data;
    side_t *s = &fx->srv;
    uv_tcp_t *tcp;
    assert_int_equal(status, 0);
    if (fx->srv_raw) {
        s->raw = bw_tls_new(&fx->loop, fx->sctx, 1, NULL, fx->srv_raw_cbs, s);
        assert_non_null(s->raw);
        tcp = bw_tls_tcp(s->raw);
    } else {
        s->link = bw_link_new(&fx->loop, fx->sctx, &fx->srv_cfg, &rec_cbs, s);
        assert_non_null(s->link);
        tcp = bw_link_tcp(s->link);
    }
    assert_int_equal(uv_accept(server, (uv_stream_t *)tcp), 0);
    assert_int_equal(s->raw ? bw_tls_start(s->raw) : bw_link_start(s->link, NULL), 0);
    uv_close((uv_handle_t *)server, NULL); /* one connection per test */
    fx->listening = 0;
}

static void path_in(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH_MAX);
}

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], other[PATH_MAX], err[256] = "";
    int len = sizeof fx->addr;
    if (!fx || uv_loop_init(&fx->loop) != 0)
        return -1;
    fx->srv.fx = fx;
    fx->cli.fx = fx;
    bw_frame_reader_init(&fx->srv.reader, 0);
    bw_frame_reader_init(&fx->cli.reader, 0);
    fx->srv_cfg = (bw_link_config_t){.is_client = 0, .idle_ms = 0};
    fx->srv_raw_cbs = &raw_cbs;
    path_in(cert, g_dir, "server.pem");
    path_in(key, g_dir, "server.key");
    path_in(ca, g_dir, "ca.pem");
    path_in(other, g_other, "ca.pem");
    fx->sctx = bw_tls_server_ctx(cert, key, err, sizeof err);
    fx->cctx = bw_tls_client_ctx(ca, err, sizeof err);
    fx->other_cctx = bw_tls_client_ctx(other, err, sizeof err);
    if (!fx->sctx || !fx->cctx || !fx->other_cctx) {
        fprintf(stderr, "ctx: %s\n", err);
        return -1;
    }
    uv_timer_init(&fx->loop, &fx->watchdog);
    fx->watchdog.data = fx;
    uv_tcp_init(&fx->loop, &fx->listener);
    fx->listener.data = fx;
    uv_ip4_addr("127.0.0.1", 0, &fx->addr);
    if (uv_tcp_bind(&fx->listener, (struct sockaddr *)&fx->addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&fx->listener, 8, on_connection) != 0 ||
        uv_tcp_getsockname(&fx->listener, (struct sockaddr *)&fx->addr, &len) != 0)
        return -1;
    fx->listening = 1;
    *state = fx;
    return 0;
}

/* Run until every handle but the watchdog is closed (the listener is
 * closed first when no connection came); fail when that takes too long. */
static void drain(fixture_t *fx)
{
    if (fx->listening) {
        uv_close((uv_handle_t *)&fx->listener, NULL);
        fx->listening = 0;
    }
    uv_timer_start(&fx->watchdog, watchdog_cb, WATCHDOG_MS, 0);
    uv_unref((uv_handle_t *)&fx->watchdog);
    while (uv_loop_alive(&fx->loop) && !fx->timed_out)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_ref((uv_handle_t *)&fx->watchdog);
    uv_timer_stop(&fx->watchdog);
    if (fx->timed_out)
        fail_msg("timed out after %d ms waiting for every handle to close", WATCHDOG_MS);
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    /* Close whatever a failed test left open, then prove nothing leaked. */
    bw_link_close(fx->srv.link, BW_MUX_GOAWAY_NORMAL);
    bw_link_close(fx->cli.link, BW_MUX_GOAWAY_NORMAL);
    bw_tls_close(fx->srv.raw);
    bw_tls_close(fx->cli.raw);
    fx->timed_out = 0;
    drain(fx);
    uv_close((uv_handle_t *)&fx->watchdog, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT); /* only the watchdog's close is left */
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    for (side_t *s = &fx->srv; s; s = s == &fx->srv ? &fx->cli : NULL) {
        bw_frame_reader_free(&s->reader);
        json_decref(s->msg);
    }
    SSL_CTX_free(fx->sctx);
    SSL_CTX_free(fx->cctx);
    SSL_CTX_free(fx->other_cctx);
    free(fx);
    return 0;
}

/* A client link to the fixture's listener. */
static void connect_link(fixture_t *fx, SSL_CTX *ctx, const bw_link_config_t *cfg)
{
    fx->cli.link = bw_link_new(&fx->loop, ctx, cfg, &rec_cbs, &fx->cli);
    assert_non_null(fx->cli.link);
    assert_int_equal(bw_link_start(fx->cli.link, (const struct sockaddr *)&fx->addr), 0);
}

/* A bare TLS client to the fixture's listener. */
static void connect_raw(fixture_t *fx, const bw_tls_cbs_t *cbs)
{
    fx->cli.raw = bw_tls_new(&fx->loop, fx->cctx, 0, "localhost", cbs, &fx->cli);
    assert_non_null(fx->cli.raw);
    assert_int_equal(bw_tls_connect(fx->cli.raw, (const struct sockaddr *)&fx->addr), 0);
}

static const bw_link_config_t client_cfg = {.is_client = 1, .server_name = "localhost"};

static int both_ready(fixture_t *fx)
{
    return fx->cli.readies > 0 && (fx->srv.readies > 0 || fx->srv.raw_handshakes > 0);
}

static int cli_closed(fixture_t *fx)
{
    return fx->cli.closes > 0;
}

static int srv_closed(fixture_t *fx)
{
    return fx->srv.closes > 0;
}

static int both_closed(fixture_t *fx)
{
    return fx->cli.closes > 0 && fx->srv.closes > 0;
}

static int srv_got_msg(fixture_t *fx)
{
    return fx->srv.msg != NULL;
}

static int raw_srv_gone(fixture_t *fx)
{
    return fx->srv.raw_closes > 0;
}

static int raw_cli_gone(fixture_t *fx)
{
    return fx->cli.raw_closes > 0;
}

/* ---- a session that works, and closes cleanly ---- */

static void test_control_message_and_close(void **state)
{
    fixture_t *fx = *state;
    connect_link(fx, fx->cctx, &client_cfg);
    run_until(fx, both_ready, "both links ready");
    assert_int_equal(fx->cli.ready_status, 0);
    assert_int_equal(fx->srv.ready_status, 0);
    assert_string_not_equal(bw_link_peer(fx->srv.link), "");

    bw_mux_stream_t *ms = bw_mux_stream_open(bw_link_mux(fx->cli.link));
    assert_non_null(ms);
    bw_mux_stream_set_callbacks(ms, &stream_cbs, &fx->cli);
    json_t *auth = bw_msg_auth("secret", "", "1.0");
    assert_int_equal(bw_link_send_msg(ms, auth), 0);
    json_decref(auth);
    run_until(fx, srv_got_msg, "the Auth message at the server");
    assert_int_equal(bw_msg_type(fx->srv.msg), BW_MSG_AUTH);
    assert_string_equal(bw_msg_str(fx->srv.msg, "token"), "secret");
    assert_int_equal(fx->srv.streams, 1);

    /* Closing our side calls nothing back here; the peer learns it once. */
    bw_link_close(fx->cli.link, BW_MUX_GOAWAY_NORMAL);
    fx->cli.link = NULL;
    run_until(fx, srv_closed, "the server's on_closed");
    drain(fx);
    assert_int_equal(fx->cli.closes, 0);
    assert_int_equal(fx->srv.closes, 1);
    assert_int_equal(fx->srv.close_err, BW_ECONNRESET);
}

/* bw_link_close before the handshake finished: no callback at all. */
static void test_close_before_ready(void **state)
{
    fixture_t *fx = *state;
    connect_link(fx, fx->cctx, &client_cfg);
    bw_link_close(fx->cli.link, BW_MUX_GOAWAY_NORMAL);
    bw_link_close(fx->cli.link, BW_MUX_GOAWAY_NORMAL); /* twice is harmless */
    fx->cli.link = NULL;
    drain(fx);
    assert_int_equal(fx->cli.readies, 0);
    assert_int_equal(fx->cli.closes, 0);
    assert_true(fx->srv.closes <= 1);
}

/* ---- every way a session dies: one on_closed ---- */

/* SO_LINGER 0 then close: the peer sees a reset, not a FIN. */
static void reset_on_handshake(bw_tls_t *t, void *ud, int status)
{
    uv_os_fd_t fd;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    raw_handshake(t, ud, status);
    if (status < 0)
        return;
    assert_int_equal(uv_fileno((uv_handle_t *)bw_tls_tcp(t), &fd), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    bw_tls_close(t);
}

static const bw_tls_cbs_t reset_cbs = {
    .on_handshake = reset_on_handshake,
    .on_read = raw_read,
    .on_eof = raw_eof,
    .on_error = raw_error,
    .on_close = raw_closed,
};

static void test_peer_reset(void **state)
{
    fixture_t *fx = *state;
    fx->srv_raw = 1;
    fx->srv_raw_cbs = &reset_cbs;
    fx->cli.close_in_on_closed = 1;
    connect_link(fx, fx->cctx, &client_cfg);
    run_until(fx, cli_closed, "the client's on_closed after a reset");
    drain(fx);
    assert_int_equal(fx->cli.closes, 1);
    /* The reset may land before or after our side of the handshake ends;
     * either way it is reported as the peer going away. */
    assert_true(fx->cli.close_err == BW_ECONNRESET || fx->cli.close_err == BW_EPIPE);
    assert_true(fx->cli.readies <= 1);
    assert_true(fx->cli.reason[0] != '\0');
}

static void test_tls_alert(void **state)
{
    fixture_t *fx = *state;
    /* The client does not trust the server's CA: it refuses with an alert,
     * and the server learns of it from that alert. */
    connect_link(fx, fx->other_cctx, &client_cfg);
    run_until(fx, both_closed, "on_closed on both sides of a refused handshake");
    drain(fx);
    assert_int_equal(fx->cli.readies, 1);
    assert_true(fx->cli.ready_status < 0);
    assert_int_equal(fx->cli.closes, 1);
    assert_int_equal(fx->cli.close_err, BW_EACCES);
    assert_non_null(strstr(fx->cli.reason, "certificate verify failed"));
    assert_int_equal(fx->srv.readies, 1);
    assert_true(fx->srv.ready_status < 0);
    assert_int_equal(fx->srv.closes, 1);
    assert_int_equal(fx->srv.close_err, BW_EPROTO);
}

/* After the handshake the raw server writes a frame of yamux version 1. */
static void bad_frame_on_handshake(bw_tls_t *t, void *ud, int status)
{
    static const uint8_t frame[BW_MUX_HEADER_SIZE] = {1, BW_MUX_TYPE_PING, 0, 1};
    const void *bufs[] = {frame};
    size_t lens[] = {sizeof frame};
    raw_handshake(t, ud, status);
    if (status == 0)
        assert_int_equal(bw_tls_write(t, bufs, lens, 1), 0);
}

static const bw_tls_cbs_t bad_frame_cbs = {
    .on_handshake = bad_frame_on_handshake,
    .on_read = raw_read,
    .on_eof = raw_eof,
    .on_error = raw_error,
    .on_close = raw_closed,
};

static void test_protocol_violation_from_edge(void **state)
{
    fixture_t *fx = *state;
    fx->srv_raw = 1;
    fx->srv_raw_cbs = &bad_frame_cbs;
    connect_link(fx, fx->cctx, &client_cfg);
    run_until(fx, cli_closed, "the client's on_closed after a bad frame");
    /* The violation is answered with a go-away before the link hangs up. */
    run_until(fx, raw_srv_gone, "the raw server to see the link hang up");
    drain(fx);
    assert_int_equal(fx->cli.readies, 1);
    assert_int_equal(fx->cli.ready_status, 0);
    assert_int_equal(fx->cli.closes, 1);
    assert_int_equal(fx->cli.close_err, BW_EPROTO);
    assert_int_equal(raw_go_away(&fx->srv), BW_MUX_GOAWAY_PROTO_ERROR);
}

static void test_protocol_violation_from_agent(void **state)
{
    fixture_t *fx = *state;
    bw_tls_cbs_t cbs = bad_frame_cbs;
    connect_raw(fx, &cbs);
    run_until(fx, srv_closed, "the server's on_closed after a bad frame");
    run_until(fx, raw_cli_gone, "the raw client to see the link hang up");
    drain(fx);
    assert_int_equal(fx->srv.closes, 1);
    assert_int_equal(fx->srv.close_err, BW_EPROTO);
    assert_int_equal(raw_go_away(&fx->cli), BW_MUX_GOAWAY_PROTO_ERROR);
}

/* The raw server completes the handshake and then never answers a ping. */
static void test_missed_heartbeat(void **state)
{
    fixture_t *fx = *state;
    bw_link_config_t cfg = client_cfg;
    cfg.heartbeat_ms = 10;
    cfg.tolerance_ms = 50;
    fx->srv_raw = 1;
    connect_link(fx, fx->cctx, &cfg);
    run_until(fx, cli_closed, "the client's heartbeat timeout");
    bw_tls_close(fx->srv.raw);
    drain(fx);
    /* On a slow machine the tolerance may run out before the handshake
     * did; then on_ready never comes, on_closed still does, once. */
    assert_true(fx->cli.readies <= 1);
    assert_int_equal(fx->cli.closes, 1);
    assert_int_equal(fx->cli.close_err, BW_ETIMEDOUT);
    assert_string_equal(fx->cli.reason, "heartbeat timeout");
}

/* An agent that says nothing: the server gives up and says why. */
static void test_server_idle_timeout(void **state)
{
    fixture_t *fx = *state;
    fx->srv_cfg.idle_ms = 300;
    connect_raw(fx, &raw_cbs);
    run_until(fx, srv_closed, "the server's idle timeout");
    run_until(fx, raw_cli_gone, "the raw client to see the link hang up");
    drain(fx);
    assert_int_equal(fx->srv.closes, 1);
    assert_int_equal(fx->srv.close_err, BW_ETIMEDOUT);
    assert_string_equal(fx->srv.reason, "no heartbeat from agent");
    /* The idle clock starts after the handshake, and then the close is
     * clean: close_notify, then FIN, no go-away. */
    assert_int_equal(fx->srv.readies, 1);
    assert_int_equal(fx->srv.ready_status, 0);
    assert_int_equal(fx->cli.raw_eofs, 1);
    assert_int_equal(fx->cli.raw_errors, 0);
    assert_int_equal(raw_go_away(&fx->cli), -1);
}

/* A client that connects at once but starts its TLS handshake only after
 * `delay_ms` (never when 0): a slow or silent agent. */
typedef struct slow_client {
    fixture_t *fx;
    uv_connect_t req;
    uv_timer_t timer;
    uint64_t delay_ms;
    int connected;
} slow_client_t;

static void slow_start(uv_timer_t *h)
{
    slow_client_t *sc = h->data;
    assert_int_equal(bw_tls_start(sc->fx->cli.raw), 0);
}

static void slow_connected(uv_connect_t *req, int status)
{
    slow_client_t *sc = req->data;
    assert_int_equal(status, 0);
    sc->connected = 1;
    if (sc->delay_ms)
        uv_timer_start(&sc->timer, slow_start, sc->delay_ms, 0);
}

static void connect_slow(fixture_t *fx, slow_client_t *sc, uint64_t delay_ms)
{
    *sc = (slow_client_t){.fx = fx, .delay_ms = delay_ms};
    fx->cli.raw = bw_tls_new(&fx->loop, fx->cctx, 0, "localhost", &raw_cbs, &fx->cli);
    assert_non_null(fx->cli.raw);
    uv_timer_init(&fx->loop, &sc->timer);
    sc->timer.data = sc;
    sc->req.data = sc;
    assert_int_equal(uv_tcp_connect(&sc->req, bw_tls_tcp(fx->cli.raw),
                                    (const struct sockaddr *)&fx->addr, slow_connected),
                     0);
}

static int srv_ready_or_closed(fixture_t *fx)
{
    return fx->srv.readies > 0 || fx->srv.closes > 0;
}

/* A client that never starts its handshake is dropped at the handshake's
 * own bound, though the server has no idle limit at all. */
static void test_server_handshake_timeout(void **state)
{
    fixture_t *fx = *state;
    slow_client_t sc;
    fx->srv_cfg.handshake_ms = 200;
    connect_slow(fx, &sc, 0);
    run_until(fx, srv_closed, "the server's handshake timeout");
    uv_close((uv_handle_t *)&sc.timer, NULL);
    bw_tls_close(fx->cli.raw);
    drain(fx);
    assert_int_equal(fx->srv.readies, 0);
    assert_int_equal(fx->srv.closes, 1);
    assert_int_equal(fx->srv.close_err, BW_ETIMEDOUT);
    assert_string_equal(fx->srv.reason, "TLS handshake timeout");
}

/* A handshake slower than the idle limit but within its own bound: the
 * session comes up, and the idle clock runs from there. */
static void test_idle_clock_starts_after_handshake(void **state)
{
    fixture_t *fx = *state;
    slow_client_t sc;
    fx->srv_cfg.idle_ms = 300;
    fx->srv_cfg.handshake_ms = WATCHDOG_MS;
    connect_slow(fx, &sc, 900);
    run_until(fx, srv_ready_or_closed, "the server's handshake or close");
    assert_int_equal(fx->srv.readies, 1);
    assert_int_equal(fx->srv.ready_status, 0);
    run_until(fx, srv_closed, "the server's idle timeout after the handshake");
    uv_close((uv_handle_t *)&sc.timer, NULL);
    run_until(fx, raw_cli_gone, "the raw client to see the link hang up");
    drain(fx);
    assert_int_equal(fx->srv.closes, 1);
    assert_string_equal(fx->srv.reason, "no heartbeat from agent");
}

/* A heartbeat answered by a real link keeps the session and measures RTT. */
static int rtt_known(fixture_t *fx)
{
    return fx->cli.link && bw_link_rtt(fx->cli.link) > 0;
}

static void test_heartbeat_rtt(void **state)
{
    fixture_t *fx = *state;
    bw_link_config_t cfg = client_cfg;
    /* A late pong still counts (test_yamux covers it); 250 ms keeps the
     * pings few on a loaded machine. */
    cfg.heartbeat_ms = 250;
    cfg.tolerance_ms = WATCHDOG_MS; /* never the cause of a failure here */
    connect_link(fx, fx->cctx, &cfg);
    assert_int_equal(bw_link_rtt(fx->cli.link), 0);
    run_until(fx, rtt_known, "a heartbeat round trip");
    assert_int_equal(fx->cli.closes, 0);
    assert_int_equal(fx->srv.closes, 0);
    bw_link_close(fx->srv.link, BW_MUX_GOAWAY_NORMAL);
    fx->srv.link = NULL;
    run_until(fx, cli_closed, "the client's on_closed after the server closed");
    drain(fx);
    assert_int_equal(fx->cli.closes, 1);
    assert_int_equal(fx->srv.closes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_control_message_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_before_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_alert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_violation_from_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_violation_from_agent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missed_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_clock_starts_after_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_rtt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, dev_certs_group_setup, dev_certs_group_teardown);
}
