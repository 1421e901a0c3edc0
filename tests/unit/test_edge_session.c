/* The edge's agent sessions (edge/edge_session.c, edge_public.c): a real
 * bw_edge_t on 127.0.0.1 and test agents that speak to it through real links
 * (TLS with the edge's dev CA, yamux, control messages). Covers
 * authentication, Bind/Unbind, refused and invalid binds, public TCP
 * connections reaching the agent with their Conn header, and resume.
 *
 * Every wait runs the loop until a condition holds, bounded by a watchdog
 * that fails the test naming the condition; nothing depends on how fast the
 * machine is. Each test ends with no handle active on the loop, and the
 * group with uv_loop_close() == 0.
 *
 * Over 600 lines on purpose: every test needs the same edge, agents and
 * message helpers, and splitting the file would copy them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "burrow/error.h"
#include "control.h"
#include "edge.h"
#include "edge_int.h"
#include "edge_state_parse.h"
#include "link.h"
#include "log.h"
#include "stream.h"
#include "tls.h"

#define WATCHDOG_MS 60000 /* generous: valgrind and a loaded machine */
#define TOKEN       "good-token"
#define PORT_LO     42000
#define PORT_HI     42999

typedef struct fixture fixture_t;

/* A test agent: one link, its control stream, what arrived on it. */
typedef struct agent {
    fixture_t *fx;
    bw_link_t *link;
    bw_mux_stream_t *ctl;
    bw_frame_reader_t reader;
    json_t *msgs; /* every control message received, in order */
    int readies, ready_status, closes;
    char reason[256];
    /* The first stream the edge opened (a public connection). */
    bw_mux_stream_t *conn;
    bw_frame_reader_t conn_reader;
    json_t *conn_msg;
    int streams;
} agent_t;

struct fixture {
    uv_loop_t *loop; /* g_loop */
    uv_timer_t watchdog;
    int timed_out;
    char dir[PATH_MAX], tokens[PATH_MAX + 16];
    bw_edge_config_t cfg;
    bw_edge_t *e;
    struct sockaddr_storage agent_addr;
    SSL_CTX *cctx;
    agent_t a, b, c;
    uv_tcp_t pub; /* a public client of a tcp tunnel */
    uv_connect_t pub_req;
    int pub_open, pub_connected;
};

/* The stream layer binds to one loop per process: every test shares it,
 * and each test ends with nothing active on it. */
static uv_loop_t g_loop;
static bw_io_t *g_io; /* the stream layer on g_loop */

/* ---- out of memory on demand (linked with -Wl,--wrap=bw_strdup) ---- */

char *__real_bw_strdup(const char *s);
char *__wrap_bw_strdup(const char *s);

static const char *fail_strdup_of; /* the next copy of this string fails */

char *__wrap_bw_strdup(const char *s)
{
    if (fail_strdup_of && s && strcmp(s, fail_strdup_of) == 0) {
        fail_strdup_of = NULL;
        return NULL;
    }
    return __real_bw_strdup(s);
}

/* ---- bounded waits ---- */

static void watchdog_cb(uv_timer_t *h)
{
    fixture_t *fx = h->data;
    fx->timed_out = 1;
}

static void run_until(fixture_t *fx, int (*cond)(agent_t *), agent_t *a, const char *what)
{
    uv_timer_start(&fx->watchdog, watchdog_cb, WATCHDOG_MS, 0);
    while (!cond(a) && !fx->timed_out)
        uv_run(fx->loop, UV_RUN_ONCE);
    uv_timer_stop(&fx->watchdog);
    if (fx->timed_out)
        fail_msg("timed out after %d ms waiting for %s", WATCHDOG_MS, what);
}

/* Run until only the (unreferenced) watchdog is left. */
static void drain(fixture_t *fx)
{
    uv_timer_start(&fx->watchdog, watchdog_cb, WATCHDOG_MS, 0);
    uv_unref((uv_handle_t *)&fx->watchdog);
    while (uv_loop_alive(fx->loop) && !fx->timed_out)
        uv_run(fx->loop, UV_RUN_ONCE);
    uv_ref((uv_handle_t *)&fx->watchdog);
    uv_timer_stop(&fx->watchdog);
    if (fx->timed_out)
        fail_msg("timed out after %d ms waiting for every handle to close", WATCHDOG_MS);
}

/* ---- the agent's side ---- */

static int keep_msg(void *ud, const json_t *m)
{
    agent_t *a = ud;
    json_array_append_new(a->msgs, json_deep_copy(m));
    return 0;
}

static void ctl_data(bw_mux_stream_t *ms, void *ud, const uint8_t *data, size_t len)
{
    agent_t *a = ud;
    char err[256];
    if (bw_frame_reader_each(&a->reader, data, len, keep_msg, a, err, sizeof err) != 0)
        fail_msg("bad control frame from the edge: %s", err);
    bw_mux_stream_consumed(ms, len);
}

static void ctl_close(bw_mux_stream_t *ms, void *ud, int err)
{
    agent_t *a = ud;
    a->ctl = NULL;
}

static const bw_mux_stream_cbs_t ctl_cbs = {
    .on_data = ctl_data,
    .on_close = ctl_close,
};

