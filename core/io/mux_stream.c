/* A yamux stream as a bw_stream_t (see stream.h): the engine's callbacks
 * become transport events, and bytes credit the window only once they reach
 * the owner. */
#include "stream.h"
#include "stream_impl.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct mux_stream {
    bw_stream_t base;
    bw_mux_stream_t *ms;
} mux_stream_t;

static mux_stream_t *as_mux(bw_stream_t *s)
{
    return (mux_stream_t *)s;
}

static void mux_on_data(bw_mux_stream_t *ms, void *ud, const uint8_t *data, size_t len)
{
    bw_stream_t *s = ud;
    if (s->closed) {
        bw_mux_stream_consumed(ms, len);
        return;
    }
    s->depth++;
    bw__stream_input(s, data, len);
    s->depth--;
    bw__stream_maybe_free(s); /* the owner may have closed it from on_read */
}

static void mux_on_eof(bw_mux_stream_t *ms, void *ud)
{
    bw_stream_t *s = ud;
    s->depth++;
    bw__stream_eof(s);
    s->depth--;
    bw__stream_maybe_free(s);
}

static void mux_on_drain(bw_mux_stream_t *ms, void *ud)
{
    bw_stream_t *s = ud;
    s->depth++;
    bw__stream_drain(s);
    s->depth--;
    bw__stream_maybe_free(s);
}

static void mux_on_close(bw_mux_stream_t *ms, void *ud, int err)
{
    bw_stream_t *s = ud;
    /* The engine frees ms after this returns, possibly long before the
     * owner closes s (a peer's RST while a plugin is still connecting, or
     * our FIN completing the close inside bw_stream_shutdown). */
    as_mux(s)->ms = NULL;
    s->depth++;
    if (err)
        bw__stream_error(s, err);
    s->depth--;
    bw__stream_released(s);
}

static const bw_mux_stream_cbs_t mux_cbs = {
    .on_data = mux_on_data,
    .on_eof = mux_on_eof,
    .on_drain = mux_on_drain,
    .on_close = mux_on_close,
};

static int mux_write(bw_stream_t *s, const void *data, size_t len)
{
    return bw_mux_stream_write(as_mux(s)->ms, data, len);
}

static size_t mux_queued(bw_stream_t *s)
{
    return bw_mux_stream_pending(as_mux(s)->ms);
}

static int mux_shutdown(bw_stream_t *s)
{
    return bw_mux_stream_shutdown(as_mux(s)->ms);
}

static void mux_consumed(bw_stream_t *s, size_t len)
{
    if (as_mux(s)->ms)
        bw_mux_stream_consumed(as_mux(s)->ms, len);
}

static void mux_close(bw_stream_t *s, int abort)
{
    mux_stream_t *m = as_mux(s);
    bw_mux_stream_t *ms = m->ms;
    m->ms = NULL;
    if (ms) {
        /* Held input was never credited; the engine forgets the stream. */
        if (abort)
            bw_mux_stream_reset(ms);
        else
            bw_mux_stream_close(ms);
    }
    bw__stream_released(s);
}

static const bw__stream_ops_t mux_ops = {
    .write = mux_write,
    .queued = mux_queued,
    .shutdown = mux_shutdown,
    .consumed = mux_consumed,
    .close = mux_close,
};

bw_stream_t *bw_stream_mux_new(bw_io_t *io, bw_mux_stream_t *ms, const char *peer)
{
    mux_stream_t *m = calloc(1, sizeof *m);
    if (!m) {
        bw_mux_stream_reset(ms);
        return NULL;
    }
    m->base.ops = &mux_ops;
    m->base.io = io;
    m->ms = ms;
    if (peer)
        snprintf(m->base.peer, sizeof m->base.peer, "%s", peer);
    bw_mux_stream_set_callbacks(ms, &mux_cbs, &m->base);
    return &m->base;
}
