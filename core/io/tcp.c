/* TCP and AF_UNIX pipe streams, with write coalescing (see stream.h and
 * stream_impl.h). */
#include "stream.h"
#include "stream_impl.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TCP, and AF_UNIX pipes (the synthetic connections of replay) which
 * share everything but reset-on-abort and the peer address. */
typedef struct tcp_stream {
    bw_stream_t base;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    size_t queued;
    /* Small writes of one loop turn, sent as one write when the turn's
     * callbacks are done (see "Write coalescing" below). */
    char *cork;
    size_t cork_len, cork_cap;
    bw_list_node_t cork_node; /* linked: on io->corked */
    unsigned is_pipe : 1;
    unsigned shut : 1;
    unsigned linger : 1; /* closing once the queue drains */
    unsigned reading : 1;
} tcp_stream_t;

typedef struct wreq {
    uv_write_t req;
    tcp_stream_t *t;
    size_t len;
    char data[];
} wreq_t;

static tcp_stream_t *as_tcp(bw_stream_t *s)
{
    return (tcp_stream_t *)s;
}

static void tcp_closed(uv_handle_t *h)
{
    tcp_stream_t *t = BW_CONTAINER_OF(h, tcp_stream_t, h);
    bw__stream_released(&t->base);
}

static void tcp_close_handle(tcp_stream_t *t)
{
    if (!uv_is_closing((uv_handle_t *)&t->h))
        uv_close((uv_handle_t *)&t->h, tcp_closed);
}

static void tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    bw_io_t *io = BW_CONTAINER_OF(h, tcp_stream_t, h)->base.io;
    if (io->rbuf_busy) {
        /* Cannot happen with libuv's read loop; stay safe if it ever does. */
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    io->rbuf_busy = 1;
    buf->base = io->rbuf;
    buf->len = sizeof io->rbuf;
}

static void tcp_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    tcp_stream_t *t = BW_CONTAINER_OF(h, tcp_stream_t, h);
    bw_stream_t *s = &t->base;
    s->depth++;
    if (n > 0)
        bw__stream_input(s, (const uint8_t *)buf->base, (size_t)n);
    else if (n == UV_EOF) {
        uv_read_stop(h);
        t->reading = 0;
        bw__stream_eof(s);
    } else if (n < 0) {
        uv_read_stop(h);
        t->reading = 0;
        bw__stream_error(s, (int)n);
    }
    if (buf->base == s->io->rbuf)
        s->io->rbuf_busy = 0;
    s->depth--;
    bw__stream_maybe_free(s);
}

static void tcp_read_ctl(bw_stream_t *s, int on)
{
    tcp_stream_t *t = as_tcp(s);
    if (on && !t->reading && !s->eof_held && !s->failed) {
        if (uv_read_start((uv_stream_t *)&t->h, tcp_alloc, tcp_read) == 0)
            t->reading = 1;
    } else if (!on && t->reading) {
        uv_read_stop((uv_stream_t *)&t->h);
        t->reading = 0;
    }
}

static void tcp_write_done(uv_write_t *req, int status)
{
    wreq_t *w = BW_CONTAINER_OF(req, wreq_t, req);
    tcp_stream_t *t = w->t;
    bw_stream_t *s = &t->base;
    t->queued -= w->len;
    free(w);
    s->depth++;
    if (status < 0 && status != UV_ECANCELED)
        bw__stream_error(s, status);
    else if (t->queued <= BW_STREAM_LWM)
        bw__stream_drain(s);
    if (t->linger && t->queued == 0)
        tcp_close_handle(t);
    s->depth--;
    bw__stream_maybe_free(s);
}

/* Send a[alen] then b[blen] now (either may be empty): straight to the
 * socket in one system call when nothing is queued, the rest (or all of it)
 * through one write request. Returns 0 or a libuv error. */
static int tcp_send2(tcp_stream_t *t, const void *a, size_t alen, const void *b, size_t blen)
{
    size_t off = 0, len = alen + blen;
    if (t->queued == 0) {
        /* Most writes fit in the socket buffer: no copy, no request. */
        uv_buf_t bufs[2];
        unsigned nb = 0;
        if (alen)
            bufs[nb++] = uv_buf_init((char *)a, (unsigned)alen);
        if (blen)
            bufs[nb++] = uv_buf_init((char *)b, (unsigned)blen);
        int n = uv_try_write((uv_stream_t *)&t->h, bufs, nb);
        if (n >= 0)
            off = (size_t)n;
        else if (n != UV_EAGAIN)
            return n;
        if (off == len)
            return 0;
    }
    size_t rest = len - off;
    wreq_t *w = malloc(sizeof *w + rest);
    if (!w)
        return BW_ENOMEM;
    /* The unsent tail: what is left of a, then what is left of b. */
    size_t from_a = off < alen ? alen - off : 0;
    if (from_a)
        memcpy(w->data, (const char *)a + off, from_a);
    if (rest > from_a)
        memcpy(w->data + from_a, (const char *)b + (off > alen ? off - alen : 0), rest - from_a);
    w->t = t;
    w->len = rest;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)rest);
    int rc = uv_write(&w->req, (uv_stream_t *)&t->h, &buf, 1, tcp_write_done);
    if (rc < 0) {
        free(w);
        return rc;
    }
    t->queued += rest;
    return 0;
}

