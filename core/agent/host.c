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

/* ---------------------------------------------------------------------------
 * Tunnel definitions
 * ------------------------------------------------------------------------- */

static const bw_option_t *find_option(const bw_option_t *opts, const char *key)
{
    for (size_t i = 0; opts && opts[i].key; i++)
        if (strcmp(opts[i].key, key) == 0)
            return &opts[i];
    return NULL;
}

/* Is `prefix` the first component of a dotted option key? */
static int is_option_group(const bw_option_t *opts, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; opts && opts[i].key; i++)
        if (strncmp(opts[i].key, prefix, n) == 0 && opts[i].key[n] == '.')
            return 1;
    return 0;
}

static json_t *scalar_text(const json_t *v)
{
    char buf[64];
    if (json_is_string(v))
        return json_string(json_string_value(v));
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return json_string(buf);
    }
    if (json_is_real(v)) {
        /* The shortest text that reads back as the same double: 0.1, not
         * 0.10000000000000001. */
        double d = json_real_value(v);
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        return json_string(buf);
    }
    if (json_is_boolean(v))
        return json_string(json_is_true(v) ? "true" : "false");
    return NULL;
}

static json_t *coerce_bool(const json_t *v)
{
    if (json_is_boolean(v))
        return json_boolean(json_is_true(v));
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "true") == 0)
            return json_true();
        if (strcmp(s, "false") == 0)
            return json_false();
    }
    return NULL;
}

static json_t *coerce_int(const json_t *v)
{
    long long n;
    if (json_is_integer(v))
        return json_integer(json_integer_value(v));
    if (json_is_string(v) && bw_parse_int(json_string_value(v), INT64_MIN, INT64_MAX, &n) == 0)
        return json_integer(n);
    return NULL;
}

