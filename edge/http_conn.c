/* One public HTTP/HTTPS connection: requests parsed and rewritten
 * (http_rewrite.h), routed to a tunnel's agent stream, responses copied
 * back; the edge's own error answers; timeouts and backpressure. See
 * docs/edge.md ("HTTP and HTTPS"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostnames.h"
#include "http_conn.h"
#include "http_text.h"
#include "log.h"

#define DRAIN_MS       5000 /* how long an error answer waits for the response before it */
#define LINGER_MS      2000 /* reading after an error answer, so no RST eats it */
#define FLUSH_POLL_MS  50   /* https, both sides done: is the queue empty yet? */
#define BODY_MIN_BYTES 1024 /* a request body brings this much per body timeout */

static void answer(hconn_t *c, int status, const char *text);
static void deliver(hconn_t *c);

/* ---------------------------------------------------------------------------
 * The public side: a TCP stream or a TLS connection
 * ------------------------------------------------------------------------- */

/* Returns 0, BW_EAGAIN once the client is slow (stop the source), or < 0. */
static int pub_write(hconn_t *c, const void *data, size_t len)
{
    if (!c->tls)
        return bw_stream_write(c->tcp, data, len);
    const void *bufs[1] = {data};
    size_t lens[1] = {len};
    int rc = bw_tls_write(c->tls, bufs, lens, 1);
    if (rc < 0)
        return rc;
    return bw_tls_queued(c->tls) > BW_TLS_HIGH_WATER ? BW_EAGAIN : 0;
}

static void pub_reading(hconn_t *c, int on)
{
    if (c->tls)
        on ? bw_tls_read_start(c->tls) : bw_tls_read_stop(c->tls);
    else
        on ? bw_stream_read_start(c->tcp) : bw_stream_read_stop(c->tcp);
}

static void pub_shutdown(hconn_t *c)
{
    if (c->shut)
        return;
    c->shut = 1;
    if (c->tls)
        bw_tls_shutdown(c->tls);
    else
        bw_stream_shutdown(c->tcp);
}

static size_t pub_queued(hconn_t *c)
{
    return c->tls ? bw_tls_queued(c->tls) : bw_stream_queued(c->tcp);
}

/* ---------------------------------------------------------------------------
 * Lifetime and timers
 * ------------------------------------------------------------------------- */

void bw__hconn_unref(hconn_t *c)
{
    if (--c->refs > 0)
        return;
    bw_hrw_free(c->rw);
    free(c->hello);
    free(c);
}

static void timer_closed(uv_handle_t *h)
{
    bw__hconn_unref(BW_CONTAINER_OF(h, hconn_t, timer));
}

static void on_timer(uv_timer_t *h);

