/* One public connection of an http tunnel: requests parsed as they arrive,
 * forwarded to one local connection, responses framed and streamed back,
 * one exchange at a time (pipelined requests wait in the input buffer, which
 * stays bounded because reading pauses meanwhile).
 *
 * Every entry point (stream and connect callbacks) holds a reference, so
 * closing the connection from deep inside a callback frees it only when the
 * stack unwinds.
 *
 * Over 600 lines on purpose: this is one state machine (the connection's
 * phases and both directions' framing states); its local answers (reply.c),
 * file serving (files.c) and framing (h1.c) already live elsewhere, and
 * splitting the transitions themselves would spread one machine over files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_int.h"

#define IN_MAX (64u * 1024u) /* stop reading a side past this many unconsumed bytes */

static const bw_stream_cbs_t pub_cbs, up_cbs;
static void pump_pub(http_conn_t *c);
static void pump_up(http_conn_t *c);

/* ---- lifetime ----------------------------------------------------------------- */

static void unref(http_conn_t *c)
{
    if (--c->refs > 0)
        return;
    http_tunnel_t *tt = c->tt;
    if (tt->t)
        H->metric_conn_close(tt->t, H->now_ns() - c->conn_start);
    h1_free(&c->req);
    h1_free(&c->res);
    h1_buf_free(&c->pin);
    h1_buf_free(&c->uin);
    h1_buf_free(&c->pending);
    free(c);
    tt->live--;
    bw__http_tunnel_unref(tt);
}

void bw__http_conn_ref(http_conn_t *c)
{
    c->refs++;
}

void bw__http_conn_unref(http_conn_t *c)
{
    unref(c);
}

/* Say once per exchange how reading the request ended. */
static void report_request(http_conn_t *c, int err)
{
    if (c->cap && !c->req_reported && BW_HOST_HAS(H, capture_request_done))
        H->capture_request_done(c->cap, err);
    c->req_reported = 1;
}

void bw__http_end_capture(http_conn_t *c, int req_err)
{
    if (!c->cap)
        return;
    if (req_err)
        report_request(c, req_err);
    H->capture_end(c->cap, H->now_ns() - c->x_start);
    c->cap = NULL;
}

/* Close everything; abort resets the public side instead of flushing. */
void bw__http_conn_close(http_conn_t *c, int abort)
{
    if (c->phase != C_HTTP)
        return;
    c->phase = C_CLOSED;
    bw__http_end_capture(c, c->rstate == R_BODY ? BW_ECONNRESET : 0);
    if (c->file_fd >= 0)
        close(c->file_fd);
    c->file_fd = -1;
    if (c->pub)
        H->stream_close(c->pub, abort);
    if (c->up)
        H->stream_close(c->up, abort);
    c->pub = c->up = NULL;
    unref(c);
}

/* ---- the local service's unconsumed bytes --------------------------------------------- */

/* A response body streams through without a copy: up_read parses each read
 * where it lies (uext) and copies only a remainder it did not consume into
 * uin. While uext is set uin is empty, so the bytes are uext's. */
static const char *uin_data(const http_conn_t *c)
{
    return c->uext ? c->uext : c->uin.data;
}

static size_t uin_len(const http_conn_t *c)
{
    return c->uext ? c->uext_len : c->uin.len;
}

static void uin_consume(http_conn_t *c, size_t n)
{
    if (c->uext) {
        c->uext += n;
        c->uext_len -= n;
    } else {
        h1_buf_consume(&c->uin, n);
    }
}

static void uin_clear(http_conn_t *c)
{
    c->uin.len = 0;
    c->uext_len = 0;
}

/* Move the borrowed bytes to uin (before more are appended, or when the
 * read returns). Returns 0 or BW_ENOMEM. */
static int uin_keep(http_conn_t *c)
{
    const char *p = c->uext;
    size_t n = c->uext_len;
    c->uext = NULL;
    c->uext_len = 0;
    return p && n ? h1_buf_add(&c->uin, p, n) : 0;
}

/* ---- reading control ------------------------------------------------------------ */

