/* Embedded HTTP/1.1 server for the agent API (see httpd.h): the server's
 * lifecycle and listener, the protocol core of one keep-alive connection
 * (sess_t: http-parser callbacks, pipelined input held while a request is at
 * a handler), and detached sessions for the fuzzer and tests. The layers and
 * the files that hold the other parts are listed in httpd_int.h. */
#include "httpd.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <burrow/error.h>
#include <http_parser.h>

#include "httpd_int.h"
#include "log.h"
#include "util.h"

/* ---- sessions: the protocol core ---- */

void bw__httpd_sess_emit(sess_t *s, bw_buf_t *o)
{
    if (s->dead) {
        bw_buf_free(o);
        return;
    }
    size_t len;
    char *p = bw_buf_take(o, &len);
    s->write(s, p, len); /* takes p */
}

/* Answer outside any request (bad input) and stop the connection. */
void bw__httpd_sess_fail(sess_t *s, int status, const char *msg, const char *err)
{
    json_t *j = err ? json_pack("{s:i, s:s, s:{s:s}}", "status_code", status, "msg", msg, "details",
                                "err", err)
                    : json_pack("{s:i, s:s}", "status_code", status, "msg", msg);
    size_t blen = 0;
    char *body = j ? bw__httpd_go_json(j, &blen) : NULL;
    json_decref(j);
    if (!body)
        status = 500; /* whole or a 500, never an answer without its body */
    bw_buf_t o = {0};
    if (bw__httpd_build_response(&o, status, "application/json", body ? body : "", blen, NULL, 0, 0,
                                 0) == 0)
        bw__httpd_sess_emit(s, &o);
    bw_buf_free(&o);
    free(body);
    bw__httpd_req_free(s->cur);
    s->cur = NULL;
    s->done = 1;
}

static sess_t *psess(http_parser *p)
{
    return p->data;
}

static int head_grow(sess_t *s, size_t n)
{
    s->hbytes += n;
    if (s->hbytes > s->srv->max_header) {
        s->fail_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    sess_t *s = psess(p);
    bw__httpd_req_free(s->cur);
    s->cur = bw__httpd_req_new(s);
    if (!s->cur) {
        s->fail_status = 500;
        return -1;
    }
    s->phase = PH_HEAD;
    s->hbytes = 0;
    s->last_was_value = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    sess_t *s = psess(p);
    if (head_grow(s, n) != 0)
        return -1;
    return bw_buf_put(&s->cur->url, at, n) ? (s->fail_status = 500, -1) : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    sess_t *s = psess(p);
    bw_httpd_req_t *r = s->cur;
    if (head_grow(s, n + 4) != 0) /* ": " and CRLF count too */
        return -1;
    if (r->nhdrs == 0 || s->last_was_value) {
        if (r->nhdrs == MAX_HEADERS) {
            s->fail_status = 431;
            return -1;
        }
        hdr_t *h = realloc(r->hdrs, (r->nhdrs + 1) * sizeof *h);
        if (!h) {
            s->fail_status = 500;
            return -1;
        }
        r->hdrs = h;
        memset(&h[r->nhdrs++], 0, sizeof *h);
        s->last_was_value = 0;
    }
    return bw_buf_put(&r->hdrs[r->nhdrs - 1].name, at, n) ? (s->fail_status = 500, -1) : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    sess_t *s = psess(p);
    bw_httpd_req_t *r = s->cur;
    if (head_grow(s, n) != 0)
        return -1;
    s->last_was_value = 1;
    if (r->nhdrs == 0)
        return 0;
    return bw_buf_put(&r->hdrs[r->nhdrs - 1].value, at, n) ? (s->fail_status = 500, -1) : 0;
}

static void trim_values(bw_httpd_req_t *r)
{
    for (size_t i = 0; i < r->nhdrs; i++) {
        bw_buf_t *v = &r->hdrs[i].value;
        while (v->len && (v->p[v->len - 1] == ' ' || v->p[v->len - 1] == '\t'))
            v->p[--v->len] = '\0';
    }
}

static int on_headers_complete(http_parser *p)
{
    sess_t *s = psess(p);
    bw_httpd_req_t *r = s->cur;
    bw_fmt(r->method, sizeof r->method, "%s", http_method_str((enum http_method)p->method));
    r->keep_alive = http_should_keep_alive(p);
    r->http_minor = p->http_major == 1 ? p->http_minor : 1;
    trim_values(r);
    /* content_length is ULLONG_MAX without a Content-Length header. */
    if (p->content_length != UINT64_MAX && p->content_length > s->srv->max_body) {
        s->fail_status = 413;
        return -1;
    }
    const char *expect = bw_httpd_req_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1 && !s->dead) {
        bw_buf_t o = {0};
        if (bw_buf_puts(&o, "HTTP/1.1 100 Continue\r\n\r\n") == 0)
            bw__httpd_sess_emit(s, &o);
        bw_buf_free(&o);
    }
    s->phase = PH_BODY;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    sess_t *s = psess(p);
    int rc = bw_buf_put(&s->cur->body, at, n); /* bounded by max_body */
    if (rc != 0)
        s->fail_status = rc == BW_EMSGSIZE ? 413 : 500;
    return rc != 0 ? -1 : 0;
}

