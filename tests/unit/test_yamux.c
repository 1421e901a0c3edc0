/* Unit tests for the yamux engine: two engines joined by an in-memory pipe
 * (each side's send callback appends to a queue that pump() feeds to the
 * other side), plus hand-built frames for the protocol violations.
 *
 * Over 600 lines: one test program per module, as tests/unit/meson.build
 * builds them; its cases share the fixtures above them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "burrow/error.h"
#include "yamux.h"

#define MAX_CTX 64

typedef struct sctx {
    bw_mux_stream_t *s;
    uint8_t *data;
    size_t len, cap;
    int eofs, closes, close_err, drains, datas;
    bool manual_consume; /* default: consume at once */
    bool close_on_data, reset_on_data, close_on_eof;
} sctx_t;

typedef struct side {
    bw_mux_t *m;
    uint8_t *out;
    size_t out_len, out_cap;
    size_t fake_queued; /* what send_queued reports */
    int input_rc;
    sctx_t ctx[MAX_CTX];
    int nctx;
    int accepted, pongs, go_aways;
    uint64_t rtt;
    uint32_t go_away_code;
    bool reject_streams;
    bool manual_consume;
    bool greet; /* write "hi" from on_stream */
} side_t;

static uint64_t fake_now = 1000000000ull;

static uint64_t clock_cb(void *ud)
{
    (void)ud;
    return fake_now;
}

static int send_cb(void *ud, const void *const *bufs, const size_t *lens, unsigned n)
{
    side_t *sd = ud;
    for (unsigned i = 0; i < n; i++) {
        if (sd->out_len + lens[i] > sd->out_cap) {
            size_t cap = (sd->out_len + lens[i]) * 2;
            sd->out = realloc(sd->out, cap);
            assert_non_null(sd->out);
            sd->out_cap = cap;
        }
        memcpy(sd->out + sd->out_len, bufs[i], lens[i]);
        sd->out_len += lens[i];
    }
    return 0;
}

static size_t queued_cb(void *ud)
{
    return ((side_t *)ud)->fake_queued;
}

static void on_data(bw_mux_stream_t *s, void *ud, const uint8_t *d, size_t n)
{
    sctx_t *c = ud;
    c->datas++;
    if (c->len + n > c->cap) {
        c->cap = (c->len + n) * 2;
        c->data = realloc(c->data, c->cap);
        assert_non_null(c->data);
    }
    memcpy(c->data + c->len, d, n);
    c->len += n;
    if (c->close_on_data) {
        bw_mux_stream_close(s);
        return;
    }
    if (c->reset_on_data) {
        bw_mux_stream_reset(s);
        return;
    }
    if (!c->manual_consume)
        bw_mux_stream_consumed(s, n);
}

static void on_eof(bw_mux_stream_t *s, void *ud)
{
    sctx_t *c = ud;
    c->eofs++;
    if (c->close_on_eof)
        bw_mux_stream_close(s);
}

static void on_drain(bw_mux_stream_t *s, void *ud)
{
    (void)s;
    ((sctx_t *)ud)->drains++;
}

static void on_close(bw_mux_stream_t *s, void *ud, int err)
{
    sctx_t *c = ud;
    (void)s;
    c->closes++;
    c->close_err = err;
    c->s = NULL;
}

static const bw_mux_stream_cbs_t stream_cbs = {on_data, on_eof, on_drain, on_close};

static sctx_t *attach(side_t *sd, bw_mux_stream_t *s)
{
    assert_true(sd->nctx < MAX_CTX);
    assert_non_null(s);
    sctx_t *c = &sd->ctx[sd->nctx++];
    c->s = s;
    c->manual_consume = sd->manual_consume;
    bw_mux_stream_set_callbacks(s, &stream_cbs, c);
    return c;
}

static void on_stream(void *ud, bw_mux_stream_t *s)
{
    side_t *sd = ud;
    sd->accepted++;
    if (sd->reject_streams) {
        bw_mux_stream_reset(s);
        return;
    }
    attach(sd, s);
    if (sd->greet)
        assert_int_equal(bw_mux_stream_write(s, "hi", 2), 0);
}

static void on_pong(void *ud, uint64_t rtt)
{
    side_t *sd = ud;
    sd->pongs++;
    sd->rtt = rtt;
}

static void on_go_away(void *ud, uint32_t code)
{
    side_t *sd = ud;
    sd->go_aways++;
    sd->go_away_code = code;
}

static const bw_mux_callbacks_t mux_cbs = {send_cb, queued_cb,  on_stream,
                                           on_pong, on_go_away, clock_cb};

static void side_init(side_t *sd, int is_client, const bw_mux_config_t *cfg)
{
    bw_mux_config_t def;
    memset(sd, 0, sizeof *sd);
    if (!cfg) {
        bw_mux_config_default(&def, is_client);
        cfg = &def;
    }
    sd->m = bw_mux_new(cfg, &mux_cbs, sd);
    assert_non_null(sd->m);
}