static void conn_data(bw_mux_stream_t *ms, void *ud, const uint8_t *data, size_t len)
{
    agent_t *a = ud;
    char err[256];
    json_t *m = NULL;
    if (!a->conn_msg && bw_frame_reader_feed(&a->conn_reader, data, len, &m, err, sizeof err) < 0)
        fail_msg("bad Conn frame from the edge: %s", err);
    if (m)
        a->conn_msg = m;
    bw_mux_stream_consumed(ms, len);
}

static void conn_close(bw_mux_stream_t *ms, void *ud, int err)
{
    agent_t *a = ud;
    a->conn = NULL;
}

static const bw_mux_stream_cbs_t conn_cbs = {
    .on_data = conn_data,
    .on_close = conn_close,
};

static void on_ready(bw_link_t *l, void *ud, int status)
{
    agent_t *a = ud;
    a->readies++;
    a->ready_status = status;
}

static void on_stream(bw_link_t *l, void *ud, bw_mux_stream_t *ms)
{
    agent_t *a = ud;
    a->streams++;
    if (a->conn) {
        bw_mux_stream_reset(ms);
        return;
    }
    a->conn = ms;
    bw_mux_stream_set_callbacks(ms, &conn_cbs, a);
}

static void on_closed(bw_link_t *l, void *ud, int err, const char *reason)
{
    agent_t *a = ud;
    a->closes++;
    snprintf(a->reason, sizeof a->reason, "%s", reason ? reason : "(null)");
    a->link = NULL;
    a->ctl = NULL;
    a->conn = NULL;
}

static const bw_link_cbs_t agent_cbs = {
    .on_ready = on_ready,
    .on_stream = on_stream,
    .on_closed = on_closed,
};

static int is_ready(agent_t *a)
{
    return a->readies > 0 || a->closes > 0;
}

static int is_closed(agent_t *a)
{
    return a->closes > 0;
}

static int has_conn(agent_t *a)
{
    return a->conn_msg != NULL || a->closes > 0;
}

static size_t want_msgs; /* for has_msgs: how many messages to wait for */

static int has_msgs(agent_t *a)
{
    return json_array_size(a->msgs) >= want_msgs || a->closes > 0;
}

/* Connect `a` to the edge and open its control stream. */
static void agent_start(fixture_t *fx, agent_t *a)
{
    bw_link_config_t lc = {.is_client = 1, .server_name = "localhost"};
    a->link = bw_link_new(fx->loop, fx->cctx, &lc, &agent_cbs, a);
    assert_non_null(a->link);
    assert_int_equal(bw_link_start(a->link, (struct sockaddr *)&fx->agent_addr), 0);
    run_until(fx, is_ready, a, "the agent's TLS handshake with the edge");
    assert_int_equal(a->ready_status, 0);
    a->ctl = bw_mux_stream_open(bw_link_mux(a->link));
    assert_non_null(a->ctl);
    bw_mux_stream_set_callbacks(a->ctl, &ctl_cbs, a);
}

/* Send `m` (consumed) on a's control stream. */
static void send_msg(agent_t *a, json_t *m)
{
    assert_non_null(m);
    assert_non_null(a->ctl);
    assert_int_equal(bw_link_send_msg(a->ctl, m), 0);
    json_decref(m);
}

/* Wait for a's next control message and return it (borrowed). */
static const json_t *next_msg(fixture_t *fx, agent_t *a, const char *what)
{
    want_msgs = json_array_size(a->msgs) + 1;
    run_until(fx, has_msgs, a, what);
    if (json_array_size(a->msgs) < want_msgs)
        fail_msg("the session closed (%s) while waiting for %s", a->reason, what);
    return json_array_get(a->msgs, want_msgs - 1);
}

/* Auth with `token` and `client_id`; returns the AuthResp (borrowed). */
static const json_t *auth(fixture_t *fx, agent_t *a, const char *token, const char *cid)
{
    send_msg(a, bw_msg_auth(token, cid, BW_VERSION));
    const json_t *r = next_msg(fx, a, "AuthResp");
    assert_int_equal(bw_msg_type(r), BW_MSG_AUTH_RESP);
    return r;
}

/* Bind and return the BindResp (borrowed). */
static const json_t *bind_msg(fixture_t *fx, agent_t *a, const char *req, const char *edge_type,
                              const char *remote_addr)
{
    send_msg(a, bw_msg_bind(req, "tcp", edge_type, "t", "", "", remote_addr));
    const json_t *r = next_msg(fx, a, "BindResp");
    assert_int_equal(bw_msg_type(r), BW_MSG_BIND_RESP);
    assert_string_equal(bw_msg_str(r, "req_id"), req);
    return r;
}

/* The port of a "tcp://host:port" url. */
static int url_port(const char *url)
{
    const char *colon = strrchr(url, ':');
    char *end;
    assert_non_null(colon);
    long port = strtol(colon + 1, &end, 10);
    assert_true(*end == '\0' && port > 0 && port < 65536);
    return (int)port;
}

/* ---- fixture ---- */

