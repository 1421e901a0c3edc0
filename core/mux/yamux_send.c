/* yamux engine, the sending half: frames to the transport, the send queue
 * and its round-robin flush, FIN, and the stream calls that write, shut down,
 * close and reset. See yamux.c for the layout and the stream lifetime. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "burrow/error.h"
#include "chunkq.h"
#include "list.h"
#include "yamux.h"
#include "yamux_int.h"

#define CHUNK_MIN (16u * 1024u)
#define MAX_SEGS  8 /* payload segments gathered per frame */

/* ---- frames ---- */

/* Hand one frame to the transport. A dead transport swallows everything:
 * the session learns about it from its own socket and frees the engine. */
static void send_frame(bw_mux_t *m, uint8_t type, uint16_t flags, uint32_t id, uint32_t length,
                       const void *const *segs, const size_t *lens, unsigned nsegs)
{
    if (m->failed || m->send_dead || m->freeing)
        return;
    uint8_t hdr[BW_MUX_HEADER_SIZE];
    bw_mux_header_t h = {BW_MUX_VERSION, type, flags, id, length};
    bw_mux_header_encode(hdr, &h);
    const void *bufs[MAX_SEGS + 1] = {hdr};
    size_t blen[MAX_SEGS + 1] = {sizeof hdr};
    for (unsigned i = 0; i < nsegs; i++) {
        bufs[i + 1] = segs[i];
        blen[i + 1] = lens[i];
    }
    if (m->cbs.send(m->ud, bufs, blen, nsegs + 1) < 0)
        m->send_dead = true;
}

void bw__mux_send_ctrl(bw_mux_t *m, uint8_t type, uint16_t flags, uint32_t id, uint32_t value)
{
    send_frame(m, type, flags, id, value, NULL, NULL, 0);
}

static bool transport_ok(const bw_mux_t *m)
{
    if (m->failed || m->send_dead || m->freeing)
        return false;
    return m->cbs.send_queued(m->ud) < m->cfg.transport_hwm;
}

/* ---- send queue (round robin over streams that wait for the transport) ---- */

static void queue_push(bw_mux_t *m, bw_mux_stream_t *s)
{
    if (!bw_list_linked(&s->qnode))
        bw_list_push_back(&m->queue, &s->qnode);
}

void bw__mux_queue_remove(bw_mux_t *m, bw_mux_stream_t *s)
{
    bw_list_remove(&s->qnode);
}

/* ---- send side ---- */

/* The flags owed by the next frame of `s`: the ACK of a peer-opened stream. */
uint16_t bw__mux_take_flags(bw_mux_stream_t *s)
{
    if (s->state != ST_SYN_RECEIVED)
        return 0;
    s->state = ST_ESTABLISHED;
    return BW_MUX_FLAG_ACK;
}

static void fin_sent(bw_mux_stream_t *s)
{
    s->fin_sent = true;
    if (s->state == ST_REMOTE_CLOSE)
        bw__mux_stream_finish(s, 0);
    else
        s->state = ST_LOCAL_CLOSE;
}

static void send_fin(bw_mux_stream_t *s)
{
    uint16_t flags = bw__mux_take_flags(s) | BW_MUX_FLAG_FIN;
    bw__mux_send_ctrl(s->m, BW_MUX_TYPE_WINDOW_UPDATE, flags, s->id, 0);
    fin_sent(s);
}

static bool can_write(const bw_mux_stream_t *s)
{
    const bw_mux_t *m = s->m;
    return !s->finished && !s->released && !s->shut_wr && !m->failed && !m->send_dead &&
           !m->freeing;
}

static size_t frame_budget(const bw_mux_stream_t *s, size_t want)
{
    size_t n = want < s->send_window ? want : s->send_window;
    return n < s->m->cfg.max_frame ? n : s->m->cfg.max_frame;
}

/* Send one frame of pending bytes (gathered from up to MAX_SEGS chunks),
 * with FIN when it empties a buffer that was shut down. */
static void send_pending_frame(bw_mux_stream_t *s)
{
    const void *segs[MAX_SEGS];
    size_t lens[MAX_SEGS];
    unsigned nseg;
    size_t n;
    nseg =
        bw_chunkq_gather(&s->pending, frame_budget(s, s->pending.bytes), segs, lens, MAX_SEGS, &n);
    uint16_t flags = bw__mux_take_flags(s);
    send_frame(s->m, BW_MUX_TYPE_DATA, flags, s->id, (uint32_t)n, segs, lens, nseg);
    s->send_window -= (uint32_t)n;
    bw_chunkq_drop(&s->pending, n);
    /* The FIN goes in a frame of its own after the last data, never on a
     * data frame: hashicorp/yamux as Debian ships it applies a data frame's
     * flags before it buffers the payload, so a reader woken by the FIN
     * returns EOF and the frame's bytes are lost to it (seen as a stream
     * cut at exactly one window in the Go interop test). */
    if (s->shut_wr && s->pending.bytes == 0)
        send_fin(s);
}