static void side_free(side_t *sd)
{
    bw_mux_free(sd->m);
    for (int i = 0; i < sd->nctx; i++)
        free(sd->ctx[i].data);
    free(sd->out);
}

/* Move everything one side sent into the other; returns bytes moved. */
static size_t transfer(side_t *from, side_t *to)
{
    size_t n = from->out_len;
    if (n == 0)
        return 0;
    uint8_t *buf = from->out;
    from->out = NULL;
    from->out_len = from->out_cap = 0;
    int rc = bw_mux_input(to->m, buf, n);
    if (rc < 0)
        to->input_rc = rc;
    free(buf);
    return n;
}

static void pump(side_t *a, side_t *b)
{
    while (transfer(a, b) + transfer(b, a) > 0)
        ;
}

typedef struct pair {
    side_t c, s;
} pair_t;

static void pair_init(pair_t *p, const bw_mux_config_t *ccfg, const bw_mux_config_t *scfg)
{
    side_init(&p->c, 1, ccfg);
    side_init(&p->s, 0, scfg);
}

static void pair_free(pair_t *p)
{
    side_free(&p->c);
    side_free(&p->s);
}

static void fill_pattern(uint8_t *buf, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (uint8_t)(seed >> 16);
    }
}

/* Decode the i-th frame header of a byte queue that holds only headers. */
static bw_mux_header_t frame_at(const side_t *sd, size_t i)
{
    bw_mux_header_t h;
    assert_true((i + 1) * BW_MUX_HEADER_SIZE <= sd->out_len);
    assert_int_equal(bw_mux_header_decode(sd->out + i * BW_MUX_HEADER_SIZE, &h), 0);
    return h;
}

static bw_mux_header_t last_frame(const side_t *sd)
{
    bw_mux_header_t h;
    assert_true(sd->out_len >= BW_MUX_HEADER_SIZE);
    assert_int_equal(bw_mux_header_decode(sd->out + sd->out_len - BW_MUX_HEADER_SIZE, &h), 0);
    return h;
}

/* ---- tests ---- */

static void test_header_codec(void **state)
{
    (void)state;
    bw_mux_header_t h = {0, BW_MUX_TYPE_WINDOW_UPDATE, BW_MUX_FLAG_SYN | BW_MUX_FLAG_FIN,
                         0x01020304, 0xA0B0C0D0};
    uint8_t b[12];
    bw_mux_header_encode(b, &h);
    const uint8_t want[12] = {0, 1, 0, 5, 1, 2, 3, 4, 0xA0, 0xB0, 0xC0, 0xD0};
    assert_memory_equal(b, want, 12);
    bw_mux_header_t d;
    assert_int_equal(bw_mux_header_decode(b, &d), 0);
    assert_int_equal(d.type, h.type);
    assert_int_equal(d.flags, h.flags);
    assert_int_equal(d.stream_id, h.stream_id);
    assert_int_equal(d.length, h.length);
    b[0] = 1;
    assert_int_equal(bw_mux_header_decode(b, &d), BW_EPROTO);
    b[0] = 0;
    b[1] = 4;
    assert_int_equal(bw_mux_header_decode(b, &d), BW_EPROTO);
}

static void test_open_syn_ack(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    assert_int_equal(bw_mux_stream_id(s), 1);
    bw_mux_header_t h = frame_at(&p.c, 0);
    assert_int_equal(h.type, BW_MUX_TYPE_WINDOW_UPDATE);
    assert_int_equal(h.flags, BW_MUX_FLAG_SYN);
    assert_int_equal(h.stream_id, 1);
    transfer(&p.c, &p.s);
    assert_int_equal(p.s.accepted, 1);
    assert_int_equal(bw_mux_stream_id(p.s.ctx[0].s), 1);
    h = frame_at(&p.s, 0);
    assert_int_equal(h.flags, BW_MUX_FLAG_ACK);
    assert_int_equal(h.stream_id, 1);
    pump(&p.c, &p.s);
    /* second client stream is 3, server streams are even */
    bw_mux_stream_t *s3 = bw_mux_stream_open(p.c.m);
    assert_non_null(s3);
    assert_int_equal(bw_mux_stream_id(s3), 3);
    bw_mux_stream_t *s2 = bw_mux_stream_open(p.s.m);
    assert_non_null(s2);
    assert_int_equal(bw_mux_stream_id(s2), 2);
    pump(&p.c, &p.s);
    assert_int_equal(p.c.accepted, 1);
    assert_int_equal(p.s.accepted, 2);
    assert_int_equal(bw_mux_stream_count(p.c.m), 3);
    assert_int_equal(bw_mux_stream_count(p.s.m), 3);
    assert_int_equal(p.c.input_rc | p.s.input_rc, 0);
    pair_free(&p);
}

