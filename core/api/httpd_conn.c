/* A session of the agent API's server over a libuv TCP connection: reading
 * with flow control (stop above BW_API_IN_HWM of unparsed input or
 * BW_STREAM_HWM of queued output), the write queue, the head and idle
 * timers, accepting and rejecting connections, and the close-callback
 * lifetime rule. */
#include "httpd.h"

#include <stdlib.h>

#include "httpd_int.h"
#include "log.h"
#include "util.h"

struct conn {
    sess_t s;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    bw_list_node_t node; /* on srv->conns while open */
    int handles;
    int closing;
    int reading;
    int timer_phase;
    size_t wq;
};

typedef struct wreq {
    uv_write_t w;
    conn_t *c;
    char *buf;
    size_t len;
} wreq_t;

/* ---- libuv connections ---- */

static void conn_drive(conn_t *c);

static conn_t *sess_conn(sess_t *s)
{
    return BW_CONTAINER_OF(s, conn_t, s);
}

static void conn_handle_closed(uv_handle_t *hd)
{
    conn_t *c = hd->data;
    if (--c->handles > 0)
        return;
    bw_httpd_t *h = c->s.srv;
    bw__httpd_sess_cleanup(&c->s);
    free(c);
    h->live--;
    bw__httpd_srv_maybe_free(h);
}

void bw__httpd_conn_close(conn_t *c)
{
    bw_httpd_t *h = c->s.srv;
    if (c->closing)
        return;
    c->closing = 1;
    bw__httpd_sess_detach(&c->s); /* we may be inside the parser: free later */
    bw_list_remove(&c->node);
    h->nconns--;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

void bw__httpd_conn_close_all(bw_httpd_t *h)
{
    conn_t *c;
    while ((c = BW_LIST_FIRST(&h->conns, conn_t, node)))
        bw__httpd_conn_close(c); /* unlinks c */
}

static void write_done(uv_write_t *w, int status)
{
    wreq_t *wr = BW_CONTAINER_OF(w, wreq_t, w);
    conn_t *c = wr->c;
    c->wq -= wr->len;
    free(wr->buf);
    free(wr);
    if (status < 0) {
        bw__httpd_conn_close(c);
    } else if (!c->closing && c->s.out_blocked && c->wq < BW_STREAM_LWM) {
        /* Clear the flag before driving: conn_drive resumes reading only
         * when it is clear, and nothing else would clear it. */
        c->s.out_blocked = 0;
        conn_drive(c);
    }
}

static void conn_write(sess_t *s, char *buf, size_t len)
{
    conn_t *c = sess_conn(s);
    wreq_t *wr = malloc(sizeof *wr);
    if (!wr || c->closing) {
        free(buf);
        free(wr);
        if (!c->closing)
            bw__httpd_conn_close(c);
        return;
    }
    wr->c = c;
    wr->buf = buf;
    wr->len = len;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
        free(buf);
        free(wr);
        bw__httpd_conn_close(c);
        return;
    }
    c->wq += len;
    s->out_blocked = c->wq > BW_STREAM_HWM;
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
    bw__httpd_conn_close(req->data);
}

static void conn_finish(sess_t *s)
{
    conn_t *c = sess_conn(s);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    uv_timer_stop(&c->timer);
    c->shut.data = c;
    /* Shutdown waits for queued writes, so the last answer is not cut. */
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, shutdown_done) != 0)
        bw__httpd_conn_close(c);
}

static void conn_kick(sess_t *s)
{
    conn_drive(sess_conn(s));
}

static void timer_fired(uv_timer_t *t)
{
    bw__httpd_conn_close(t->data);
}

static void conn_timer(conn_t *c)
{
    bw_httpd_t *h = c->s.srv;
    int ph = c->s.phase;
    if (ph == PH_WAIT) {
        uv_timer_stop(&c->timer);
    } else if (ph == PH_HEAD) {
        /* Fixed from the request's first byte, so dribbling does not help. */
        if (c->timer_phase != PH_HEAD)
            uv_timer_start(&c->timer, timer_fired, h->header_ms, 0);
    } else {
        uv_timer_start(&c->timer, timer_fired, h->idle_ms, 0);
    }
    c->timer_phase = ph;
}

static void alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = hd->data;
    /* One loop thread, and read_cb consumes the bytes before returning. */
    *buf = uv_buf_init(c->s.srv->rbuf, sizeof c->s.srv->rbuf);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = st->data;
    if (nread < 0) {
        /* A client that goes away cancels its in-flight request. */
        if (nread == UV_EOF && !c->s.inflight && !c->s.finished && !c->closing) {
            c->s.finished = 1;
            conn_finish(&c->s);
        } else {
            bw__httpd_conn_close(c);
        }
        return;
    }
    if (nread == 0 || c->closing)
        return;
    if (bw__httpd_sess_input(&c->s, buf->base, (size_t)nread) != 0) {
        bw__httpd_conn_close(c);
        return;
    }
    conn_drive(c);
}

static void conn_drive(conn_t *c)
{
    bw__httpd_sess_process(&c->s);
    if (c->closing || c->s.finished)
        return;
    int stop = c->s.in.len - c->s.in_off > BW_API_IN_HWM || c->s.out_blocked;
    if (stop && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    } else if (!stop && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
            bw__httpd_conn_close(c);
            return;
        }
        c->reading = 1;
    }
    conn_timer(c);
}

static void reject_closed(uv_handle_t *hd)
{
    free(hd);
}

/* Over the cap: accept and close at once, or the listener keeps firing. */
static void reject(bw_httpd_t *h, uv_stream_t *server)
{
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t || uv_tcp_init(h->loop, t) != 0) {
        free(t);
        return;
    }
    uv_accept(server, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, reject_closed);
}

void bw__httpd_on_connection(uv_stream_t *server, int status)
{
    bw_httpd_t *h = server->data;
    if (status < 0 || h->closing)
        return;
    if (h->nconns >= h->max_conns) {
        bw_log(BW_LOG_WARN, "too many web connections", "obj", "web", NULL);
        reject(h, server);
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c || uv_tcp_init(h->loop, &c->tcp) != 0) {
        free(c);
        reject(h, server);
        return;
    }
    bw__httpd_sess_init(&c->s, h);
    c->s.write = conn_write;
    c->s.finish = conn_finish;
    c->s.kick = conn_kick;
    c->tcp.data = c;
    c->timer.data = c;
    uv_timer_init(h->loop, &c->timer);
    c->handles = 2;
    c->timer_phase = -1;
    h->live++;
    h->nconns++;
    bw_list_push(&h->conns, &c->node);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) != 0) {
        bw__httpd_conn_close(c);
        return;
    }
    bw_sockaddr_str((struct sockaddr *)&ss, c->s.remote, sizeof c->s.remote);
    uv_tcp_nodelay(&c->tcp, 1);
    conn_drive(c);
}
