/* TLS over libuv: real handshakes on 127.0.0.1 with dev certificates made in
 * a temporary directory. Every test counts callbacks and ends with
 * uv_loop_close() == 0, which proves every handle was closed.
 *
 * Over 600 lines: one test program per module, as tests/unit/meson.build
 * builds them; its cases share the fixtures above them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "burrow/error.h"
#include "dev_certs.h"
#include "tls.h"

#define ECHO_BYTES    (8u * 1024u * 1024u)
#define FLOOD_BYTES   (32u * 1024u * 1024u)
#define PATTERN_BYTES (1024u * 1024u)
#define WATCHDOG_MS   90000 /* generous: valgrind runs this 50x slower */

struct fixture;

struct peer {
    struct fixture *fx;
    bw_tls_t *t;
    int handshakes, hs_status, eofs, errors, err_code, closes, drains, reads_after_end;
    int mismatch;
    size_t rx, tx;
    size_t queued_at_drain;
    char err[256];
};

struct fixture {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_tcp_t raw; /* a plain TCP peer for the reset test */
    uv_timer_t watchdog, timer;
    int timed_out, listening;
    struct sockaddr_in addr;
    SSL_CTX *sctx, *cctx;
    const bw_tls_cbs_t *srv_cbs;
    struct peer srv, cli;
    uint8_t *pattern; /* PATTERN_BYTES of random data, repeated */
    size_t total;     /* bytes the test moves */
    size_t q_max;     /* largest bw_tls_queued() seen by the writer */
    int srv_rx_while_paused, drains_while_paused;
    bw_tls_peek_cb peek; /* set on the server connection when not NULL */
    int peeks, peek_verdict;
    uint8_t peeked[4096]; /* what the peek kept, fed from there on GO */
    size_t peeked_len;
};

static void path_in(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);

    assert_true(n > 0 && n < PATH_MAX);
}

static const uint8_t *pat(const struct fixture *fx, size_t off, size_t *avail)
{
    size_t o = off % PATTERN_BYTES;

    *avail = PATTERN_BYTES - o;
    return fx->pattern + o;
}

/* Compare received bytes with the pattern at stream offset p->rx. */
static void check_rx(struct peer *p, const uint8_t *data, size_t len)
{
    while (len > 0) {
        size_t avail;
        const uint8_t *want = pat(p->fx, p->rx, &avail);
        size_t n = len < avail ? len : avail;

        if (memcmp(want, data, n) != 0)
            p->mismatch = 1;
        p->rx += n;
        data += n;
        len -= n;
    }
}

/* ---- generic callbacks: record, and close on failure ---- */

static void rec_handshake(bw_tls_t *t, void *ud, int status)
{
    struct peer *p = ud;

    p->handshakes++;
    p->hs_status = status;
    if (status < 0) {
        snprintf(p->err, sizeof(p->err), "%s", bw_tls_error(t));
        bw_tls_close(t);
    }
}

static void rec_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
    struct peer *p = ud;

    if (p->eofs || p->errors || p->closes)
        p->reads_after_end++;
    check_rx(p, data, len);
}

static void rec_eof(bw_tls_t *t, void *ud)
{
    ((struct peer *)ud)->eofs++;
}

static void rec_error(bw_tls_t *t, void *ud, int err)
{
    struct peer *p = ud;

    p->errors++;
    p->err_code = err;
    snprintf(p->err, sizeof(p->err), "%s", bw_tls_error(t));
    bw_tls_close(t);
}

static void rec_drain(bw_tls_t *t, void *ud)
{
    struct peer *p = ud;

    p->drains++;
    p->queued_at_drain = bw_tls_queued(t);
}

static void rec_close(bw_tls_t *t, void *ud)
{
    struct peer *p = ud;

    p->closes++;
    /* Still alive during on_close: a second close must be a no-op. */
    bw_tls_close(t);
    p->t = NULL;
}

static const bw_tls_cbs_t rec_cbs = {
    .on_handshake = rec_handshake,
    .on_read = rec_read,
    .on_eof = rec_eof,
    .on_drain = rec_drain,
    .on_error = rec_error,
    .on_close = rec_close,
};

/* ---- fixture ---- */

static void watchdog_cb(uv_timer_t *h)
{
    struct fixture *fx = h->data;

    fx->timed_out = 1;
    uv_stop(&fx->loop);
}