static void test_data_both_ways(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    sctx_t *cc = attach(&p.c, s);
    assert_int_equal(bw_mux_stream_write(s, "hello", 5), 0);
    pump(&p.c, &p.s);
    sctx_t *sc = &p.s.ctx[0];
    assert_int_equal(sc->len, 5);
    assert_memory_equal(sc->data, "hello", 5);
    assert_int_equal(bw_mux_stream_write(sc->s, "world!", 6), 0);
    pump(&p.c, &p.s);
    assert_int_equal(cc->len, 6);
    assert_memory_equal(cc->data, "world!", 6);
    assert_int_equal(p.c.input_rc | p.s.input_rc, 0);
    pair_free(&p);
}

static void test_data_written_in_on_stream_carries_ack(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    p.c.greet = true;
    bw_mux_stream_t *s = bw_mux_stream_open(p.s.m);
    assert_non_null(s);
    sctx_t *sc = attach(&p.s, s);
    transfer(&p.s, &p.c);
    assert_int_equal(p.c.accepted, 1);
    /* the ACK rides on the data frame; no separate window update */
    assert_int_equal(p.c.out_len, BW_MUX_HEADER_SIZE + 2);
    bw_mux_header_t h = frame_at(&p.c, 0);
    assert_int_equal(h.type, BW_MUX_TYPE_DATA);
    assert_int_equal(h.flags, BW_MUX_FLAG_ACK);
    assert_int_equal(h.length, 2);
    pump(&p.c, &p.s);
    assert_int_equal(sc->len, 2);
    /* later frames carry no flags */
    assert_int_equal(bw_mux_stream_write(p.c.ctx[0].s, "x", 1), 0);
    assert_int_equal(frame_at(&p.c, 0).flags, 0);
    pair_free(&p);
}

static void test_window_exhaustion(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    p.s.manual_consume = true;
    size_t total = 300 * 1024;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    fill_pattern(buf, total, 7);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    attach(&p.c, s);
    assert_int_equal(bw_mux_stream_write(s, buf, total), 0);
    pump(&p.c, &p.s);
    sctx_t *sc = &p.s.ctx[0];
    assert_int_equal(sc->len, BW_MUX_INITIAL_WINDOW);
    assert_int_equal(bw_mux_stream_pending(s), total - BW_MUX_INITIAL_WINDOW);
    /* less than half a window owed: no update yet */
    bw_mux_stream_consumed(sc->s, 100 * 1024);
    pump(&p.c, &p.s);
    assert_int_equal(sc->len, BW_MUX_INITIAL_WINDOW);
    bw_mux_stream_consumed(sc->s, 100 * 1024);
    pump(&p.c, &p.s);
    assert_int_equal(sc->len, total);
    assert_memory_equal(sc->data, buf, total);
    assert_int_equal(bw_mux_stream_pending(s), 0);
    assert_int_equal(p.c.input_rc | p.s.input_rc, 0);
    free(buf);
    pair_free(&p);
}

/* Push `total` bytes client → server on one stream, consuming at once, with
 * the clock advancing `step_ns` per pump round. Returns the server stream's
 * final advertised window. */
static uint32_t bulk_transfer(size_t total, uint64_t step_ns, uint32_t max_window)
{
    pair_t p;
    bw_mux_config_t scfg;
    bw_mux_config_default(&scfg, 0);
    scfg.max_window = max_window;
    pair_init(&p, NULL, &scfg);
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    fill_pattern(buf, total, 99);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    attach(&p.c, s);
    bw_mux_stream_write(s, buf, total);
    while (transfer(&p.c, &p.s) + transfer(&p.s, &p.c) > 0)
        fake_now += step_ns;
    sctx_t *sc = &p.s.ctx[0];
    assert_int_equal(sc->len, total);
    assert_memory_equal(sc->data, buf, total);
    assert_int_equal(p.c.input_rc | p.s.input_rc, 0);
    uint32_t w = bw_mux_stream_recv_window_max(sc->s);
    free(buf);
    pair_free(&p);
    return w;
}

static void test_window_growth(void **state)
{
    (void)state;
    /* instant consumer: doubles up to the ceiling */
    assert_int_equal(bulk_transfer(8u << 20, 0, 2u << 20), 2u << 20);
    /* a consumer far slower than the RTT floor keeps the initial window */
    assert_int_equal(bulk_transfer(4u << 20, 100000000ull, 16u << 20), BW_MUX_INITIAL_WINDOW);
}