static agent_t *fx_agent(fixture_t *fx, size_t i)
{
    agent_t *all[] = {&fx->a, &fx->b, &fx->c};
    return all[i];
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* Deadlines for the tests of deadlines (0: longer than any test). */
static uint64_t g_auth_ms, g_handshake_ms;

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    char err[256] = "", ca[PATH_MAX + 16];
    int len = sizeof fx->agent_addr;
    if (!fx)
        return -1;
    fx->loop = &g_loop;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/bw-edge-session-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->tokens, sizeof fx->tokens, "%s/tokens", fx->dir);
    write_file(fx->tokens, "# one token\n" TOKEN "\n");
    fx->cfg = (bw_edge_config_t){
        .agent_addr = "127.0.0.1:0",
        .tcp_addr = "127.0.0.1",
        .tcp_port_lo = PORT_LO,
        .tcp_port_hi = PORT_HI,
        .domain = "localhost",
        .state_dir = fx->dir,
        .auth_tokens = fx->tokens,
        .grace_ms = 600000, /* reservations outlive every test */
        .auth_timeout_ms = g_auth_ms ? g_auth_ms : 600000,
        .handshake_ms = g_handshake_ms ? g_handshake_ms : 600000,
        .idle_ms = 0, /* no heartbeat: nothing here depends on time */
        .max_tunnels = 2,
        .auth_fail_free = 2,
        .auth_lock_ms = 120000, /* outlives every test */
    };
    fx->e = bw_edge_new(g_io, &fx->cfg, err, sizeof err);
    if (!fx->e) {
        fprintf(stderr, "bw_edge_new: %s\n", err);
        return -1;
    }
    if (uv_tcp_getsockname(&fx->e->agents, (struct sockaddr *)&fx->agent_addr, &len) != 0)
        return -1;
    snprintf(ca, sizeof ca, "%s/ca.pem", fx->dir);
    fx->cctx = bw_tls_client_ctx(ca, err, sizeof err);
    if (!fx->cctx) {
        fprintf(stderr, "client ctx: %s\n", err);
        return -1;
    }
    for (size_t i = 0; i < 3; i++) {
        agent_t *a = fx_agent(fx, i);
        a->fx = fx;
        a->msgs = json_array();
        bw_frame_reader_init(&a->reader, 0);
        bw_frame_reader_init(&a->conn_reader, 0);
    }
    uv_timer_init(fx->loop, &fx->watchdog);
    fx->watchdog.data = fx;
    *state = fx;
    return 0;
}

/* The edge with the given deadlines (0: longer than any test). */
static int setup_deadlines(void **state, uint64_t auth_ms, uint64_t handshake_ms)
{
    g_auth_ms = auth_ms;
    g_handshake_ms = handshake_ms;
    int rc = setup(state);
    g_auth_ms = g_handshake_ms = 0;
    return rc;
}

static int setup_short_handshake(void **state)
{
    return setup_deadlines(state, 0, 300);
}

static int setup_short_auth(void **state)
{
    return setup_deadlines(state, 300, 0);
}

static void rm_state(const char *dir)
{
    static const char *const files[] = {"tokens",     "ca.pem",     "ca.key",
                                        "server.pem", "server.key", "reservations.json"};
    char p[PATH_MAX + 16];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    for (size_t i = 0; i < 3; i++)
        bw_link_close(fx_agent(fx, i)->link, BW_MUX_GOAWAY_NORMAL);
    if (fx->pub_open && !uv_is_closing((uv_handle_t *)&fx->pub))
        uv_close((uv_handle_t *)&fx->pub, NULL);
    bw_edge_stop(fx->e);
    fx->timed_out = 0;
    drain(fx);
    uv_close((uv_handle_t *)&fx->watchdog, NULL);
    uv_run(fx->loop, UV_RUN_DEFAULT); /* only the watchdog's close is left */
    bw_edge_free(fx->e);
    for (size_t i = 0; i < 3; i++) {
        agent_t *a = fx_agent(fx, i);
        json_decref(a->msgs);
        json_decref(a->conn_msg);
        bw_frame_reader_free(&a->reader);
        bw_frame_reader_free(&a->conn_reader);
    }
    SSL_CTX_free(fx->cctx);
    rm_state(fx->dir);
    free(fx);
    return 0;
}

/* ---- deadlines before Auth ---- */

/* A client that connects at once and starts its TLS handshake only after
 * `delay_ms` (never when 0), then sends nothing. */
typedef struct slow_client {
    fixture_t *fx;
    bw_tls_t *tls;
    uv_connect_t req;
    uv_timer_t timer;
    uint64_t delay_ms;
    int handshakes, hs_status, gone;
} slow_client_t;

static void slow_handshake(bw_tls_t *t, void *ud, int status)
{
    slow_client_t *sc = ud;
    sc->handshakes++;
    sc->hs_status = status;
    if (status < 0)
        bw_tls_close(t);
}

static void slow_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
}

static void slow_end(bw_tls_t *t, void *ud)
{
    bw_tls_close(t);
}

static void slow_error(bw_tls_t *t, void *ud, int err)
{
    bw_tls_close(t);
}

static void slow_closed(bw_tls_t *t, void *ud)
{
    slow_client_t *sc = ud;
    sc->gone = 1;
    sc->tls = NULL;
}

static const bw_tls_cbs_t slow_cbs = {
    .on_handshake = slow_handshake,
    .on_read = slow_read,
    .on_eof = slow_end,
    .on_error = slow_error,
    .on_close = slow_closed,
};