static void arm(hconn_t *c, int kind, uint64_t ms)
{
    c->tkind = kind;
    if (kind == T_NONE)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* Traffic either way keeps an idle connection alive. */
static void touch(hconn_t *c)
{
    if (c->tkind == T_IDLE)
        arm(c, T_IDLE, c->he->idle_ms);
}

void bw__hconn_close(hconn_t *c, int abort)
{
    if (c->closing)
        return;
    c->closing = 1;
    bw_list_remove(&c->node);
    if (c->counted)
        bw__edge_public_release(c->he->edge, c->ip);
    c->counted = 0;
    if (c->agent)
        bw_stream_close(c->agent, abort);
    c->agent = NULL;
    if (c->tls)
        bw_tls_close(c->tls); /* its on_close drops a reference */
    else
        bw_stream_close(c->tcp, abort);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
}

/* Close once nothing more can flow, after queued bytes left. TLS drops
 * what is queued on close, so an https connection waits for its queue to
 * empty, for as long as the client keeps taking bytes (T_FLUSH), and gives
 * up after LINGER_MS without progress. */
static void conn_done(hconn_t *c)
{
    if (c->tkind == T_FLUSH)
        return; /* already waiting for the queue; flush_poll closes */
    if (c->tls && pub_queued(c) > 0) {
        c->lingering = 1;
        c->flush_left = pub_queued(c);
        c->flush_idle_ms = 0;
        arm(c, T_FLUSH, FLUSH_POLL_MS);
        return;
    }
    bw__hconn_close(c, 0);
}

static void flush_poll(hconn_t *c)
{
    size_t left = pub_queued(c);
    if (left == 0) {
        bw__hconn_close(c, 0);
        return;
    }
    c->flush_idle_ms = left < c->flush_left ? 0 : c->flush_idle_ms + FLUSH_POLL_MS;
    c->flush_left = left;
    if (c->flush_idle_ms >= LINGER_MS)
        bw__hconn_close(c, 0); /* the client stopped reading */
    else
        arm(c, T_FLUSH, FLUSH_POLL_MS);
}

static void body_start(hconn_t *c)
{
    c->body_bytes = 0;
    c->body_answered = 0;
    arm(c, T_BODY, c->he->body_ms);
}

/* A body that trickles (a byte every few seconds) would hold its
 * descriptor for ever under a plain idle timeout, so it must bring
 * BODY_MIN_BYTES per period. Time the agent stream made us stop reading
 * is not the client's fault. Once the service began answering, a 408 could
 * follow a response, so the connection is just closed. */
static void body_check(hconn_t *c)
{
    if (c->body_bytes >= BODY_MIN_BYTES || c->pub_paused) {
        c->body_bytes = 0;
        arm(c, T_BODY, c->he->body_ms);
        return;
    }
    if (!c->body_answered) {
        answer(c, 408, "Request body timeout\n");
        return;
    }
    bw_log(BW_LOG_DEBUG, "request body stalled", "obj", "http", "r", c->client, NULL);
    bw__hconn_close(c, 1);
}

static void on_timer(uv_timer_t *h)
{
    hconn_t *c = BW_CONTAINER_OF(h, hconn_t, timer);
    switch (c->tkind) {
    case T_HEAD:
        if (c->tls && !c->handshaken)
            bw__hconn_close(c, 1); /* a stalled TLS handshake: no way to answer */
        else
            answer(c, 408, "Request header timeout\n");
        break;
    case T_BODY:
        body_check(c);
        break;
    case T_DRAIN: {
        char text[sizeof c->text];
        memcpy(text, c->text, sizeof text);
        c->draining = 0;
        if (c->agent)
            bw_stream_close(c->agent, 1);
        c->agent = NULL;
        answer(c, c->status, text);
        break;
    }
    case T_IDLE:
    case T_LINGER:
        bw__hconn_close(c, 0);
        break;
    case T_FLUSH:
        flush_poll(c);
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------------------
 * Error answers
 * ------------------------------------------------------------------------- */

static const char *status_text(int status)
{
    const char *t = bw_http_reason(status);
    return t ? t : "Internal Server Error";
}

/* Write the answer now, then close after the client had time to read it. */
static void answer_now(hconn_t *c, int status, const char *text)
{
    char buf[640];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, status_text(status), strlen(text), text);
    if (c->agent)
        bw_stream_close(c->agent, 1);
    c->agent = NULL;
    if (n > 0 && (size_t)n < sizeof buf && !c->shut)
        pub_write(c, buf, (size_t)n);
    pub_shutdown(c);
    if (c->client_eof) {
        conn_done(c);
        return;
    }
    /* Keep reading (and dropping) so unread input does not turn the close
     * into a reset that destroys the answer. */
    c->lingering = 1;
    pub_reading(c, 1);
    arm(c, T_LINGER, LINGER_MS);
}

/* Answer `status` and close. Requests already forwarded get their
 * responses first: the agent's side is half-closed and the answer follows
 * its end (or DRAIN_MS). */
static void answer(hconn_t *c, int status, const char *text)
{
    if (c->draining || c->lingering || c->closing)
        return;
    bw_log(BW_LOG_DEBUG, "refused request", "obj", "http", "r", c->client, "status",
           status_text(status), "err", text, NULL);
    if (!c->agent || c->agent_eof) {
        answer_now(c, status, text);
        return;
    }
    c->draining = 1;
    c->status = status;
    snprintf(c->text, sizeof c->text, "%s", text);
    pub_reading(c, 0);
    bw_stream_shutdown(c->agent);
    arm(c, T_DRAIN, DRAIN_MS);
}

/* ---------------------------------------------------------------------------
 * The agent side
 * ------------------------------------------------------------------------- */

static void agent_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    hconn_t *c = ud;
    touch(c);
    if (c->tkind == T_BODY)
        c->body_answered = 1;
    if (c->shut)
        return;
    int rc = pub_write(c, data, len);
    if (rc == BW_EAGAIN) {
        c->agent_paused = 1;
        bw_stream_read_stop(s);
    } else if (rc < 0) {
        bw__hconn_close(c, 1);
        return;
    }
    if (c->lingering || c->draining || c->closing)
        return;
    /* Responses pass as they are; the rewriter only watches them for the
     * answer to an Upgrade request, which may release held requests. */
    rc = bw_hrw_response(c->rw, data, len);
    if (rc < 0)
        answer(c, bw_hrw_status(c->rw), bw_hrw_reason(c->rw));
    else if (rc > 0)
        deliver(c);
}

static void agent_eof(bw_stream_t *s, void *ud)
{
    hconn_t *c = ud;
    c->agent_eof = 1;
    if (c->draining) {
        c->draining = 0;
        answer_now(c, c->status, c->text);
        return;
    }
    pub_shutdown(c);
    if (c->client_eof || c->lingering) {
        conn_done(c);
        return;
    }
    /* Half-closed towards the client (e.g. an upgraded connection the
     * service ended): a client that never closes its side is dropped after
     * the idle time instead of holding the connection forever. */
    if (c->tkind == T_NONE)
        arm(c, T_IDLE, c->he->idle_ms);
}

static void agent_drain(bw_stream_t *s, void *ud)
{
    hconn_t *c = ud;
    if (c->pub_paused && !c->draining && !c->lingering) {
        c->pub_paused = 0;
        if (!c->up_wait)
            pub_reading(c, 1);
    }
}

static void agent_error(bw_stream_t *s, void *ud, int err)
{
    hconn_t *c = ud;
    if (c->draining) {
        c->agent_eof = 1;
        c->draining = 0;
        answer_now(c, c->status, c->text);
        return;
    }
    bw__hconn_close(c, 1);
}

static const bw_stream_cbs_t agent_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = agent_read,
    .on_eof = agent_eof,
    .on_drain = agent_drain,
    .on_error = agent_error,
};