static void test_window_growth_reaches_peer(void **state)
{
    (void)state;
    /* after growth, a single frame larger than 256 KiB must be accepted */
    pair_t p;
    bw_mux_config_t ccfg, scfg;
    bw_mux_config_default(&ccfg, 1);
    bw_mux_config_default(&scfg, 0);
    ccfg.max_frame = 1u << 20;
    scfg.max_window = 1u << 20;
    pair_init(&p, &ccfg, &scfg);
    size_t total = 4u << 20;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    fill_pattern(buf, total, 3);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    attach(&p.c, s);
    bw_mux_stream_write(s, buf, total);
    pump(&p.c, &p.s);
    assert_int_equal(p.s.ctx[0].len, total);
    assert_int_equal(bw_mux_stream_recv_window_max(p.s.ctx[0].s), 1u << 20);
    assert_int_equal(p.c.input_rc | p.s.input_rc, 0);
    free(buf);
    pair_free(&p);
}

static void test_eagain_and_drain(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    sctx_t *cc = attach(&p.c, s);
    pump(&p.c, &p.s);
    p.c.fake_queued = 2u << 20; /* transport full: nothing is framed */
    uint8_t buf[100 * 1024];
    fill_pattern(buf, sizeof buf, 1);
    assert_int_equal(bw_mux_stream_write(s, buf, sizeof buf), 0);
    assert_int_equal(bw_mux_stream_write(s, buf, sizeof buf), 0);
    assert_int_equal(bw_mux_stream_write(s, buf, sizeof buf), BW_EAGAIN);
    assert_int_equal(bw_mux_stream_pending(s), 3 * sizeof buf);
    assert_int_equal(p.c.out_len, 0);
    bw_mux_transport_drained(p.c.m);
    assert_int_equal(cc->drains, 0);
    p.c.fake_queued = 0;
    bw_mux_transport_drained(p.c.m);
    pump(&p.c, &p.s);
    assert_int_equal(bw_mux_stream_pending(s), 0);
    assert_int_equal(cc->drains, 1);
    assert_int_equal(p.s.ctx[0].len, 3 * sizeof buf);
    pair_free(&p);
}

static void test_round_robin(void **state)
{
    (void)state;
    pair_t p;
    bw_mux_config_t ccfg;
    bw_mux_config_default(&ccfg, 1);
    ccfg.max_frame = 1000;
    pair_init(&p, &ccfg, NULL);
    bw_mux_stream_t *a = bw_mux_stream_open(p.c.m);
    assert_non_null(a);
    bw_mux_stream_t *b = bw_mux_stream_open(p.c.m);
    assert_non_null(b);
    pump(&p.c, &p.s);
    p.c.fake_queued = 2u << 20;
    uint8_t buf[3000];
    memset(buf, 'a', sizeof buf);
    bw_mux_stream_write(a, buf, sizeof buf);
    bw_mux_stream_write(b, buf, sizeof buf);
    p.c.fake_queued = 0;
    bw_mux_transport_drained(p.c.m);
    /* frames alternate between the two streams */
    uint32_t ids[6];
    size_t off = 0;
    for (int i = 0; i < 6; i++) {
        bw_mux_header_t h;
        assert_int_equal(bw_mux_header_decode(p.c.out + off, &h), 0);
        assert_int_equal(h.length, 1000);
        ids[i] = h.stream_id;
        off += BW_MUX_HEADER_SIZE + h.length;
    }
    assert_int_equal(off, p.c.out_len);
    for (int i = 0; i < 6; i++)
        assert_int_equal(ids[i], i % 2 ? 3 : 1);
    pair_free(&p);
}

static void test_half_close(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    sctx_t *cc = attach(&p.c, s);
    bw_mux_stream_write(s, "ping", 4);
    assert_int_equal(bw_mux_stream_shutdown(s), 0);
    assert_int_equal(bw_mux_stream_write(s, "x", 1), BW_EPIPE);
    pump(&p.c, &p.s);
    sctx_t *sc = &p.s.ctx[0];
    assert_int_equal(sc->len, 4);
    assert_int_equal(sc->eofs, 1);
    assert_int_equal(sc->closes, 0);
    /* the server can still answer */
    assert_int_equal(bw_mux_stream_write(sc->s, "pong", 4), 0);
    pump(&p.c, &p.s);
    assert_int_equal(cc->len, 4);
    assert_int_equal(bw_mux_stream_count(p.s.m), 1);
    assert_int_equal(bw_mux_stream_shutdown(sc->s), 0);
    /* both FINs: the server's stream ends with on_close(0) at once */
    assert_int_equal(sc->closes, 1);
    assert_int_equal(sc->close_err, 0);
    assert_int_equal(bw_mux_stream_count(p.s.m), 0);
    pump(&p.c, &p.s);
    assert_int_equal(cc->eofs, 1);
    assert_int_equal(cc->closes, 1);
    assert_int_equal(cc->close_err, 0);
    assert_int_equal(bw_mux_stream_count(p.c.m), 0);
    assert_int_equal(p.c.input_rc | p.s.input_rc, 0);
    pair_free(&p);
}