static void slow_start(uv_timer_t *h)
{
    slow_client_t *sc = h->data;
    if (sc->tls)
        assert_int_equal(bw_tls_start(sc->tls), 0);
}

static slow_client_t g_slow; /* run_until's and libuv's arguments carry no room for it */

static void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char b[256];
    *buf = uv_buf_init(b, sizeof b);
}

/* A client that never starts TLS reads the socket itself to see the edge
 * hang up. */
static void raw_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0 && g_slow.tls)
        bw_tls_close(g_slow.tls); /* st->data is the TLS object's */
}

static void slow_connected(uv_connect_t *req, int status)
{
    slow_client_t *sc = req->data;
    assert_int_equal(status, 0);
    if (sc->delay_ms) {
        uv_timer_start(&sc->timer, slow_start, sc->delay_ms, 0);
        return;
    }
    assert_int_equal(uv_read_start((uv_stream_t *)bw_tls_tcp(sc->tls), raw_alloc, raw_read), 0);
}

static int slow_gone(agent_t *unused)
{
    return g_slow.gone;
}

/* Connect a slow client, wait until the edge hung up on it. */
static void slow_until_gone(fixture_t *fx, uint64_t delay_ms)
{
    slow_client_t *sc = &g_slow;
    *sc = (slow_client_t){.fx = fx, .delay_ms = delay_ms};
    sc->tls = bw_tls_new(fx->loop, fx->cctx, 0, "localhost", &slow_cbs, sc);
    assert_non_null(sc->tls);
    uv_timer_init(fx->loop, &sc->timer);
    sc->timer.data = sc;
    sc->req.data = sc;
    assert_int_equal(uv_tcp_connect(&sc->req, bw_tls_tcp(sc->tls),
                                    (struct sockaddr *)&fx->agent_addr, slow_connected),
                     0);
    run_until(fx, slow_gone, NULL, "the edge to hang up on a silent client");
    uv_close((uv_handle_t *)&sc->timer, NULL);
}

/* A connection that never starts TLS is dropped at the handshake's own
 * bound, long before the (here endless) Auth deadline could. */
static void test_handshake_bounded(void **state)
{
    fixture_t *fx = *state;
    slow_until_gone(fx, 0);
    assert_int_equal(g_slow.handshakes, 0);
}

/* A handshake slower than the Auth deadline completes: that deadline
 * counts from the handshake's end, and then it ends the silent session. */
static void test_auth_deadline_counts_from_handshake(void **state)
{
    fixture_t *fx = *state;
    slow_until_gone(fx, 900);
    assert_int_equal(g_slow.handshakes, 1);
    assert_int_equal(g_slow.hs_status, 0);
}

/* ---- authentication ---- */

static void test_auth_ok(void **state)
{
    fixture_t *fx = *state;
    agent_start(fx, &fx->a);
    const json_t *r = auth(fx, &fx->a, TOKEN, "");
    assert_string_equal(bw_msg_str(r, "error"), "");
    assert_int_equal(strlen(bw_msg_str(r, "client_id")), 32);
    assert_string_equal(bw_msg_str(r, "version"), BW_VERSION);
}

static void test_bad_token_refused(void **state)
{
    fixture_t *fx = *state;
    agent_start(fx, &fx->a);
    const json_t *r = auth(fx, &fx->a, "wrong-token", "");
    assert_string_equal(bw_msg_str(r, "error"), "invalid authtoken");
    assert_string_equal(bw_msg_str(r, "client_id"), "");
    /* The refusal is delivered, then the edge hangs up by itself. */
    run_until(fx, is_closed, &fx->a, "the edge to close a refused session");
    assert_int_equal(fx->a.closes, 1);
    assert_int_equal(json_array_size(fx->a.msgs), 1);
}

/* Make a closed test agent usable for a new connection. */
static void agent_reset(agent_t *a)
{
    a->readies = a->closes = 0;
    bw_frame_reader_free(&a->reader);
    bw_frame_reader_init(&a->reader, 0);
}

/* protocol.md §9: a major this edge does not speak is refused with a
 * clear AuthResp error, and the edge hangs up; the speakable major passes
 * whatever its minor. */
