/* The tcp protocol plugin: raw bytes between a public TCP port on the edge
 * and the local service, both ways, with backpressure and half-close (the
 * host's stream_join), and connection metrics.
 *
 * Built like any third-party plugin: public headers only, one exported
 * symbol. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <burrow/plugin.h>
#include <burrow/proxy_proto.h>

static const bw_host_t *H;

typedef struct tcp_tunnel {
    bw_tunnel_t *t;  /* NULL once the tunnel stopped */
    unsigned live;   /* connections still open */
    int proxy_proto; /* PROXY protocol version sent first, 0: none */
} tcp_tunnel_t;

typedef struct tcp_conn {
    tcp_tunnel_t *tt;
    bw_stream_t *pub;
    uint64_t start_ns;
    char client[64];
    char server[64]; /* the edge's address the client reached, or "" */
} tcp_conn_t;

static const bw_option_t tcp_options[] = {
    {.key = "remote_addr",
     .type = BW_OPT_STRING,
     .description = "bind this public address (host:port) instead of a random port"},
    {.key = "inspect",
     .type = BW_OPT_BOOL,
     .default_value = "false",
     .description = "tcp tunnels cannot inspect traffic; accepted for compatibility"},
    {.key = "ip_restriction", .type = BW_OPT_ANY, .description = "ngrok option; no effect"},
    {.key = BW_PROXY_PROTO_KEY,
     .type = BW_OPT_STRING,
     .description = "send a PROXY protocol header (1 or 2) with the client's address first"},
    {.key = NULL},
};

static int tcp_validate(void *state, const bw_conf_t *conf, const char *name, bw_error_t *err)
{
    (void)state;
    int rc = bw_proxy_proto_conf(H, conf, name, err);
    return rc < 0 ? rc : 0;
}

static int tcp_init(const bw_host_t *host, void **state, bw_error_t *err)
{
    BW_PLUGIN_INIT_CHECK(host, err);
    H = host;
    *state = NULL;
    return 0;
}

static void tcp_destroy(void *state)
{
    (void)state;
}

static void tunnel_unref(tcp_tunnel_t *tt)
{
    if (!tt->t && tt->live == 0)
        free(tt);
}

static int tcp_tunnel_start(void *state, bw_tunnel_t *t, void **tstate, bw_error_t *err)
{
    tcp_tunnel_t *tt = calloc(1, sizeof *tt);
    if (!tt) {
        H->error_set(err, "out of memory");
        return BW_ENOMEM;
    }
    if (H->conf_bool(H->tunnel_conf(t), "inspect", 0))
        H->log(BW_LOG_WARN, "TCP tunnel cannot inspect traffic", "obj", "tunnels", "name",
               H->tunnel_name(t), NULL);
    tt->proxy_proto = bw_proxy_proto_conf(H, H->tunnel_conf(t), H->tunnel_name(t), err);
    if (tt->proxy_proto < 0) {
        int rc = tt->proxy_proto;
        free(tt);
        return rc;
    }
    tt->t = t;
    *tstate = tt;
    return 0;
}

static void tcp_tunnel_stop(void *tstate)
{
    tcp_tunnel_t *tt = tstate;
    /* Open connections keep flowing; they just stop reporting metrics. */
    tt->t = NULL;
    tunnel_unref(tt);
}

static void conn_done(tcp_conn_t *c)
{
    tcp_tunnel_t *tt = c->tt;
    if (tt->t)
        H->metric_conn_close(tt->t, H->now_ns() - c->start_ns);
    tt->live--;
    free(c);
    tunnel_unref(tt);
}

static void joined(void *ud, int err, uint64_t bytes_in, uint64_t bytes_out)
{
    tcp_conn_t *c = ud;
    if (err && err != BW_ECONNRESET)
        H->log(BW_LOG_DEBUG, "connection ended with error", "obj", "join", "r", c->client, "err",
               H->strerror(err), NULL);
    conn_done(c);
}

static void connected(void *ud, bw_stream_t *local, int status)
{
    tcp_conn_t *c = ud;
    if (status < 0) {
        /* Close the public side at once: the client learns promptly that
         * nothing is listening, and the tunnel stays up. */
        if (c->tt->t)
            H->log(BW_LOG_WARN, "failed to dial local service", "obj", "join", "addr",
                   H->tunnel_addr(c->tt->t), "r", c->client, "err", H->strerror(status), NULL);
        H->stream_close(c->pub, 1);
        conn_done(c);
        return;
    }
    H->log(BW_LOG_DEBUG, "join connections", "obj", "join", "l", H->stream_peer(local), "r",
           c->client, NULL);
    if (c->tt->proxy_proto > 0) {
        /* Queued before the join forwards anything, so it goes first. */
        uint8_t hdr[BW_PROXY_HEADER_MAX];
        size_t n = bw_proxy_header(c->tt->proxy_proto, c->client, c->server, hdr, sizeof hdr);
        if (n > 0 && H->stream_write(local, hdr, n) < 0) {
            H->stream_close(local, 1);
            H->stream_close(c->pub, 1);
            conn_done(c);
            return;
        }
    }
    if (H->stream_join(c->pub, local, joined, c) < 0)
        conn_done(c);
}

static void tcp_conn_open(void *tstate, bw_stream_t *pub, const bw_conn_info_t *info)
{
    tcp_tunnel_t *tt = tstate;
    tcp_conn_t *c = calloc(1, sizeof *c);
    if (!c || !tt->t) {
        free(c);
        H->stream_close(pub, 1);
        return;
    }
    c->tt = tt;
    c->pub = pub;
    c->start_ns = H->now_ns();
    snprintf(c->client, sizeof c->client, "%s", info->client_addr ? info->client_addr : "");
    if (BW_CONN_INFO_HAS(info, server_addr))
        snprintf(c->server, sizeof c->server, "%s", info->server_addr);
    tt->live++;
    H->metric_conn_open(tt->t);
    /* Bytes the client sends before the local side is up wait in the host,
     * bounded by the session's flow-control window. */
    int rc = H->connect(tt->t, H->tunnel_addr(tt->t), 0, connected, c);
    if (rc < 0)
        connected(c, NULL, rc);
}

static const bw_plugin_t tcp_plugin = {
    BW_PLUGIN_HEADER,
    .name = "tcp",
    .version = "1.0.0",
    .description = "raw TCP forwarding to a local address",
    .public_scheme = "tcp",
    .edge_type = BW_EDGE_TCP,
    .flags = 0,
    .options = tcp_options,
    .init = tcp_init,
    .destroy = tcp_destroy,
    .tunnel_start = tcp_tunnel_start,
    .tunnel_stop = tcp_tunnel_stop,
    .conn_open = tcp_conn_open,
    .validate = tcp_validate,
};

BW_PLUGIN_DEFINE(tcp_plugin)
