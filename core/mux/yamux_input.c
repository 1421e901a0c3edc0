/* yamux engine, the receiving half: the receive side (window credit and
 * auto-tuning), the input parser, and bw_mux_stream_consumed. See yamux.c for
 * the layout and the stream lifetime. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "burrow/error.h"
#include "yamux.h"
#include "yamux_int.h"

#define MIN_RTT_NS 1000000ull /* see tune_window() */

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
    uint64_t now = bw__mux_now_ns(m);
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

static uint32_t peer_parity(const bw_mux_t *m)
{
    return m->cfg.is_client ? 0 : 1;
}

/* The peer opens `id`. Returns the new stream, or NULL when it was refused
 * (RST sent) or was a violation (engine failed). */
static bw_mux_stream_t *incoming_syn(bw_mux_t *m, uint32_t id)
{
    if ((id & 1) != peer_parity(m)) {
        fail(m, "SYN for stream %u with the wrong parity", id);
        return NULL;
    }
    if (bw__mux_lookup(m, id)) {
        fail(m, "SYN for stream %u which already exists", id);
        return NULL;
    }
    bw_mux_stream_t *s = NULL;
    if (!m->local_go_away && m->count < m->cfg.max_streams && m->cbs.on_stream)
        s = bw__mux_stream_new(m, id, ST_SYN_RECEIVED);
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
    bw_mux_stream_t *s = bw__mux_lookup(m, m->cur_id);
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
    bw_mux_stream_t *s = syn ? incoming_syn(m, h->stream_id) : bw__mux_lookup(m, h->stream_id);
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
    /* Any outstanding ping counts (unsigned: ids wrap); it answers the
     * older ones too, since the peer answers in order. */
    uint32_t age = h->length - m->ping_first;
    if (!(h->flags & BW_MUX_FLAG_ACK) || age >= m->ping_out)
        return;
    m->last_pong_ns = bw__mux_now_ns(m);
    m->rtt_ns = m->last_pong_ns - m->ping_sent_ns[h->length % BW_MUX_PINGS];
    m->ping_first = h->length + 1;
    m->ping_out -= age + 1;
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
    bw_mux_stream_t *s = bw__mux_lookup(m, m->cur_id);
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

/* ---- stream API: consumed ---- */

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