static void test_unknown_major_refused(void **state)
{
    fixture_t *fx = *state;
    agent_start(fx, &fx->a);
    send_msg(&fx->a, bw_msg_auth(TOKEN, "", "99.0.0"));
    const json_t *r = next_msg(fx, &fx->a, "AuthResp");
    assert_int_equal(bw_msg_type(r), BW_MSG_AUTH_RESP);
    assert_non_null(strstr(bw_msg_str(r, "error"), "unsupported protocol version \"99.0.0\""));
    assert_string_equal(bw_msg_str(r, "client_id"), "");
    run_until(fx, is_closed, &fx->a, "the edge to close a session of an unknown major");
    assert_int_equal(json_array_size(fx->a.msgs), 1);

    agent_start(fx, &fx->b);
    send_msg(&fx->b, bw_msg_auth(TOKEN, "", "not-a-version"));
    r = next_msg(fx, &fx->b, "AuthResp");
    assert_non_null(strstr(bw_msg_str(r, "error"), "unsupported protocol version"));

    /* However long the version, the answer stays a valid message. */
    char huge[BW_PROTO_MAX_STR + 1];
    memset(huge, '9', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    agent_start(fx, &fx->c);
    send_msg(&fx->c, bw_msg_auth(TOKEN, "", huge));
    r = next_msg(fx, &fx->c, "AuthResp");
    assert_int_equal(bw_msg_validate(r, NULL, 0), 0);
    assert_non_null(strstr(bw_msg_str(r, "error"), "unsupported protocol version \"9999"));

    agent_reset(&fx->c);
    agent_start(fx, &fx->c);
    send_msg(&fx->c, bw_msg_auth(TOKEN, "", "0.99.7"));
    r = next_msg(fx, &fx->c, "AuthResp");
    assert_string_equal(bw_msg_str(r, "error"), "");
}

/* The SHA-256 hex of `token`: all the edge keeps of it. */
static const char *token_sha256(const char *token, char hex[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    assert_true(EVP_Digest(token, strlen(token), md, &n, EVP_sha256(), NULL) && n == 32);
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

/* When the session's copy of the token (its hash) cannot be made, the
 * session ends as an internal error instead of living on without a token to
 * resume by. */
static void test_token_copy_oom_ends_session(void **state)
{
    fixture_t *fx = *state;
    char hex[65];
    agent_start(fx, &fx->a);
    fail_strdup_of = token_sha256(TOKEN, hex);
    send_msg(&fx->a, bw_msg_auth(TOKEN, "", BW_VERSION));
    run_until(fx, is_closed, &fx->a, "the edge to end a session whose token copy failed");
    assert_null(fail_strdup_of); /* the copy was attempted */
    assert_int_equal(json_array_size(fx->a.msgs), 0);

    agent_start(fx, &fx->b); /* the edge itself is fine */
    assert_string_equal(bw_msg_str(auth(fx, &fx->b, TOKEN, ""), "error"), "");
}

static size_t count_lines_with(const char *path, const char *needle)
{
    char line[1024];
    size_t n = 0;
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Past the free failures (2 here) an address is locked out: even the right
 * token is refused without being checked, with how long to wait. Only the
 * first failure is logged on its own; the rest go in the minute's report. */
static void test_failed_auths_lock_out_the_address(void **state)
{
    fixture_t *fx = *state;
    char log[PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/log", fx->dir);
    assert_int_equal(bw_log_open(log, BW_LOGFMT_LOGFMT, BW_LOG_INFO), 0);
    for (size_t i = 0; i < 3; i++) {
        agent_t *a = fx_agent(fx, i);
        agent_start(fx, a);
        const json_t *r = auth(fx, a, "wrong-token", "");
        assert_string_equal(bw_msg_str(r, "error"), "invalid authtoken");
        run_until(fx, is_closed, a, "the edge to close a refused session");
    }
    agent_reset(&fx->a);
    agent_start(fx, &fx->a);
    const json_t *r = auth(fx, &fx->a, TOKEN, "");
    assert_non_null(strstr(bw_msg_str(r, "error"),
                           "too many failed authentications from 127.0.0.1; try again in "));
    assert_string_equal(bw_msg_str(r, "client_id"), "");
    run_until(fx, is_closed, &fx->a, "the edge to close a locked-out session");
    bw_log_close();
    assert_int_equal(count_lines_with(log, "msg=\"authentication failed\""), 1);
    unlink(log);
}

/* A refused session's further messages are not answered. */
static void test_bind_after_refusal_ignored(void **state)
{
    fixture_t *fx = *state;
    agent_start(fx, &fx->a);
    auth(fx, &fx->a, "wrong-token", "");
    send_msg(&fx->a, bw_msg_bind("1", "tcp", "tcp", "t", "", "", ""));
    run_until(fx, is_closed, &fx->a, "the edge to close a refused session");
    assert_int_equal(json_array_size(fx->a.msgs), 1);
}

static void test_bind_before_auth_closes(void **state)
{
    fixture_t *fx = *state;
    agent_start(fx, &fx->a);
    send_msg(&fx->a, bw_msg_bind("1", "tcp", "tcp", "t", "", "", ""));
    run_until(fx, is_closed, &fx->a, "the edge to close a session that bound before Auth");
    assert_int_equal(fx->a.closes, 1);
    assert_int_equal(json_array_size(fx->a.msgs), 0);
}

static void test_second_auth_closes(void **state)
{
    fixture_t *fx = *state;
    agent_start(fx, &fx->a);
    auth(fx, &fx->a, TOKEN, "");
    send_msg(&fx->a, bw_msg_auth(TOKEN, "", BW_VERSION));
    run_until(fx, is_closed, &fx->a, "the edge to close a session that sent Auth twice");
    assert_int_equal(json_array_size(fx->a.msgs), 1);
}

/* ---- bind, public connections, unbind ---- */

static void on_pub_connect(uv_connect_t *req, int status)
{
    fixture_t *fx = req->data;
    fx->pub_connected = status == 0 ? 1 : -1;
}

static void test_bind_conn_unbind(void **state)
{
    fixture_t *fx = *state;
    agent_t *a = &fx->a;
    struct sockaddr_in sin;
    agent_start(fx, a);
    auth(fx, a, TOKEN, "");
    const json_t *r = bind_msg(fx, a, "r1", "tcp", "");
    assert_string_equal(bw_msg_str(r, "error"), "");
    char tid[BW_TUNNEL_ID_LEN], url[320];
    snprintf(tid, sizeof tid, "%s", bw_msg_str(r, "tunnel_id"));
    snprintf(url, sizeof url, "%s", bw_msg_str(r, "url"));
    assert_int_equal(strlen(tid), 32);
    assert_int_equal(strncmp(url, "tcp://localhost:", 16), 0);
    int port = url_port(url);
    assert_true(port >= PORT_LO && port <= PORT_HI);

    /* A public client reaches the agent on a new stream with a Conn header. */
    assert_int_equal(uv_tcp_init(fx->loop, &fx->pub), 0);
    fx->pub_open = 1;
    fx->pub_req.data = fx;
    uv_ip4_addr("127.0.0.1", port, &sin);
    assert_int_equal(
        uv_tcp_connect(&fx->pub_req, &fx->pub, (struct sockaddr *)&sin, on_pub_connect), 0);
    run_until(fx, has_conn, a, "the Conn header of a public connection");
    assert_non_null(a->conn_msg);
    assert_int_equal(fx->pub_connected, 1);
    assert_int_equal(bw_msg_type(a->conn_msg), BW_MSG_CONN);
    assert_string_equal(bw_msg_str(a->conn_msg, "tunnel_id"), tid);
    assert_string_equal(bw_msg_str(a->conn_msg, "edge_type"), "tcp");
    assert_int_equal(strncmp(bw_msg_str(a->conn_msg, "client_addr"), "127.0.0.1:", 10), 0);
    /* The address the client reached: the destination of PROXY headers. */
    char self[64];
    snprintf(self, sizeof self, "127.0.0.1:%d", port);
    assert_string_equal(bw_msg_str(a->conn_msg, "server_addr"), self);

    send_msg(a, bw_msg_unbind(tid));
    r = next_msg(fx, a, "UnbindResp");
    assert_int_equal(bw_msg_type(r), BW_MSG_UNBIND_RESP);
    assert_string_equal(bw_msg_str(r, "tunnel_id"), tid);
    assert_string_equal(bw_msg_str(r, "error"), "");
    send_msg(a, bw_msg_unbind(tid));
    r = next_msg(fx, a, "the second UnbindResp");
    assert_string_equal(bw_msg_str(r, "error"), "no such tunnel");
    assert_int_equal(a->closes, 0);
}

/* Binds the edge cannot serve are answered with an error; the session
 * stays up and can still bind. */
static void test_refused_binds_answered(void **state)
{
    fixture_t *fx = *state;
    agent_t *a = &fx->a;
    char addr[64];
    agent_start(fx, a);
    auth(fx, a, TOKEN, "");

    const json_t *r = bind_msg(fx, a, "tls", "tls", "");
    assert_non_null(strstr(bw_msg_str(r, "error"), "tls tunnels are disabled on this edge (no "
                                                   "--https-addr)"));
    assert_string_equal(bw_msg_str(r, "tunnel_id"), "");
    r = bind_msg(fx, a, "http", "http", "");
    assert_non_null(strstr(bw_msg_str(r, "error"), "http tunnels are disabled"));
    r = bind_msg(fx, a, "bad-addr", "tcp", "no-port-here");
    assert_non_null(strstr(bw_msg_str(r, "error"), "invalid remote_addr"));
    snprintf(addr, sizeof addr, "localhost:%d", PORT_HI + 1);
    r = bind_msg(fx, a, "range", "tcp", addr);
    assert_non_null(strstr(bw_msg_str(r, "error"), "outside this edge's range"));

    r = bind_msg(fx, a, "ok1", "tcp", "");
    assert_string_equal(bw_msg_str(r, "error"), "");
    snprintf(addr, sizeof addr, "localhost:%d", url_port(bw_msg_str(r, "url")));
    r = bind_msg(fx, a, "same", "tcp", addr);
    assert_non_null(strstr(bw_msg_str(r, "error"), "is already bound"));
    r = bind_msg(fx, a, "ok2", "tcp", "");
    assert_string_equal(bw_msg_str(r, "error"), "");
    r = bind_msg(fx, a, "limit", "tcp", "");
    assert_non_null(strstr(bw_msg_str(r, "error"), "tunnel limit reached (2 per session)"));
    assert_int_equal(a->closes, 0);
}

/* A Bind that breaks a member rule (an edge type outside the enumeration,
 * a name over the protocol's string limit) costs only that tunnel: it gets
 * a BindResp error naming the member, and the session binds on. */
static void test_invalid_bind_answered(void **state)
{
    fixture_t *fx = *state;
    agent_t *a = &fx->a;
    char longname[BW_PROTO_MAX_STR + 2];
    agent_start(fx, a);
    auth(fx, a, TOKEN, "");
    const json_t *r = bind_msg(fx, a, "udp", "udp", "");
    assert_non_null(strstr(bw_msg_str(r, "error"), "member \"edge_type\" must be one of"));
    assert_string_equal(bw_msg_str(r, "tunnel_id"), "");

    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    send_msg(a, bw_msg_bind("long", "tcp", "tcp", longname, "", "", ""));
    r = next_msg(fx, a, "BindResp to an over-long name");
    assert_string_equal(bw_msg_str(r, "req_id"), "long");
    assert_non_null(strstr(bw_msg_str(r, "error"), "member \"name\" is longer than 4096 bytes"));

    r = bind_msg(fx, a, "ok", "tcp", "");
    assert_string_equal(bw_msg_str(r, "error"), "");
    assert_int_equal(a->closes, 0);
}

/* Without a usable req_id there is nothing to answer: the session ends. */
static void test_bind_without_req_id_closes(void **state)
{
    fixture_t *fx = *state;
    agent_t *a = &fx->a;
    agent_start(fx, a);
    auth(fx, a, TOKEN, "");
    send_msg(a, bw_msg_bind("", "tcp", "udp", "t", "", "", ""));
    run_until(fx, is_closed, a, "the edge to close a session after a Bind without req_id");
    assert_int_equal(json_array_size(a->msgs), 1); /* the AuthResp only */
}

/* ---- resume ---- */

static void test_resume_keeps_port(void **state)
{
    fixture_t *fx = *state;
    char cid[64], url[320], addr[64];
    agent_start(fx, &fx->a);
    snprintf(cid, sizeof cid, "%s", bw_msg_str(auth(fx, &fx->a, TOKEN, ""), "client_id"));
    const json_t *r = bind_msg(fx, &fx->a, "r1", "tcp", "");
    assert_string_equal(bw_msg_str(r, "error"), "");
    snprintf(url, sizeof url, "%s", bw_msg_str(r, "url"));
    snprintf(addr, sizeof addr, "localhost:%d", url_port(url));
    bw_link_close(fx->a.link, BW_MUX_GOAWAY_NORMAL); /* the session is lost */
    fx->a.link = NULL;
    fx->a.ctl = NULL;

    /* Another client may not take the address, lost session or not. */
    agent_start(fx, &fx->b);
    r = auth(fx, &fx->b, TOKEN, "");
    assert_string_not_equal(bw_msg_str(r, "client_id"), cid);
    r = bind_msg(fx, &fx->b, "steal", "tcp", addr);
    assert_non_null(strstr(bw_msg_str(r, "error"), "is already bound"));

    /* The same client with the same token gets its id and its port back. */
    agent_start(fx, &fx->c);
    r = auth(fx, &fx->c, TOKEN, cid);
    assert_string_equal(bw_msg_str(r, "error"), "");
    assert_string_equal(bw_msg_str(r, "client_id"), cid);
    r = bind_msg(fx, &fx->c, "again", "tcp", addr);
    assert_string_equal(bw_msg_str(r, "error"), "");
    assert_string_equal(bw_msg_str(r, "url"), url);
}

/* An unknown client id is not resumed: a fresh one is issued. */
static void test_unknown_client_id_not_resumed(void **state)
{
    fixture_t *fx = *state;
    static const char made_up[] = "0123456789abcdef0123456789abcdef";
    agent_start(fx, &fx->a);
    const json_t *r = auth(fx, &fx->a, TOKEN, made_up);
    assert_string_equal(bw_msg_str(r, "error"), "");
    assert_string_not_equal(bw_msg_str(r, "client_id"), made_up);
    assert_int_equal(strlen(bw_msg_str(r, "client_id")), 32);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 16);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    assert_true(n > 0 && n < (1 << 16) - 1);
    fclose(f);
    return buf;
}

/* docs/edge.md "Reservations across restarts": a live tunnel's port is on
 * disk while the session lives, and an edge restarted from that file keeps
 * it for its client: another client is refused, the owner resumes. */
static void test_reservations_survive_restart(void **state)
{
    fixture_t *fx = *state;
    char cid[64], url[320], addr[64], path[PATH_MAX + 32], err[256] = "", hex[65];
    int len = sizeof fx->agent_addr;
    agent_start(fx, &fx->a);
    snprintf(cid, sizeof cid, "%s", bw_msg_str(auth(fx, &fx->a, TOKEN, ""), "client_id"));
    const json_t *r = bind_msg(fx, &fx->a, "r1", "tcp", "");
    assert_string_equal(bw_msg_str(r, "error"), "");
    snprintf(url, sizeof url, "%s", bw_msg_str(r, "url"));
    snprintf(addr, sizeof addr, "localhost:%d", url_port(url));

    /* What a crash right now would leave behind: the live port, under a
     * hash of the token and never the token. */
    snprintf(path, sizeof path, "%s/reservations.json", fx->dir);
    char *saved = read_all(path);
    assert_non_null(strstr(saved, token_sha256(TOKEN, hex)));
    assert_null(strstr(saved, TOKEN));
    assert_non_null(strstr(saved, cid));

    bw_link_close(fx->a.link, BW_MUX_GOAWAY_NORMAL);
    fx->a.link = NULL;
    fx->a.ctl = NULL;
    bw_edge_stop(fx->e);
    drain(fx);
    bw_edge_free(fx->e);
    write_file(path, saved);
    free(saved);
    fx->e = bw_edge_new(g_io, &fx->cfg, err, sizeof err);
    assert_non_null(fx->e);
    assert_int_equal(uv_tcp_getsockname(&fx->e->agents, (struct sockaddr *)&fx->agent_addr, &len),
                     0);

    agent_start(fx, &fx->b);
    r = auth(fx, &fx->b, TOKEN, "");
    assert_string_not_equal(bw_msg_str(r, "client_id"), cid);
    r = bind_msg(fx, &fx->b, "steal", "tcp", addr);
    assert_non_null(strstr(bw_msg_str(r, "error"), "is already bound"));

    agent_start(fx, &fx->c);
    r = auth(fx, &fx->c, TOKEN, cid);
    assert_string_equal(bw_msg_str(r, "client_id"), cid);
    r = bind_msg(fx, &fx->c, "again", "tcp", addr);
    assert_string_equal(bw_msg_str(r, "error"), "");
    assert_string_equal(bw_msg_str(r, "url"), url);
}

/* An unreadable file costs nothing but a warning: the edge starts. */
static void test_corrupt_reservations_ignored(void **state)
{
    fixture_t *fx = *state;
    char path[PATH_MAX + 32], err[256] = "";
    snprintf(path, sizeof path, "%s/reservations.json", fx->dir);
    bw_edge_stop(fx->e);
    drain(fx);
    bw_edge_free(fx->e);
    write_file(path, "{\"version\": 1, \"reservations\": [{\"port\": ");
    fx->e = bw_edge_new(g_io, &fx->cfg, err, sizeof err);
    assert_non_null(fx->e);
    assert_null(fx->e->reservations);
}

/* A file longer than any the edge writes is not read at all, even when it
 * is valid JSON. */
static void test_oversized_reservations_ignored(void **state)
{
    fixture_t *fx = *state;
    char path[PATH_MAX + 32], err[256] = "", hex[65], head[512];
    snprintf(path, sizeof path, "%s/reservations.json", fx->dir);
    bw_edge_stop(fx->e);
    drain(fx);
    bw_edge_free(fx->e);
    snprintf(head, sizeof head,
             "{\"version\": 1, \"reservations\": [{\"client_id\": \"c\", \"token_sha256\": "
             "\"%s\", \"port\": %d, \"expires\": null}]}",
             token_sha256(TOKEN, hex), PORT_LO);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(head, f) >= 0);
    for (size_t n = strlen(head); n <= BW_EDGE_STATE_MAX; n++)
        assert_int_equal(fputc(' ', f), ' ');
    assert_int_equal(fclose(f), 0);
    fx->e = bw_edge_new(g_io, &fx->cfg, err, sizeof err);
    assert_non_null(fx->e);
    assert_null(fx->e->reservations);
}

/* A port of the edge's range that nothing on this host listens on now
 * (other test runs share the range). */
static int free_port(void)
{
    for (int p = PORT_HI; p >= PORT_LO; p--) {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)p),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;
        assert_true(fd >= 0);
        ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok)
            return p;
    }
    fail_msg("no free port in %d-%d", PORT_LO, PORT_HI);
    return -1;
}

