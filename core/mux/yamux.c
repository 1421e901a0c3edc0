/* yamux engine (see yamux.h for the contract).
 *
 * Layout of the code. This file: frame encoding, the stream table, lifetime
 * (deferred frees), the session API, and the stream calls open,
 * set_callbacks, id and recv_window_max. yamux_send.c: frames to the
 * transport, the send queue and the send side (pending buffers, round-robin
 * flush, FIN), and the stream calls write, pending, shutdown, close and
 * reset. yamux_input.c: the receive side (window credit and auto-tuning), the
 * input parser and its protocol-violation path, and stream_consumed.
 * yamux_int.h: the structs and the helpers the files share (bw__mux_*).
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

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "burrow/error.h"
#include "bw_limits.h"
#include "chunkq.h"
#include "yamux_int.h"

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

uint64_t bw__mux_now_ns(const bw_mux_t *m)
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

bw_mux_stream_t *bw__mux_lookup(const bw_mux_t *m, uint32_t id)
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

bw_mux_stream_t *bw__mux_stream_new(bw_mux_t *m, uint32_t id, uint8_t state)
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
    m->last_pong_ns = bw__mux_now_ns(m);
    m->ping_first = 1; /* ids as before: the first ping carries 1 */
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
    /* Earlier pings stay outstanding: on a slow link their pongs arrive
     * after the next ping went out and still prove the peer alive. */
    if (m->ping_out == BW_MUX_PINGS) {
        m->ping_first++;
        m->ping_out--;
    }
    uint32_t id = m->ping_first + m->ping_out++;
    m->ping_sent_ns[id % BW_MUX_PINGS] = bw__mux_now_ns(m);
    bw__mux_send_ctrl(m, BW_MUX_TYPE_PING, BW_MUX_FLAG_SYN, 0, id);
    return m->send_dead ? BW_EPIPE : 0;
}

uint64_t bw_mux_since_pong(const bw_mux_t *m)
{
    return bw__mux_now_ns(m) - m->last_pong_ns;
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
    bw_mux_stream_t *s = bw__mux_stream_new(m, m->next_id, ST_SYN_SENT);
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

uint32_t bw_mux_stream_recv_window_max(const bw_mux_stream_t *s)
{
    return s->recv_max;
}
