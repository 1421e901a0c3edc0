/* The discipline every byte stream shares (see stream.h): held input and
 * its delivery on a later loop turn, the callback depth counter, and freeing
 * once both the owner and the transport let go. The backends are tcp.c (TCP
 * and pipes), mux_stream.c (yamux streams) and tls_stream.c; join.c forwards
 * between two streams and connect.c opens outgoing ones. */
#include "stream.h"
#include "stream_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * The shared part of every stream
 * ------------------------------------------------------------------------- */

static void stream_flush_input(bw_stream_t *s);

static void stream_free(bw_stream_t *s)
{
    bw_chunkq_clear(&s->in);
    free(s);
}

/* Free once both ends let go: the owner closed it (until then the pointer
 * is the owner's, whatever the transport did) and the transport is released,
 * and no callback of ours is running. */
void bw__stream_maybe_free(bw_stream_t *s)
{
    if (s->closed && s->released && s->depth == 0 && !bw_list_linked(&s->defer_node))
        stream_free(s);
}

static void on_idle(uv_idle_t *h)
{
    bw_io_t *io = BW_CONTAINER_OF(h, bw_io_t, idle);
    /* Streams deferred while running these are handled on the next turn;
     * one closed meanwhile leaves `list` by itself (bw_stream_close). */
    bw_list_t list = {0};
    bw_stream_t *s;
    bw_list_move(&io->deferred, &list);
    uv_idle_stop(&io->idle);
    while ((s = BW_LIST_FIRST(&list, bw_stream_t, defer_node))) {
        bw_list_remove(&s->defer_node);
        s->depth++;
        stream_flush_input(s);
        s->depth--;
        bw__stream_maybe_free(s);
    }
}

/* Deliver held input on a later loop turn, never inside the caller's stack. */
static void stream_defer(bw_stream_t *s)
{
    if (bw_list_linked(&s->defer_node) || s->closed)
        return;
    bw_list_push(&s->io->deferred, &s->defer_node);
    uv_idle_start(&s->io->idle, on_idle);
}

static void io_handle_closed(uv_handle_t *h)
{
    bw_io_t *io = h->data;
    if (--io->handles == 0) {
        bw__io_cork_pool_clear(io);
        free(io);
    }
}

static void io_close_handles(bw_io_t *io)
{
    uv_handle_t *h[] = {(uv_handle_t *)&io->idle, (uv_handle_t *)&io->cork_check,
                        (uv_handle_t *)&io->cork_prepare};
    for (int i = 0; i < io->handles; i++) {
        h[i]->data = io;
        uv_close(h[i], io_handle_closed);
    }
}

bw_io_t *bw_io_new(uv_loop_t *loop)
{
    if (!loop) /* uv_default_loop() returns NULL when out of memory */
        return NULL;
    bw_io_t *io = calloc(1, sizeof *io);
    if (!io)
        return NULL;
    io->loop = loop;
    /* Only active while there is work, so they never hold the loop open by
     * themselves. */
    int rc = uv_idle_init(loop, &io->idle);
    if (rc == 0 && ++io->handles)
        rc = uv_check_init(loop, &io->cork_check);
    if (rc == 0 && ++io->handles)
        rc = uv_prepare_init(loop, &io->cork_prepare);
    if (rc == 0 && ++io->handles)
        return io;
    if (io->handles == 0)
        free(io);
    else
        io_close_handles(io); /* frees io from the last close callback */
    return NULL;
}

void bw_io_free(bw_io_t *io)
{
    if (io)
        io_close_handles(io);
}

uv_loop_t *bw_io_loop(const bw_io_t *io)
{
    return io->loop;
}

static int stream_live(const bw_stream_t *s)
{
    return !s->closed && s->has_cbs;
}

/* The transport read `len` bytes. */
void bw__stream_input(bw_stream_t *s, const uint8_t *data, size_t len)
{
    if (s->closed)
        return;
    if (!s->reading || !s->has_cbs || !bw_chunkq_empty(&s->in)) {
        if (bw_chunkq_push(&s->in, data, len, 0) != 0 && s->cbs.on_error && s->has_cbs) {
            s->failed = 1;
            s->depth++;
            s->cbs.on_error(s, s->ud, BW_ENOMEM);
            s->depth--;
        }
        return;
    }
    s->depth++;
    s->cbs.on_read(s, s->ud, data, len);
    if (s->ops->consumed && !s->released)
        s->ops->consumed(s, len);
    s->depth--;
}

void bw__stream_eof(bw_stream_t *s)
{
    if (s->closed)
        return;
    if (!s->reading || !s->has_cbs || !bw_chunkq_empty(&s->in)) {
        s->eof_held = 1;
        return;
    }
    if (s->cbs.on_eof) {
        s->depth++;
        s->cbs.on_eof(s, s->ud);
        s->depth--;
    }
}

