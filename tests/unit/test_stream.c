/* Streams and joins over real loopback TCP on a libuv loop: byte-exact
 * forwarding, half-close, backpressure bounds, and the yamux adapter's held
 * input and window crediting. Client traffic comes from a plain blocking
 * socket in a second thread, as a real peer would send it.
 *
 * Over 600 lines: one test program per module, as tests/unit/meson.build
 * builds them; its cases share the fixtures above them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <uv.h>

#include "mux_wire.h"
#include "stream.h"
#include "tls.h"
#include "yamux.h"

static uv_loop_t loop;
static bw_io_t *io;

/* ---- an echo service made of bw_streams ---- */

typedef struct echo {
    uv_tcp_t server;
    int port;
    bw_stream_t *last;
} echo_t;

static void echo_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    if (bw_stream_write(s, data, len) == BW_EAGAIN)
        bw_stream_read_stop(s);
}

static void echo_drain(bw_stream_t *s, void *ud)
{
    bw_stream_read_start(s);
}

static void echo_eof(bw_stream_t *s, void *ud)
{
    bw_stream_close(s, 0); /* flushes what is queued, then FIN */
}

static void echo_error(bw_stream_t *s, void *ud, int err)
{
    bw_stream_close(s, 1);
}

static const bw_stream_cbs_t echo_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = echo_read,
    .on_eof = echo_eof,
    .on_drain = echo_drain,
    .on_error = echo_error,
};

static void echo_conn(uv_stream_t *server, int status)
{
    echo_t *e = (echo_t *)server;
    bw_stream_t *s = bw_stream_tcp_new(io);
    assert_int_equal(uv_accept(server, (uv_stream_t *)bw_stream_tcp_handle(s)), 0);
    bw_stream_tcp_ready(s);
    e->last = s;
    bw_stream_set_callbacks(s, &echo_cbs, e);
}

static int listen_on(uv_tcp_t *h, uv_connection_cb cb)
{
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_init(&loop, h);
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(h, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)h, 64, cb), 0);
    uv_tcp_getsockname(h, (struct sockaddr *)&ss, &len);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- a proxy: accept, connect to the echo service, join ---- */

typedef struct proxy {
    uv_tcp_t server;
    int target_port;
    int joins_done;
    int last_err;
    uint64_t bytes_in, bytes_out;
    bw_stream_t *pending_pub;
    bw_stream_t *upstream; /* not owned: for queued() checks while joined */
} proxy_t;

static void joined(void *ud, int err, uint64_t in, uint64_t out)
{
    proxy_t *p = ud;
    p->joins_done++;
    p->last_err = err;
    p->bytes_in = in;
    p->bytes_out = out;
    p->upstream = NULL;
}

static void proxy_connected(void *ud, bw_stream_t *s, int status)
{
    proxy_t *p = ud;
    assert_int_equal(status, 0);
    p->upstream = s;
    assert_int_equal(bw_stream_join(p->pending_pub, s, joined, p), 0);
}

static void proxy_conn(uv_stream_t *server, int status)
{
    proxy_t *p = (proxy_t *)server;
    bw_stream_t *s = bw_stream_tcp_new(io);
    assert_int_equal(uv_accept(server, (uv_stream_t *)bw_stream_tcp_handle(s)), 0);
    bw_stream_tcp_ready(s);
    p->pending_pub = s;
    assert_int_equal(bw_stream_tcp_connect(io, "localhost", p->target_port, proxy_connected, p), 0);
}

/* ---- the client thread ---- */

typedef struct client {
    int port;
    size_t n;
    size_t pause_after; /* stop reading after this many bytes for pause_ms */
    unsigned pause_ms;
    int ok;
    size_t got;
    atomic_int done; /* the thread finished (successfully or not) */
} client_t;

/* No blocking call of a client thread waits longer than this: a stalled
 * proxy fails the test with a message instead of hanging it. */
#define IO_TIMEOUT_S 60

