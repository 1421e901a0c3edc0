/* yamux engine (see yamux.h for the contract).
 *
 * Layout of the code. This file: frame encoding, the stream table, lifetime
 * (deferred frees), the receive side (window credit and auto-tuning), the
 * input parser, the session API and the rest of the stream API.
 * yamux_send.c: frames to the transport, the send queue and the send side
 * (pending buffers, round-robin flush, FIN), and the stream calls write,
 * pending, shutdown, close and reset. yamux_int.h: the structs and the
 * helpers the files share (bw__mux_*).
 *
 * Stream lifetime: a stream sits in the id table while the protocol still
 * knows it. It leaves the table when it is fully closed (FIN both ways) or
 * reset ("finished"); the application is told with on_close unless it has
 * already released the stream with bw_mux_stream_close/reset. A finished
 * stream is freed when the outermost engine call unwinds, so that a callback
 * that closes or resets its own stream never pulls memory from under the
 * code that called it.
 */
#include "yamux.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "burrow/error.h"
#include "bw_limits.h"
#include "chunkq.h"
#include "list.h"
#include "yamux_int.h"

#define MIN_RTT_NS      1000000ull /* see tune_window() */
#define INITIAL_BUCKETS 64u

/* ---- frames ---- */

int bw_mux_header_decode(const uint8_t *p, bw_mux_header_t *h)
{
    h->version = p[0];
    h->type = p[1];
    h->flags = (uint16_t)(p[2] << 8 | p[3]);
    h->stream_id = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    h->length = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
    if (h->version != BW_MUX_VERSION || h->type > BW_MUX_TYPE_GO_AWAY)
        return BW_EPROTO;
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void bw_mux_header_encode(uint8_t *p, const bw_mux_header_t *h)
{
    p[0] = h->version;
    p[1] = h->type;
    p[2] = (uint8_t)(h->flags >> 8);
    p[3] = (uint8_t)h->flags;
    put32(p + 4, h->stream_id);
    put32(p + 8, h->length);
}

void bw_mux_config_default(bw_mux_config_t *c, int is_client)
{
    c->is_client = is_client;
    c->max_window = 16u * 1024u * 1024u;
    c->max_streams = 65536;
    c->stream_hwm = BW_STREAM_HWM;
    c->transport_hwm = BW_TLS_HIGH_WATER;
    c->max_frame = 64u * 1024u;
}

static uint64_t now_ns(const bw_mux_t *m)
{
    return m->cbs.now_ns ? m->cbs.now_ns(m->ud) : uv_hrtime();
}

/* ---- stream table: chained hash, power-of-two buckets ---- */

static size_t bucket_of(const bw_mux_t *m, uint32_t id)
{
    uint32_t h = id * 2654435761u;
    h ^= h >> 16;
    return h & (m->nbuckets - 1);
}

static bw_mux_stream_t *lookup(const bw_mux_t *m, uint32_t id)
{
    bw_mux_stream_t *s = m->buckets[bucket_of(m, id)];
    while (s && s->id != id)
        s = s->hnext;
    return s;
}

static int table_grow(bw_mux_t *m)
{
    size_t old_n = m->nbuckets;
    bw_mux_stream_t **old = m->buckets;
    bw_mux_stream_t **nb = calloc(old_n * 2, sizeof *nb);
    if (!nb)
        return BW_ENOMEM;
    m->buckets = nb;
    m->nbuckets = old_n * 2;
    for (size_t i = 0; i < old_n; i++) {
        while (old[i]) {
            bw_mux_stream_t *s = old[i];
            old[i] = s->hnext;
            size_t b = bucket_of(m, s->id);
            s->hnext = nb[b];
            nb[b] = s;
        }
    }
    free(old);
    return 0;
}

static void table_insert(bw_mux_t *m, bw_mux_stream_t *s)
{
    /* A failed grow only lengthens the chains. */
    if (m->count >= m->nbuckets)
        (void)table_grow(m);
    size_t b = bucket_of(m, s->id);
    s->hnext = m->buckets[b];
    m->buckets[b] = s;
    m->count++;
}

static void table_remove(bw_mux_t *m, bw_mux_stream_t *s)
{
    bw_mux_stream_t **pp = &m->buckets[bucket_of(m, s->id)];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = s->hnext;
        s->hnext = NULL;
        m->count--;
    }
}

/* ---- lifetime ---- */

static void pending_clear(bw_mux_stream_t *s)
{
    bw_chunkq_clear(&s->pending);
}