void bw__stream_error(bw_stream_t *s, int err)
{
    if (s->closed || s->failed)
        return;
    s->failed = 1;
    if (!s->has_cbs) {
        s->err_held = err;
        return;
    }
    if (s->cbs.on_error) {
        s->depth++;
        s->cbs.on_error(s, s->ud, err);
        s->depth--;
    }
}

void bw__stream_drain(bw_stream_t *s)
{
    if (s->closed || !s->need_drain || !s->has_cbs)
        return;
    s->need_drain = 0;
    if (s->cbs.on_drain) {
        s->depth++;
        s->cbs.on_drain(s, s->ud);
        s->depth--;
    }
}

/* Deliver held input while the owner reads; called with depth held. */
static void stream_flush_input(bw_stream_t *s)
{
    while (!bw_chunkq_empty(&s->in) && s->reading && stream_live(s)) {
        bw_chunk_t *c = bw_chunkq_pop(&s->in);
        s->cbs.on_read(s, s->ud, c->data + c->off, c->len - c->off);
        if (s->ops->consumed && !s->released)
            s->ops->consumed(s, c->len - c->off);
        free(c);
    }
    if (!bw_chunkq_empty(&s->in) || !s->reading || !stream_live(s))
        return;
    if (s->eof_held) {
        s->eof_held = 0;
        if (s->cbs.on_eof)
            s->cbs.on_eof(s, s->ud);
    }
    if (s->err_held && stream_live(s)) {
        int err = s->err_held;
        s->err_held = 0;
        if (s->cbs.on_error)
            s->cbs.on_error(s, s->ud, err);
    }
}

void bw_stream_set_callbacks(bw_stream_t *s, const bw_stream_cbs_t *cbs, void *ud)
{
    memset(&s->cbs, 0, sizeof s->cbs);
    size_t n =
        cbs->struct_size && cbs->struct_size < sizeof s->cbs ? cbs->struct_size : sizeof s->cbs;
    memcpy(&s->cbs, cbs, n);
    s->ud = ud;
    int first = !s->has_cbs;
    s->has_cbs = 1;
    if (first) {
        s->reading = 1;
        if (!s->released && s->ops->read_ctl)
            s->ops->read_ctl(s, 1);
    }
    if (!bw_chunkq_empty(&s->in) || s->eof_held || s->err_held)
        stream_defer(s);
}

int bw_stream_write(bw_stream_t *s, const void *data, size_t len)
{
    if (s->closed || s->released || s->failed)
        return BW_EPIPE;
    if (len == 0)
        return 0;
    int rc = s->ops->write(s, data, len);
    if (rc == BW_EAGAIN)
        s->need_drain = 1;
    return rc;
}

size_t bw_stream_queued(bw_stream_t *s)
{
    return s->released ? 0 : s->ops->queued(s);
}

int bw_stream_shutdown(bw_stream_t *s)
{
    if (s->closed || s->released || s->failed)
        return BW_EPIPE;
    return s->ops->shutdown(s);
}

void bw_stream_read_stop(bw_stream_t *s)
{
    if (!s->reading)
        return;
    s->reading = 0;
    if (!s->released && s->ops->read_ctl)
        s->ops->read_ctl(s, 0);
}

void bw_stream_read_start(bw_stream_t *s)
{
    if (s->reading)
        return;
    s->reading = 1;
    if (!s->released && s->ops->read_ctl && s->has_cbs)
        s->ops->read_ctl(s, 1);
    if (!bw_chunkq_empty(&s->in) || s->eof_held || s->err_held)
        stream_defer(s);
}

void bw_stream_close(bw_stream_t *s, int abort)
{
    if (!s || s->closed)
        return;
    s->closed = 1;
    bw_list_remove(&s->defer_node);
    if (s->released) {
        bw__stream_maybe_free(s);
        return;
    }
    s->ops->close(s, abort);
}

const char *bw_stream_peer(bw_stream_t *s)
{
    return s->peer;
}

int bw_stream_unread(bw_stream_t *s, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    int rc = bw_chunkq_push_front(&s->in, data, len);
    if (rc == 0 && s->reading && s->has_cbs)
        stream_defer(s);
    return rc;
}

/* The transport is gone (handle closed / yamux stream freed). A yamux
 * stream goes on its own (reset by the peer, FIN both ways, session lost),
 * before the owner closed it: the stream then stays, failed or ended, until
 * bw_stream_close. */
void bw__stream_released(bw_stream_t *s)
{
    s->released = 1;
    bw__stream_maybe_free(s);
}
