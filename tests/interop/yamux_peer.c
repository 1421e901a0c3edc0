/* yamux_peer: burrow's yamux engine on a plain TCP socket, as the C side of
 * the interop test against hashicorp/yamux (tests/interop/yamux_go).
 *
 *   yamux_peer server                listen on 127.0.0.1:0, print "PORT <n>",
 *                                    accept one connection, echo every stream
 *                                    and half-close after the peer's FIN
 *   yamux_peer client ADDR N SIZE... open N streams; stream i sends SIZE[i%k]
 *                                    pseudo-random bytes, half-closes, and
 *                                    checks every echoed byte and the EOF
 *
 * Both print one summary line ("OK ..." or "FAIL ...") and exit 0 only when
 * every stream ended with FIN both ways and nothing went wrong. The summary
 * carries the largest receive window we advertised, so the driver can check
 * that the reference implementation accepted windows grown past 256 KiB.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "burrow/error.h"
#include "yamux.h"

#define WRITE_CHUNK (64u * 1024u)
#define TIMEOUT_MS  (300u * 1000u)

typedef struct peer {
    uv_loop_t *loop;
    uv_tcp_t listener, tcp;
    uv_shutdown_t shut;
    uv_timer_t timer;
    bw_mux_t *m;
    bool is_client, tcp_open, closing;
    int nstreams, nsizes;
    uint64_t *sizes;
    int accepted, ended, clean, errors;
    uint32_t max_window;
    uint64_t rtt_ns;
    int pongs;
} peer_t;

typedef struct pstream {
    peer_t *p;
    bw_mux_stream_t *s;
    uint64_t size, sent, recvd;
    uint64_t tx, rx; /* generator states */
    size_t owed;     /* server: received, credited once echoed */
    bool eof;
} pstream_t;

typedef struct wreq {
    uv_write_t req;
    peer_t *p;
    uint8_t data[];
} wreq_t;

static uint8_t read_buf[256 * 1024];
static uint8_t gen_buf[WRITE_CHUNK];

static void fail(peer_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void peer_close(peer_t *p);

static void fail(peer_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("yamux_peer: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    p->errors++;
}

/* A byte stream every run reproduces: splitmix64 of the position. */
static void gen(uint64_t seed, uint64_t pos, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++, pos++) {
        uint64_t z = seed + (pos >> 3) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        out[i] = (uint8_t)(z >> (8 * (pos & 7)));
    }
}

/* ---- transport ---- */

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    peer_t *p = w->p;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        fail(p, "write: %s", uv_strerror(status));
    if (p->m && !p->closing)
        bw_mux_transport_drained(p->m);
}

/* Write what the socket takes at once, copy the rest into one request. */
static int tr_send(void *ud, const void *const *bufs, const size_t *lens, unsigned n)
{
    peer_t *p = ud;
    uv_buf_t ub[16];
    size_t total = 0, done = 0;
    if (!p->tcp_open || p->closing || n > 16)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        ub[i] = uv_buf_init((char *)bufs[i], (unsigned)lens[i]);
        total += lens[i];
    }
    if (p->tcp.write_queue_size == 0) {
        int r = uv_try_write((uv_stream_t *)&p->tcp, ub, n);
        if (r < 0 && r != UV_EAGAIN)
            return -1;
        done = r > 0 ? (size_t)r : 0;
    }
    if (done == total)
        return 0;
    wreq_t *w = malloc(sizeof *w + total - done);
    if (!w)
        return -1;
    w->p = p;
    size_t off = 0, skip = done;
    for (unsigned i = 0; i < n; i++) {
        size_t k = lens[i] > skip ? lens[i] - skip : 0;
        memcpy(w->data + off, (const uint8_t *)bufs[i] + (lens[i] - k), k);
        skip = skip > lens[i] ? skip - lens[i] : 0;
        off += k;
    }
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)off);
    if (uv_write(&w->req, (uv_stream_t *)&p->tcp, &b, 1, on_written) < 0) {
        free(w);
        return -1;
    }
    return 0;
}

static size_t tr_queued(void *ud)
{
    return ((peer_t *)ud)->tcp.write_queue_size;
}

/* ---- streams ---- */

