/* The bw_host_t table and the tunnel records behind it. See host.h. */
#include "host.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "log.h"
#include "replay.h"
#include "stream.h"
#include "util.h"

static bw_timer_metric_t g_total_conns, g_total_http;
static int g_totals_init;

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static void totals_init(void)
{
    if (g_totals_init)
        return;
    g_totals_init = 1;
    bw_timer_metric_init(&g_total_conns, now_ns(), 0x9e3779b97f4a7c15ull);
    bw_timer_metric_init(&g_total_http, now_ns(), 0xbf58476d1ce4e5b9ull);
}

bw_timer_metric_t *bw_host_total_conns(void)
{
    totals_init();
    return &g_total_conns;
}

bw_timer_metric_t *bw_host_total_http(void)
{
    totals_init();
    return &g_total_http;
}

/* --- conf slots --- */

static const char *h_conf_str(const bw_conf_t *c, const char *key)
{
    json_t *v = c ? json_object_get(c->obj, key) : NULL;
    if (json_is_string(v))
        return json_string_value(v);
    const bw_option_t *o = c ? bw__conf_find_option(c->opts, key) : NULL;
    return o ? o->default_value : NULL;
}

static int h_conf_bool(const bw_conf_t *c, const char *key, int dflt)
{
    json_t *v = c ? json_object_get(c->obj, key) : NULL;
    if (json_is_boolean(v))
        return json_is_true(v);
    const char *d = h_conf_str(c, key);
    if (d && strcmp(d, "true") == 0)
        return 1;
    if (d && strcmp(d, "false") == 0)
        return 0;
    return dflt;
}

static int64_t h_conf_int(const bw_conf_t *c, const char *key, int64_t dflt)
{
    json_t *v = c ? json_object_get(c->obj, key) : NULL;
    long long n;
    if (json_is_integer(v))
        return json_integer_value(v);
    const char *d = h_conf_str(c, key);
    if (d && bw_parse_int(d, INT64_MIN, INT64_MAX, &n) == 0)
        return n;
    return dflt;
}

static size_t h_conf_list_len(const bw_conf_t *c, const char *key)
{
    json_t *v = c ? json_object_get(c->obj, key) : NULL;
    return json_is_array(v) ? json_array_size(v) : 0;
}

static const char *h_conf_list_at(const bw_conf_t *c, const char *key, size_t i)
{
    json_t *v = c ? json_object_get(c->obj, key) : NULL;
    return json_is_array(v) ? json_string_value(json_array_get(v, i)) : NULL;
}

/* ---------------------------------------------------------------------------
 * Tunnels
 * ------------------------------------------------------------------------- */

bw_tunnel_t *bw_tunnel_new(const char *name, const char *addr, const bw_loaded_plugin_t *plugin,
                           bw_conf_t *conf)
{
    bw_tunnel_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->name = bw_strdup(name);
    t->addr = bw_strdup(addr);
    t->public_url = bw_strdup("");
    if (!t->name || !t->addr || !t->public_url) {
        free(t->name);
        free(t->addr);
        free(t->public_url);
        free(t);
        return NULL;
    }
    t->plugin = plugin;
    bw_random_hex(t->api_id, 16);
    t->conf = *conf;
    conf->obj = NULL;
    uint64_t now = now_ns();
    bw_timer_metric_init(&t->conns, now, now ^ 0x2545f4914f6cdd1dull);
    bw_timer_metric_init(&t->http, now, now ^ 0x94d049bb133111ebull);
    totals_init();
    return t;
}

int bw_tunnel_start(bw_tunnel_t *t, char *err, size_t errlen)
{
    bw_error_t e = {{0}};
    int rc = t->plugin->desc.tunnel_start(t->plugin->state, t, &t->tstate, &e);
    if (rc < 0)
        snprintf(err, errlen, "%s", e.msg[0] ? e.msg : bw_strerror(rc));
    return rc;
}

int bw_tunnel_set_url(bw_tunnel_t *t, const char *url)
{
    char *u = bw_strdup(url ? url : "");
    if (!u)
        return BW_ENOMEM;
    free(t->public_url);
    t->public_url = u;
    return 0;
}