static void test_close_frees_after_peer_fin(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    sctx_t *cc = attach(&p.c, s);
    pump(&p.c, &p.s);
    sctx_t *sc = &p.s.ctx[0];
    sc->close_on_eof = true;
    bw_mux_stream_close(s);
    assert_int_equal(bw_mux_stream_count(p.c.m), 1); /* waits for the peer's FIN */
    pump(&p.c, &p.s);
    assert_int_equal(sc->eofs, 1);
    assert_int_equal(bw_mux_stream_count(p.s.m), 0);
    assert_int_equal(bw_mux_stream_count(p.c.m), 0);
    /* released streams get no callbacks */
    assert_int_equal(cc->closes + sc->closes, 0);
    pair_free(&p);
}

static void test_shutdown_waits_for_pending(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    p.s.manual_consume = true;
    size_t total = 400 * 1024;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    fill_pattern(buf, total, 5);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    attach(&p.c, s);
    bw_mux_stream_write(s, buf, total);
    bw_mux_stream_close(s);
    pump(&p.c, &p.s);
    sctx_t *sc = &p.s.ctx[0];
    assert_int_equal(sc->len, BW_MUX_INITIAL_WINDOW);
    assert_int_equal(sc->eofs, 0);
    bw_mux_stream_consumed(sc->s, sc->len);
    pump(&p.c, &p.s);
    assert_int_equal(sc->len, total);
    assert_int_equal(sc->eofs, 1);
    assert_memory_equal(sc->data, buf, total);
    bw_mux_stream_close(sc->s);
    pump(&p.c, &p.s);
    assert_int_equal(bw_mux_stream_count(p.c.m), 0);
    assert_int_equal(bw_mux_stream_count(p.s.m), 0);
    free(buf);
    pair_free(&p);
}

/* Headers (type, flags, length) of every frame in a side's output, walking
 * over data payloads. Returns how many were found (at most max). */
static size_t frames_of(const side_t *sd, bw_mux_header_t *out, size_t max)
{
    size_t off = 0, n = 0;
    while (off + BW_MUX_HEADER_SIZE <= sd->out_len && n < max) {
        bw_mux_header_t h;
        assert_int_equal(bw_mux_header_decode(sd->out + off, &h), 0);
        out[n++] = h;
        off += BW_MUX_HEADER_SIZE + (h.type == BW_MUX_TYPE_DATA ? h.length : 0);
    }
    assert_int_equal(off, sd->out_len);
    return n;
}

/* A FIN never rides on a data frame: peers that apply a frame's flags
 * before buffering its payload (Debian's hashicorp/yamux) would lose the
 * payload to a reader woken by the FIN. The last data frame carries no
 * flags; a window update with FIN and length 0 follows it. */
static void test_fin_is_a_frame_of_its_own(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    p.s.manual_consume = true;
    size_t total = BW_MUX_INITIAL_WINDOW + 1000;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    fill_pattern(buf, total, 7);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    attach(&p.c, s);
    bw_mux_stream_write(s, buf, total);
    bw_mux_stream_shutdown(s);
    pump(&p.c, &p.s);
    sctx_t *sc = &p.s.ctx[0];
    assert_int_equal(sc->len, BW_MUX_INITIAL_WINDOW); /* the rest waits for credit */
    bw_mux_stream_consumed(sc->s, sc->len);
    transfer(&p.s, &p.c); /* the window update: the client sends the rest */
    bw_mux_header_t f[16];
    size_t n = frames_of(&p.c, f, 16);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++)
        if (f[i].type == BW_MUX_TYPE_DATA && f[i].length > 0)
            assert_false(f[i].flags & BW_MUX_FLAG_FIN);
    assert_int_equal(f[n - 1].type, BW_MUX_TYPE_WINDOW_UPDATE);
    assert_int_equal(f[n - 1].flags, BW_MUX_FLAG_FIN);
    assert_int_equal(f[n - 1].length, 0);
    pump(&p.c, &p.s);
    assert_int_equal(sc->len, total);
    assert_int_equal(sc->eofs, 1);
    assert_memory_equal(sc->data, buf, total);
    free(buf);
    pair_free(&p);
}

static void test_rst(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    sctx_t *cc = attach(&p.c, s);
    bw_mux_stream_write(s, "abc", 3);
    pump(&p.c, &p.s);
    bw_mux_stream_reset(s);
    assert_int_equal(bw_mux_stream_count(p.c.m), 0);
    assert_int_equal(last_frame(&p.c).flags, BW_MUX_FLAG_RST);
    pump(&p.c, &p.s);
    sctx_t *sc = &p.s.ctx[0];
    assert_int_equal(sc->closes, 1);
    assert_int_equal(sc->close_err, BW_ECONNRESET);
    assert_int_equal(cc->closes, 0);
    assert_int_equal(bw_mux_stream_count(p.s.m), 0);
    pair_free(&p);
}

