/* A fake bw_host_t for driving the http plugin without an agent: streams
 * record what was written and whether reading is on, connect completes when
 * the driver says, capture slots record what was reported. Included (once)
 * by the plugin's unit test and its connection fuzz target. */
#ifndef BW_TEST_HTTP_FAKE_HOST_H
#define BW_TEST_HTTP_FAKE_HOST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <burrow/plugin.h>

#include "h1.h"

/* ---- fake host objects ---------------------------------------------------- */

struct bw_stream {
    const bw_stream_cbs_t *cbs;
    void *ud;
    h1_buf_t written;
    int reading, closed, aborted, paused;
};

struct bw_tunnel {
    int dummy;
};

struct bw_capture {
    h1_buf_t raw[3];
    int req_heads, res_heads, status;
    char uri[64];
    int req_done, req_err, ended;
};

static struct bw_stream g_pub, g_up;
static struct bw_capture g_cap;
static struct bw_tunnel g_tunnel;
static int g_inspect = 1, g_connects, g_conn_closes, g_http_metrics;
static bw_connect_cb g_connect_cb;
static void *g_connect_ud;
static const char *g_addr = "http://localhost:8080";
static const char *g_host_header, *g_auth, *g_proxy_proto;

static void f_log(bw_log_level_t l, const char *msg, ...)
{
}
static void f_error_set(bw_error_t *e, const char *fmt, ...)
{
}
static const char *f_strerror(int e)
{
    return e == BW_ECONNREFUSED ? "connection refused" : "error";
}
static uint64_t f_now(void)
{
    return 1000;
}
static const char *f_conf_str(const bw_conf_t *c, const char *k)
{
    if (strcmp(k, "host_header") == 0)
        return g_host_header;
    if (strcmp(k, "auth") == 0)
        return g_auth;
    if (strcmp(k, "proxy_proto") == 0)
        return g_proxy_proto;
    return NULL;
}
static int f_conf_bool(const bw_conf_t *c, const char *k, int d)
{
    return d;
}
static int64_t f_conf_int(const bw_conf_t *c, const char *k, int64_t d)
{
    return d;
}
static size_t f_list_len(const bw_conf_t *c, const char *k)
{
    return 0;
}
static const char *f_list_at(const bw_conf_t *c, const char *k, size_t i)
{
    return NULL;
}
static const bw_conf_t *f_tunnel_conf(bw_tunnel_t *t)
{
    return NULL;
}
static const char *f_tunnel_name(bw_tunnel_t *t)
{
    return "web";
}
static const char *f_tunnel_addr(bw_tunnel_t *t)
{
    return g_addr;
}
static const char *f_url(bw_tunnel_t *t)
{
    return "https://abc.example";
}
static int f_connect(bw_tunnel_t *t, const char *addr, uint32_t flags, bw_connect_cb cb, void *ud)
{
    g_connects++;
    g_connect_cb = cb;
    g_connect_ud = ud;
    return 0;
}
static void f_set_cbs(bw_stream_t *s, const bw_stream_cbs_t *cbs, void *ud)
{
    s->cbs = cbs;
    s->ud = ud;
    s->reading = 1;
}
/* A call on a stream the plugin already closed (or handed to a join) is a
 * use after free in a real host. */
static void alive(const bw_stream_t *s)
{
    if (s->closed) {
        fprintf(stderr, "fake host: call on a closed stream\n");
        abort();
    }
}

static int f_write(bw_stream_t *s, const void *d, size_t n)
{
    alive(s);
    h1_buf_add(&s->written, d, n);
    return s->paused ? BW_PAUSE : 0;
}
static size_t f_queued(bw_stream_t *s)
{
    return 0;
}
static int f_shutdown(bw_stream_t *s)
{
    return 0;
}
static void f_read_stop(bw_stream_t *s)
{
    alive(s);
    s->reading = 0;
}
static void f_read_start(bw_stream_t *s)
{
    alive(s);
    s->reading = 1;
}
static void f_close(bw_stream_t *s, int abort)
{
    alive(s);
    s->closed = 1;
    s->aborted = abort;
}
static int g_joined;
static int f_join(bw_stream_t *a, bw_stream_t *b, bw_join_cb cb, void *ud)
{
    /* the join owns both streams now and ends at once */
    a->closed = b->closed = 1;
    g_joined++;
    cb(ud, 0, 0, 0);
    return 0;
}
static const char *f_peer(bw_stream_t *s)
{
    return "127.0.0.1:8080";
}
static void f_conn_open(bw_tunnel_t *t)
{
}
static void f_conn_close(bw_tunnel_t *t, uint64_t d)
{
    g_conn_closes++;
}
static void f_metric_http(bw_tunnel_t *t, uint64_t d)
{
    g_http_metrics++;
}
static bw_capture_t *f_cap_begin(bw_tunnel_t *t, const bw_conn_info_t *info)
{
    if (!g_inspect)
        return NULL;
    for (int i = 0; i < 3; i++)
        h1_buf_free(&g_cap.raw[i]);
    memset(&g_cap, 0, sizeof g_cap);
    return &g_cap;
}
static int f_cap_head(bw_capture_t *c, bw_capture_dir_t dir, const bw_http_head_t *h)
{
    if (dir == BW_CAPTURE_REQUEST) {
        c->req_heads++;
        snprintf(c->uri, sizeof c->uri, "%s", h->uri);
    } else {
        c->res_heads++;
        c->status = h->status;
    }
    return 0;
}
static int f_cap_raw(bw_capture_t *c, bw_capture_dir_t dir, const void *d, size_t n)
{
    return h1_buf_add(&c->raw[dir], d, n);
}
static void f_cap_end(bw_capture_t *c, uint64_t d)
{
    c->ended++;
}
static void f_cap_done(bw_capture_t *c, int err)
{
    c->req_done++;
    c->req_err = err;
}

static const bw_host_t fake_host = {
    .abi_major = BW_PLUGIN_ABI_MAJOR,
    .abi_minor = BW_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(bw_host_t),
    .log = f_log,
    .error_set = f_error_set,
    .strerror = f_strerror,
    .now_ns = f_now,
    .conf_str = f_conf_str,
    .conf_bool = f_conf_bool,
    .conf_int = f_conf_int,
    .conf_list_len = f_list_len,
    .conf_list_at = f_list_at,
    .tunnel_conf = f_tunnel_conf,
    .tunnel_name = f_tunnel_name,
    .tunnel_addr = f_tunnel_addr,
    .tunnel_public_url = f_url,
    .connect = f_connect,
    .stream_set_callbacks = f_set_cbs,
    .stream_write = f_write,
    .stream_queued = f_queued,
    .stream_shutdown = f_shutdown,
    .stream_read_stop = f_read_stop,
    .stream_read_start = f_read_start,
    .stream_close = f_close,
    .stream_join = f_join,
    .stream_peer = f_peer,
    .metric_conn_open = f_conn_open,
    .metric_conn_close = f_conn_close,
    .metric_http = f_metric_http,
    .capture_begin = f_cap_begin,
    .capture_head = f_cap_head,
    .capture_raw = f_cap_raw,
    .capture_end = f_cap_end,
    .capture_request_done = f_cap_done,
};

#endif