static void note_window(pstream_t *ps)
{
    uint32_t w = bw_mux_stream_recv_window_max(ps->s);
    if (w > ps->p->max_window)
        ps->p->max_window = w;
}

static void stream_ended(pstream_t *ps, int err);

static void client_write_more(pstream_t *ps)
{
    while (ps->sent < ps->size) {
        size_t n = ps->size - ps->sent < WRITE_CHUNK ? ps->size - ps->sent : WRITE_CHUNK;
        gen(ps->tx, ps->sent, gen_buf, n);
        int rc = bw_mux_stream_write(ps->s, gen_buf, n);
        if (rc < 0 && rc != BW_EAGAIN) {
            fail(ps->p, "stream %u: write: %d", bw_mux_stream_id(ps->s), rc);
            return;
        }
        ps->sent += n;
        if (rc == BW_EAGAIN)
            return; /* on_drain resumes */
    }
    if (bw_mux_stream_shutdown(ps->s) < 0)
        fail(ps->p, "stream %u: shutdown failed", bw_mux_stream_id(ps->s));
}

static void client_on_data(bw_mux_stream_t *s, void *ud, const uint8_t *d, size_t n)
{
    pstream_t *ps = ud;
    uint8_t want[4096];
    for (size_t off = 0; off < n;) {
        size_t k = n - off < sizeof want ? n - off : sizeof want;
        gen(ps->rx, ps->recvd + off, want, k);
        if (memcmp(want, d + off, k) != 0) {
            fail(ps->p, "stream %u: echo differs near byte %" PRIu64, bw_mux_stream_id(s),
                 ps->recvd + off);
            bw_mux_stream_reset(s);
            stream_ended(ps, BW_EPROTO);
            return;
        }
        off += k;
    }
    ps->recvd += n;
    bw_mux_stream_consumed(s, n);
}

static void client_on_eof(bw_mux_stream_t *s, void *ud)
{
    pstream_t *ps = ud;
    ps->eof = true;
    if (ps->recvd != ps->size)
        fail(ps->p, "stream %u: EOF after %" PRIu64 " of %" PRIu64 " bytes", bw_mux_stream_id(s),
             ps->recvd, ps->size);
}

static void client_on_drain(bw_mux_stream_t *s, void *ud)
{
    (void)s;
    client_write_more(ud);
}

static void stream_ended(pstream_t *ps, int err)
{
    peer_t *p = ps->p;
    note_window(ps);
    bool ok = err == 0 && ps->eof && (!p->is_client || ps->sent == ps->size);
    if (ok)
        p->clean++;
    else
        fail(p, "stream %u ended with %d (eof %d)", bw_mux_stream_id(ps->s), err, ps->eof);
    p->ended++;
    free(ps);
    if (p->is_client && p->ended == p->nstreams)
        peer_close(p);
}

static void on_stream_close(bw_mux_stream_t *s, void *ud, int err)
{
    (void)s;
    stream_ended(ud, err);
}

static const bw_mux_stream_cbs_t client_cbs = {client_on_data, client_on_eof, client_on_drain,
                                               on_stream_close};

/* Echo: credit the peer only for bytes our own send side took without
 * pushing back, so a slow reader on our side slows the sender. */
static void server_on_data(bw_mux_stream_t *s, void *ud, const uint8_t *d, size_t n)
{
    pstream_t *ps = ud;
    int rc = bw_mux_stream_write(s, d, n);
    if (rc == 0 && ps->owed == 0) {
        bw_mux_stream_consumed(s, n);
        return;
    }
    if (rc < 0 && rc != BW_EAGAIN)
        fail(ps->p, "stream %u: echo write: %d", bw_mux_stream_id(s), rc);
    ps->owed += n;
}

static void server_on_drain(bw_mux_stream_t *s, void *ud)
{
    pstream_t *ps = ud;
    bw_mux_stream_consumed(s, ps->owed);
    ps->owed = 0;
}

static void server_on_eof(bw_mux_stream_t *s, void *ud)
{
    pstream_t *ps = ud;
    ps->eof = true;
    bw_mux_stream_shutdown(s);
}

static const bw_mux_stream_cbs_t server_cbs = {server_on_data, server_on_eof, server_on_drain,
                                               on_stream_close};