static int tcp_send(tcp_stream_t *t, const void *data, size_t len)
{
    return tcp_send2(t, data, len, NULL, 0);
}

/* ---- Write coalescing ----
 * A proxy turn often writes one message in pieces (a response head, then its
 * body; several yamux frames for one stream). Writes below BW_CORK_MAX wait in
 * the stream's cork buffer (at most BW_CORK_MAX bytes) until the loop turn's
 * callbacks are done: the check handle (after I/O callbacks) and the prepare
 * handle (before the loop blocks, for writes made by timers and idle work)
 * send each corked stream with one system call. A write that would overflow
 * the buffer leaves with it, in one system call too. Nothing waits past the
 * current turn. */

/* Cork buffers are sized by what a turn writes (CORK_MIN at first, doubled
 * up to BW_CORK_MAX), so a thousand connections answered in one turn take
 * what their answers need, not 16 KiB each. Freed buffers wait in a small
 * pool for the next turn: without it a busy loop mallocs and frees a buffer
 * per stream per turn, and glibc trims and regrows the heap (a brk each
 * way) every turn. Each pooled buffer starts with its cap and the link. */
#define CORK_MIN      2048u
#define CORK_POOL_MAX 64u

typedef struct pooled {
    struct pooled *next;
    size_t cap;
} pooled_t;

/* gcc 12 -fanalyzer reports here, where its path through tcp_write or
 * cork_flush ends, the write request tcp_send2 handed to uv_write (libuv owns
 * it until tcp_write_done frees it): the same false positive as cork_flush. */
BW_ANALYZER_IGNORE("-Wanalyzer-malloc-leak")
static void cork_buf_put(bw_io_t *io, char *b, size_t cap)
{
    if (!b)
        return;
    if (io->cork_pooled >= CORK_POOL_MAX) {
        free(b);
        return;
    }
    pooled_t p = {.next = io->cork_pool, .cap = cap};
    memcpy(b, &p, sizeof p);
    io->cork_pool = b;
    io->cork_pooled++;
}
BW_ANALYZER_END

void bw__io_cork_pool_clear(bw_io_t *io)
{
    while (io->cork_pool) {
        pooled_t p;
        memcpy(&p, io->cork_pool, sizeof p);
        free(io->cork_pool);
        io->cork_pool = p.next;
    }
    io->cork_pooled = 0;
}

/* Make room for `need` corked bytes. Returns 0 or BW_ENOMEM. */
static int cork_reserve(tcp_stream_t *t, size_t need)
{
    bw_io_t *io = t->base.io;
    if (!t->cork && io->cork_pool) {
        pooled_t p;
        memcpy(&p, io->cork_pool, sizeof p);
        t->cork = io->cork_pool;
        t->cork_cap = p.cap;
        io->cork_pool = p.next;
        io->cork_pooled--;
    }
    if (need <= t->cork_cap)
        return 0;
    size_t cap = t->cork_cap ? t->cork_cap : CORK_MIN;
    while (cap < need)
        cap *= 2;
    cap = cap < BW_CORK_MAX ? cap : BW_CORK_MAX;
    char *b = realloc(t->cork, cap);
    if (!b)
        return BW_ENOMEM;
    t->cork = b;
    t->cork_cap = cap;
    return 0;
}

/* The stream's cork buffer goes back to the pool; an idle connection
 * holds none. */
static void cork_release(tcp_stream_t *t)
{
    cork_buf_put(t->base.io, t->cork, t->cork_cap);
    t->cork = NULL;
    t->cork_len = t->cork_cap = 0;
}

static void cork_drop(tcp_stream_t *t)
{
    bw_list_remove(&t->cork_node);
    cork_release(t);
}

/* Send what `t` has corked. Returns 0 or a libuv error. */
/* gcc 12 -fanalyzer false positive: tcp_send hands its write request to
 * uv_write, which owns it until the callback frees it; the analyzer cannot
 * see into libuv and reports a leak. */
BW_ANALYZER_IGNORE("-Wanalyzer-malloc-leak")
static int cork_flush(tcp_stream_t *t)
{
    bw_list_remove(&t->cork_node);
    int rc = t->cork_len ? tcp_send(t, t->cork, t->cork_len) : 0;
    cork_release(t); /* a buffer goes back even when nothing was corked */
    return rc;
}
BW_ANALYZER_END

static void cork_run(bw_io_t *io)
{
    tcp_stream_t *t;
    /* Streams corked by callbacks run here join the list and are sent too. */
    while ((t = BW_LIST_FIRST(&io->corked, tcp_stream_t, cork_node))) {
        bw_stream_t *s = &t->base;
        s->depth++;
        int rc = cork_flush(t);
        if (rc < 0)
            bw__stream_error(s, rc);
        s->depth--;
        bw__stream_maybe_free(s);
    }
    uv_check_stop(&io->cork_check);
    uv_prepare_stop(&io->cork_prepare);
}