static int client_socket(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *client_main(void *arg)
{
    client_t *c = arg;
    uint8_t *out = malloc(c->n), *in = malloc(c->n);
    for (size_t i = 0; i < c->n; i++)
        out[i] = (uint8_t)(i * 2654435761u >> 13);
    int fd = client_socket(c->port);
    if (fd < 0)
        goto out;
    /* Send in chunks, reading as we go so neither side deadlocks; during
     * the pause keep sending but read nothing, like a stalled client. */
    size_t sent = 0;
    int paused = 0;
    struct timespec until = {0};
    while (sent < c->n || c->got < c->n) {
        if (sent < c->n) {
            ssize_t w =
                send(fd, out + sent, c->n - sent > 65536 ? 65536 : c->n - sent, MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
            if (sent == c->n)
                shutdown(fd, SHUT_WR);
        }
        if (c->pause_after && !paused && c->got >= c->pause_after) {
            paused = 1;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += c->pause_ms / 1000;
        }
        if (paused == 1) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec < until.tv_sec) {
                usleep(1000);
                continue;
            }
            paused = 2;
        }
        ssize_t r = recv(fd, in + c->got, c->n - c->got, sent < c->n ? MSG_DONTWAIT : 0);
        if (r == 0)
            break;
        if (r > 0)
            c->got += (size_t)r;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break;
        else if (sent == c->n)
            break; /* a blocking recv timed out: the proxy stalled */
    }
    char extra;
    c->ok = c->got == c->n && memcmp(in, out, c->n) == 0 && recv(fd, &extra, 1, 0) == 0;
out:
    if (fd >= 0)
        close(fd);
    free(out);
    free(in);
    atomic_store(&c->done, 1);
    return NULL;
}

static void guard_tick(uv_timer_t *t)
{
    (void)t; /* only wakes the loop so the deadline is checked */
}

/* Run the loop until *flag is set and, when `thread_done` is given, the
 * client thread has finished too: a join that ended may still hold bytes
 * for the client, which only a running loop delivers. Fails the test after
 * IO_TIMEOUT_S instead of hanging. */