static json_t *coerce_list(const json_t *v)
{
    json_t *out = json_array(), *item;
    size_t i;
    if (!out)
        return NULL;
    if (!json_is_array(v)) {
        json_t *one = scalar_text(v);
        if (!one || json_array_append_new(out, one) != 0)
            goto fail;
        return out;
    }
    json_array_foreach(v, i, item)
    {
        json_t *s = scalar_text(item);
        if (!s || json_array_append_new(out, s) != 0)
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

static const char *type_word(bw_option_type_t t)
{
    switch (t) {
    case BW_OPT_BOOL:
        return "a boolean";
    case BW_OPT_INT:
        return "an integer";
    case BW_OPT_STRING_LIST:
        return "a list of strings";
    case BW_OPT_BOOL_OR_STRING:
        return "a boolean or a string";
    case BW_OPT_ANY:
        return "any value";
    default:
        return "a string";
    }
}

static int conf_put(const bw_option_t *o, const json_t *v, json_t *out, char *err, size_t errlen)
{
    json_t *c = NULL;
    switch (o->type) {
    case BW_OPT_BOOL:
        c = coerce_bool(v);
        break;
    case BW_OPT_INT:
        c = coerce_int(v);
        break;
    case BW_OPT_STRING_LIST:
        c = coerce_list(v);
        break;
    case BW_OPT_ANY:
        c = json_deep_copy(v);
        break;
    default:
        c = json_is_array(v) || json_is_object(v) || json_is_null(v) ? NULL : scalar_text(v);
        break;
    }
    if (!c) {
        snprintf(err, errlen, "option '%s' must be %s", o->key, type_word(o->type));
        return BW_EINVAL;
    }
    json_object_set_new(out, o->key, c);
    return 0;
}

/* Keys the core owns in every definition, whatever the plugin: the ones it
 * acts on (proto, addr, name, metadata, inspect) and ngrok's endpoint keys
 * it accepts without acting on them. Binding keys (remote_addr, subdomain,
 * hostname, domain) are declared by the plugins whose edge type uses them;
 * the core reads them by name when it binds (docs/plugin-abi.md). */
static int is_common_key(const char *k)
{
    static const char *const common[] = {
        "proto",       "addr",         "name",           "metadata",       "inspect",
        "ip_policy",   "labels",       "policy",         "bindings",       "proxy_proto",
        "description", "app_protocol", "traffic_policy", "pooling_enabled"};
    for (size_t i = 0; i < BW_ARRAY_SIZE(common); i++)
        if (strcmp(k, common[i]) == 0)
            return 1;
    return 0;
}

static int conf_group(const bw_option_t *opts, const char *group, const json_t *v, int strict,
                      json_t *out, char *err, size_t errlen)
{
    const char *k;
    json_t *sub;
    char full[256];
    if (!json_is_object(v)) {
        snprintf(err, errlen, "option '%s' must be a map", group);
        return BW_EINVAL;
    }
    json_object_foreach((json_t *)v, k, sub)
    {
        snprintf(full, sizeof full, "%s.%s", group, k);
        const bw_option_t *o = find_option(opts, full);
        if (!o) {
            if (!strict)
                continue;
            snprintf(err, errlen, "unknown option '%s'", full);
            return BW_EINVAL;
        }
        int rc = conf_put(o, sub, out, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int bw_conf_build(const bw_option_t *opts, const json_t *input, int strict, bw_conf_t *out,
                  char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    int rc = 0;
    out->opts = opts;
    out->obj = json_object();
    if (!out->obj)
        return BW_ENOMEM;
    json_object_foreach((json_t *)input, k, v)
    {
        const bw_option_t *o = find_option(opts, k);
        if (is_common_key(k) && !o)
            continue;
        if (o)
            rc = conf_put(o, v, out->obj, err, errlen);
        else if (is_option_group(opts, k))
            rc = conf_group(opts, k, v, strict, out->obj, err, errlen);
        else if (strict) {
            snprintf(err, errlen, "unknown option '%s'", k);
            rc = BW_EINVAL;
        }
        if (rc < 0)
            goto fail;
    }
    for (size_t i = 0; opts && opts[i].key; i++)
        if ((opts[i].flags & BW_OPT_F_REQUIRED) && !json_object_get(out->obj, opts[i].key)) {
            snprintf(err, errlen, "missing required option '%s'", opts[i].key);
            rc = BW_EINVAL;
            goto fail;
        }
    return 0;
fail:
    bw_conf_free(out);
    return rc;
}

const char *bw_conf_unknown_key(const bw_option_t *opts, const json_t *input)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)input, k, v)
    {
        if (is_common_key(k) || find_option(opts, k))
            continue;
        if (!is_option_group(opts, k))
            return k;
        const char *sub;
        json_t *sv;
        char full[256];
        if (!json_is_object(v))
            continue; /* bw_conf_build names the type error */
        json_object_foreach(v, sub, sv)
        {
            snprintf(full, sizeof full, "%s.%s", k, sub);
            if (!find_option(opts, full))
                return k;
        }
    }
    return NULL;
}

void bw_conf_warn_unused(const bw_conf_t *c, const char *tunnel_name)
{
    for (size_t i = 0; c && c->opts && c->opts[i].key; i++)
        if (c->opts[i].type == BW_OPT_ANY && json_object_get(c->obj, c->opts[i].key))
            bw_log(BW_LOG_WARN, "option has no effect in burrow", "obj", "tunnels", "name",
                   tunnel_name, "option", c->opts[i].key, NULL);
}

void bw_conf_free(bw_conf_t *c)
{
    if (!c)
        return;
    json_decref(c->obj);
    c->obj = NULL;
}

/* --- conf slots --- */

static const char *h_conf_str(const bw_conf_t *c, const char *key)
{
    json_t *v = c ? json_object_get(c->obj, key) : NULL;
    if (json_is_string(v))
        return json_string_value(v);
    const bw_option_t *o = c ? find_option(c->opts, key) : NULL;
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

static void tunnel_release(bw_tunnel_t *t)
{
    if (t->pending_connects)
        return; /* the last connect callback frees it */
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
    if (t->tstate)
        t->plugin->desc.tunnel_stop(t->tstate);
    t->tstate = NULL;
    tunnel_release(t);
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
        tunnel_release(t);
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

static const bw_host_t host_table = {
    .abi_major = BW_PLUGIN_ABI_MAJOR,
    .abi_minor = BW_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(bw_host_t),
    .log = h_log,
    .error_set = h_error_set,
    .strerror = bw_strerror,
    .now_ns = now_ns,
    .conf_str = h_conf_str,
    .conf_bool = h_conf_bool,
    .conf_int = h_conf_int,
    .conf_list_len = h_conf_list_len,
    .conf_list_at = h_conf_list_at,
    .tunnel_conf = h_tunnel_conf,
    .tunnel_name = h_tunnel_name,
    .tunnel_addr = h_tunnel_addr,
    .tunnel_public_url = h_tunnel_public_url,
    .connect = h_connect,
    .stream_set_callbacks = bw_stream_set_callbacks,
    .stream_write = bw_stream_write,
    .stream_queued = bw_stream_queued,
    .stream_shutdown = bw_stream_shutdown,
    .stream_read_stop = bw_stream_read_stop,
    .stream_read_start = bw_stream_read_start,
    .stream_close = bw_stream_close,
    .stream_join = bw_stream_join,
    .stream_peer = bw_stream_peer,
    .timer_start = h_timer_start,
    .timer_stop = h_timer_stop,
    .metric_conn_open = h_metric_conn_open,
    .metric_conn_close = h_metric_conn_close,
    .metric_http = h_metric_http,
    .capture_begin = bw__host_capture_begin,
    .capture_head = bw__host_capture_head,
    .capture_raw = bw__host_capture_raw,
    .capture_end = bw__host_capture_end,
    .capture_request_done = bw__host_capture_request_done,
    .stream_start_tls = bw__host_stream_start_tls,
};

const bw_host_t *bw_host_table(void)
{
    return &host_table;
}