static void test_late_frames_ignored(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    attach(&p.c, s);
    pump(&p.c, &p.s);
    /* server resets while the client's data is in flight */
    assert_int_equal(p.s.nctx, 1);
    bw_mux_stream_reset(p.s.ctx[0].s);
    bw_mux_stream_write(s, "late", 4);
    transfer(&p.c, &p.s);
    assert_int_equal(p.s.input_rc, 0);
    assert_null(bw_mux_error(p.s.m));
    pump(&p.c, &p.s);
    assert_int_equal(p.c.ctx[0].close_err, BW_ECONNRESET);
    pair_free(&p);
}

static void test_ping(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    assert_int_equal(bw_mux_rtt(p.c.m), 0);
    uint64_t t0 = fake_now;
    assert_int_equal(bw_mux_ping(p.c.m), 0);
    bw_mux_header_t h = frame_at(&p.c, 0);
    assert_int_equal(h.type, BW_MUX_TYPE_PING);
    assert_int_equal(h.flags, BW_MUX_FLAG_SYN);
    transfer(&p.c, &p.s);
    h = frame_at(&p.s, 0);
    assert_int_equal(h.flags, BW_MUX_FLAG_ACK);
    fake_now += 5000000;
    transfer(&p.s, &p.c);
    assert_int_equal(p.c.pongs, 1);
    assert_int_equal(p.c.rtt, 5000000);
    assert_int_equal(bw_mux_rtt(p.c.m), 5000000);
    fake_now += 1000;
    assert_int_equal(bw_mux_since_pong(p.c.m), 1000);
    /* an unsolicited pong is ignored */
    h = (bw_mux_header_t){0, BW_MUX_TYPE_PING, BW_MUX_FLAG_ACK, 0, 77};
    uint8_t b[12];
    bw_mux_header_encode(b, &h);
    assert_int_equal(bw_mux_input(p.c.m, b, 12), 0);
    assert_int_equal(p.c.pongs, 1);
    assert_true(fake_now - t0 > 0);
    pair_free(&p);
}

/* A slow link: the pong of the first ping arrives after the second ping was
 * sent. It still proves the peer alive and measures from its own ping; the
 * second's pong then counts too, and a pong repeated or for a ping never
 * sent is ignored. */
static void test_late_pong_counts(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    uint64_t t0 = fake_now;
    assert_int_equal(bw_mux_ping(p.c.m), 0);
    transfer(&p.c, &p.s); /* the server answers; the pong is in flight */
    fake_now += 7000000;
    assert_int_equal(bw_mux_ping(p.c.m), 0);
    fake_now += 3000000;
    transfer(&p.s, &p.c); /* the first pong arrives 10 ms after its ping */
    assert_int_equal(p.c.pongs, 1);
    assert_int_equal(p.c.rtt, 10000000);
    assert_int_equal(bw_mux_since_pong(p.c.m), 0);
    transfer(&p.c, &p.s);
    fake_now += 1000000;
    transfer(&p.s, &p.c); /* the second: 4 ms */
    assert_int_equal(p.c.pongs, 2);
    assert_int_equal(p.c.rtt, 4000000);
    /* The same pong again, and one for an id never sent: ignored. */
    bw_mux_header_t h = {0, BW_MUX_TYPE_PING, BW_MUX_FLAG_ACK, 0, 2};
    uint8_t b[12];
    bw_mux_header_encode(b, &h);
    assert_int_equal(bw_mux_input(p.c.m, b, 12), 0);
    h.length = 3;
    bw_mux_header_encode(b, &h);
    assert_int_equal(bw_mux_input(p.c.m, b, 12), 0);
    assert_int_equal(p.c.pongs, 2);
    assert_true(fake_now - t0 == 11000000);
    pair_free(&p);
}

static void test_go_away(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    /* a SYN racing the server's go-away is refused with RST */
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    sctx_t *cc = attach(&p.c, s);
    assert_int_equal(bw_mux_go_away(p.s.m, BW_MUX_GOAWAY_NORMAL), 0);
    assert_null(bw_mux_stream_open(p.s.m));
    pump(&p.c, &p.s);
    assert_int_equal(p.c.go_aways, 1);
    assert_int_equal(p.c.go_away_code, BW_MUX_GOAWAY_NORMAL);
    assert_int_equal(p.s.accepted, 0);
    assert_int_equal(cc->closes, 1);
    assert_int_equal(cc->close_err, BW_ECONNRESET);
    assert_null(bw_mux_stream_open(p.c.m));
    assert_int_equal(p.c.input_rc | p.s.input_rc, 0);
    pair_free(&p);
}

static void test_max_streams(void **state)
{
    (void)state;
    pair_t p;
    bw_mux_config_t scfg;
    bw_mux_config_default(&scfg, 0);
    scfg.max_streams = 2;
    pair_init(&p, NULL, &scfg);
    sctx_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = attach(&p.c, bw_mux_stream_open(p.c.m));
    pump(&p.c, &p.s);
    assert_int_equal(p.s.accepted, 2);
    assert_int_equal(bw_mux_stream_count(p.s.m), 2);
    assert_int_equal(c[0]->closes + c[1]->closes, 0);
    assert_int_equal(c[2]->closes, 1);
    assert_int_equal(c[2]->close_err, BW_ECONNRESET);
    assert_int_equal(p.s.input_rc, 0);
    pair_free(&p);
}