static void run_until(const int *flag, atomic_int *thread_done, const char *what)
{
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, guard_tick, 10, 10);
    uint64_t deadline = uv_now(&loop) + IO_TIMEOUT_S * 1000u;
    while (!*flag || (thread_done && !atomic_load(thread_done))) {
        if (uv_now(&loop) > deadline) {
            uv_close((uv_handle_t *)&guard, NULL);
            fail_msg("still waiting after %d s for %s (loop flag %d, client thread %s)",
                     IO_TIMEOUT_S, what, *flag,
                     thread_done && !atomic_load(thread_done) ? "running" : "done");
        }
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void join_forwards_byte_exact_with_half_close(void **state)
{
    echo_t echo = {0};
    proxy_t proxy = {0};
    echo.port = listen_on(&echo.server, echo_conn);
    proxy.target_port = echo.port;
    int pport = listen_on(&proxy.server, proxy_conn);
    client_t c = {.port = pport, .n = 8u << 20};
    pthread_t th;
    pthread_create(&th, NULL, client_main, &c);
    run_until(&proxy.joins_done, &c.done, "the join and the client to finish");
    pthread_join(th, NULL);
    assert_true(c.ok);
    assert_int_equal(proxy.last_err, 0);
    assert_int_equal(proxy.bytes_in, c.n);
    assert_int_equal(proxy.bytes_out, c.n);
    uv_close((uv_handle_t *)&echo.server, NULL);
    uv_close((uv_handle_t *)&proxy.server, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* A client that stops reading: the join must stop reading the echo side, so
 * the queue towards the client stays near the high-water mark instead of
 * growing with everything the echo service sends. */
typedef struct watch {
    uv_timer_t t;
    proxy_t *p;
    size_t peak;
} watch_t;

static void watch_tick(uv_timer_t *t)
{
    watch_t *w = (watch_t *)t;
    /* The public side is pending_pub; the join writes into it. */
    if (w->p->upstream && w->p->pending_pub) {
        size_t q = bw_stream_queued(w->p->pending_pub);
        if (q > w->peak)
            w->peak = q;
    }
}

static void join_bounds_memory_when_reader_stalls(void **state)
{
    echo_t echo = {0};
    proxy_t proxy = {0};
    watch_t w = {.p = &proxy};
    echo.port = listen_on(&echo.server, echo_conn);
    proxy.target_port = echo.port;
    int pport = listen_on(&proxy.server, proxy_conn);
    client_t c = {.port = pport, .n = 48u << 20, .pause_after = 1u << 20, .pause_ms = 2000};
    uv_timer_init(&loop, &w.t);
    uv_timer_start(&w.t, watch_tick, 1, 1);
    pthread_t th;
    pthread_create(&th, NULL, client_main, &c);
    run_until(&proxy.joins_done, &c.done, "the join and the stalled client to finish");
    pthread_join(th, NULL);
    assert_true(c.ok);
    /* High-water mark plus at most one read buffer beyond it. */
    assert_true(w.peak <= BW_STREAM_HWM + 64 * 1024);
    assert_true(w.peak > 0); /* the stall really did queue something */
    uv_close((uv_handle_t *)&w.t, NULL);
    uv_close((uv_handle_t *)&echo.server, NULL);
    uv_close((uv_handle_t *)&proxy.server, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
}

typedef struct connect_result {
    int calls;
    int status;
} connect_result_t;

static void refused_cb(void *ud, bw_stream_t *s, int status)
{
    connect_result_t *r = ud;
    r->calls++;
    r->status = status;
    assert_null(s);
}

static void connect_refused_reports_once(void **state)
{
    connect_result_t r = {0};
    uv_tcp_t h;
    int port = listen_on(&h, echo_conn);
    uv_close((uv_handle_t *)&h, NULL); /* nothing listens there any more */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(bw_stream_tcp_connect(io, "127.0.0.1", port, refused_cb, &r), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, BW_ECONNREFUSED);
}

/* ---- TLS to a local service: the same connect path as TCP ---- */

typedef struct v6_tls {
    uv_tcp_t server;
    SSL_CTX *sctx;
    bw_tls_t *conn;
    int handshakes, calls, status, done;
} v6_tls_t;

static void v6_handshake(bw_tls_t *t, void *ud, int status)
{
    v6_tls_t *v = ud;
    if (status == 0)
        v->handshakes++;
}

static void v6_gone(bw_tls_t *t, void *ud)
{
    bw_tls_close(t);
}

static void v6_error(bw_tls_t *t, void *ud, int err)
{
    bw_tls_close(t);
}

static void v6_closed(bw_tls_t *t, void *ud)
{
    v6_tls_t *v = ud;
    v->conn = NULL;
    v->done = 1;
}

static const bw_tls_cbs_t v6_cbs = {
    .on_handshake = v6_handshake,
    .on_eof = v6_gone,
    .on_error = v6_error,
    .on_close = v6_closed,
};

static void v6_conn(uv_stream_t *server, int status)
{
    v6_tls_t *v = BW_CONTAINER_OF(server, v6_tls_t, server);
    assert_int_equal(status, 0);
    v->conn = bw_tls_new(&loop, v->sctx, 1, NULL, &v6_cbs, v);
    assert_non_null(v->conn);
    assert_int_equal(uv_accept(server, (uv_stream_t *)bw_tls_tcp(v->conn)), 0);
    assert_int_equal(bw_tls_start(v->conn), 0);
}

static void v6_connected(void *ud, bw_stream_t *s, int status)
{
    v6_tls_t *v = ud;
    v->calls++;
    v->status = status;
    if (s)
        bw_stream_close(s, 0);
    else
        v->done = 1;
}

/* "localhost" means 127.0.0.1, then ::1, for TLS exactly as for TCP: a
 * service that listens on ::1 only is reached. */
static void tls_connect_localhost_falls_back_to_v6(void **state)
{
    char dir[] = "/tmp/bw-test-stream-XXXXXX", cert[64], key[64], err[256];
    const char *names[] = {"localhost", NULL};
    int created;
    v6_tls_t v = {0};
    struct sockaddr_in6 a6;
    struct sockaddr_storage ss;
    int len = sizeof ss;

    uv_tcp_init(&loop, &v.server);
    uv_ip6_addr("::1", 0, &a6);
    if (uv_tcp_bind(&v.server, (struct sockaddr *)&a6, UV_TCP_IPV6ONLY) != 0 ||
        uv_listen((uv_stream_t *)&v.server, 8, v6_conn) != 0) {
        uv_close((uv_handle_t *)&v.server, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        skip(); /* no IPv6 loopback here */
    }
    uv_tcp_getsockname(&v.server, (struct sockaddr *)&ss, &len);
    int port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);

    assert_non_null(mkdtemp(dir));
    assert_int_equal(bw_tls_dev_certs(dir, names, &created, err, sizeof err), 0);
    snprintf(cert, sizeof cert, "%s/server.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    v.sctx = bw_tls_server_ctx(cert, key, err, sizeof err);
    assert_non_null(v.sctx);

    assert_int_equal(bw_stream_tls_connect(io, "localhost", port, 0, v6_connected, &v), 0);
    run_until(&v.done, NULL, "the TLS connection over ::1 to end");
    uv_close((uv_handle_t *)&v.server, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    SSL_CTX_free(v.sctx);

    assert_int_equal(v.calls, 1);
    assert_int_equal(v.status, 0);
    assert_int_equal(v.handshakes, 1);
    const char *files[] = {"server.pem", "server.key", "ca.pem", "ca.key"};
    for (size_t i = 0; i < BW_ARRAY_SIZE(files); i++) {
        snprintf(cert, sizeof cert, "%s/%s", dir, files[i]);
        unlink(cert);
    }
    rmdir(dir);
}

/* ---- yamux adapter: two engines wired back to back in memory ---- */

static bw_stream_t *g_accepted;

/* As the agent does: wrap the peer's stream before returning. */
static void on_stream(void *ud, bw_mux_stream_t *s)
{
    g_accepted = bw_stream_mux_new(io, s, "1.2.3.4:5");
}

typedef struct sink {
    size_t got;
    int eof;
    char first[16];
} sink_t;

static void sink_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    sink_t *k = ud;
    if (k->got < sizeof k->first - 1) {
        size_t n = len < sizeof k->first - 1 - k->got ? len : sizeof k->first - 1 - k->got;
        memcpy(k->first + k->got, data, n);
    }
    k->got += len;
}

static void sink_eof(bw_stream_t *s, void *ud)
{
    ((sink_t *)ud)->eof = 1;
}

static const bw_stream_cbs_t sink_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = sink_read,
    .on_eof = sink_eof,
};

static void mux_adapter_holds_input_while_paused(void **state)
{
    wire_t to_srv = {0}, to_cli = {0};
    bw_mux_config_t cc, sc;
    bw_mux_config_default(&cc, 1);
    bw_mux_config_default(&sc, 0);
    bw_mux_callbacks_t ccb = {.send = wire_send, .send_queued = wire_queued};
    bw_mux_callbacks_t scb = {
        .send = wire_send, .send_queued = wire_queued, .on_stream = on_stream};
    bw_mux_t *cli = bw_mux_new(&cc, &ccb, &to_srv);
    bw_mux_t *srv = bw_mux_new(&sc, &scb, &to_cli);
    to_srv.peer = srv;
    to_cli.peer = cli;

    bw_mux_stream_t *ms = bw_mux_stream_open(cli);
    assert_int_equal(bw_mux_stream_write(ms, "hello", 5), 0);
    pump(&to_srv, &to_cli);
    assert_non_null(g_accepted);
    bw_stream_t *s = g_accepted;
    assert_string_equal(bw_stream_peer(s), "1.2.3.4:5");
    /* Bytes that came before any callbacks were held; a prefix is unread
     * in front of them, as the agent does after the Conn header. */
    assert_int_equal(bw_stream_unread(s, ">", 1), 0);
    sink_t k = {0};
    bw_stream_set_callbacks(s, &sink_cbs, &k);
    assert_int_equal(k.got, 0); /* delivered on a later loop turn, never inline */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(k.got, 6);
    assert_string_equal(k.first, ">hello");

    /* Paused: a full window arrives and is held, not credited, so the
     * sender's window is exhausted and its writes queue. */
    bw_stream_read_stop(s);
    static uint8_t big[BW_MUX_INITIAL_WINDOW];
    bw_mux_stream_write(ms, big, sizeof big);
    pump(&to_srv, &to_cli);
    assert_int_equal(k.got, 6);
    bw_mux_stream_write(ms, "x", 1);
    pump(&to_srv, &to_cli);
    /* "hello" is not credited back yet (updates are batched), so 5 bytes of
     * the big write and the "x" wait for the window. */
    assert_int_equal(bw_mux_stream_pending(ms), 6);
    bw_stream_read_start(s);
    uv_run(&loop, UV_RUN_NOWAIT);
    pump(&to_srv, &to_cli); /* window update flows back, "x" follows */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(k.got, 6 + sizeof big + 1);
    bw_mux_stream_shutdown(ms);
    pump(&to_srv, &to_cli);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_true(k.eof);
    bw_stream_close(s, 0);
    bw_mux_stream_close(ms);
    pump(&to_srv, &to_cli);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(bw_mux_stream_count(srv), 0);
    bw_mux_free(cli);
    bw_mux_free(srv);
    free(to_srv.buf);
    free(to_cli.buf);
}

/* ---- yamux adapter: the transport ends before the owner closes ---- */

typedef wire_pair_t mux_pair_t;

static void mux_pair_open(mux_pair_t *p)
{
    wire_pair_open(p, on_stream);
    g_accepted = NULL;
}

static void mux_pair_close(mux_pair_t *p)
{
    pump(&p->to_srv, &p->to_cli);
    uv_run(&loop, UV_RUN_NOWAIT);
    wire_pair_free(p);
}

typedef struct watcher {
    sink_t k;
    int errors, err;
} watcher_t;

static void watcher_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    sink_read(s, &((watcher_t *)ud)->k, data, len);
}

static void watcher_eof(bw_stream_t *s, void *ud)
{
    ((watcher_t *)ud)->k.eof = 1;
}

static void watcher_error(bw_stream_t *s, void *ud, int err)
{
    watcher_t *w = ud;
    w->errors++;
    w->err = err;
}

static const bw_stream_cbs_t watcher_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = watcher_read,
    .on_eof = watcher_eof,
    .on_error = watcher_error,
};

/* What the agent sees when a public client sends a few bytes and resets
 * while the plugin is still connecting to its local service: the yamux
 * stream is reset and freed before the plugin installed callbacks. The
 * plugin's pointer must stay valid; it learns of the reset once it reads. */
static void mux_stream_outlives_peer_reset_before_callbacks(void **state)
{
    mux_pair_t p;
    mux_pair_open(&p);
    bw_mux_stream_t *ms = bw_mux_stream_open(p.cli);
    assert_int_equal(bw_mux_stream_write(ms, "partial", 7), 0);
    pump(&p.to_srv, &p.to_cli);
    bw_stream_t *s = g_accepted;
    assert_non_null(s);
    bw_mux_stream_reset(ms); /* the client's RST, forwarded by the edge */
    pump(&p.to_srv, &p.to_cli);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(bw_mux_stream_count(p.srv), 0); /* the engine let go */

    /* The local connect completes: the plugin starts using the stream. */
    watcher_t w = {0};
    bw_stream_set_callbacks(s, &watcher_cbs, &w);
    assert_int_equal(bw_stream_write(s, "x", 1), BW_EPIPE);
    assert_int_equal(bw_stream_shutdown(s), BW_EPIPE);
    assert_int_equal(bw_stream_queued(s), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(w.k.got, 7);
    assert_string_equal(w.k.first, "partial");
    assert_int_equal(w.errors, 1);
    assert_int_equal(w.err, BW_ECONNRESET);
    bw_stream_close(s, 1);
    mux_pair_close(&p);
}

/* The peer's data and FIN arrive while the owner paused reading (its other
 * side is slow), so the EOF is held; the owner half-closes, and our FIN
 * completes the yamux close inside bw_stream_shutdown. The stream must
 * still deliver what it holds, then take the owner's close. */
static void mux_stream_outlives_fin_both_ways_inside_shutdown(void **state)
{
    mux_pair_t p;
    mux_pair_open(&p);
    bw_mux_stream_t *ms = bw_mux_stream_open(p.cli);
    assert_int_equal(bw_mux_stream_write(ms, "hi", 2), 0);
    pump(&p.to_srv, &p.to_cli);
    bw_stream_t *s = g_accepted;
    assert_non_null(s);
    watcher_t w = {0};
    bw_stream_set_callbacks(s, &watcher_cbs, &w);
    bw_stream_read_stop(s);
    assert_int_equal(bw_mux_stream_write(ms, " there", 6), 0);
    assert_int_equal(bw_mux_stream_shutdown(ms), 0);
    pump(&p.to_srv, &p.to_cli);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(w.k.got, 0);
    assert_false(w.k.eof);

    assert_int_equal(bw_stream_shutdown(s), 0); /* finishes the yamux stream */
    assert_int_equal(bw_mux_stream_count(p.srv), 0);
    assert_int_equal(bw_stream_write(s, "x", 1), BW_EPIPE);
    bw_stream_read_start(s);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(w.k.got, 8);
    assert_string_equal(w.k.first, "hi there");
    assert_true(w.k.eof);
    assert_int_equal(w.errors, 0);
    bw_stream_close(s, 0);
    mux_pair_close(&p); /* our FIN reaches the client: ms is finished too */
}

/* Held input is delivered on a later turn to every deferred stream in one
 * pass. A callback in that pass may close a stream still waiting in it: that
 * one gets no callbacks and is freed, and the others are still delivered. */
typedef struct closer {
    sink_t k;
    bw_stream_t *victim; /* closed from this stream's on_read */
} closer_t;

static void closer_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    closer_t *c = ud;
    sink_read(s, &c->k, data, len);
    if (c->victim) {
        bw_stream_close(c->victim, 1);
        c->victim = NULL;
    }
}

static const bw_stream_cbs_t closer_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = closer_read,
};

static void deferred_delivery_survives_closing_a_waiting_stream(void **state)
{
    mux_pair_t p;
    bw_mux_stream_t *ms[3];
    bw_stream_t *s[3];
    closer_t c[3] = {{{0}}};
    mux_pair_open(&p);
    for (int i = 0; i < 3; i++) {
        ms[i] = bw_mux_stream_open(p.cli);
        assert_int_equal(bw_mux_stream_write(ms[i], &"abc"[i], 1), 0);
        pump(&p.to_srv, &p.to_cli);
        s[i] = g_accepted;
        assert_non_null(s[i]);
    }
    /* The pass runs the most recently deferred first: s[2], then s[1]
     * (closed by s[2]'s callback before its turn), then s[0]. */
    c[2].victim = s[1];
    for (int i = 0; i < 3; i++)
        bw_stream_set_callbacks(s[i], &closer_cbs, &c[i]);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(c[2].k.got, 1);
    assert_int_equal(c[1].k.got, 0);
    assert_int_equal(c[0].k.got, 1);
    assert_string_equal(c[0].k.first, "a");
    bw_stream_close(s[0], 1);
    bw_stream_close(s[2], 1);
    for (int i = 0; i < 3; i++)
        bw_mux_stream_close(ms[i]);
    mux_pair_close(&p);
}

/* ---- write coalescing: small writes of one turn, in order, with drain ---- */

typedef struct burst {
    uv_tcp_t server;
    bw_stream_t *s;
    size_t sent, total;
    const size_t *sizes; /* piece sizes to cycle through; NULL: 64 bytes */
    size_t n_sizes, next;
    int eagain_before_drain, drained, done, timed_out;
} burst_t;

typedef struct reader {
    int port;
    size_t total;
    int ok;
    atomic_int done;
} reader_t;

static uint8_t pattern_at(size_t i)
{
    return (uint8_t)(i * 131u + (i >> 9));
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    int fd = client_socket(r->port);
    if (fd < 0) {
        atomic_store(&r->done, 1);
        return NULL;
    }
    uint8_t buf[65536];
    size_t got = 0;
    ssize_t n;
    r->ok = 1;
    /* Let the socket buffers fill first, so the writer must be pushed back. */
    struct timespec nap = {.tv_nsec = 300 * 1000 * 1000};
    nanosleep(&nap, NULL);
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pattern_at(got + (size_t)i))
                r->ok = 0;
        got += (size_t)n;
    }
    r->ok = r->ok && got == r->total;
    close(fd);
    atomic_store(&r->done, 1);
    return NULL;
}