static bool sendable(const bw_mux_stream_t *s)
{
    return !s->finished && s->pending.bytes > 0 && s->send_window > 0;
}

static void after_pending_sent(bw_mux_stream_t *s)
{
    if (s->finished || s->pending.bytes > 0 || !s->want_drain)
        return;
    s->want_drain = false;
    if (!s->released && !s->shut_wr && s->cbs.on_drain)
        s->cbs.on_drain(s, s->ud);
}

/* Round robin: one frame per stream per turn while the transport has room. */
void bw__mux_flush(bw_mux_t *m)
{
    bw__mux_enter(m);
    bw_mux_stream_t *s;
    while ((s = BW_LIST_FIRST(&m->queue, bw_mux_stream_t, qnode)) && transport_ok(m)) {
        bw__mux_queue_remove(m, s);
        send_pending_frame(s);
        after_pending_sent(s);
        if (sendable(s))
            queue_push(m, s);
    }
    bw__mux_leave(m);
}

void bw__mux_schedule(bw_mux_stream_t *s)
{
    if (sendable(s))
        queue_push(s->m, s);
}

/* ---- stream API: write, shutdown, close, reset ---- */

/* Frame straight from the caller's buffer while window and transport allow;
 * returns the bytes sent. */
static size_t write_direct(bw_mux_stream_t *s, const uint8_t *p, size_t len)
{
    size_t done = 0;
    while (done < len && s->send_window > 0 && transport_ok(s->m)) {
        const void *seg = p + done;
        size_t n = frame_budget(s, len - done);
        send_frame(s->m, BW_MUX_TYPE_DATA, bw__mux_take_flags(s), s->id, (uint32_t)n, &seg, &n, 1);
        s->send_window -= (uint32_t)n;
        done += n;
    }
    return done;
}

int bw_mux_stream_write(bw_mux_stream_t *s, const void *data, size_t len)
{
    if (!can_write(s))
        return BW_EPIPE;
    bw_mux_t *m = s->m;
    size_t done = 0;
    int rc = 0;
    /* Queued streams go first, or a busy writer would starve them. */
    if (s->pending.bytes == 0 && bw_list_empty(&m->queue))
        done = write_direct(s, data, len);
    if (done < len) {
        rc = bw_chunkq_push(&s->pending, (const uint8_t *)data + done, len - done, CHUNK_MIN);
        bw__mux_schedule(s);
    }
    if (rc == 0 && s->pending.bytes > m->cfg.stream_hwm) {
        s->want_drain = true;
        rc = BW_EAGAIN;
    }
    return rc;
}

size_t bw_mux_stream_pending(const bw_mux_stream_t *s)
{
    return s->pending.bytes;
}

int bw_mux_stream_shutdown(bw_mux_stream_t *s)
{
    if (s->finished || s->state == ST_RESET || s->m->failed)
        return BW_EPIPE;
    if (s->shut_wr)
        return 0;
    s->shut_wr = true;
    if (s->pending.bytes == 0) {
        bw__mux_enter(s->m);
        send_fin(s);
        bw__mux_leave(s->m);
    }
    return 0;
}

void bw_mux_stream_close(bw_mux_stream_t *s)
{
    bw_mux_t *m = s->m;
    if (s->released)
        return;
    bw__mux_enter(m);
    /* Released first: a FIN that completes the close must not call back. */
    s->released = true;
    (void)bw_mux_stream_shutdown(s);
    /* Bytes the application will never consume: keep the peer moving. */
    size_t left = s->unconsumed;
    s->unconsumed = 0;
    if (left > 0)
        bw__mux_credit_window(s, left);
    if (s->state == ST_CLOSED)
        bw__mux_stream_finish(s, 0);
    bw__mux_leave(m);
}

void bw_mux_stream_reset(bw_mux_stream_t *s)
{
    bw_mux_t *m = s->m;
    if (s->finished) {
        s->released = true;
        return;
    }
    bw__mux_enter(m);
    s->released = true;
    uint16_t flags = bw__mux_take_flags(s) | BW_MUX_FLAG_RST;
    bw__mux_send_ctrl(m, BW_MUX_TYPE_WINDOW_UPDATE, flags, s->id, 0);
    s->state = ST_RESET;
    bw__mux_stream_finish(s, 0);
    bw__mux_leave(m);
}