static void test_reentrant_close_in_on_data(void **state)
{
    (void)state;
    pair_t p;
    bw_mux_config_t ccfg;
    bw_mux_config_default(&ccfg, 1);
    ccfg.max_frame = 100;
    pair_init(&p, &ccfg, NULL);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    sctx_t *cc = attach(&p.c, s);
    pump(&p.c, &p.s);
    p.s.ctx[0].close_on_data = true;
    uint8_t buf[1000];
    fill_pattern(buf, sizeof buf, 2);
    bw_mux_stream_write(s, buf, sizeof buf); /* ten frames in one input */
    bw_mux_stream_shutdown(s);
    pump(&p.c, &p.s);
    assert_int_equal(p.s.ctx[0].datas, 1);
    assert_int_equal(p.s.ctx[0].closes, 0);
    assert_int_equal(bw_mux_stream_count(p.s.m), 0);
    assert_int_equal(cc->eofs, 1);
    assert_int_equal(cc->closes, 1);

    /* same with reset: later frames for the stream are dropped */
    s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    cc = attach(&p.c, s);
    pump(&p.c, &p.s);
    p.s.ctx[1].reset_on_data = true;
    bw_mux_stream_write(s, buf, sizeof buf);
    pump(&p.c, &p.s);
    assert_int_equal(p.s.ctx[1].datas, 1);
    assert_int_equal(cc->close_err, BW_ECONNRESET);
    assert_int_equal(bw_mux_stream_count(p.s.m), 0);
    assert_int_equal(bw_mux_stream_count(p.c.m), 0);
    assert_int_equal(p.c.input_rc | p.s.input_rc, 0);
    pair_free(&p);
}

static void test_byte_by_byte_input(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    bw_mux_stream_t *s = bw_mux_stream_open(p.c.m);
    assert_non_null(s);
    attach(&p.c, s);
    uint8_t buf[5000];
    fill_pattern(buf, sizeof buf, 11);
    bw_mux_stream_write(s, buf, sizeof buf);
    bw_mux_stream_shutdown(s);
    for (size_t i = 0; i < p.c.out_len; i++)
        assert_int_equal(bw_mux_input(p.s.m, p.c.out + i, 1), 0);
    p.c.out_len = 0;
    sctx_t *sc = &p.s.ctx[0];
    assert_int_equal(sc->len, sizeof buf);
    assert_memory_equal(sc->data, buf, sizeof buf);
    assert_int_equal(sc->eofs, 1);
    pair_free(&p);
}

static void test_free_with_live_streams(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, NULL, NULL);
    sctx_t *a = attach(&p.c, bw_mux_stream_open(p.c.m));
    sctx_t *b = attach(&p.c, bw_mux_stream_open(p.c.m));
    bw_mux_stream_t *released = bw_mux_stream_open(p.c.m);
    assert_non_null(released);
    bw_mux_stream_write(b->s, "pending", 7);
    bw_mux_stream_close(released);
    pump(&p.c, &p.s);
    bw_mux_free(p.c.m);
    p.c.m = NULL;
    assert_int_equal(a->closes, 1);
    assert_int_equal(a->close_err, BW_ECONNABORTED);
    assert_int_equal(b->closes, 1);
    assert_int_equal(b->close_err, BW_ECONNABORTED);
    pair_free(&p);
}

/* ---- protocol violations, fed by hand to a server engine ---- */

typedef struct violation {
    const char *name;
    bw_mux_header_t h[3]; /* frames after the setup SYN for stream 1 */
    int n;
    const char *reason; /* substring of bw_mux_error() */
} violation_t;

/* clang-format off */
#define HDR(t, f, id, len) {0, (t), (f), (id), (len)}
/* clang-format on */
#define DATA BW_MUX_TYPE_DATA
#define WIN  BW_MUX_TYPE_WINDOW_UPDATE

