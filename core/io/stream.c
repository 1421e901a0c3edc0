/* Byte streams over TCP and yamux, and the join between two. See stream.h. */
#include "stream.h"
#include "stream_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * The shared part of every stream
 * ------------------------------------------------------------------------- */

static struct {
    uv_loop_t *loop;
    uv_idle_t idle;
    bw_stream_t *defer_head;
    /* One read buffer for every TCP stream: on_read consumes it before the
     * next read is issued, so idle connections cost no buffer at all. */
    char rbuf[BW_READ_BUF_SIZE];
    int rbuf_busy;
} g;

static void stream_flush_input(bw_stream_t *s);
static int cork_init(uv_loop_t *loop);
static void cork_done(void);

static void stream_free(bw_stream_t *s)
{
    chunk_t *c = s->in_head;
    while (c) {
        chunk_t *n = c->next;
        free(c);
        c = n;
    }
    free(s);
}

/* Free once both ends let go: the owner closed it (until then the pointer
 * is the owner's, whatever the transport did) and the transport is released,
 * and no callback of ours is running. */
void bw__stream_maybe_free(bw_stream_t *s)
{
    if (s->closed && s->released && s->depth == 0 && !s->deferred)
        stream_free(s);
}

static void defer_unlink(bw_stream_t *s)
{
    if (!s->deferred)
        return;
    if (s->defer_prev)
        s->defer_prev->defer_next = s->defer_next;
    else
        g.defer_head = s->defer_next;
    if (s->defer_next)
        s->defer_next->defer_prev = s->defer_prev;
    s->defer_next = s->defer_prev = NULL;
    s->deferred = 0;
}

static void on_idle(uv_idle_t *h)
{
    /* Streams deferred while running these are handled on the next turn. */
    bw_stream_t *list = g.defer_head;
    g.defer_head = NULL;
    uv_idle_stop(&g.idle);
    while (list) {
        bw_stream_t *s = list;
        list = s->defer_next;
        if (list)
            list->defer_prev = NULL;
        s->defer_next = s->defer_prev = NULL;
        s->deferred = 0;
        s->depth++;
        stream_flush_input(s);
        s->depth--;
        bw__stream_maybe_free(s);
    }
}

/* Deliver held input on a later loop turn, never inside the caller's stack. */
static void stream_defer(bw_stream_t *s)
{
    if (s->deferred || s->closed)
        return;
    s->deferred = 1;
    s->defer_prev = NULL;
    s->defer_next = g.defer_head;
    if (g.defer_head)
        g.defer_head->defer_prev = s;
    g.defer_head = s;
    uv_idle_start(&g.idle, on_idle);
}

int bw_stream_loop_init(uv_loop_t *loop)
{
    g.loop = loop;
    /* Only active while deliveries are pending, so it never holds the
     * loop open by itself. */
    int rc = uv_idle_init(loop, &g.idle);
    return rc < 0 ? rc : cork_init(loop);
}

void bw_stream_loop_done(void)
{
    if (g.loop && !uv_is_closing((uv_handle_t *)&g.idle))
        uv_close((uv_handle_t *)&g.idle, NULL);
    cork_done();
}

uv_loop_t *bw_stream_loop(void)
{
    return g.loop;
}

static int stream_live(const bw_stream_t *s)
{
    return !s->closed && s->has_cbs;
}

static int hold_input(bw_stream_t *s, const uint8_t *data, size_t len, int front)
{
    chunk_t *c = malloc(sizeof *c + len);
    if (!c)
        return BW_ENOMEM;
    memcpy(c->data, data, len);
    c->len = len;
    c->off = 0;
    c->next = NULL;
    if (front) {
        c->next = s->in_head;
        s->in_head = c;
        if (!s->in_tail)
            s->in_tail = c;
    } else {
        if (s->in_tail)
            s->in_tail->next = c;
        else
            s->in_head = c;
        s->in_tail = c;
    }
    return 0;
}