static void on_connection(uv_stream_t *l, int status)
{
    struct fixture *fx = l->data;
    struct peer *p = &fx->srv;

    assert_int_equal(status, 0);
    p->t = bw_tls_new(&fx->loop, fx->sctx, 1, NULL, fx->srv_cbs, p);
    assert_non_null(p->t);
    if (fx->peek)
        bw_tls_set_peek(p->t, fx->peek, fx);
    assert_int_equal(uv_accept(l, (uv_stream_t *)bw_tls_tcp(p->t)), 0);
    assert_int_equal(bw_tls_start(p->t), 0);
    uv_close((uv_handle_t *)l, NULL); /* one connection per test */
    fx->listening = 0;
}

static void fx_listen(struct fixture *fx, uv_connection_cb cb)
{
    int len = sizeof(fx->addr);

    assert_int_equal(uv_tcp_init(&fx->loop, &fx->listener), 0);
    fx->listener.data = fx;
    uv_ip4_addr("127.0.0.1", 0, &fx->addr);
    assert_int_equal(uv_tcp_bind(&fx->listener, (struct sockaddr *)&fx->addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&fx->listener, 8, cb), 0);
    assert_int_equal(uv_tcp_getsockname(&fx->listener, (struct sockaddr *)&fx->addr, &len), 0);
    fx->listening = 1;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], err[256] = "";

    if (fx == NULL || uv_loop_init(&fx->loop) != 0)
        return -1;
    fx->srv.fx = fx;
    fx->cli.fx = fx;
    fx->srv_cbs = &rec_cbs;
    fx->pattern = malloc(PATTERN_BYTES);
    if (fx->pattern == NULL || RAND_bytes(fx->pattern, PATTERN_BYTES) != 1)
        return -1;
    path_in(cert, g_dir, "server.pem");
    path_in(key, g_dir, "server.key");
    path_in(ca, g_dir, "ca.pem");
    fx->sctx = bw_tls_server_ctx(cert, key, err, sizeof(err));
    fx->cctx = bw_tls_client_ctx(ca, err, sizeof(err));
    if (fx->sctx == NULL || fx->cctx == NULL) {
        fprintf(stderr, "ctx: %s\n", err);
        return -1;
    }
    uv_timer_init(&fx->loop, &fx->watchdog);
    uv_timer_init(&fx->loop, &fx->timer);
    fx->watchdog.data = fx;
    fx->timer.data = fx;
    uv_timer_start(&fx->watchdog, watchdog_cb, WATCHDOG_MS, 0);
    fx_listen(fx, on_connection);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    /* Close whatever a failed test left open, then prove nothing leaked. */
    bw_tls_close(fx->srv.t);
    bw_tls_close(fx->cli.t);
    if (fx->listening)
        uv_close((uv_handle_t *)&fx->listener, NULL);
    uv_close((uv_handle_t *)&fx->watchdog, NULL);
    uv_close((uv_handle_t *)&fx->timer, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    SSL_CTX_free(fx->sctx);
    SSL_CTX_free(fx->cctx);
    free(fx->pattern);
    free(fx);
    return 0;
}

static void connect_client(struct fixture *fx, SSL_CTX *ctx, const char *name,
                           const bw_tls_cbs_t *cbs)
{
    fx->cli.t = bw_tls_new(&fx->loop, ctx, 0, name, cbs, &fx->cli);
    assert_non_null(fx->cli.t);
    assert_int_equal(bw_tls_connect(fx->cli.t, (const struct sockaddr *)&fx->addr), 0);
}

/* Run until nothing is left but the watchdog (or it fires). */
static void run(struct fixture *fx)
{
    uv_unref((uv_handle_t *)&fx->watchdog);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_false(fx->timed_out);
}

static void assert_closed_once(const struct peer *p)
{
    assert_int_equal(p->handshakes, 1);
    assert_int_equal(p->closes, 1);
    assert_int_equal(p->reads_after_end, 0);
}

/* ---- echo: 8 MiB client -> server -> client, with backpressure ---- */

/* Client: write the next pieces as a 12-byte header plus a payload of varying
 * size, until the queue passes the high-water mark. */