/* Pause so http_parser_execute returns here and the request is dispatched
 * outside the parser; the next request is parsed only after the answer. */
static int on_message_complete(http_parser *p)
{
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void bw__httpd_sess_init(sess_t *s, bw_httpd_t *h)
{
    s->srv = h;
    http_parser_init(&s->parser, HTTP_REQUEST);
    s->parser.data = s;
    s->phase = PH_IDLE;
}

/* The transport is gone: output is dropped and an in-flight request becomes
 * cancelled and stays with its handler. Safe inside parser callbacks. */
void bw__httpd_sess_detach(sess_t *s)
{
    s->dead = 1;
    if (s->inflight)
        s->inflight->sess = NULL;
    s->inflight = NULL;
}

/* Free what the session holds; never while the parser runs on it. */
void bw__httpd_sess_cleanup(sess_t *s)
{
    bw__httpd_sess_detach(s);
    bw__httpd_req_free(s->cur);
    s->cur = NULL;
    bw_buf_free(&s->in);
}

static void parse_error(sess_t *s)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&s->parser);
    if (s->fail_status == 431)
        bw__httpd_sess_fail(s, 431, "Request Header Fields Too Large", NULL);
    else if (s->fail_status == 413)
        bw__httpd_sess_fail(s, 413, "Request Entity Too Large", NULL);
    else if (s->fail_status == 500)
        bw__httpd_sess_fail(s, 500, "Internal Server Error", NULL);
    else if (e == HPE_HEADER_OVERFLOW)
        bw__httpd_sess_fail(s, 431, "Request Header Fields Too Large", NULL);
    else
        bw__httpd_sess_fail(s, 400, "Bad Request", http_errno_description(e));
}

/* Parse held input while no request is at a handler. */
static void parse_some(sess_t *s)
{
    while (!s->inflight && !s->done && !s->dead && !s->out_blocked && s->in_off < s->in.len) {
        size_t avail = s->in.len - s->in_off;
        size_t n = http_parser_execute(&s->parser, &parser_settings, s->in.p + s->in_off, avail);
        s->in_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&s->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&s->parser, 0);
            bw__httpd_dispatch(s);
        } else if (e != HPE_OK) {
            parse_error(s);
        } else if (s->parser.upgrade) {
            /* An upgrade with no on_message_complete: we never upgrade. */
            bw__httpd_sess_fail(s, 400, "Bad Request", "upgrade not supported");
        }
    }
}

void bw__httpd_sess_process(sess_t *s)
{
    if (s->in_process)
        return; /* a synchronous answer inside bw__httpd_dispatch: the loop goes on */
    s->in_process = 1;
    parse_some(s);
    s->in_process = 0;
    if (s->in_off == s->in.len) {
        s->in.len = s->in_off = 0;
    } else if (s->in_off > 0 && s->in_off >= s->in.len / 2) {
        memmove(s->in.p, s->in.p + s->in_off, s->in.len - s->in_off);
        s->in.len -= s->in_off;
        s->in_off = 0;
    }
    if (s->done && !s->inflight && !s->finished && !s->dead) {
        s->finished = 1;
        s->finish(s);
    }
}

int bw__httpd_sess_input(sess_t *s, const void *data, size_t len)
{
    if (s->done || s->dead)
        return 0;
    if (bw_buf_put(&s->in, data, len) != 0)
        return BW_ENOMEM;
    bw__httpd_sess_process(s);
    return 0;
}

/* ---- server ---- */

static void srv_free(bw_httpd_t *h)
{
    for (size_t i = 0; i < h->nroutes; i++) {
        free(h->routes[i].method);
        free(h->routes[i].pattern);
    }
    free(h->routes);
    for (size_t i = 0; i < h->nallow; i++)
        free(h->allow_hosts[i]);
    free(h->allow_hosts);
    free(h);
}

void bw__httpd_srv_maybe_free(bw_httpd_t *h)
{
    if (h->closing && !h->listener_open && h->live == 0)
        srv_free(h);
}

static bw_httpd_t *srv_alloc(const bw_httpd_cfg_t *cfg)
{
    bw_httpd_cfg_t def = {0};
    bw_httpd_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    if (!cfg)
        cfg = &def;
    h->max_header = cfg->max_header_bytes ? cfg->max_header_bytes : DEF_MAX_HEADER;
    h->max_body = cfg->max_body_bytes ? cfg->max_body_bytes : DEF_MAX_BODY;
    h->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : DEF_IDLE_MS;
    h->header_ms = cfg->header_timeout_ms ? cfg->header_timeout_ms : DEF_HEADER_MS;
    h->max_conns = cfg->max_conns ? cfg->max_conns : DEF_MAX_CONNS;
    size_t n = 0;
    while (cfg->allow_hosts && cfg->allow_hosts[n])
        n++;
    h->allow_hosts = calloc(n + 1, sizeof *h->allow_hosts);
    if (!h->allow_hosts)
        goto err;
    for (h->nallow = 0; h->nallow < n; h->nallow++) {
        h->allow_hosts[h->nallow] = strdup(cfg->allow_hosts[h->nallow]);
        if (!h->allow_hosts[h->nallow])
            goto err;
    }
    return h;
err:
    srv_free(h);
    return NULL;
}