/* ---------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------- */

static void refuse_route(hconn_t *c, int rc, const char *host)
{
    char text[320];
    if (rc == BW_ENOENT) {
        snprintf(text, sizeof text, "Tunnel %s not found\n", host);
        answer(c, 404, text);
    } else {
        snprintf(text, sizeof text, "The agent for %s is not connected\n", host);
        answer(c, 502, text);
    }
}

/* A request head for `h->host` begins: the first one opens the agent
 * stream, later ones must go to the same tunnel. Returns 0 to go on. */
static int route_head(hconn_t *c, const bw_hrw_head_t *h)
{
    bw_edge_t *e = c->he->edge;
    char tid[BW_TUNNEL_ID_LEN];
    int rc;
    if (!c->agent) {
        const char *sn = c->scheme == BW_SCHEME_HTTPS && c->sni[0] ? c->sni : h->host;
        rc = bw__edge_http_open(e, c->scheme, h->host, c->client, sn, c->self, c->tunnel_id,
                                &c->agent);
        if (rc < 0) {
            refuse_route(c, rc, h->host);
            return -1;
        }
        snprintf(c->host, sizeof c->host, "%s", h->host);
        bw_stream_set_callbacks(c->agent, &agent_cbs, c);
    } else if (strcmp(h->host, c->host) != 0) {
        rc = bw__edge_http_route(e, c->scheme, h->host, tid);
        if (rc < 0) {
            refuse_route(c, rc, h->host);
            return -1;
        }
        if (strcmp(tid, c->tunnel_id) != 0) {
            char text[320];
            snprintf(text, sizeof text,
                     "Misdirected request: %s is not served on this "
                     "connection\n",
                     h->host);
            answer(c, 421, text);
            return -1;
        }
    }
    bw_log(BW_LOG_DEBUG, "routed request", "obj", "http", "r", c->client, "host", h->host, "tunnel",
           c->tunnel_id, NULL);
    return 0;
}