static void update_reading(http_conn_t *c)
{
    if (c->phase != C_HTTP)
        return;
    /* Reading goes on while a response is awaited (pipelined bytes wait in
     * pin, bounded by IN_MAX): toggling it per request costs window updates. */
    int want_pub = c->pub && !c->pub_eof && c->lstate != L_CONNECTING &&
                   !(c->rstate == R_BODY && c->mode == X_UP && c->up_full) && c->pin.len < IN_MAX;
    int want_up = c->up && c->lstate != L_EOF && !c->pub_full && uin_len(c) < IN_MAX;
    if (c->pub && want_pub != c->pub_reading) {
        c->pub_reading = want_pub;
        (want_pub ? H->stream_read_start : H->stream_read_stop)(c->pub);
    }
    if (c->up && want_up != c->up_reading) {
        c->up_reading = want_up;
        (want_up ? H->stream_read_start : H->stream_read_stop)(c->up);
    }
}

/* ---- writing ----------------------------------------------------------------------- */

static void up_write(http_conn_t *c, const void *data, size_t len)
{
    if (!len || !c->up)
        return;
    if (H->stream_write(c->up, data, len) == BW_PAUSE)
        c->up_full = 1;
}

void bw__http_pub_write(http_conn_t *c, const void *data, size_t len)
{
    if (!len || !c->pub)
        return;
    c->sent_any = 1;
    if (H->stream_write(c->pub, data, len) == BW_PAUSE)
        c->pub_full = 1;
}

/* ---- exchanges ---------------------------------------------------------------------- */

void bw__http_finish_exchange(http_conn_t *c)
{
    if (c->rstate != R_WAIT || c->sstate != S_DONE)
        return;
    if (c->tt->t)
        H->metric_http(c->tt->t, H->now_ns() - c->x_start);
    bw__http_end_capture(c, 0);
    c->rstate = R_HEAD;
    c->sstate = S_HEAD;
    c->mode = X_NONE;
    c->req_upgrade = 0;
    if (c->close_after || (c->pub_eof && c->pin.len == 0)) {
        bw__http_conn_close(c, 0);
        return;
    }
    pump_pub(c);
}

/* ---- the local connection -------------------------------------------------------------- */

static void up_gone(http_conn_t *c)
{
    if (c->up)
        H->stream_close(c->up, 1);
    c->up = NULL;
    c->lstate = L_NONE;
    c->up_reading = c->up_full = 0;
    uin_clear(c);
    h1_free(&c->res);
    h1_init(&c->res, H1_RESPONSE);
}

/* Two callers since the PROXY header (dialed, tls_done): kept out of line,
 * as it was when it was the connect callback itself, so gcc -fanalyzer
 * does not analyse a partially inlined copy that loses pump_pub's own
 * reference and report a use after free that cannot happen. */
__attribute__((noinline)) static void connected(void *ud, bw_stream_t *s, int status)
{
    http_conn_t *c = ud;
    c->lstate = L_NONE;
    if (c->phase != C_HTTP) {
        if (s)
            H->stream_close(s, 1);
        unref(c);
        return;
    }
    if (status < 0) {
        char why[600];
        snprintf(why, sizeof why, "dial tcp %s: connect: %s", c->tt->addr, H->strerror(status));
        if (c->tt->t)
            H->log(BW_LOG_WARN, "failed to dial local service", "obj", "http", "addr", c->tt->addr,
                   "err", H->strerror(status), NULL);
        c->pending.len = 0;
        bw__http_reply_502(c, why);
    } else {
        c->up = s;
        c->lstate = L_OPEN;
        c->up_reading = 1;
        H->stream_set_callbacks(s, &up_cbs, c);
        up_write(c, c->pending.data, c->pending.len);
        c->pending.len = 0;
    }
    pump_pub(c);
    update_reading(c);
    unref(c);
}

static void tls_done(void *ud, bw_stream_t *s, int status, const bw_tls_info_t *info)
{
    (void)info;
    connected(ud, s, status);
}

/* TLS to an https:// service over `s`, as BW_CONNECT_TLS would have set it
 * up; 0 when tls_done will follow, else < 0 and `s` is still ours. */
static int start_tls(http_conn_t *c, bw_stream_t *s)
{
    static const char *const alpn[] = {"http/1.1", NULL};
    char host[520];
    snprintf(host, sizeof host, "%s", c->tt->addr);
    char *colon = strrchr(host, ':'), *name = host;
    if (colon)
        *colon = '\0';
    if (host[0] == '[') {
        name = host + 1;
        name[strcspn(name, "]")] = '\0';
    }
    bw_tls_opts_t o = {.struct_size = sizeof o, .server_name = name, .alpn = alpn};
    if (!BW_HOST_HAS(H, stream_start_tls))
        return BW_ENOTSUP;
    return H->stream_start_tls(s, &o, tls_done, c, NULL);
}