void bw_tunnel_conn(bw_tunnel_t *t, bw_stream_t *pub, const bw_conn_info_t *info)
{
    t->plugin->desc.conn_open(t->tstate, pub, info);
}

void bw__tunnel_release(bw_tunnel_t *t)
{
    if (t->pending_connects || t->pending_works)
        return; /* the last connect or work callback frees it */
    bw_conf_free(&t->conf);
    free(t->name);
    free(t->addr);
    free(t->public_url);
    free(t);
}

void bw_tunnel_free(bw_tunnel_t *t)
{
    if (!t || t->stopping)
        return;
    t->stopping = 1;
    bw_replay_cancel_all(t);
    bw__host_work_cancel_all(t);
    if (t->tstate)
        t->plugin->desc.tunnel_stop(t->tstate);
    t->tstate = NULL;
    bw__tunnel_release(t);
}

/* ---------------------------------------------------------------------------
 * Host slots
 * ------------------------------------------------------------------------- */

static void h_log(bw_log_level_t level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    bw_logv(level, msg, ap);
    va_end(ap);
}

static void h_error_set(bw_error_t *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

static const bw_conf_t *h_tunnel_conf(bw_tunnel_t *t)
{
    return &t->conf;
}

static const char *h_tunnel_name(bw_tunnel_t *t)
{
    return t->name;
}

static const char *h_tunnel_addr(bw_tunnel_t *t)
{
    return t->addr;
}

static const char *h_tunnel_public_url(bw_tunnel_t *t)
{
    return t->public_url;
}

typedef struct pending_connect {
    bw_tunnel_t *t;
    bw_connect_cb cb;
    void *ud;
} pending_connect_t;

static void connected(void *ud, bw_stream_t *s, int status)
{
    pending_connect_t *pc = ud;
    bw_tunnel_t *t = pc->t;
    t->pending_connects--;
    if (t->stopping && status == 0) {
        bw_stream_close(s, 1);
        s = NULL;
        status = BW_ECANCELED;
    }
    pc->cb(pc->ud, s, status);
    free(pc);
    if (t->stopping)
        bw__tunnel_release(t);
}

static bw_io_t *g_io;

void bw_host_set_io(bw_io_t *io)
{
    g_io = io;
}

bw_io_t *bw_host_io(void)
{
    return g_io;
}

static int h_connect(bw_tunnel_t *t, const char *addr, uint32_t flags, bw_connect_cb cb, void *ud)
{
    char host[256];
    int port;
    if (t->stopping)
        return BW_ECANCELED;
    if (bw_split_hostport(addr, host, sizeof host, &port) != 0)
        return BW_EINVAL;
    pending_connect_t *pc = malloc(sizeof *pc);
    if (!pc)
        return BW_ENOMEM;
    pc->t = t;
    pc->cb = cb;
    pc->ud = ud;
    int rc = flags & BW_CONNECT_TLS
                 ? bw_stream_tls_connect(g_io, host, port, (flags & BW_CONNECT_TLS_VERIFY) != 0,
                                         connected, pc)
                 : bw_stream_tcp_connect(g_io, host, port, connected, pc);
    if (rc < 0) {
        free(pc);
        return rc;
    }
    t->pending_connects++;
    return 0;
}

/* --- timers --- */

struct bw_timer {
    uv_timer_t h;
    void (*cb)(void *ud);
    void *ud;
};

static void timer_fired(uv_timer_t *h)
{
    bw_timer_t *tm = BW_CONTAINER_OF(h, bw_timer_t, h);
    tm->cb(tm->ud);
}

static void timer_closed(uv_handle_t *h)
{
    free(BW_CONTAINER_OF(h, bw_timer_t, h));
}

static bw_timer_t *h_timer_start(uint64_t ms, uint64_t repeat_ms, void (*cb)(void *ud), void *ud)
{
    bw_timer_t *tm = calloc(1, sizeof *tm);
    if (!tm)
        return NULL;
    tm->cb = cb;
    tm->ud = ud;
    uv_timer_init(bw_io_loop(g_io), &tm->h);
    uv_timer_start(&tm->h, timer_fired, ms, repeat_ms);
    return tm;
}

static void h_timer_stop(bw_timer_t *tm)
{
    if (tm && !uv_is_closing((uv_handle_t *)&tm->h))
        uv_close((uv_handle_t *)&tm->h, timer_closed);
}

/* --- metrics --- */

static void h_metric_conn_open(bw_tunnel_t *t)
{
    t->conns.gauge++;
    bw_host_total_conns()->gauge++;
}

static void h_metric_conn_close(bw_tunnel_t *t, uint64_t duration_ns)
{
    uint64_t now = now_ns();
    if (t->conns.gauge > 0)
        t->conns.gauge--;
    if (g_total_conns.gauge > 0)
        g_total_conns.gauge--;
    bw_timer_metric_update(&t->conns, (int64_t)duration_ns, now);
    bw_timer_metric_update(bw_host_total_conns(), (int64_t)duration_ns, now);
}

static void h_metric_http(bw_tunnel_t *t, uint64_t duration_ns)
{
    uint64_t now = now_ns();
    bw_timer_metric_update(&t->http, (int64_t)duration_ns, now);
    bw_timer_metric_update(bw_host_total_http(), (int64_t)duration_ns, now);
}

/* ABI 1.2: "accepted, now pause" is BW_PAUSE, a success code, so a plugin's
 * `rc < 0` means failure and nothing else. The streams underneath keep
 * saying BW_EAGAIN; only what a 1.2 plugin sees changes. */
static int h_stream_write(bw_stream_t *s, const void *data, size_t len)
{
    int rc = bw_stream_write(s, data, len);
    return rc == BW_EAGAIN ? BW_PAUSE : rc;
}

/* Every slot but stream_write, whose pause code depends on the minor the
 * plugin was built for (bw_host_table_for). */
#define HOST_SLOTS                                                                                 \
    .abi_major = BW_PLUGIN_ABI_MAJOR, .abi_minor = BW_PLUGIN_ABI_MINOR,                            \
    .struct_size = sizeof(bw_host_t), .log = h_log, .error_set = h_error_set,                      \
    .strerror = bw_strerror, .now_ns = now_ns, .conf_str = h_conf_str, .conf_bool = h_conf_bool,   \
    .conf_int = h_conf_int, .conf_list_len = h_conf_list_len, .conf_list_at = h_conf_list_at,      \
    .tunnel_conf = h_tunnel_conf, .tunnel_name = h_tunnel_name, .tunnel_addr = h_tunnel_addr,      \
    .tunnel_public_url = h_tunnel_public_url, .connect = h_connect,                                \
    .stream_set_callbacks = bw_stream_set_callbacks, .stream_queued = bw_stream_queued,            \
    .stream_shutdown = bw_stream_shutdown, .stream_read_stop = bw_stream_read_stop,                \
    .stream_read_start = bw_stream_read_start, .stream_close = bw_stream_close,                    \
    .stream_join = bw_stream_join, .stream_peer = bw_stream_peer, .timer_start = h_timer_start,    \
    .timer_stop = h_timer_stop, .metric_conn_open = h_metric_conn_open,                            \
    .metric_conn_close = h_metric_conn_close, .metric_http = h_metric_http,                        \
    .capture_begin = bw__host_capture_begin, .capture_head = bw__host_capture_head,                \
    .capture_raw = bw__host_capture_raw, .capture_end = bw__host_capture_end,                      \
    .capture_request_done = bw__host_capture_request_done, .work_queue = bw__host_work_queue,      \
    .stream_start_tls = bw__host_stream_start_tls

static const bw_host_t host_table = {HOST_SLOTS, .stream_write = h_stream_write};
/* For plugins built for 1.0 and 1.1, which know only BW_EAGAIN. */
static const bw_host_t host_table_v1_1 = {HOST_SLOTS, .stream_write = bw_stream_write};

const bw_host_t *bw_host_table(void)
{
    return &host_table;
}

const bw_host_t *bw_host_table_for(uint16_t abi_minor)
{
    return abi_minor >= 2 ? &host_table : &host_table_v1_1;
}