static pstream_t *pstream_new(peer_t *p, bw_mux_stream_t *s, uint64_t size, uint64_t seed)
{
    pstream_t *ps = calloc(1, sizeof *ps);
    if (!ps)
        return NULL;
    ps->p = p;
    ps->s = s;
    ps->size = size;
    ps->tx = ps->rx = seed;
    return ps;
}

static void on_stream(void *ud, bw_mux_stream_t *s)
{
    peer_t *p = ud;
    pstream_t *ps = p->is_client ? NULL : pstream_new(p, s, 0, 0);
    if (!ps) {
        bw_mux_stream_reset(s);
        return;
    }
    p->accepted++;
    bw_mux_stream_set_callbacks(s, &server_cbs, ps);
}

static void on_pong(void *ud, uint64_t rtt)
{
    peer_t *p = ud;
    p->pongs++;
    p->rtt_ns = rtt;
}

static void on_go_away(void *ud, uint32_t code)
{
    if (code != BW_MUX_GOAWAY_NORMAL)
        fail(ud, "go-away %u from the peer", code);
}

/* ---- session ---- */

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    peer_t *p = st->data;
    (void)buf;
    if (n == UV_EOF) {
        if (p->is_client)
            fail(p, "connection closed early");
        peer_close(p);
        return;
    }
    if (n < 0) {
        fail(p, "read: %s", uv_strerror((int)n));
        peer_close(p);
        return;
    }
    if (n > 0 && bw_mux_input(p->m, read_buf, (size_t)n) < 0) {
        fail(p, "protocol failure: %s", bw_mux_error(p->m));
        peer_close(p);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    *buf = uv_buf_init((char *)read_buf, sizeof read_buf);
}

static void on_tcp_closed(uv_handle_t *h)
{
    peer_t *p = h->data;
    /* Streams still open now never finished: bw_mux_free reports them. */
    bw_mux_free(p->m);
    p->m = NULL;
    uv_close((uv_handle_t *)&p->timer, NULL);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    peer_t *p = req->data;
    (void)status;
    uv_close((uv_handle_t *)&p->tcp, on_tcp_closed);
}

/* Flush what is queued, then close; safe from inside engine callbacks. */
static void peer_close(peer_t *p)
{
    if (p->closing || !p->tcp_open)
        return;
    p->closing = true;
    uv_read_stop((uv_stream_t *)&p->tcp);
    p->shut.data = p;
    if (uv_shutdown(&p->shut, (uv_stream_t *)&p->tcp, on_shutdown) < 0)
        uv_close((uv_handle_t *)&p->tcp, on_tcp_closed);
}

static void on_timeout(uv_timer_t *t)
{
    peer_t *p = t->data;
    fail(p, "timed out (%d of %d streams ended)", p->ended, p->nstreams);
    peer_close(p);
}

/* YAMUX_PEER_CLOCK_DIV=k runs the engine's clock k times slower, so every
 * window looks consumed "fast" and auto-tuning deterministically grows the
 * windows to the ceiling: the driver uses it to prove that the reference
 * implementation accepts (and uses) windows far beyond 256 KiB. */
static uint64_t clock_div = 1;

static uint64_t slow_clock(void *ud)
{
    (void)ud;
    return uv_hrtime() / clock_div;
}

static int start_session(peer_t *p)
{
    static bw_mux_callbacks_t cbs = {tr_send, tr_queued, on_stream, on_pong, on_go_away, NULL};
    const char *div = getenv("YAMUX_PEER_CLOCK_DIV");
    if (div && strtoull(div, NULL, 10) > 1) {
        clock_div = strtoull(div, NULL, 10);
        cbs.now_ns = slow_clock;
    }
    bw_mux_config_t cfg;
    bw_mux_config_default(&cfg, p->is_client);
    p->m = bw_mux_new(&cfg, &cbs, p);
    if (!p->m)
        return BW_ENOMEM;
    p->tcp_open = true;
    p->tcp.data = p;
    uv_tcp_nodelay(&p->tcp, 1);
    return uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
}