static void echo_pump(struct peer *p)
{
    struct fixture *fx = p->fx;

    while (p->tx < fx->total && bw_tls_queued(p->t) <= BW_TLS_HIGH_WATER) {
        size_t avail, want = 1 + (p->tx * 7919u) % 70000u, hdr;
        const uint8_t *h = pat(fx, p->tx, &avail);
        const void *bufs[2];
        size_t lens[2];

        hdr = avail < 12 ? avail : 12;
        if (fx->total - p->tx < hdr)
            hdr = fx->total - p->tx;
        bufs[0] = h;
        lens[0] = hdr;
        bufs[1] = pat(fx, p->tx + hdr, &avail);
        lens[1] = want < avail ? want : avail;
        if (lens[1] > fx->total - p->tx - hdr)
            lens[1] = fx->total - p->tx - hdr;
        assert_int_equal(bw_tls_write(p->t, bufs, lens, 2), 0);
        p->tx += lens[0] + lens[1];
        if (bw_tls_queued(p->t) > fx->q_max)
            fx->q_max = bw_tls_queued(p->t);
    }
}

static void echo_cli_handshake(bw_tls_t *t, void *ud, int status)
{
    rec_handshake(t, ud, status);
    if (status == 0) {
        /* Nothing may be written before the handshake; now we may. */
        echo_pump(ud);
    }
}

static void echo_cli_drain(bw_tls_t *t, void *ud)
{
    rec_drain(t, ud);
    echo_pump(ud);
}

static void echo_cli_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
    struct peer *p = ud;

    rec_read(t, ud, data, len);
    if (p->rx == p->fx->total)
        bw_tls_shutdown(t);
}

static void echo_cli_eof(bw_tls_t *t, void *ud)
{
    struct peer *p = ud;

    rec_eof(t, ud);
    bw_tls_close(t);
    bw_tls_close(p->fx->srv.t);
}

static void echo_srv_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
    const void *bufs[1] = {data};
    size_t lens[1] = {len};

    rec_read(t, ud, data, len);
    assert_int_equal(bw_tls_write(t, bufs, lens, 1), 0);
    ((struct peer *)ud)->tx += len;
    if (bw_tls_queued(t) > BW_TLS_HIGH_WATER)
        bw_tls_read_stop(t);
}

static void echo_srv_drain(bw_tls_t *t, void *ud)
{
    rec_drain(t, ud);
    bw_tls_read_start(t);
}

static void echo_srv_eof(bw_tls_t *t, void *ud)
{
    rec_eof(t, ud);
    bw_tls_shutdown(t);
}

static const bw_tls_cbs_t echo_cli_cbs = {
    .on_handshake = echo_cli_handshake,
    .on_read = echo_cli_read,
    .on_eof = echo_cli_eof,
    .on_drain = echo_cli_drain,
    .on_error = rec_error,
    .on_close = rec_close,
};

static const bw_tls_cbs_t echo_srv_cbs = {
    .on_handshake = rec_handshake,
    .on_read = echo_srv_read,
    .on_eof = echo_srv_eof,
    .on_drain = echo_srv_drain,
    .on_error = rec_error,
    .on_close = rec_close,
};

static void test_echo(void **state)
{
    struct fixture *fx = *state;

    fx->total = ECHO_BYTES;
    fx->srv_cbs = &echo_srv_cbs;
    connect_client(fx, fx->cctx, "localhost", &echo_cli_cbs);
    run(fx);
    assert_string_equal(fx->cli.err, "");
    assert_string_equal(fx->srv.err, "");
    assert_closed_once(&fx->cli);
    assert_closed_once(&fx->srv);
    assert_int_equal(fx->cli.hs_status, 0);
    assert_int_equal(fx->srv.hs_status, 0);
    assert_int_equal(fx->cli.tx, ECHO_BYTES);
    assert_int_equal(fx->srv.rx, ECHO_BYTES);
    assert_int_equal(fx->srv.tx, ECHO_BYTES);
    assert_int_equal(fx->cli.rx, ECHO_BYTES);
    assert_int_equal(fx->srv.mismatch, 0);
    assert_int_equal(fx->cli.mismatch, 0);
    assert_int_equal(fx->srv.eofs, 1);
    assert_int_equal(fx->cli.eofs, 1);
    assert_int_equal(fx->cli.errors + fx->srv.errors, 0);
}

/* ---- the owner's look at the first bytes ---- */

/* Copies what it is shown and answers fx->peek_verdict: GO feeds the copy,
 * so the handshake provably starts from what the peek handed back. */