static void cork_check(uv_check_t *h)
{
    cork_run(BW_CONTAINER_OF(h, bw_io_t, cork_check));
}

static void cork_prepare(uv_prepare_t *h)
{
    cork_run(BW_CONTAINER_OF(h, bw_io_t, cork_prepare));
}

static int cork_append(tcp_stream_t *t, const void *data, size_t len)
{
    /* At most BW_CORK_MAX: a bulk stream's writes go straight out, so the
     * buffer stays a small, cheap allocation. */
    if (cork_reserve(t, t->cork_len + len) != 0)
        return BW_ENOMEM;
    memcpy(t->cork + t->cork_len, data, len);
    t->cork_len += len;
    if (!bw_list_linked(&t->cork_node)) {
        bw_io_t *io = t->base.io;
        bw_list_push(&io->corked, &t->cork_node);
        uv_check_start(&io->cork_check, cork_check);
        uv_prepare_start(&io->cork_prepare, cork_prepare);
    }
    return 0;
}

static int tcp_write(bw_stream_t *s, const void *data, size_t len)
{
    tcp_stream_t *t = as_tcp(s);
    int rc;
    if (t->shut)
        return BW_EPIPE;
    if (t->queued == 0 && t->cork_len + len <= BW_CORK_MAX) {
        rc = cork_append(t, data, len);
    } else if (t->cork_len > 0) {
        /* What is corked goes first, with this write: one system call. */
        bw_list_remove(&t->cork_node);
        rc = tcp_send2(t, t->cork, t->cork_len, data, len);
        cork_release(t);
    } else {
        rc = tcp_send(t, data, len);
    }
    if (rc < 0)
        return rc;
    return t->queued + t->cork_len >= BW_STREAM_HWM ? BW_EAGAIN : 0;
}

static size_t tcp_queued(bw_stream_t *s)
{
    return as_tcp(s)->queued + as_tcp(s)->cork_len;
}

static void tcp_shutdown_done(uv_shutdown_t *req, int status)
{
    free(req);
}

static int tcp_shutdown(bw_stream_t *s)
{
    tcp_stream_t *t = as_tcp(s);
    if (t->shut)
        return 0;
    int rc = cork_flush(t); /* the FIN goes after every byte */
    if (rc < 0)
        return rc;
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req)
        return BW_ENOMEM;
    rc = uv_shutdown(req, (uv_stream_t *)&t->h, tcp_shutdown_done);
    if (rc < 0) {
        free(req);
        return rc;
    }
    t->shut = 1;
    return 0;
}

static void tcp_close(bw_stream_t *s, int abort)
{
    tcp_stream_t *t = as_tcp(s);
    tcp_read_ctl(s, 0);
    if (abort || cork_flush(t) < 0)
        cork_drop(t);
    if (!abort && t->queued > 0) {
        t->linger = 1; /* tcp_write_done closes when the queue empties */
        return;
    }
    /* An abort resets, so the peer learns the stream failed rather than
     * ended; close_reset refuses after a shutdown, where FIN already went. */
    if (abort && !t->is_pipe && !uv_is_closing((uv_handle_t *)&t->h) &&
        uv_tcp_close_reset(&t->h.tcp, tcp_closed) == 0)
        return;
    tcp_close_handle(t);
}

static const bw__stream_ops_t tcp_ops = {
    .write = tcp_write,
    .queued = tcp_queued,
    .shutdown = tcp_shutdown,
    .read_ctl = tcp_read_ctl,
    .close = tcp_close,
};

bw_stream_t *bw_stream_tcp_new(bw_io_t *io)
{
    tcp_stream_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->base.ops = &tcp_ops;
    t->base.io = io;
    if (uv_tcp_init(io->loop, &t->h.tcp) != 0) {
        free(t);
        return NULL;
    }
    return &t->base;
}

uv_tcp_t *bw_stream_tcp_handle(bw_stream_t *s)
{
    return &as_tcp(s)->h.tcp;
}

bw_stream_t *bw_stream_pipe_open(bw_io_t *io, int fd, const char *peer)
{
    tcp_stream_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->base.ops = &tcp_ops;
    t->base.io = io;
    t->is_pipe = 1;
    if (uv_pipe_init(io->loop, &t->h.pipe, 0) != 0) {
        free(t);
        return NULL;
    }
    if (uv_pipe_open(&t->h.pipe, fd) != 0) {
        /* The handle is initialised: it must be closed, not freed. */
        t->base.closed = 1;
        tcp_close_handle(t);
        return NULL;
    }
    snprintf(t->base.peer, sizeof t->base.peer, "%s", peer ? peer : "");
    return &t->base;
}

void bw_stream_tcp_ready(bw_stream_t *s)
{
    tcp_stream_t *t = as_tcp(s);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_nodelay(&t->h.tcp, 1);
    if (uv_tcp_getpeername(&t->h.tcp, (struct sockaddr *)&ss, &len) == 0)
        bw_sockaddr_str((struct sockaddr *)&ss, s->peer, sizeof s->peer);
}

void bw__tcp_discard(bw_stream_t *s)
{
    s->closed = 1;
    tcp_close_handle(as_tcp(s));
}