static void client_open_all(peer_t *p)
{
    if (bw_mux_ping(p->m) < 0)
        fail(p, "ping failed");
    for (int i = 0; i < p->nstreams; i++) {
        bw_mux_stream_t *s = bw_mux_stream_open(p->m);
        pstream_t *ps = s ? pstream_new(p, s, p->sizes[i % p->nsizes], (uint64_t)i + 1) : NULL;
        if (!ps) {
            fail(p, "cannot open stream %d", i);
            p->ended++;
            continue;
        }
        bw_mux_stream_set_callbacks(s, &client_cbs, ps);
        client_write_more(ps);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    peer_t *p = req->data;
    free(req);
    if (status < 0) {
        fail(p, "connect: %s", uv_strerror(status));
        uv_close((uv_handle_t *)&p->tcp, NULL);
        uv_close((uv_handle_t *)&p->timer, NULL);
        return;
    }
    if (start_session(p) < 0) {
        fail(p, "cannot start the session");
        return;
    }
    client_open_all(p);
}

static void on_connection(uv_stream_t *l, int status)
{
    peer_t *p = l->data;
    if (status < 0 || uv_accept(l, (uv_stream_t *)&p->tcp) < 0) {
        fail(p, "accept failed");
        uv_close((uv_handle_t *)&p->timer, NULL);
    } else if (start_session(p) < 0) {
        fail(p, "cannot start the session");
    }
    uv_close((uv_handle_t *)&p->listener, NULL);
}

static int run_server(peer_t *p)
{
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(p->loop, &p->listener);
    p->listener.data = p;
    if (uv_tcp_bind(&p->listener, (struct sockaddr *)&sa, 0) < 0 ||
        uv_listen((uv_stream_t *)&p->listener, 1, on_connection) < 0 ||
        uv_tcp_getsockname(&p->listener, (struct sockaddr *)&bound, &len) < 0)
        return -1;
    printf("PORT %d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
    fflush(stdout);
    return 0;
}

static int run_client(peer_t *p, const char *addr)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct sockaddr_in sa;
    if (uv_ip4_addr(host, (int)strtol(colon + 1, NULL, 10), &sa) < 0)
        return -1;
    uv_connect_t *req = malloc(sizeof *req);
    if (!req)
        return -1;
    req->data = p;
    if (uv_tcp_connect(req, &p->tcp, (struct sockaddr *)&sa, on_connect) < 0) {
        free(req);
        return -1;
    }
    return 0;
}

static int parse_args(peer_t *p, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "server") == 0)
        return 0;
    if (argc < 5 || strcmp(argv[1], "client") != 0)
        return -1;
    p->is_client = true;
    p->nstreams = (int)strtol(argv[3], NULL, 10);
    p->nsizes = argc - 4;
    p->sizes = calloc((size_t)p->nsizes, sizeof *p->sizes);
    if (!p->sizes || p->nstreams <= 0)
        return -1;
    for (int i = 0; i < p->nsizes; i++)
        p->sizes[i] = strtoull(argv[4 + i], NULL, 10);
    return 0;
}

static int report(const peer_t *p)
{
    bool ok = p->errors == 0 && (p->is_client ? p->clean == p->nstreams && p->pongs > 0
                                              : p->accepted > 0 && p->clean == p->accepted);
    printf("%s mode=%s streams=%d clean=%d errors=%d maxwin=%" PRIu32 " rtt_us=%" PRIu64 "\n",
           ok ? "OK" : "FAIL", p->is_client ? "client" : "server",
           p->is_client ? p->nstreams : p->accepted, p->clean, p->errors, p->max_window,
           p->rtt_ns / 1000);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    peer_t p = {0};
    int rc = 2;
    if (parse_args(&p, argc, argv) < 0) {
        fprintf(stderr, "usage: yamux_peer server | client ADDR N SIZE...\n");
        goto out;
    }
    p.loop = uv_default_loop();
    uv_tcp_init(p.loop, &p.tcp);
    uv_timer_init(p.loop, &p.timer);
    p.timer.data = &p;
    uv_timer_start(&p.timer, on_timeout, TIMEOUT_MS, 0);
    if ((p.is_client ? run_client(&p, argv[2]) : run_server(&p)) < 0) {
        fprintf(stderr, "yamux_peer: cannot %s\n", p.is_client ? "connect" : "listen");
        goto out;
    }
    uv_run(p.loop, UV_RUN_DEFAULT);
    rc = report(&p);
    uv_loop_close(p.loop);
out:
    free(p.sizes);
    return rc;
}