/* The local connection is up: with proxy_proto its first bytes are the
 * PROXY header, before TLS to an https:// service (the service reads the
 * header off the raw connection), then the request. */
static void dialed(void *ud, bw_stream_t *s, int status)
{
    http_conn_t *c = ud;
    if (status < 0 || c->phase != C_HTTP || c->tt->proxy_proto == 0) {
        connected(c, s, status);
        return;
    }
    uint8_t hdr[BW_PROXY_HEADER_MAX];
    size_t n = bw_proxy_header(c->tt->proxy_proto, c->client_addr, c->server_addr, hdr, sizeof hdr);
    status = n > 0 ? H->stream_write(s, hdr, n) : 0;
    if (status >= 0 && c->tt->kind == UP_HTTPS && (status = start_tls(c, s)) == 0)
        return;
    if (status < 0) {
        H->stream_close(s, 1);
        s = NULL;
    }
    connected(c, s, status < 0 ? status : 0);
}

static void start_connect(http_conn_t *c)
{
    /* With proxy_proto the plugin starts TLS itself, after the header. */
    uint32_t flags = c->tt->kind == UP_HTTPS && !c->tt->proxy_proto ? BW_CONNECT_TLS : 0;
    int rc = c->tt->t ? H->connect(c->tt->t, c->tt->addr, flags, dialed, c) : BW_ECANCELED;
    c->lstate = L_CONNECTING;
    c->refs++;
    if (rc < 0)
        connected(c, NULL, rc);
}

/* ---- requests ----------------------------------------------------------------------- */

static int header_present(const h1_head_t *h, const http_list_t *names)
{
    for (size_t i = 0; i < names->n; i++)
        if (h1_find(h, names->items[i], 0) >= 0)
            return 1;
    return 0;
}

/* The head sent to the local service: the received bytes unless an option
 * changes something. */
static int forward_head(http_conn_t *c, h1_buf_t *out)
{
    const http_tunnel_t *tt = c->tt;
    const h1_head_t *h = &c->req.head;
    h1_edit_t e = {.remove = (const char *const *)tt->req_remove.items,
                   .n_remove = tt->req_remove.n,
                   .add = (const char *const *)tt->req_add.items,
                   .n_add = tt->req_add.n};
    char orig[1024] = "";
    int hi = h1_find(h, "Host", 0);
    if (hi >= 0)
        snprintf(orig, sizeof orig, "%.*s", (int)h->headers[hi].value_len, h->headers[hi].value);
    if (tt->host_header) {
        const char *want =
            strcmp(tt->host_header, "rewrite") == 0 ? tt->host_port : tt->host_header;
        if (strcmp(want, orig) != 0) {
            e.set_name = "Host";
            e.set_value = want;
            if (hi >= 0) {
                e.set2_name = "X-Original-Host";
                e.set2_value = orig;
            }
        }
    }
    if (!e.set_name && !e.n_add && !header_present(h, &tt->req_remove))
        return h1_buf_add(out, h->raw.data, h->raw.len);
    return h1_head_rebuild(h, &e, out);
}

static void on_request_head(http_conn_t *c)
{
    h1_head_t *h = &c->req.head;
    c->x_start = H->now_ns();
    c->cap = c->tt->t ? H->capture_begin(c->tt->t,
                                         &(bw_conn_info_t){.struct_size = sizeof(bw_conn_info_t),
                                                           .client_addr = c->client_addr,
                                                           .client_ip = c->client_ip,
                                                           .edge_type = c->edge_type,
                                                           .server_name = c->server_name})
                      : NULL;
    c->req_reported = 0;
    if (c->cap) {
        bw_http_head_t v;
        h1_capture_view(h, &v);
        H->capture_head(c->cap, BW_CAPTURE_REQUEST, &v);
        H->capture_raw(c->cap, BW_CAPTURE_REQUEST, h->raw.data, h->raw.len);
    }
    c->rstate = R_BODY;
    c->sstate = S_HEAD;
    c->is_head = strcmp(h->method, "HEAD") == 0;
    c->close_after = !c->req.keep_alive;
    c->sent_any = 0;
    if (c->forbidden) {
        bw__http_reply_page(c, 403, "Forbidden",
                            "Your IP address is not allowed to access this tunnel.", NULL, 1);
        return;
    }
    if (c->tt->creds.n) {
        int ai = h1_find(h, "Authorization", 0);
        if (ai < 0 || !http_basic_auth_ok(h->headers[ai].value, h->headers[ai].value_len,
                                          c->tt->creds.items, c->tt->creds.n)) {
            bw__http_reply_page(c, 401, "Unauthorized",
                                "Authentication is required to access this tunnel.",
                                "WWW-Authenticate: Basic realm=\"burrow\"\r\n", 0);
            return;
        }
    }
    if (c->tt->kind == UP_FILE) {
        bw__http_files_serve(c);
        return;
    }
    c->mode = X_UP;
    c->res.skip_body = c->is_head;
    h1_buf_t *out = c->up ? &(h1_buf_t){0} : &c->pending;
    if (forward_head(c, out) < 0) {
        bw__http_conn_close(c, 1);
        return;
    }
    if (c->up) {
        up_write(c, out->data, out->len);
        h1_buf_free(out);
    } else if (c->lstate != L_CONNECTING) {
        start_connect(c);
    }
}