static const violation_t violations[] = {
    {"bad version", {{7, WIN, 0, 1, 0}}, 1, "version"},
    {"unknown type", {HDR(9, 0, 1, 0)}, 1, "type"},
    {"data beyond window", {HDR(DATA, 0, 1, BW_MUX_INITIAL_WINDOW + 1)}, 1, "window"},
    {"data on stream 0", {HDR(DATA, 0, 0, 4)}, 1, "stream 0"},
    {"window on stream 0", {HDR(WIN, 0, 0, 4)}, 1, "stream 0"},
    {"ping on a stream", {HDR(BW_MUX_TYPE_PING, BW_MUX_FLAG_SYN, 1, 4)}, 1, "stream 1"},
    {"SYN reuse", {HDR(WIN, BW_MUX_FLAG_SYN, 1, 0)}, 1, "already exists"},
    {"SYN wrong parity", {HDR(WIN, BW_MUX_FLAG_SYN, 2, 0)}, 1, "parity"},
    {"window overflow", {HDR(WIN, 0, 1, 0xFFFFFFFFu)}, 1, "overflow"},
    {"second FIN", {HDR(WIN, BW_MUX_FLAG_FIN, 1, 0), HDR(WIN, BW_MUX_FLAG_FIN, 1, 0)}, 2, "FIN"},
    {"data after FIN", {HDR(WIN, BW_MUX_FLAG_FIN, 1, 0), HDR(DATA, 0, 1, 1)}, 2, "after its FIN"},
    {"huge frame for unknown stream", {HDR(DATA, 0, 5, 0x7FFFFFFFu)}, 1, "unknown stream"},
};

static void run_violation(const violation_t *v)
{
    side_t sd;
    side_init(&sd, 0, NULL);
    uint8_t b[12 + 16];
    bw_mux_header_t syn = HDR(WIN, BW_MUX_FLAG_SYN, 1, 0);
    bw_mux_header_encode(b, &syn);
    assert_int_equal(bw_mux_input(sd.m, b, 12), 0);
    assert_int_equal(sd.accepted, 1);
    assert_int_equal(bw_mux_stream_count(sd.m), 1);
    int rc = 0;
    for (int i = 0; i < v->n && rc == 0; i++) {
        bw_mux_header_encode(b, &v->h[i]);
        memset(b + 12, 'z', 16);
        size_t len = v->h[i].type == DATA && v->h[i].length < 16 ? 12 + v->h[i].length : 12;
        rc = bw_mux_input(sd.m, b, len);
    }
    if (rc == 0)
        fail_msg("%s: accepted", v->name);
    assert_int_equal(rc, BW_EPROTO);
    const char *err = bw_mux_error(sd.m);
    assert_non_null(err);
    if (!strstr(err, v->reason))
        fail_msg("%s: reason '%s' lacks '%s'", v->name, err, v->reason);
    bw_mux_header_t ga = last_frame(&sd);
    assert_int_equal(ga.type, BW_MUX_TYPE_GO_AWAY);
    assert_int_equal(ga.length, BW_MUX_GOAWAY_PROTO_ERROR);
    assert_int_equal(sd.ctx[0].closes, 1);
    assert_int_equal(sd.ctx[0].close_err, BW_ECONNABORTED);
    assert_int_equal(bw_mux_stream_count(sd.m), 0);
    assert_null(bw_mux_stream_open(sd.m));
    assert_int_equal(bw_mux_input(sd.m, b, 1), BW_EPROTO);
    side_free(&sd);
}

static void test_violations(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof violations / sizeof violations[0]; i++)
        run_violation(&violations[i]);
}

static void test_unknown_stream_window_update_ignored(void **state)
{
    (void)state;
    side_t sd;
    side_init(&sd, 0, NULL);
    uint8_t b[12 + 3];
    bw_mux_header_t h = HDR(WIN, 0, 41, 1000);
    bw_mux_header_encode(b, &h);
    assert_int_equal(bw_mux_input(sd.m, b, 12), 0);
    h = (bw_mux_header_t)HDR(DATA, 0, 41, 3);
    bw_mux_header_encode(b, &h);
    memcpy(b + 12, "abc", 3);
    assert_int_equal(bw_mux_input(sd.m, b, 15), 0);
    assert_null(bw_mux_error(sd.m));
    assert_int_equal(sd.out_len, 0);
    side_free(&sd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_codec),
        cmocka_unit_test(test_open_syn_ack),
        cmocka_unit_test(test_data_both_ways),
        cmocka_unit_test(test_data_written_in_on_stream_carries_ack),
        cmocka_unit_test(test_window_exhaustion),
        cmocka_unit_test(test_window_growth),
        cmocka_unit_test(test_window_growth_reaches_peer),
        cmocka_unit_test(test_eagain_and_drain),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_half_close),
        cmocka_unit_test(test_close_frees_after_peer_fin),
        cmocka_unit_test(test_shutdown_waits_for_pending),
        cmocka_unit_test(test_fin_is_a_frame_of_its_own),
        cmocka_unit_test(test_rst),
        cmocka_unit_test(test_late_frames_ignored),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_late_pong_counts),
        cmocka_unit_test(test_go_away),
        cmocka_unit_test(test_max_streams),
        cmocka_unit_test(test_reentrant_close_in_on_data),
        cmocka_unit_test(test_byte_by_byte_input),
        cmocka_unit_test(test_free_with_live_streams),
        cmocka_unit_test(test_violations),
        cmocka_unit_test(test_unknown_stream_window_update_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