static int peek_copy(bw_tls_t *t, void *ud, const uint8_t *data, size_t len, const uint8_t **feed,
                     size_t *feed_len)
{
    struct fixture *fx = ud;

    fx->peeks++;
    assert_true(len > 0 && len <= sizeof(fx->peeked));
    assert_int_equal(data[0], 22); /* a handshake record */
    memcpy(fx->peeked, data, len);
    fx->peeked_len = len;
    if (fx->peek_verdict == BW_TLS_PEEK_STOP) {
        bw_tls_close(t);
        return BW_TLS_PEEK_STOP;
    }
    memset((void *)data, 0, len); /* the engine must not read the original */
    *feed = fx->peeked;
    *feed_len = len;
    return BW_TLS_PEEK_GO;
}

static void test_peek_go_feeds_the_handshake(void **state)
{
    struct fixture *fx = *state;

    fx->total = 64 * 1024;
    fx->srv_cbs = &echo_srv_cbs;
    fx->peek = peek_copy;
    fx->peek_verdict = BW_TLS_PEEK_GO;
    connect_client(fx, fx->cctx, "localhost", &echo_cli_cbs);
    run(fx);
    assert_int_equal(fx->peeks, 1); /* asked once, then out of the way */
    assert_int_equal(fx->cli.hs_status, 0);
    assert_int_equal(fx->srv.hs_status, 0);
    assert_int_equal(fx->cli.rx, fx->total);
    assert_int_equal(fx->cli.mismatch + fx->srv.mismatch, 0);
    assert_closed_once(&fx->srv);
}

static void test_peek_stop_takes_the_connection(void **state)
{
    struct fixture *fx = *state;

    fx->peek = peek_copy;
    fx->peek_verdict = BW_TLS_PEEK_STOP;
    connect_client(fx, fx->cctx, "localhost", &rec_cbs);
    run(fx);
    assert_int_equal(fx->peeks, 1);
    assert_int_equal(fx->srv.handshakes, 0); /* OpenSSL never saw it */
    assert_int_equal(fx->srv.closes, 1);
    assert_int_equal(fx->cli.handshakes, 1);
    assert_true(fx->cli.hs_status < 0);
}

/* ---- verification failures ---- */

/* Close either way, so a handshake that wrongly succeeds fails fast. */
static void close_handshake(bw_tls_t *t, void *ud, int status)
{
    rec_handshake(t, ud, status);
    bw_tls_close(t);
}

static const bw_tls_cbs_t close_cbs = {
    .on_handshake = close_handshake,
    .on_read = rec_read,
    .on_eof = rec_eof,
    .on_error = rec_error,
    .on_close = rec_close,
};

static void expect_handshake_failure(struct fixture *fx, SSL_CTX *ctx, const char *name,
                                     const char *text)
{
    fx->srv_cbs = &close_cbs;
    connect_client(fx, ctx, name, &close_cbs);
    run(fx);
    assert_closed_once(&fx->cli);
    assert_true(fx->cli.hs_status < 0);
    if (strstr(fx->cli.err, text) == NULL)
        fail_msg("client error '%s' does not say '%s'", fx->cli.err, text);
    /* The server learns of it through the alert. */
    assert_closed_once(&fx->srv);
    assert_true(fx->srv.hs_status < 0);
    assert_true(fx->srv.err[0] != '\0');
    assert_int_equal(fx->cli.errors + fx->srv.errors, 0);
}

static void test_wrong_ca(void **state)
{
    struct fixture *fx = *state;
    char ca[PATH_MAX], err[256] = "";
    SSL_CTX *ctx;

    path_in(ca, g_other, "ca.pem");
    ctx = bw_tls_client_ctx(ca, err, sizeof(err));
    assert_non_null(ctx);
    expect_handshake_failure(fx, ctx, "localhost", "certificate verify failed");
    assert_int_equal(fx->cli.hs_status, BW_EACCES);
    SSL_CTX_free(ctx);
}

static void test_hostname_mismatch(void **state)
{
    struct fixture *fx = *state;

    expect_handshake_failure(fx, fx->cctx, "example.com", "hostname mismatch");
    assert_int_equal(fx->cli.hs_status, BW_EACCES);
}

static void test_ip_mismatch(void **state)
{
    struct fixture *fx = *state;

    expect_handshake_failure(fx, fx->cctx, "127.0.0.2", "IP address mismatch");
}

