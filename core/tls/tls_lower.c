/* The transport under a TLS connection: its own TCP handle (bw_tls_new),
 * or a byte stream the caller drives through bw_tls_lower_t (bw_tls_new_over,
 * e.g. a yamux stream). The engine in tls_io.c sees only these calls. */
#include <stdlib.h>

#include "burrow/error.h"
#include "tls_int.h"

static _Thread_local uint8_t read_buf[BW_READ_BUF_SIZE];

/* ---- the connection's own TCP handle ---- */

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *w = container_of(req, struct write_req, req);
    bw_tls_t *t = w->t;

    free(w);
    if (t->closing)
        return;
    if (status < 0) {
        bw__tls_set_err(t, "write: %s", uv_strerror(status));
        bw__tls_fail(t, status);
        return;
    }
    if (t->over_hwm && bw_tls_queued(t) <= BW_TLS_LOW_WATER)
        bw__tls_drained(t);
}

/* What the kernel takes now, the rest as a uv_write that owns the buffer. */
static int tcp_send(bw_tls_t *t, struct write_req *w, size_t len)
{
    size_t off = 0;
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    int r = uv_try_write((uv_stream_t *)&t->tcp, &b, 1);

    if (r >= 0)
        off = (size_t)r;
    else if (r != UV_EAGAIN)
        goto err;
    if (off == len) {
        free(w);
        return 0;
    }
    w->t = t;
    b = uv_buf_init((char *)w->data + off, (unsigned)(len - off));
    r = uv_write(&w->req, (uv_stream_t *)&t->tcp, &b, 1, write_cb);
    if (r < 0)
        goto err;
    if (bw_tls_queued(t) > BW_TLS_HIGH_WATER)
        t->over_hwm = 1;
    return 0;

err:
    free(w);
    bw__tls_set_err(t, "write: %s", uv_strerror(r));
    return r;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    buf->base = (char *)read_buf;
    buf->len = sizeof(read_buf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bw_tls_t *t = container_of(s, bw_tls_t, tcp);

    if (nread == 0 || bw__tls_dead(t))
        return;
    if (nread == UV_EOF) {
        bw__tls_eof(t);
    } else if (nread < 0) {
        bw__tls_set_err(t, "read: %s", uv_strerror((int)nread));
        bw__tls_fail(t, (int)nread);
    } else {
        bw__tls_input(t, (const uint8_t *)buf->base, (size_t)nread);
    }
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    /* Errors of the write side surface through write_cb or the read side. */
}

/* ---- what the engine calls ---- */

int bw__tls_send(bw_tls_t *t, struct write_req *w, size_t len)
{
    int r;

    if (t->lower == NULL)
        return tcp_send(t, w, len);
    r = t->lower->write(t->lower_ud, w->data, len);
    free(w);
    if (r == BW_EAGAIN) {
        t->over_hwm = 1;
        r = 0;
    }
    if (r < 0)
        bw__tls_set_err(t, "write: %s", bw_strerror(r));
    return r;
}

size_t bw__tls_lower_queued(const bw_tls_t *t)
{
    if (t->lower != NULL)
        return t->lower->queued(t->lower_ud);
    return uv_stream_get_write_queue_size((const uv_stream_t *)&t->tcp);
}

int bw__tls_lower_read(bw_tls_t *t, int on)
{
    int r;

    if (t->lower != NULL) {
        t->lower->read_ctl(t->lower_ud, on);
        return 0;
    }
    if (!on)
        return uv_read_stop((uv_stream_t *)&t->tcp);
    r = uv_read_start((uv_stream_t *)&t->tcp, alloc_cb, read_cb);
    if (r < 0)
        bw__tls_set_err(t, "read: %s", uv_strerror(r));
    return r;
}

void bw__tls_lower_shutdown(bw_tls_t *t)
{
    if (t->lower != NULL)
        t->lower->shutdown(t->lower_ud);
    else
        (void)uv_shutdown(&t->shutdown_req, (uv_stream_t *)&t->tcp, shutdown_cb);
}

int bw__tls_lower_init(bw_tls_t *t, uv_loop_t *loop)
{
    if (t->lower == NULL && uv_tcp_init(loop, &t->tcp) < 0)
        return BW_ENOMEM;
    uv_idle_init(loop, &t->kick);
    t->tcp.data = t;
    t->kick.data = t;
    t->open_handles = t->lower == NULL ? 2 : 1;
    return 0;
}

void bw__tls_lower_close(bw_tls_t *t, uv_close_cb close_cb)
{
    uv_close((uv_handle_t *)&t->kick, close_cb);
    if (t->lower == NULL)
        uv_close((uv_handle_t *)&t->tcp, close_cb);
}

/* ---- events from a caller's transport ---- */

void bw_tls_lower_input(bw_tls_t *t, const void *data, size_t len)
{
    if (len > 0)
        bw__tls_input(t, data, len);
}

void bw_tls_lower_eof(bw_tls_t *t)
{
    bw__tls_eof(t);
}

void bw_tls_lower_error(bw_tls_t *t, int err, const char *why)
{
    if (bw__tls_dead(t))
        return;
    bw__tls_set_err(t, "%s", why != NULL ? why : bw_strerror(err));
    bw__tls_fail(t, err);
}

void bw_tls_lower_drain(bw_tls_t *t)
{
    if (t->over_hwm && !bw__tls_dead(t))
        bw__tls_drained(t);
}