/* A port listed twice in the file (by hand, or two writers): the first
 * entry keeps it and the second is counted as malformed. Loading both left
 * each client refused by the other's reservation until the grace ran out. */
static void test_duplicate_reserved_port_first_kept(void **state)
{
    fixture_t *fx = *state;
    char path[PATH_MAX + 32], err[256] = "", hex[65], text[1024], addr[64];
    const char *first = "0123456789abcdef0123456789abcdef";
    int len = sizeof fx->agent_addr, port = free_port();
    snprintf(path, sizeof path, "%s/reservations.json", fx->dir);
    bw_edge_stop(fx->e);
    drain(fx);
    bw_edge_free(fx->e);
    token_sha256(TOKEN, hex);
    snprintf(text, sizeof text,
             "{\"version\": 1, \"reservations\": ["
             "{\"client_id\": \"%s\", \"token_sha256\": \"%s\", \"port\": %d, \"expires\": null},"
             "{\"client_id\": \"fedcba9876543210fedcba9876543210\", \"token_sha256\": \"%s\","
             " \"port\": %d, \"expires\": null}]}",
             first, hex, port, hex, port);
    write_file(path, text);
    fx->e = bw_edge_new(g_io, &fx->cfg, err, sizeof err);
    assert_non_null(fx->e);
    assert_int_equal(uv_tcp_getsockname(&fx->e->agents, (struct sockaddr *)&fx->agent_addr, &len),
                     0);

    agent_start(fx, &fx->a);
    assert_string_equal(bw_msg_str(auth(fx, &fx->a, TOKEN, first), "client_id"), first);
    snprintf(addr, sizeof addr, "localhost:%d", port);
    assert_string_equal(bw_msg_str(bind_msg(fx, &fx->a, "r1", "tcp", addr), "error"), "");
}

static int group_setup(void **state)
{
    if (uv_loop_init(&g_loop) != 0 || !(g_io = bw_io_new(&g_loop)))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    bw_io_free(g_io);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&g_loop), 0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_bounded, setup_short_handshake, teardown),
        cmocka_unit_test_setup_teardown(test_auth_deadline_counts_from_handshake, setup_short_auth,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_token_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_major_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_copy_oom_ends_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_auths_lock_out_the_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_after_refusal_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_before_auth_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_auth_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_conn_unbind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_binds_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_bind_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_without_req_id_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_keeps_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_client_id_not_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reservations_survive_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_reservations_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_reservations_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_reserved_port_first_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