/* The transport read `len` bytes. */
void bw__stream_input(bw_stream_t *s, const uint8_t *data, size_t len)
{
    if (s->closed)
        return;
    if (!s->reading || !s->has_cbs || s->in_head) {
        if (hold_input(s, data, len, 0) != 0 && s->cbs.on_error && s->has_cbs) {
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
    if (!s->reading || !s->has_cbs || s->in_head) {
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
    while (s->in_head && s->reading && stream_live(s)) {
        chunk_t *c = s->in_head;
        s->in_head = c->next;
        if (!s->in_head)
            s->in_tail = NULL;
        s->cbs.on_read(s, s->ud, c->data + c->off, c->len - c->off);
        if (s->ops->consumed && !s->released)
            s->ops->consumed(s, c->len - c->off);
        free(c);
    }
    if (s->in_head || !s->reading || !stream_live(s))
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
    if (s->in_head || s->eof_held || s->err_held)
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
    if (s->in_head || s->eof_held || s->err_held)
        stream_defer(s);
}

void bw_stream_close(bw_stream_t *s, int abort)
{
    if (!s || s->closed)
        return;
    s->closed = 1;
    defer_unlink(s);
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
    int rc = hold_input(s, data, len, 1);
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

/* ---------------------------------------------------------------------------
 * TCP
 * ------------------------------------------------------------------------- */

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
    size_t cork_len;
    struct tcp_stream *cork_next, *cork_prev;
    unsigned corked : 1; /* on the cork list */
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
    if (g.rbuf_busy) {
        /* Cannot happen with libuv's read loop; stay safe if it ever does. */
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    g.rbuf_busy = 1;
    buf->base = g.rbuf;
    buf->len = sizeof g.rbuf;
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
    if (buf->base == g.rbuf)
        g.rbuf_busy = 0;
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

/* Send data[len] now: straight to the socket when nothing is queued, the
 * rest (or all of it) through a write request. Returns 0 or a libuv error. */
static int tcp_send(tcp_stream_t *t, const void *data, size_t len)
{
    size_t off = 0;
    if (t->queued == 0) {
        /* Most writes fit in the socket buffer: no copy, no request. */
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&t->h, &b, 1);
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
    memcpy(w->data, (const char *)data + off, rest);
    w->t = t;
    w->len = rest;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)rest);
    int rc = uv_write(&w->req, (uv_stream_t *)&t->h, &b, 1, tcp_write_done);
    if (rc < 0) {
        free(w);
        return rc;
    }
    t->queued += rest;
    return 0;
}

/* ---- Write coalescing ----
 * A proxy turn often writes one message in pieces (a response head, then its
 * body; several yamux frames for one stream). Writes below BW_CORK_MAX wait in
 * the stream's cork buffer (at most BW_CORK_MAX bytes; a write that would
 * overflow it sends the buffer first) until the loop turn's callbacks are done: the
 * check handle (after I/O callbacks) and the prepare handle (before the loop
 * blocks, for writes made by timers and idle work) send each corked stream
 * with one system call. Nothing waits past the current turn. */

static struct {
    tcp_stream_t *head;
    uv_check_t check;
    uv_prepare_t prepare;
    int init;
} cork;

static void cork_unlink(tcp_stream_t *t)
{
    if (!t->corked)
        return;
    if (t->cork_prev)
        t->cork_prev->cork_next = t->cork_next;
    else
        cork.head = t->cork_next;
    if (t->cork_next)
        t->cork_next->cork_prev = t->cork_prev;
    t->cork_next = t->cork_prev = NULL;
    t->corked = 0;
}

static void cork_drop(tcp_stream_t *t)
{
    cork_unlink(t);
    free(t->cork);
    t->cork = NULL;
    t->cork_len = 0;
}

/* Send what `t` has corked. Returns 0 or a libuv error. */
static int cork_flush(tcp_stream_t *t)
{
    cork_unlink(t);
    if (t->cork_len == 0)
        return 0;
    int rc = tcp_send(t, t->cork, t->cork_len);
    /* An idle connection holds no buffer. */
    free(t->cork);
    t->cork = NULL;
    t->cork_len = 0;
    return rc;
}

static void cork_run(void)
{
    tcp_stream_t *t;
    /* Streams corked by callbacks run here join the list and are sent too. */
    while ((t = cork.head)) {
        bw_stream_t *s = &t->base;
        s->depth++;
        int rc = cork_flush(t);
        if (rc < 0)
            bw__stream_error(s, rc);
        s->depth--;
        bw__stream_maybe_free(s);
    }
    uv_check_stop(&cork.check);
    uv_prepare_stop(&cork.prepare);
}

static void cork_check(uv_check_t *h)
{
    (void)h;
    cork_run();
}

static void cork_prepare(uv_prepare_t *h)
{
    (void)h;
    cork_run();
}

static int cork_init(uv_loop_t *loop)
{
    int rc = uv_check_init(loop, &cork.check);
    if (rc == 0)
        rc = uv_prepare_init(loop, &cork.prepare);
    cork.init = rc == 0;
    return rc;
}

static void cork_done(void)
{
    if (!cork.init)
        return;
    cork.init = 0;
    uv_close((uv_handle_t *)&cork.check, NULL);
    uv_close((uv_handle_t *)&cork.prepare, NULL);
}

static int cork_append(tcp_stream_t *t, const void *data, size_t len)
{
    if (!t->cork) {
        /* At most BW_CORK_MAX: a bulk stream's writes go straight out, so the
         * buffer stays a small, cheap allocation. */
        if (!(t->cork = malloc(BW_CORK_MAX)))
            return BW_ENOMEM;
    }
    memcpy(t->cork + t->cork_len, data, len);
    t->cork_len += len;
    if (!t->corked) {
        t->corked = 1;
        t->cork_prev = NULL;
        t->cork_next = cork.head;
        if (cork.head)
            cork.head->cork_prev = t;
        cork.head = t;
        uv_check_start(&cork.check, cork_check);
        uv_prepare_start(&cork.prepare, cork_prepare);
    }
    return 0;
}

static int tcp_write(bw_stream_t *s, const void *data, size_t len)
{
    tcp_stream_t *t = as_tcp(s);
    int rc;
    if (t->shut)
        return BW_EPIPE;
    if (t->queued == 0 && t->cork_len + len <= BW_CORK_MAX)
        rc = cork_append(t, data, len);
    else if ((rc = cork_flush(t)) == 0)
        rc = tcp_send(t, data, len);
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

bw_stream_t *bw_stream_tcp_new(void)
{
    tcp_stream_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->base.ops = &tcp_ops;
    if (uv_tcp_init(g.loop, &t->h.tcp) != 0) {
        free(t);
        return NULL;
    }
    return &t->base;
}

uv_tcp_t *bw_stream_tcp_handle(bw_stream_t *s)
{
    return &as_tcp(s)->h.tcp;
}

bw_stream_t *bw_stream_pipe_open(int fd, const char *peer)
{
    tcp_stream_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->base.ops = &tcp_ops;
    t->is_pipe = 1;
    if (uv_pipe_init(g.loop, &t->h.pipe, 0) != 0) {
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

/* --- connecting --- */

typedef struct connect_req {
    uv_connect_t req;
    uv_getaddrinfo_t gai;
    bw_stream_t *s;
    bw_connect_cb cb;
    void *ud;
    int port;
    int try_v6; /* "localhost": fall back to ::1 after 127.0.0.1 */
} connect_req_t;

static void connect_done(uv_connect_t *req, int status);

static int connect_start(connect_req_t *c, const struct sockaddr *sa)
{
    c->s = bw_stream_tcp_new();
    if (!c->s)
        return BW_ENOMEM;
    int rc = uv_tcp_connect(&c->req, bw_stream_tcp_handle(c->s), sa, connect_done);
    if (rc < 0) {
        c->s->closed = 1;
        tcp_close_handle(as_tcp(c->s));
        c->s = NULL;
    }
    return rc;
}

static void connect_finish(connect_req_t *c, int status)
{
    bw_stream_t *s = c->s;
    if (status < 0 && s) {
        s->closed = 1;
        tcp_close_handle(as_tcp(s));
        s = NULL;
    }
    if (s)
        bw_stream_tcp_ready(s);
    c->cb(c->ud, s, status);
    free(c);
}

static void connect_done(uv_connect_t *req, int status)
{
    connect_req_t *c = BW_CONTAINER_OF(req, connect_req_t, req);
    if (status < 0 && c->try_v6 && status != UV_ECANCELED) {
        struct sockaddr_in6 a6;
        c->try_v6 = 0;
        c->s->closed = 1;
        tcp_close_handle(as_tcp(c->s));
        c->s = NULL;
        uv_ip6_addr("::1", c->port, &a6);
        if (connect_start(c, (const struct sockaddr *)&a6) == 0)
            return;
    }
    connect_finish(c, status);
}

static void resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    connect_req_t *c = BW_CONTAINER_OF(gai, connect_req_t, gai);
    int rc = status;
    if (rc == 0) {
        struct addrinfo *pick = res;
        for (struct addrinfo *a = res; a; a = a->ai_next)
            if (a->ai_family == AF_INET) {
                pick = a;
                break;
            }
        rc = connect_start(c, pick->ai_addr);
    }
    uv_freeaddrinfo(res);
    if (rc < 0)
        connect_finish(c, rc);
}

int bw_stream_tcp_connect(const char *host, int port, bw_connect_cb cb, void *ud)
{
    struct sockaddr_storage ss;
    connect_req_t *c = calloc(1, sizeof *c);
    if (!c)
        return BW_ENOMEM;
    c->cb = cb;
    c->ud = ud;
    c->port = port;
    int rc;
    if (!host || !*host || strcmp(host, "localhost") == 0) {
        c->try_v6 = host && *host;
        uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&ss);
        rc = connect_start(c, (struct sockaddr *)&ss);
    } else if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
               uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        rc = connect_start(c, (struct sockaddr *)&ss);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        char sport[8];
        snprintf(sport, sizeof sport, "%d", port);
        rc = uv_getaddrinfo(g.loop, &c->gai, resolved, host, sport, &hints);
    }
    if (rc < 0)
        free(c);
    return rc;
}

/* ---------------------------------------------------------------------------
 * yamux
 * ------------------------------------------------------------------------- */

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

bw_stream_t *bw_stream_mux_new(bw_mux_stream_t *ms, const char *peer)
{
    mux_stream_t *m = calloc(1, sizeof *m);
    if (!m) {
        bw_mux_stream_reset(ms);
        return NULL;
    }
    m->base.ops = &mux_ops;
    m->ms = ms;
    if (peer)
        snprintf(m->base.peer, sizeof m->base.peer, "%s", peer);
    bw_mux_stream_set_callbacks(ms, &mux_cbs, &m->base);
    return &m->base;
}

/* ---------------------------------------------------------------------------
 * join
 * ------------------------------------------------------------------------- */

typedef struct join join_t;

typedef struct join_side {
    join_t *j;
    int idx;
} join_side_t;

struct join {
    bw_stream_t *s[2];
    join_side_t side[2];
    uint64_t bytes[2]; /* bytes read from s[i] */
    int eof[2];        /* s[i] sent EOF, forwarded as shutdown */
    bw_join_cb cb;
    void *ud;
};

static void join_finish(join_t *j, int err)
{
    bw_stream_close(j->s[0], err != 0);
    bw_stream_close(j->s[1], err != 0);
    if (j->cb)
        j->cb(j->ud, err, j->bytes[0], j->bytes[1]);
    free(j);
}

static void join_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    join_side_t *side = ud;
    join_t *j = side->j;
    j->bytes[side->idx] += len;
    int rc = bw_stream_write(j->s[!side->idx], data, len);
    if (rc == BW_EAGAIN)
        bw_stream_read_stop(s);
    else if (rc < 0)
        join_finish(j, rc);
}

static void join_eof(bw_stream_t *s, void *ud)
{
    join_side_t *side = ud;
    join_t *j = side->j;
    j->eof[side->idx] = 1;
    if (j->eof[!side->idx]) {
        join_finish(j, 0);
        return;
    }
    int rc = bw_stream_shutdown(j->s[!side->idx]);
    if (rc < 0)
        join_finish(j, rc);
}

static void join_drain(bw_stream_t *s, void *ud)
{
    join_side_t *side = ud;
    join_t *j = side->j;
    /* s can take more: resume the stream that feeds it. */
    if (!j->eof[!side->idx])
        bw_stream_read_start(j->s[!side->idx]);
}

static void join_error(bw_stream_t *s, void *ud, int err)
{
    join_side_t *side = ud;
    join_finish(side->j, err);
}

static const bw_stream_cbs_t join_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = join_read,
    .on_eof = join_eof,
    .on_drain = join_drain,
    .on_error = join_error,
};

int bw_stream_join(bw_stream_t *a, bw_stream_t *b, bw_join_cb cb, void *ud)
{
    join_t *j = calloc(1, sizeof *j);
    if (!j) {
        bw_stream_close(a, 1);
        bw_stream_close(b, 1);
        return BW_ENOMEM;
    }
    j->s[0] = a;
    j->s[1] = b;
    j->cb = cb;
    j->ud = ud;
    for (int i = 0; i < 2; i++) {
        j->side[i].j = j;
        j->side[i].idx = i;
        bw_stream_set_callbacks(j->s[i], &join_cbs, &j->side[i]);
    }
    /* A stream that failed before the join still reports through err_held
     * (delivered on a later turn), so no special case is needed here. */
    return 0;
}