static void test_ip_literal_ok(void **state)
{
    struct fixture *fx = *state;

    connect_client(fx, fx->cctx, "127.0.0.1", &rec_cbs);
    fx->srv_cbs = &rec_cbs;
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    while (fx->cli.handshakes == 0 && !fx->timed_out)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(fx->cli.hs_status, 0);
    /* No SNI for IP literals (RFC 6066 section 3). */
    while (fx->srv.handshakes == 0 && !fx->timed_out)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(fx->srv.hs_status, 0);
    assert_null(SSL_get_servername(bw_tls_ssl(fx->srv.t), TLSEXT_NAMETYPE_host_name));
    assert_string_not_equal(bw_tls_peer(fx->srv.t), "");
    bw_tls_close(fx->cli.t);
    bw_tls_close(fx->srv.t);
    run(fx);
    assert_closed_once(&fx->cli);
    assert_closed_once(&fx->srv);
}

static void test_tls11_refused(void **state)
{
    struct fixture *fx = *state;
    char ca[PATH_MAX], err[256] = "";
    SSL_CTX *ctx;

    assert_int_equal(SSL_CTX_get_min_proto_version(fx->sctx), TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_get_min_proto_version(fx->cctx), TLS1_2_VERSION);
    path_in(ca, g_dir, "ca.pem");
    ctx = bw_tls_client_ctx(ca, err, sizeof(err));
    assert_non_null(ctx);
    /* A legacy client: allow what OpenSSL 3 would refuse by itself. */
    SSL_CTX_set_security_level(ctx, 0);
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION), 1);
    expect_handshake_failure(fx, ctx, "localhost", "");
    assert_non_null(strstr(fx->srv.err, "unsupported protocol"));
    SSL_CTX_free(ctx);
}

static void test_tls12_accepted(void **state)
{
    struct fixture *fx = *state;

    assert_int_equal(SSL_CTX_set_max_proto_version(fx->cctx, TLS1_2_VERSION), 1);
    connect_client(fx, fx->cctx, "localhost", &rec_cbs);
    while (fx->cli.handshakes == 0 && !fx->timed_out)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(fx->cli.hs_status, 0);
    assert_int_equal(SSL_version(bw_tls_ssl(fx->cli.t)), TLS1_2_VERSION);
    bw_tls_close(fx->cli.t);
    run(fx);
    assert_closed_once(&fx->cli);
}

/* ---- connection failures and close ---- */

static void test_connect_refused(void **state)
{
    struct fixture *fx = *state;

    uv_close((uv_handle_t *)&fx->listener, NULL); /* nobody listens there now */
    fx->listening = 0;
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    connect_client(fx, fx->cctx, "localhost", &rec_cbs);
    run(fx);
    assert_closed_once(&fx->cli);
    assert_int_equal(fx->cli.hs_status, UV_ECONNREFUSED);
    assert_non_null(strstr(fx->cli.err, "connection refused"));
}

static void on_raw_connection(uv_stream_t *l, int status)
{
    struct fixture *fx = l->data;

    assert_int_equal(uv_tcp_init(&fx->loop, &fx->raw), 0);
    assert_int_equal(uv_accept(l, (uv_stream_t *)&fx->raw), 0);
    /* Unread ClientHello + SO_LINGER 0: the client sees a reset. */
    assert_int_equal(uv_tcp_close_reset(&fx->raw, NULL), 0);
    uv_close((uv_handle_t *)l, NULL);
    fx->listening = 0;
}