static void stream_free(bw_mux_stream_t *s)
{
    pending_clear(s);
    free(s);
}

void bw__mux_enter(bw_mux_t *m)
{
    m->depth++;
}

void bw__mux_leave(bw_mux_t *m)
{
    if (--m->depth > 0)
        return;
    while (m->graveyard) {
        bw_mux_stream_t *s = m->graveyard;
        m->graveyard = s->hnext;
        stream_free(s);
    }
}

/* Take `s` out of the protocol: the table, the send queue, its buffers. The
 * application hears on_close(err) unless it already let go of the stream.
 * Callers always hold a depth, so the memory outlives them. */
void bw__mux_stream_finish(bw_mux_stream_t *s, int err)
{
    bw_mux_t *m = s->m;
    if (s->finished)
        return;
    s->finished = true;
    if (s->state != ST_RESET)
        s->state = ST_CLOSED;
    table_remove(m, s);
    bw__mux_queue_remove(m, s);
    pending_clear(s);
    if (!s->released) {
        s->released = true;
        if (s->cbs.on_close)
            s->cbs.on_close(s, s->ud, err);
    }
    s->hnext = m->graveyard;
    m->graveyard = s;
}

static void fail(bw_mux_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A protocol violation: tell the peer, then abort every stream. */
static void fail(bw_mux_t *m, const char *fmt, ...)
{
    if (m->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    bw__mux_send_ctrl(m, BW_MUX_TYPE_GO_AWAY, 0, 0, BW_MUX_GOAWAY_PROTO_ERROR);
    m->failed = true;
    m->local_go_away = true;
    for (size_t i = 0; i < m->nbuckets; i++)
        while (m->buckets[i])
            bw__mux_stream_finish(m->buckets[i], BW_ECONNABORTED);
}

/* ---- receive side ---- */

/* Auto-tuning: a measurement spans from one window update until a whole
 * window more has been consumed. If that took less than two round trips, the
 * window and not the application is the bottleneck, so double it. The RTT
 * has a floor of 1 ms because the ping does not see the event-loop and TLS
 * batching delays that the data path does. Whole windows, not single
 * updates, are measured: a burst that fills the window is consumed in no time
 * without saying anything about the pace. Returns the extra credit. */
static uint32_t tune_window(bw_mux_stream_t *s, uint32_t delta)
{
    bw_mux_t *m = s->m;
    uint64_t now = now_ns(m);
    uint32_t grow = 0;
    if (s->epoch_ns == 0)
        goto restart;
    s->epoch_bytes += delta;
    if (s->epoch_bytes < s->recv_max)
        return 0;
    uint64_t rtt = m->rtt_ns > MIN_RTT_NS ? m->rtt_ns : MIN_RTT_NS;
    if (now - s->epoch_ns < 2 * rtt && s->recv_max < m->cfg.max_window) {
        uint64_t grown = (uint64_t)s->recv_max * 2;
        uint32_t next = grown < m->cfg.max_window ? (uint32_t)grown : m->cfg.max_window;
        grow = next - s->recv_max;
        s->recv_max = next;
    }
restart:
    s->epoch_ns = now;
    s->epoch_bytes = 0;
    return grow;
}

/* Credit `n` consumed bytes back to the peer, batched to half a window. */
void bw__mux_credit_window(bw_mux_stream_t *s, size_t n)
{
    s->owed += (uint32_t)n;
    if (s->finished || s->state == ST_REMOTE_CLOSE || s->owed < s->recv_max / 2)
        return;
    uint32_t delta = s->owed;
    s->owed = 0;
    delta += tune_window(s, delta);
    s->recv_window += delta;
    bw__mux_send_ctrl(s->m, BW_MUX_TYPE_WINDOW_UPDATE, bw__mux_take_flags(s), s->id, delta);
}

static void deliver(bw_mux_stream_t *s, const uint8_t *p, size_t n)
{
    if (!s->released && s->cbs.on_data) {
        s->unconsumed += n;
        s->cbs.on_data(s, s->ud, p, n);
    } else {
        /* Nobody reads: discard, but keep the peer moving. */
        bw__mux_credit_window(s, n);
    }
}

static void remote_fin(bw_mux_stream_t *s)
{
    if (s->state == ST_LOCAL_CLOSE)
        s->state = ST_CLOSED;
    else
        s->state = ST_REMOTE_CLOSE;
    if (!s->released && s->cbs.on_eof)
        s->cbs.on_eof(s, s->ud);
    if (s->state == ST_CLOSED && !s->finished)
        bw__mux_stream_finish(s, 0);
}

/* ---- input ---- */

static uint32_t peer_parity(const bw_mux_t *m)
{
    return m->cfg.is_client ? 0 : 1;
}

static bw_mux_stream_t *stream_new(bw_mux_t *m, uint32_t id, uint8_t state)
{
    bw_mux_stream_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->m = m;
    s->id = id;
    s->state = state;
    s->send_window = BW_MUX_INITIAL_WINDOW;
    s->recv_window = BW_MUX_INITIAL_WINDOW;
    s->recv_max = BW_MUX_INITIAL_WINDOW;
    table_insert(m, s);
    return s;
}

/* The peer opens `id`. Returns the new stream, or NULL when it was refused
 * (RST sent) or was a violation (engine failed). */
static bw_mux_stream_t *incoming_syn(bw_mux_t *m, uint32_t id)
{
    if ((id & 1) != peer_parity(m)) {
        fail(m, "SYN for stream %u with the wrong parity", id);
        return NULL;
    }
    if (lookup(m, id)) {
        fail(m, "SYN for stream %u which already exists", id);
        return NULL;
    }
    bw_mux_stream_t *s = NULL;
    if (!m->local_go_away && m->count < m->cfg.max_streams && m->cbs.on_stream)
        s = stream_new(m, id, ST_SYN_RECEIVED);
    if (!s)
        bw__mux_send_ctrl(m, BW_MUX_TYPE_WINDOW_UPDATE, BW_MUX_FLAG_RST, id, 0);
    return s;
}

static void accept_stream(bw_mux_t *m, bw_mux_stream_t *s)
{
    m->cbs.on_stream(m->ud, s);
    if (!s->finished && s->state == ST_SYN_RECEIVED)
        bw__mux_send_ctrl(m, BW_MUX_TYPE_WINDOW_UPDATE, bw__mux_take_flags(s), s->id, 0);
}

static int add_send_window(bw_mux_stream_t *s, uint32_t delta)
{
    if (delta > UINT32_MAX - s->send_window) {
        fail(s->m, "window update overflows the send window of stream %u", s->id);
        return BW_EPROTO;
    }
    s->send_window += delta;
    bw__mux_schedule(s);
    return 0;
}

/* Checks that do not depend on the frame type. */
static int check_stream_frame(bw_mux_t *m, bw_mux_stream_t *s, const bw_mux_header_t *h)
{
    bool remote_closed = s->state == ST_REMOTE_CLOSE || s->state == ST_CLOSED;
    if ((h->flags & BW_MUX_FLAG_FIN) && remote_closed) {
        fail(m, "second FIN on stream %u", s->id);
        return BW_EPROTO;
    }
    if (h->type != BW_MUX_TYPE_DATA || h->length == 0)
        return 0;
    if (remote_closed) {
        fail(m, "data on stream %u after its FIN", s->id);
        return BW_EPROTO;
    }
    if (h->length > s->recv_window) {
        fail(m, "data frame of %u bytes exceeds the receive window (%u) of stream %u", h->length,
             s->recv_window, s->id);
        return BW_EPROTO;
    }
    return 0;
}

static void frame_done(bw_mux_t *m)
{
    bw_mux_stream_t *s = lookup(m, m->cur_id);
    if (s && (m->cur_flags & BW_MUX_FLAG_FIN))
        remote_fin(s);
}

static void start_payload(bw_mux_t *m, const bw_mux_header_t *h)
{
    m->cur_id = h->stream_id;
    m->cur_flags = h->flags;
    m->payload_left = h->length;
    if (h->length == 0)
        frame_done(m);
}

static void stream_data_frame(bw_mux_t *m, bw_mux_stream_t *s, const bw_mux_header_t *h)
{
    s->recv_window -= h->length;
    start_payload(m, h);
}

static void stream_frame(bw_mux_t *m, const bw_mux_header_t *h)
{
    bool syn = h->flags & BW_MUX_FLAG_SYN;
    bw_mux_stream_t *s = syn ? incoming_syn(m, h->stream_id) : lookup(m, h->stream_id);
    if (m->failed)
        return;
    if (!s) {
        /* Late frames for a stream we closed or refused: Go drops them. A
         * payload larger than any window we could grant is still a lie. */
        if (h->type == BW_MUX_TYPE_DATA && h->length > m->cfg.max_window)
            fail(m, "data frame of %u bytes for unknown stream %u", h->length, h->stream_id);
        else if (h->type == BW_MUX_TYPE_DATA)
            start_payload(m, h);
        return;
    }
    if ((h->flags & BW_MUX_FLAG_ACK) && s->state == ST_SYN_SENT)
        s->state = ST_ESTABLISHED;
    if (h->flags & BW_MUX_FLAG_RST) {
        s->state = ST_RESET;
        bw__mux_stream_finish(s, BW_ECONNRESET);
        if (h->type == BW_MUX_TYPE_DATA)
            start_payload(m, h);
        return;
    }
    if (check_stream_frame(m, s, h) < 0)
        return;
    if (h->type == BW_MUX_TYPE_WINDOW_UPDATE && add_send_window(s, h->length) < 0)
        return;
    if (syn)
        accept_stream(m, s);
    if (h->type == BW_MUX_TYPE_DATA) {
        stream_data_frame(m, s, h);
        return;
    }
    if ((h->flags & BW_MUX_FLAG_FIN) && !s->finished)
        remote_fin(s);
    bw__mux_flush(m);
}

static void ping_frame(bw_mux_t *m, const bw_mux_header_t *h)
{
    if (h->flags & BW_MUX_FLAG_SYN) {
        bw__mux_send_ctrl(m, BW_MUX_TYPE_PING, BW_MUX_FLAG_ACK, 0, h->length);
        return;
    }
    if (!(h->flags & BW_MUX_FLAG_ACK) || !m->ping_out || h->length != m->ping_id)
        return;
    m->ping_out = false;
    m->last_pong_ns = now_ns(m);
    m->rtt_ns = m->last_pong_ns - m->ping_sent_ns;
    if (m->cbs.on_pong)
        m->cbs.on_pong(m->ud, m->rtt_ns);
}

static void go_away_frame(bw_mux_t *m, const bw_mux_header_t *h)
{
    m->remote_go_away = true;
    if (m->cbs.on_go_away)
        m->cbs.on_go_away(m->ud, h->length);
}

static void handle_header(bw_mux_t *m, const uint8_t *p)
{
    bw_mux_header_t h;
    if (bw_mux_header_decode(p, &h) < 0) {
        if (h.version != BW_MUX_VERSION)
            fail(m, "unsupported yamux version %u", h.version);
        else
            fail(m, "unknown frame type %u", h.type);
        return;
    }
    bool session = h.type == BW_MUX_TYPE_PING || h.type == BW_MUX_TYPE_GO_AWAY;
    if (session != (h.stream_id == 0)) {
        fail(m, "frame type %u on stream %u", h.type, h.stream_id);
        return;
    }
    if (h.type == BW_MUX_TYPE_PING)
        ping_frame(m, &h);
    else if (h.type == BW_MUX_TYPE_GO_AWAY)
        go_away_frame(m, &h);
    else
        stream_frame(m, &h);
}

static size_t take_payload(bw_mux_t *m, const uint8_t *p, size_t len)
{
    size_t n = len < m->payload_left ? len : m->payload_left;
    m->payload_left -= (uint32_t)n;
    bw_mux_stream_t *s = lookup(m, m->cur_id);
    if (s)
        deliver(s, p, n);
    if (m->payload_left == 0 && !m->failed)
        frame_done(m);
    return n;
}

static size_t take_header(bw_mux_t *m, const uint8_t *p, size_t len)
{
    if (m->hlen == 0 && len >= BW_MUX_HEADER_SIZE) {
        handle_header(m, p);
        return BW_MUX_HEADER_SIZE;
    }
    size_t n = BW_MUX_HEADER_SIZE - m->hlen;
    if (n > len)
        n = len;
    memcpy(m->hbuf + m->hlen, p, n);
    m->hlen += n;
    if (m->hlen == BW_MUX_HEADER_SIZE) {
        m->hlen = 0;
        handle_header(m, m->hbuf);
    }
    return n;
}

int bw_mux_input(bw_mux_t *m, const uint8_t *data, size_t len)
{
    if (m->failed)
        return BW_EPROTO;
    bw__mux_enter(m);
    while (len > 0 && !m->failed) {
        size_t n = m->payload_left > 0 ? take_payload(m, data, len) : take_header(m, data, len);
        data += n;
        len -= n;
    }
    bw__mux_leave(m);
    return m->failed ? BW_EPROTO : 0;
}

/* ---- session API ---- */

bw_mux_t *bw_mux_new(const bw_mux_config_t *cfg, const bw_mux_callbacks_t *cbs, void *ud)
{
    if (!cbs || !cbs->send || !cbs->send_queued)
        return NULL;
    bw_mux_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (cfg)
        m->cfg = *cfg;
    else
        bw_mux_config_default(&m->cfg, 0);
    if (m->cfg.max_window < BW_MUX_INITIAL_WINDOW)
        m->cfg.max_window = BW_MUX_INITIAL_WINDOW;
    if (m->cfg.max_frame == 0)
        m->cfg.max_frame = 64u * 1024u;
    m->cbs = *cbs;
    m->ud = ud;
    m->next_id = m->cfg.is_client ? 1 : 2;
    m->nbuckets = INITIAL_BUCKETS;
    m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
    if (!m->buckets) {
        free(m);
        return NULL;
    }
    m->last_pong_ns = now_ns(m);
    return m;
}

void bw_mux_free(bw_mux_t *m)
{
    if (!m)
        return;
    bw__mux_enter(m);
    m->freeing = true;
    m->local_go_away = true;
    for (size_t i = 0; i < m->nbuckets; i++)
        while (m->buckets[i])
            bw__mux_stream_finish(m->buckets[i], BW_ECONNABORTED);
    bw__mux_leave(m);
    free(m->buckets);
    free(m);
}

void bw_mux_transport_drained(bw_mux_t *m)
{
    bw__mux_flush(m);
}

const char *bw_mux_error(const bw_mux_t *m)
{
    return m->failed ? m->err : NULL;
}

int bw_mux_ping(bw_mux_t *m)
{
    if (m->failed || m->send_dead)
        return BW_EPIPE;
    /* One ping in flight: a newer one supersedes it, its pong is ignored. */
    m->ping_id++;
    m->ping_out = true;
    m->ping_sent_ns = now_ns(m);
    bw__mux_send_ctrl(m, BW_MUX_TYPE_PING, BW_MUX_FLAG_SYN, 0, m->ping_id);
    return m->send_dead ? BW_EPIPE : 0;
}

uint64_t bw_mux_since_pong(const bw_mux_t *m)
{
    return now_ns(m) - m->last_pong_ns;
}

uint64_t bw_mux_rtt(const bw_mux_t *m)
{
    return m->rtt_ns;
}

int bw_mux_go_away(bw_mux_t *m, uint32_t code)
{
    if (m->failed || m->send_dead)
        return BW_EPIPE;
    m->local_go_away = true;
    bw__mux_send_ctrl(m, BW_MUX_TYPE_GO_AWAY, 0, 0, code);
    return m->send_dead ? BW_EPIPE : 0;
}

size_t bw_mux_stream_count(const bw_mux_t *m)
{
    return m->count;
}

/* ---- stream API ---- */

bw_mux_stream_t *bw_mux_stream_open(bw_mux_t *m)
{
    if (m->failed || m->send_dead || m->freeing || m->local_go_away || m->remote_go_away ||
        m->ids_exhausted || m->count >= m->cfg.max_streams)
        return NULL;
    bw_mux_stream_t *s = stream_new(m, m->next_id, ST_SYN_SENT);
    if (!s)
        return NULL;
    if (m->next_id > UINT32_MAX - 2)
        m->ids_exhausted = true;
    m->next_id += 2;
    bw__mux_send_ctrl(m, BW_MUX_TYPE_WINDOW_UPDATE, BW_MUX_FLAG_SYN, s->id, 0);
    return s;
}

void bw_mux_stream_set_callbacks(bw_mux_stream_t *s, const bw_mux_stream_cbs_t *cbs, void *ud)
{
    if (cbs)
        s->cbs = *cbs;
    else
        memset(&s->cbs, 0, sizeof s->cbs);
    s->ud = ud;
}

uint32_t bw_mux_stream_id(const bw_mux_stream_t *s)
{
    return s->id;
}

void bw_mux_stream_consumed(bw_mux_stream_t *s, size_t len)
{
    if (s->finished || s->released)
        return;
    if (len > s->unconsumed)
        len = s->unconsumed;
    s->unconsumed -= len;
    bw__mux_enter(s->m);
    bw__mux_credit_window(s, len);
    bw__mux_leave(s->m);
}

uint32_t bw_mux_stream_recv_window_max(const bw_mux_stream_t *s)
{
    return s->recv_max;
}