/* Bind and listen on one address. Returns 0 or a negative libuv code. */
static int try_listen(bw_httpd_t *h, const struct sockaddr_storage *ss)
{
    int rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 128, bw__httpd_on_connection);
    return rc;
}

static int is_default_addr(const struct sockaddr_storage *ss)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    return ss->ss_family == AF_INET && ntohs(in->sin_port) == DEFAULT_PORT &&
           ntohl(in->sin_addr.s_addr) == 0x7f000001u;
}

static int srv_listen(bw_httpd_t *h, const char *addr)
{
    char host[256];
    int port;
    struct sockaddr_storage ss;
    int rc = bw_split_hostport(addr, host, sizeof host, &port);
    if (rc == 0)
        rc = bw_resolve(host, port, &ss);
    if (rc != 0)
        return rc;
    int fallback = is_default_addr(&ss);
    rc = try_listen(h, &ss);
    if (rc == UV_EADDRINUSE && fallback) {
        bw_log(BW_LOG_WARN, "can't bind default web address, trying alternatives", NULL);
        for (int i = 1; i <= FALLBACK_PORTS && rc == UV_EADDRINUSE; i++) {
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)(DEFAULT_PORT + i));
            rc = try_listen(h, &ss);
        }
    }
    if (rc != 0)
        return rc;
    int sl = sizeof ss;
    rc = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &sl);
    if (rc != 0)
        return rc;
    bw_sockaddr_str((struct sockaddr *)&ss, h->addr, sizeof h->addr);
    char ip[BW_ADDRSTRLEN];
    h->local = bw__httpd_is_local_host(bw_sockaddr_ip((struct sockaddr *)&ss, ip, sizeof ip));
    return 0;
}

static void listener_closed(uv_handle_t *hd)
{
    bw_httpd_t *h = hd->data;
    h->listener_open = 0;
    bw__httpd_srv_maybe_free(h);
}

int bw_httpd_new(uv_loop_t *loop, const char *addr, const bw_httpd_cfg_t *cfg, bw_httpd_t **out)
{
    bw_httpd_t *h = srv_alloc(cfg);
    int rc;
    if (!h)
        return BW_ENOMEM;
    h->loop = loop;
    rc = uv_tcp_init(loop, &h->listener);
    if (rc != 0) {
        srv_free(h);
        return rc;
    }
    h->listener.data = h;
    h->listener_open = 1;
    rc = srv_listen(h, addr ? addr : BW_HTTPD_DEFAULT_ADDR);
    if (rc != 0) {
        bw_httpd_close(h);
        return rc;
    }
    *out = h;
    return 0;
}

const char *bw_httpd_addr(const bw_httpd_t *h)
{
    return h->addr;
}

void bw_httpd_close(bw_httpd_t *h)
{
    if (!h || h->closing)
        return;
    h->closing = 1;
    if (!h->loop) {
        srv_free(h);
        return;
    }
    bw__httpd_conn_close_all(h);
    if (h->listener_open)
        uv_close((uv_handle_t *)&h->listener, listener_closed);
    else
        bw__httpd_srv_maybe_free(h);
}

/* ---- detached sessions (fuzzer, tests) ---- */

struct bw__httpd_sess {
    sess_t s;
    bw__httpd_out_fn out;
    void *ud;
};

static void det_write(sess_t *s, char *buf, size_t len)
{
    bw__httpd_sess_t *d = BW_CONTAINER_OF(s, bw__httpd_sess_t, s);
    d->out(d->ud, buf, len);
    free(buf);
}

static void det_finish(sess_t *s)
{
    (void)s; /* the caller sees it through the feed return value */
}

static void det_kick(sess_t *s)
{
    bw__httpd_sess_process(s);
}

bw_httpd_t *bw__httpd_new_detached(const bw_httpd_cfg_t *cfg)
{
    bw_httpd_t *h = srv_alloc(cfg);
    if (h) {
        h->local = 1;
        bw_fmt(h->addr, sizeof h->addr, "127.0.0.1:0");
    }
    return h;
}

bw__httpd_sess_t *bw__httpd_sess_new(bw_httpd_t *h, bw__httpd_out_fn out, void *ud)
{
    bw__httpd_sess_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    bw__httpd_sess_init(&d->s, h);
    d->s.write = det_write;
    d->s.finish = det_finish;
    d->s.kick = det_kick;
    d->out = out;
    d->ud = ud;
    bw_fmt(d->s.remote, sizeof d->s.remote, "127.0.0.1:1");
    return d;
}

int bw__httpd_sess_feed(bw__httpd_sess_t *d, const void *data, size_t len)
{
    if (bw__httpd_sess_input(&d->s, data, len) != 0)
        return 1;
    return d->s.finished || d->s.done;
}

void bw__httpd_sess_free(bw__httpd_sess_t *d)
{
    if (!d)
        return;
    bw__httpd_sess_cleanup(&d->s);
    free(d);
}