static void test_reset_during_handshake(void **state)
{
    struct fixture *fx = *state;

    /* Replace the TLS server by one that resets every connection. */
    uv_close((uv_handle_t *)&fx->listener, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    fx_listen(fx, on_raw_connection);
    connect_client(fx, fx->cctx, "localhost", &rec_cbs);
    run(fx);
    assert_closed_once(&fx->cli);
    assert_true(fx->cli.hs_status == BW_ECONNRESET);
    assert_true(fx->cli.err[0] != '\0');
}

static void garbage_handshake(bw_tls_t *t, void *ud, int status)
{
    static const char junk[64] = "this is not a TLS record at all";
    uv_buf_t b = uv_buf_init((char *)junk, sizeof(junk));

    rec_handshake(t, ud, status);
    /* Bypass TLS: the client must reject the bytes as a bad record. */
    assert_int_equal(uv_try_write((uv_stream_t *)bw_tls_tcp(t), &b, 1), (int)sizeof(junk));
}

static const bw_tls_cbs_t garbage_cbs = {
    .on_handshake = garbage_handshake,
    .on_read = rec_read,
    .on_eof = rec_eof,
    .on_error = rec_error,
    .on_close = rec_close,
};

static void close_server_on_client_close(bw_tls_t *t, void *ud)
{
    struct peer *p = ud;

    rec_close(t, ud);
    bw_tls_close(p->fx->srv.t);
}

static void test_bad_record_error(void **state)
{
    struct fixture *fx = *state;
    bw_tls_cbs_t cbs = rec_cbs;

    cbs.on_close = close_server_on_client_close;
    fx->srv_cbs = &garbage_cbs;
    connect_client(fx, fx->cctx, "localhost", &cbs);
    run(fx);
    assert_closed_once(&fx->cli);
    assert_int_equal(fx->cli.hs_status, 0);
    assert_int_equal(fx->cli.errors, 1);
    assert_int_equal(fx->cli.err_code, BW_EPROTO);
    assert_int_equal(fx->cli.eofs, 0);
    assert_true(fx->cli.err[0] != '\0');
}

static void close_twice_handshake(bw_tls_t *t, void *ud, int status)
{
    const void *bufs[1] = {"x"};
    size_t lens[1] = {1};

    rec_handshake(t, ud, status);
    bw_tls_close(t);
    bw_tls_close(t);
    assert_int_equal(bw_tls_write(t, bufs, lens, 1), BW_EPIPE);
}

static void test_close_once(void **state)
{
    struct fixture *fx = *state;
    bw_tls_cbs_t cbs = rec_cbs;
    struct peer idle = {.fx = fx}, connecting = {.fx = fx};
    struct sockaddr_in nowhere;

    cbs.on_handshake = close_twice_handshake;
    cbs.on_close = close_server_on_client_close;
    connect_client(fx, fx->cctx, "localhost", &cbs);
    /* Closed before ever connecting, and closed while connecting. */
    idle.t = bw_tls_new(&fx->loop, fx->cctx, 0, "localhost", &rec_cbs, &idle);
    assert_non_null(idle.t);
    bw_tls_close(idle.t);
    connecting.t = bw_tls_new(&fx->loop, fx->cctx, 0, "localhost", &rec_cbs, &connecting);
    assert_non_null(connecting.t);
    /* Not the test listener: it accepts a single connection. */
    uv_ip4_addr("127.0.0.1", 1, &nowhere);
    assert_int_equal(bw_tls_connect(connecting.t, (const struct sockaddr *)&nowhere), 0);
    bw_tls_close(connecting.t);
    bw_tls_close(connecting.t);
    assert_int_equal(idle.closes + connecting.closes, 0); /* never from inside close */
    run(fx);
    assert_closed_once(&fx->cli);
    assert_int_equal(fx->srv.closes, 1);
    assert_int_equal(idle.closes, 1);
    assert_int_equal(connecting.closes, 1);
    assert_int_equal(idle.handshakes + connecting.handshakes, 0);
    assert_int_equal(fx->cli.errors + fx->cli.eofs, 0);
}

static void test_client_needs_name(void **state)
{
    struct fixture *fx = *state;

    assert_null(bw_tls_new(&fx->loop, fx->cctx, 0, NULL, &rec_cbs, NULL));
}

/* ---- small writes in one loop turn share records ---- */

static int g_app_records;

static void count_records(int write_p, int version, int content_type, const void *buf, size_t len,
                          SSL *ssl, void *arg)
{
    if (write_p && content_type == SSL3_RT_HEADER && len >= 1 &&
        ((const uint8_t *)buf)[0] == SSL3_RT_APPLICATION_DATA)
        g_app_records++;
}

static void small_cli_handshake(bw_tls_t *t, void *ud, int status)
{
    struct peer *p = ud;
    struct fixture *fx = p->fx;
    size_t avail;
    int i;

    rec_handshake(t, ud, status);
    SSL_set_msg_callback(bw_tls_ssl(t), count_records);
    g_app_records = 0;
    for (i = 0; i < 1000; i++) {
        const void *bufs[1] = {pat(fx, p->tx, &avail)};
        size_t lens[1] = {13};

        assert_int_equal(bw_tls_write(t, bufs, lens, 1), 0);
        p->tx += 13;
    }
    /* A frame header and its payload, as a multiplexer writes them. */
    const void *bufs[2] = {pat(fx, p->tx, &avail), pat(fx, p->tx + 12, &avail)};
    size_t lens[2] = {12, 3000 - 12};

    assert_int_equal(bw_tls_write(t, bufs, lens, 2), 0);
    p->tx += 3000;
    /* Not sealed yet: it waits for the end of this loop turn. */
    assert_int_equal(g_app_records, 0);
    assert_int_equal(bw_tls_queued(t), fx->total);
}

static void small_srv_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
    struct peer *p = ud;

    rec_read(t, ud, data, len);
    if (p->rx == p->fx->total) {
        bw_tls_close(t);
        bw_tls_close(p->fx->cli.t);
    }
}

