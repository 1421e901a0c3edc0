/* Test fixture plugin "tcptls": raw TCP forwarding like the tcp plugin, but
 * the local side is dialled with BW_CONNECT_TLS (option upstream_tls, on by
 * default; upstream_verify adds BW_CONNECT_TLS_VERIFY), and every
 * connection is captured as one exchange (BW_PLUGIN_F_INSPECTS, option
 * inspect): the client's bytes as the request, the service's as the
 * response, the client's EOF as "request read". It does its own forwarding
 * (not stream_join) so it sees the bytes; that also exercises the stream
 * slots one by one on the TLS stream. Public headers only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <burrow/plugin.h>

static const bw_host_t *H;

typedef struct tunnel {
    bw_tunnel_t *t; /* NULL once stopped */
    unsigned live;
} tunnel_t;

typedef struct conn {
    tunnel_t *tt;
    bw_stream_t *s[2]; /* [0] public, [1] local */
    int eof[2];
    bw_capture_t *cap;
    uint64_t start_ns;
} conn_t;

static const bw_option_t options[] = {
    {.key = "inspect", .type = BW_OPT_BOOL, .default_value = "true", .description = "capture"},
    {.key = "upstream_tls", .type = BW_OPT_BOOL, .default_value = "true", .description = "TLS"},
    {.key = "upstream_verify",
     .type = BW_OPT_BOOL,
     .default_value = "false",
     .description = "verify the local certificate"},
    {.key = NULL},
};

static int p_init(const bw_host_t *host, void **state, bw_error_t *err)
{
    H = host;
    *state = NULL;
    return 0;
}

static void p_destroy(void *state)
{
}

static void tunnel_unref(tunnel_t *tt)
{
    if (!tt->t && tt->live == 0)
        free(tt);
}

static int p_tunnel_start(void *state, bw_tunnel_t *t, void **tstate, bw_error_t *err)
{
    tunnel_t *tt = calloc(1, sizeof *tt);
    if (!tt)
        return BW_ENOMEM;
    tt->t = t;
    *tstate = tt;
    return 0;
}

static void p_tunnel_stop(void *tstate)
{
    tunnel_t *tt = tstate;
    tt->t = NULL;
    tunnel_unref(tt);
}

static void conn_finish(conn_t *c, int err)
{
    for (int i = 0; i < 2; i++)
        if (c->s[i])
            H->stream_close(c->s[i], err != 0);
    if (c->cap) {
        if (!c->eof[0])
            H->capture_request_done(c->cap, err ? err : BW_ECONNRESET);
        H->capture_end(c->cap, H->now_ns() - c->start_ns);
    }
    if (c->tt->t)
        H->metric_conn_close(c->tt->t, H->now_ns() - c->start_ns);
    c->tt->live--;
    tunnel_unref(c->tt);
    free(c);
}

static int side_of(conn_t *c, bw_stream_t *s)
{
    return s == c->s[1];
}

static void on_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    conn_t *c = ud;
    int i = side_of(c, s);
    if (c->cap)
        H->capture_raw(c->cap, i ? BW_CAPTURE_RESPONSE : BW_CAPTURE_REQUEST, data, len);
    int rc = H->stream_write(c->s[!i], data, len);
    if (rc == BW_PAUSE)
        H->stream_read_stop(s);
    else if (rc < 0)
        conn_finish(c, rc);
}

static void on_eof(bw_stream_t *s, void *ud)
{
    conn_t *c = ud;
    int i = side_of(c, s);
    c->eof[i] = 1;
    if (i == 0 && c->cap)
        H->capture_request_done(c->cap, 0);
    if (c->eof[!i]) {
        conn_finish(c, 0);
        return;
    }
    int rc = H->stream_shutdown(c->s[!i]);
    if (rc < 0)
        conn_finish(c, rc);
}

static void on_drain(bw_stream_t *s, void *ud)
{
    conn_t *c = ud;
    int i = side_of(c, s);
    if (!c->eof[!i])
        H->stream_read_start(c->s[!i]);
}

static void on_error(bw_stream_t *s, void *ud, int err)
{
    conn_finish(ud, err);
}

static const bw_stream_cbs_t cbs = {
    .struct_size = sizeof cbs,
    .on_read = on_read,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_error = on_error,
};

static void connected(void *ud, bw_stream_t *local, int status)
{
    conn_t *c = ud;
    if (status < 0) {
        H->log(BW_LOG_WARN, "fixture upstream connect failed", "err", H->strerror(status), NULL);
        conn_finish(c, status);
        return;
    }
    c->s[1] = local;
    H->log(BW_LOG_DEBUG, "fixture joined", "l", H->stream_peer(local), NULL);
    H->stream_set_callbacks(c->s[0], &cbs, c);
    H->stream_set_callbacks(c->s[1], &cbs, c);
}

static void p_conn_open(void *tstate, bw_stream_t *pub, const bw_conn_info_t *info)
{
    tunnel_t *tt = tstate;
    conn_t *c = calloc(1, sizeof *c);
    if (!c || !tt->t) {
        free(c);
        H->stream_close(pub, 1);
        return;
    }
    c->tt = tt;
    c->s[0] = pub;
    c->start_ns = H->now_ns();
    tt->live++;
    H->metric_conn_open(tt->t);
    c->cap = H->capture_begin(tt->t, info);
    if (c->cap) {
        static const bw_http_header_t hdr = {"x-fixture", 9, "tcptls", 6};
        bw_http_head_t head = {.struct_size = sizeof head,
                               .method = "RAW",
                               .uri = "/",
                               .proto = "HTTP/1.1",
                               .headers = &hdr,
                               .n_headers = 1};
        H->capture_head(c->cap, BW_CAPTURE_REQUEST, &head);
    }
    const bw_conf_t *conf = H->tunnel_conf(tt->t);
    uint32_t flags = 0;
    if (H->conf_bool(conf, "upstream_tls", 1))
        flags |= BW_CONNECT_TLS;
    if (H->conf_bool(conf, "upstream_verify", 0))
        flags |= BW_CONNECT_TLS_VERIFY;
    int rc = H->connect(tt->t, H->tunnel_addr(tt->t), flags, connected, c);
    if (rc < 0)
        connected(c, NULL, rc);
}

static const bw_plugin_t plugin = {
    .abi_major = BW_PLUGIN_ABI_MAJOR,
    .abi_minor = BW_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(bw_plugin_t),
    .name = "tcptls",
    .version = "0.0.1",
    .description = "test fixture: tcp to a TLS local service, captured",
    .public_scheme = "tcp",
    .edge_type = BW_EDGE_TCP,
    .flags = BW_PLUGIN_F_INSPECTS,
    .options = options,
    .init = p_init,
    .destroy = p_destroy,
    .tunnel_start = p_tunnel_start,
    .tunnel_stop = p_tunnel_stop,
    .conn_open = p_conn_open,
};

BW_PLUGIN_EXPORT const bw_plugin_t *bw_plugin_entry(void);

const bw_plugin_t *bw_plugin_entry(void)
{
    return &plugin;
}