static int forward(hconn_t *c, const char *data, size_t len)
{
    if (len == 0 || !c->agent)
        return 0;
    int rc = bw_stream_write(c->agent, data, len);
    if (rc == BW_EAGAIN) {
        c->pub_paused = 1;
        pub_reading(c, 0);
    } else if (rc < 0) {
        bw__hconn_close(c, 1);
        return rc;
    }
    return 0;
}

/* While an Upgrade request awaits its answer the rewriter holds what the
 * client sends after it, so stop reading the client; go on once answered
 * (and pass on an EOF that came meanwhile). */
static void upgrade_wait(hconn_t *c)
{
    if (bw_hrw_waiting(c->rw)) {
        if (!c->up_wait) {
            c->up_wait = 1;
            pub_reading(c, 0);
        }
        return;
    }
    if (!c->up_wait)
        return;
    c->up_wait = 0;
    if (c->client_eof) {
        if (c->agent && !c->agent_eof)
            bw_stream_shutdown(c->agent);
        return;
    }
    if (!c->pub_paused)
        pub_reading(c, 1);
}

/* Forward what the rewriter produced, routing each request head in it. */
static void deliver(hconn_t *c)
{
    size_t out_len, pos = 0;
    const char *out = bw_hrw_out(c->rw, &out_len);
    for (size_t i = 0; i < bw_hrw_heads(c->rw); i++) {
        const bw_hrw_head_t *h = bw_hrw_head(c->rw, i);
        if (forward(c, out + pos, h->off - pos) < 0)
            return;
        pos = h->off;
        if (route_head(c, h) != 0)
            return;
    }
    if (forward(c, out + pos, out_len - pos) < 0)
        return;
    bw_hrw_trim(c->rw);
    upgrade_wait(c);
    if (bw_hrw_raw(c->rw))
        arm(c, T_NONE, 0);
    else if (bw_hrw_in_head(c->rw))
        c->tkind != T_HEAD ? arm(c, T_HEAD, c->he->header_ms) : (void)0;
    else if (bw_hrw_in_body(c->rw))
        c->tkind != T_BODY ? body_start(c) : (void)0;
    else
        arm(c, T_IDLE, c->he->idle_ms);
}

void bw__hconn_data(hconn_t *c, const uint8_t *data, size_t len)
{
    if (c->lingering || c->draining || c->closing)
        return; /* after an answer: dropped */
    if (c->tkind == T_BODY)
        c->body_bytes += len;
    if (bw_hrw_feed(c->rw, (const char *)data, len) < 0) {
        answer(c, bw_hrw_status(c->rw), bw_hrw_reason(c->rw));
        return;
    }
    deliver(c);
}

void bw__hconn_eof(hconn_t *c)
{
    c->client_eof = 1;
    if (c->lingering || !c->agent) {
        conn_done(c);
        return;
    }
    /* Both directions over: close (nothing is left to half-close). */
    if (c->agent_eof) {
        conn_done(c);
        return;
    }
    if (!c->draining && !c->up_wait) /* held requests go first */
        bw_stream_shutdown(c->agent);
}

void bw__hconn_drain(hconn_t *c)
{
    if (c->agent_paused && c->agent) {
        c->agent_paused = 0;
        bw_stream_read_start(c->agent);
    }
}

hconn_t *bw__hconn_new(listener_t *l)
{
    bw_http_edge_t *he = l->he;
    hconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->he = he;
    c->scheme = l->scheme;
    c->refs = 1;
    uv_timer_init(he->loop, &c->timer);
    bw_list_push(&he->conns, &c->node);
    return c;
}

/* After accept: who the client is, and a rewriter for its requests. */
int bw__hconn_start(hconn_t *c, const char *peer)
{
    int port;
    snprintf(c->client, sizeof c->client, "%s", peer);
    if (bw_split_hostport(peer, c->ip, sizeof c->ip, &port) != 0)
        snprintf(c->ip, sizeof c->ip, "%s", peer);
    if (bw__edge_public_admit(c->he->edge, c->ip) != 0)
        return BW_EAGAIN;
    c->counted = 1;
    c->rw = bw_hrw_new(c->ip, c->scheme == BW_SCHEME_HTTPS);
    if (!c->rw)
        return BW_ENOMEM;
    arm(c, T_HEAD, c->he->header_ms);
    return 0;
}