static void test_small_writes_coalesce(void **state)
{
    struct fixture *fx = *state;
    bw_tls_cbs_t cli = rec_cbs, srv = rec_cbs;

    cli.on_handshake = small_cli_handshake;
    srv.on_read = small_srv_read;
    fx->srv_cbs = &srv;
    fx->total = 16000;
    connect_client(fx, fx->cctx, "localhost", &cli);
    run(fx);
    assert_closed_once(&fx->cli);
    assert_closed_once(&fx->srv);
    assert_int_equal(fx->srv.rx, 16000);
    assert_int_equal(fx->srv.mismatch, 0);
    assert_int_equal(g_app_records, 1);
}

/* ---- backpressure: 32 MiB into a peer that does not read ---- */

static void flood_resume(uv_timer_t *h)
{
    struct fixture *fx = h->data;

    if (fx->srv.handshakes == 0) {
        /* Slow runs (valgrind): the server has not even paused yet. */
        uv_timer_start(&fx->timer, flood_resume, 200, 0);
        return;
    }
    fx->srv_rx_while_paused = (int)fx->srv.rx;
    fx->drains_while_paused = fx->cli.drains;
    if (bw_tls_queued(fx->cli.t) > fx->q_max)
        fx->q_max = bw_tls_queued(fx->cli.t);
    bw_tls_read_start(fx->srv.t);
}

static void flood_cli_handshake(bw_tls_t *t, void *ud, int status)
{
    struct peer *p = ud;
    struct fixture *fx = p->fx;

    rec_handshake(t, ud, status);
    while (status == 0 && p->tx < fx->total) {
        size_t avail;
        const void *bufs[1] = {pat(fx, p->tx, &avail)};
        size_t lens[1] = {avail < 256 * 1024 ? avail : 256 * 1024};

        assert_int_equal(bw_tls_write(t, bufs, lens, 1), 0);
        p->tx += lens[0];
    }
    fx->q_max = bw_tls_queued(t);
    uv_update_time(&fx->loop); /* encrypting 32 MiB took a while */
    uv_timer_start(&fx->timer, flood_resume, 200, 0);
}

static void flood_srv_handshake(bw_tls_t *t, void *ud, int status)
{
    rec_handshake(t, ud, status);
    bw_tls_read_stop(t);
}

static void flood_srv_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
    struct peer *p = ud;

    rec_read(t, ud, data, len);
    if (p->rx == p->fx->total) {
        bw_tls_close(t);
        bw_tls_close(p->fx->cli.t);
    }
}

static const bw_tls_cbs_t flood_cli_cbs = {
    .on_handshake = flood_cli_handshake,
    .on_read = rec_read,
    .on_eof = rec_eof,
    .on_drain = rec_drain,
    .on_error = rec_error,
    .on_close = rec_close,
};

static const bw_tls_cbs_t flood_srv_cbs = {
    .on_handshake = flood_srv_handshake,
    .on_read = flood_srv_read,
    .on_eof = rec_eof,
    .on_error = rec_error,
    .on_close = rec_close,
};