static void on_request_done(http_conn_t *c)
{
    report_request(c, 0);
    c->rstate = R_WAIT;
    c->req_upgrade = c->req.upgrade && c->mode == X_UP;
    bw__http_finish_exchange(c);
}

static void request_error(http_conn_t *c)
{
    if (c->rstate == R_BODY) {
        report_request(c, BW_EPROTO);
        if (c->sent_any || c->sstate != S_HEAD) {
            bw__http_conn_close(c, 1);
            return;
        }
    }
    int st = c->req.err_status ? c->req.err_status : 400;
    if (c->rstate == R_HEAD)
        c->is_head = 0;
    c->rstate = R_BODY;
    bw__http_reply_page(c, st, h1_reason(st), c->req.err, NULL, 1);
}

/* Feed one step of the public input; returns 0 to stop the pump. */
static int pub_step(http_conn_t *c)
{
    h1_ev_t ev;
    int pending_done = c->req.done_pending && !c->req.in_head;
    if (c->phase != C_HTTP || c->rstate == R_WAIT || c->lstate == L_CONNECTING)
        return 0;
    if (c->rstate == R_BODY && c->mode == X_UP && c->up_full)
        return 0;
    if (c->pin.len == 0 && !pending_done)
        return 0;
    int was = c->rstate;
    size_t n = h1_feed(&c->req, c->pin.data, c->pin.len, &ev);
    if (was == R_BODY && n) {
        if (c->cap)
            H->capture_raw(c->cap, BW_CAPTURE_REQUEST, c->pin.data, n);
        if (c->mode == X_UP)
            up_write(c, c->pin.data, n);
    }
    h1_buf_consume(&c->pin, n);
    if (ev == H1_EV_HEAD)
        on_request_head(c);
    else if (ev == H1_EV_DONE)
        on_request_done(c);
    else if (ev == H1_EV_ERROR)
        request_error(c);
    return 1;
}

static void pub_eof_check(http_conn_t *c)
{
    if (!c->pub_eof || c->pin.len || c->phase != C_HTTP)
        return;
    if (c->rstate == R_HEAD) {
        bw__http_conn_close(c, h1_busy(&c->req));
    } else if (c->rstate == R_BODY && c->lstate != L_CONNECTING &&
               !(c->mode == X_UP && c->up_full)) {
        /* The client left in the middle of its request body. */
        report_request(c, BW_ECONNRESET);
        bw__http_conn_close(c, 1);
    }
}

static void pump_pub(http_conn_t *c)
{
    if (c->in_pub) {
        c->pub_again = 1;
        return;
    }
    c->refs++;
    c->in_pub = 1;
    do {
        c->pub_again = 0;
        while (pub_step(c))
            ;
    } while (c->pub_again && c->phase == C_HTTP);
    c->in_pub = 0;
    pub_eof_check(c);
    update_reading(c);
    unref(c);
}

/* ---- responses ------------------------------------------------------------------------ */

static void upgrade(http_conn_t *c);