/* Write 64-byte pieces until the stream says stop (or all is written): many
 * small writes per loop turn, which the TCP backend coalesces. */
static void burst_fill(burst_t *b)
{
    static uint8_t piece[65536];
    while (b->sent < b->total) {
        size_t want = b->sizes ? b->sizes[b->next++ % b->n_sizes] : 64;
        size_t n = b->total - b->sent < want ? b->total - b->sent : want;
        for (size_t i = 0; i < n; i++)
            piece[i] = pattern_at(b->sent + i);
        int rc = bw_stream_write(b->s, piece, n);
        assert_true(rc == 0 || rc == BW_EAGAIN);
        b->sent += n;
        if (rc == BW_EAGAIN) {
            b->eagain_before_drain += !b->drained;
            return; /* on_drain continues */
        }
    }
    bw_stream_close(b->s, 0); /* flushes, then FIN */
    b->done = 1;
}

static void burst_drain(bw_stream_t *s, void *ud)
{
    burst_t *b = ud;
    b->drained++;
    burst_fill(b);
}

static void burst_conn(uv_stream_t *server, int status)
{
    static const bw_stream_cbs_t cbs = {.struct_size = sizeof cbs, .on_drain = burst_drain};
    burst_t *b = (burst_t *)server;
    b->s = bw_stream_tcp_new(io);
    assert_int_equal(uv_accept(server, (uv_stream_t *)bw_stream_tcp_handle(b->s)), 0);
    bw_stream_tcp_ready(b->s);
    bw_stream_set_callbacks(b->s, &cbs, b);
    bw_stream_read_stop(b->s);
    burst_fill(b); /* all in this one loop turn until the stream pushes back */
}