static void test_backpressure(void **state)
{
    struct fixture *fx = *state;

    fx->total = FLOOD_BYTES;
    fx->srv_cbs = &flood_srv_cbs;
    connect_client(fx, fx->cctx, "localhost", &flood_cli_cbs);
    run(fx);
    assert_closed_once(&fx->cli);
    assert_closed_once(&fx->srv);
    assert_int_equal(fx->srv.rx, FLOOD_BYTES);
    assert_int_equal(fx->srv.mismatch, 0);
    /* The kernel holds a few MiB at most; the rest must have queued. */
    assert_true(fx->q_max > 8u * 1024u * 1024u);
    assert_int_equal(fx->srv_rx_while_paused, 0);
    assert_int_equal(fx->drains_while_paused, 0);
    assert_int_equal(fx->cli.drains, 1);
    assert_true(fx->cli.queued_at_drain <= BW_TLS_LOW_WATER);
    assert_int_equal(fx->cli.errors + fx->srv.errors, 0);
}

/* ---- dev certificates ---- */

static char *slurp(const char *dir, const char *name)
{
    char path[PATH_MAX];
    FILE *f;
    char *buf = calloc(1, 65536);

    path_in(path, dir, name);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_true(fread(buf, 1, 65535, f) > 0);
    fclose(f);
    return buf;
}

static X509 *load_pem(const char *dir, const char *name)
{
    char path[PATH_MAX];
    FILE *f;
    X509 *x;

    path_in(path, dir, name);
    f = fopen(path, "r");
    assert_non_null(f);
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static int mode_of(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;

    path_in(path, dir, name);
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 0777;
}

static void test_dev_certs(void **state)
{
    char base[] = "/tmp/bw-tls-certs-XXXXXX", dir[PATH_MAX], err[256] = "";
    const char *names1[] = {"localhost", "*.localhost", "127.0.0.1", NULL};
    const char *names2[] = {"localhost", "*.example.test", "::1", NULL};
    const char *subset[] = {"*.example.test", NULL};
    char *ca1, *srv1, *ca2, *srv2;
    int created = -1;
    X509 *ca, *x;

    assert_non_null(mkdtemp(base));
    snprintf(dir, sizeof(dir), "%s/a/b", base);
    assert_int_equal(bw_tls_dev_certs(dir, names1, &created, err, sizeof(err)), 0);
    assert_int_equal(created, 1);
    assert_int_equal(mode_of(dir, ""), 0700);
    assert_int_equal(mode_of(dir, "ca.key"), 0600);
    assert_int_equal(mode_of(dir, "server.key"), 0600);
    ca1 = slurp(dir, "ca.pem");
    srv1 = slurp(dir, "server.pem");

    /* Same names: everything reused. */
    assert_int_equal(bw_tls_dev_certs(dir, names1, &created, err, sizeof(err)), 0);
    assert_int_equal(created, 0);
    ca2 = slurp(dir, "ca.pem");
    srv2 = slurp(dir, "server.pem");
    assert_string_equal(ca1, ca2);
    assert_string_equal(srv1, srv2);
    free(srv2);
    free(ca2);

    /* New names: same CA, new server certificate that covers them. */
    assert_int_equal(bw_tls_dev_certs(dir, names2, &created, err, sizeof(err)), 0);
    assert_int_equal(created, 0);
    ca2 = slurp(dir, "ca.pem");
    srv2 = slurp(dir, "server.pem");
    assert_string_equal(ca1, ca2);
    assert_string_not_equal(srv1, srv2);
    ca = load_pem(dir, "ca.pem");
    x = load_pem(dir, "server.pem");
    assert_int_equal(X509_verify(x, X509_get0_pubkey(ca)), 1);
    assert_int_equal(X509_check_host(x, "a.example.test", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 0);
    assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 1);
    assert_int_equal(X509_check_ca(x), 0);
    assert_true(X509_check_ca(ca) > 0);
    X509_free(x);
    X509_free(ca);

    /* A subset of what is covered: reused. */
    free(srv1);
    srv1 = srv2;
    assert_int_equal(bw_tls_dev_certs(dir, subset, &created, err, sizeof(err)), 0);
    srv2 = slurp(dir, "server.pem");
    assert_string_equal(srv1, srv2);

    free(ca1);
    free(srv1);
    free(ca2);
    free(srv2);
    assert_int_not_equal(bw_tls_dev_certs(dir, NULL, &created, err, sizeof(err)), 0);
    assert_true(err[0] != '\0');
    rm_rf(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek_go_feeds_the_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek_stop_takes_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostname_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_literal_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls11_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls12_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_during_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_record_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_needs_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_writes_coalesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test(test_dev_certs),
    };

    return cmocka_run_group_tests(tests, dev_certs_group_setup, dev_certs_group_teardown);
}