static void response_head(http_conn_t *c)
{
    const h1_head_t *h = &c->res.head;
    if (h->status == 101 && c->req_upgrade) {
        upgrade(c);
        return;
    }
    if (h->status >= 100 && h->status < 200) {
        c->sstate = S_INTERIM; /* 100 Continue and friends: pass on, await the final head */
        bw__http_pub_write(c, h->raw.data, h->raw.len);
        return;
    }
    if (c->cap) {
        bw_http_head_t v;
        h1_capture_view(h, &v);
        H->capture_head(c->cap, BW_CAPTURE_RESPONSE, &v);
        H->capture_raw(c->cap, BW_CAPTURE_RESPONSE, h->raw.data, h->raw.len);
    }
    if (!c->res.keep_alive || h1_body_until_eof(&c->res))
        c->close_after = 1;
    c->sstate = S_BODY;
    const http_tunnel_t *tt = c->tt;
    if (!tt->res_add.n && !header_present(h, &tt->res_remove)) {
        bw__http_pub_write(c, h->raw.data, h->raw.len);
        return;
    }
    h1_edit_t e = {.remove = (const char *const *)tt->res_remove.items,
                   .n_remove = tt->res_remove.n,
                   .add = (const char *const *)tt->res_add.items,
                   .n_add = tt->res_add.n};
    h1_buf_t out = {0};
    if (h1_head_rebuild(h, &e, &out) == 0)
        bw__http_pub_write(c, out.data, out.len);
    h1_buf_free(&out);
}

static void response_error(http_conn_t *c, const char *why)
{
    H->log(BW_LOG_DEBUG, "bad response from local service", "obj", "http", "addr", c->tt->addr,
           "err", why, NULL);
    if (!c->sent_any && c->mode == X_UP && c->sstate == S_HEAD) {
        up_gone(c);
        bw__http_reply_502(c, why);
        return;
    }
    bw__http_conn_close(c, 1);
}

static int up_step(http_conn_t *c)
{
    h1_ev_t ev;
    int pending_done = c->res.done_pending && !c->res.in_head;
    if (c->phase != C_HTTP || c->pub_full || !c->up || c->sstate == S_DONE || c->mode != X_UP)
        return 0;
    if (uin_len(c) == 0 && !pending_done)
        return 0;
    int was = c->sstate;
    const char *data = uin_data(c);
    size_t n = h1_feed(&c->res, data, uin_len(c), &ev);
    if (was == S_BODY && n) {
        if (c->cap)
            H->capture_raw(c->cap, BW_CAPTURE_RESPONSE, data, n);
        bw__http_pub_write(c, data, n);
    }
    uin_consume(c, n);
    if (ev == H1_EV_HEAD) {
        response_head(c);
    } else if (ev == H1_EV_DONE) {
        if (c->sstate == S_INTERIM) {
            c->sstate = S_HEAD;
        } else {
            c->sstate = S_DONE;
            bw__http_finish_exchange(c);
        }
    } else if (ev == H1_EV_ERROR) {
        response_error(c, c->res.err);
    }
    return 1;
}

static void up_eof_check(http_conn_t *c)
{
    if (c->lstate != L_EOF || uin_len(c) || c->phase != C_HTTP || c->pub_full)
        return;
    if (c->mode != X_UP || c->sstate == S_DONE) {
        up_gone(c); /* closed between exchanges: reconnect for the next one */
        return;
    }
    h1_ev_t ev = h1_eof(&c->res);
    if (ev == H1_EV_DONE && c->sstate == S_BODY) {
        c->close_after = 1;
        c->sstate = S_DONE;
        up_gone(c);
        bw__http_finish_exchange(c);
        return;
    }
    response_error(c, c->sstate == S_HEAD || c->sstate == S_INTERIM
                          ? "local service closed the connection before "
                            "responding"
                          : "local service closed the connection mid-response");
}

static void pump_up(http_conn_t *c)
{
    if (c->in_up) {
        c->up_again = 1;
        return;
    }
    c->refs++;
    c->in_up = 1;
    do {
        c->up_again = 0;
        while (up_step(c))
            ;
    } while (c->up_again && c->phase == C_HTTP);
    c->in_up = 0;
    up_eof_check(c);
    update_reading(c);
    unref(c);
}

/* ---- upgrade ------------------------------------------------------------------------------ */

static void joined(void *ud, int err, uint64_t in, uint64_t out)
{
    http_conn_t *c = ud;
    unref(c);
}

static void upgrade(http_conn_t *c)
{
    const h1_head_t *h = &c->res.head;
    if (c->cap) {
        bw_http_head_t v;
        h1_capture_view(h, &v);
        H->capture_head(c->cap, BW_CAPTURE_RESPONSE, &v);
        H->capture_raw(c->cap, BW_CAPTURE_RESPONSE, h->raw.data, h->raw.len);
    }
    if (c->tt->t)
        H->metric_http(c->tt->t, H->now_ns() - c->x_start);
    bw__http_end_capture(c, 0);
    bw__http_pub_write(c, h->raw.data, h->raw.len);
    bw__http_pub_write(c, uin_data(c), uin_len(c));
    up_write(c, c->pin.data, c->pin.len);
    uin_clear(c);
    c->pin.len = 0;
    bw_stream_t *pub = c->pub, *up = c->up;
    c->pub = c->up = NULL;
    c->phase = C_UPGRADED; /* no more HTTP on this connection */
    if (!c->pub_reading)
        H->stream_read_start(pub);
    if (!c->up_reading)
        H->stream_read_start(up);
    c->refs++; /* released by joined() */
    if (H->stream_join(pub, up, joined, c) < 0)
        unref(c);
    unref(c); /* the connection's own reference */
}