static void burst_timeout(uv_timer_t *t)
{
    burst_t *b = t->data;
    b->timed_out = b->done = 1; /* a lost on_drain would stall forever */
}

/* Fill a pushed-back connection with b's pieces, one turn at a time, and
 * check what the reader got. */
static void run_burst(burst_t *bp)
{
    burst_t b = *bp;
    reader_t r = {.port = listen_on(&b.server, burst_conn), .total = b.total};
    pthread_t th;
    uv_timer_t watchdog;
    uv_timer_init(&loop, &watchdog);
    watchdog.data = &b;
    uv_timer_start(&watchdog, burst_timeout, 20000, 0);
    pthread_create(&th, NULL, reader_main, &r);
    run_until(&b.done, NULL, "the writer to finish");
    uv_close((uv_handle_t *)&watchdog, NULL);
    assert_false(b.timed_out);
    uv_close((uv_handle_t *)&b.server, NULL);
    /* The close flushes, the reader sees EOF. */
    run_until(&b.done, &r.done, "the reader to see everything");
    pthread_join(th, NULL);
    assert_true(r.ok);
    /* The writer was stopped and resumed by on_drain, not left waiting. */
    assert_true(b.eagain_before_drain >= 1);
    assert_true(b.drained >= 1);
}

static void small_writes_coalesce_in_order_and_drain(void **state)
{
    burst_t b = {.total = 32u << 20};
    run_burst(&b);
}