/* ---- stream callbacks ------------------------------------------------------------------------ */

static void pub_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    http_conn_t *c = ud;
    if (c->phase != C_HTTP)
        return;
    if (h1_buf_add(&c->pin, data, len) < 0) {
        bw__http_conn_close(c, 1);
        return;
    }
    pump_pub(c);
}

static void pub_eof(bw_stream_t *s, void *ud)
{
    http_conn_t *c = ud;
    c->pub_eof = 1;
    c->refs++;
    pump_pub(c);
    unref(c);
}

static void pub_drain(bw_stream_t *s, void *ud)
{
    http_conn_t *c = ud;
    c->pub_full = 0;
    c->refs++;
    if (c->file_fd >= 0)
        bw__http_files_pump(c);
    else
        pump_up(c);
    update_reading(c);
    unref(c);
}

static void pub_error(bw_stream_t *s, void *ud, int err)
{
    bw__http_conn_close(ud, 1);
}

static void up_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    http_conn_t *c = ud;
    if (c->phase != C_HTTP)
        return;
    if (c->uin.len == 0 && !c->uext && !c->in_up) {
        c->refs++;
        c->uext = data;
        c->uext_len = len;
        pump_up(c);
        if (c->phase != C_HTTP)
            uin_clear(c); /* closed or upgraded: nothing more is parsed */
        if (uin_keep(c) < 0)
            bw__http_conn_close(c, 1);
        else
            update_reading(c);
        unref(c);
        return;
    }
    if (uin_keep(c) < 0 || h1_buf_add(&c->uin, data, len) < 0) {
        bw__http_conn_close(c, 1);
        return;
    }
    pump_up(c);
}

static void up_eof(bw_stream_t *s, void *ud)
{
    http_conn_t *c = ud;
    c->lstate = L_EOF;
    pump_up(c);
}

static void up_drain(bw_stream_t *s, void *ud)
{
    http_conn_t *c = ud;
    c->up_full = 0;
    pump_pub(c);
}

static void up_error(bw_stream_t *s, void *ud, int err)
{
    http_conn_t *c = ud;
    c->lstate = L_EOF;
    uin_clear(c);
    c->refs++;
    up_eof_check(c);
    update_reading(c);
    unref(c);
}

static const bw_stream_cbs_t pub_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = pub_read,
    .on_eof = pub_eof,
    .on_drain = pub_drain,
    .on_error = pub_error,
};

static const bw_stream_cbs_t up_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = up_read,
    .on_eof = up_eof,
    .on_drain = up_drain,
    .on_error = up_error,
};

void bw__http_conn_open(http_tunnel_t *tt, bw_stream_t *pub, const bw_conn_info_t *info)
{
    http_conn_t *c = calloc(1, sizeof *c);
    if (!c || !tt->t) {
        free(c);
        H->stream_close(pub, 1);
        return;
    }
    c->tt = tt;
    c->pub = pub;
    c->refs = 1;
    c->file_fd = -1;
    c->conn_start = H->now_ns();
    c->edge_type = info->edge_type;
    snprintf(c->client_addr, sizeof c->client_addr, "%s",
             info->client_addr ? info->client_addr : "");
    snprintf(c->client_ip, sizeof c->client_ip, "%s", info->client_ip ? info->client_ip : "");
    snprintf(c->server_name, sizeof c->server_name, "%s",
             info->server_name ? info->server_name : "");
    if (BW_CONN_INFO_HAS(info, server_addr))
        snprintf(c->server_addr, sizeof c->server_addr, "%s", info->server_addr);
    c->forbidden = !http_ip_allowed(tt->allow, tt->n_allow, tt->deny, tt->n_deny, c->client_ip);
    h1_init(&c->req, H1_REQUEST);
    h1_init(&c->res, H1_RESPONSE);
    tt->live++;
    H->metric_conn_open(tt->t);
    c->pub_reading = 1;
    H->stream_set_callbacks(pub, &pub_cbs, c);
}