/* Writes of every size in one turn: the cork buffer grows from its first
 * size, a write that overflows it leaves together with it, large writes go
 * straight out; the bytes arrive in order either way. */
static void mixed_writes_keep_order(void **state)
{
    static const size_t sizes[] = {1, 700, 2100, 5000, 9000, 16384, 17000, 100, 65536, 3, 1500};
    burst_t b = {.total = 16u << 20, .sizes = sizes, .n_sizes = sizeof sizes / sizeof *sizes};
    run_burst(&b);
}

static int setup(void **state)
{
    uv_loop_init(&loop);
    io = bw_io_new(&loop);
    return io ? 0 : -1;
}

/* uv_default_loop() returns NULL when libuv cannot allocate; the mains pass
 * its result on, so a NULL loop must be a plain failure (found by the
 * allocation-failure torture, tests/oom). */
static void io_new_refuses_null_loop(void **state)
{
    (void)state;
    assert_null(bw_io_new(NULL));
}

static int teardown(void **state)
{
    bw_io_free(io);
    bw_stream_tls_done();
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(join_forwards_byte_exact_with_half_close),
        cmocka_unit_test(small_writes_coalesce_in_order_and_drain),
        cmocka_unit_test(mixed_writes_keep_order),
        cmocka_unit_test(join_bounds_memory_when_reader_stalls),
        cmocka_unit_test(connect_refused_reports_once),
        cmocka_unit_test(tls_connect_localhost_falls_back_to_v6),
        cmocka_unit_test(mux_adapter_holds_input_while_paused),
        cmocka_unit_test(mux_stream_outlives_peer_reset_before_callbacks),
        cmocka_unit_test(mux_stream_outlives_fin_both_ways_inside_shutdown),
        cmocka_unit_test(deferred_delivery_survives_closing_a_waiting_stream),
        cmocka_unit_test(io_new_refuses_null_loop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
