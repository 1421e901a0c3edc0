/* example: a copy-me burrow protocol plugin.
 *
 * It forwards raw bytes like the bundled tcp plugin and shows every part of
 * the ABI a plugin needs: the descriptor, declared options, tunnel state,
 * connecting to the local service, joining streams, metrics and logging.
 * Rename "example", change the forwarding in conn_open, keep the rest.
 *
 * Rules (docs/plugin-abi.md): export only bw_plugin_entry; reach the agent
 * only through the bw_host_t table given to init; free what you allocate;
 * never block the event loop. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <burrow/plugin.h>

static const bw_host_t *H;

typedef struct ex_tunnel {
    bw_tunnel_t *t; /* NULL once the tunnel stopped */
    unsigned live;  /* open connections */
    int greet;      /* the "greeting" option */
} ex_tunnel_t;

typedef struct ex_conn {
    ex_tunnel_t *et;
    bw_stream_t *pub;
    uint64_t start_ns;
} ex_conn_t;

/* Options are data: the agent validates config files and API input against
 * them and shows them to users. */
static const bw_option_t ex_options[] = {
    {.key = "greeting",
     .type = BW_OPT_BOOL,
     .default_value = "false",
     .description = "send a line to each public client before forwarding"},
    {.key = NULL},
};

static int ex_init(const bw_host_t *host, void **state, bw_error_t *err)
{
    /* The major version must match; newer host slots are checked with
     * BW_HOST_HAS(host, slot) before use. */
    BW_PLUGIN_INIT_CHECK(host, err);
    H = host;
    *state = NULL;
    return 0;
}

static void ex_destroy(void *state)
{
}

static void tunnel_unref(ex_tunnel_t *et)
{
    if (!et->t && et->live == 0)
        free(et);
}

static int ex_tunnel_start(void *state, bw_tunnel_t *t, void **tstate, bw_error_t *err)
{
    ex_tunnel_t *et = calloc(1, sizeof *et);
    if (!et) {
        H->error_set(err, "out of memory");
        return BW_ENOMEM;
    }
    et->t = t;
    et->greet = H->conf_bool(H->tunnel_conf(t), "greeting", 0);
    *tstate = et;
    return 0;
}

static void ex_tunnel_stop(void *tstate)
{
    ex_tunnel_t *et = tstate;
    et->t = NULL; /* connections may outlive the tunnel; they stop using it */
    tunnel_unref(et);
}

static void conn_done(ex_conn_t *c)
{
    ex_tunnel_t *et = c->et;
    if (et->t)
        H->metric_conn_close(et->t, H->now_ns() - c->start_ns);
    et->live--;
    free(c);
    tunnel_unref(et);
}

static void joined(void *ud, int err, uint64_t bytes_in, uint64_t bytes_out)
{
    char in[24], out[24];
    snprintf(in, sizeof in, "%llu", (unsigned long long)bytes_in);
    snprintf(out, sizeof out, "%llu", (unsigned long long)bytes_out);
    H->log(BW_LOG_DEBUG, "example connection done", "in", in, "out", out, NULL);
    conn_done(ud);
}

static void connected(void *ud, bw_stream_t *local, int status)
{
    ex_conn_t *c = ud;
    if (status < 0) {
        H->log(BW_LOG_WARN, "example: local service unreachable", "err", H->strerror(status), NULL);
        H->stream_close(c->pub, 1);
        conn_done(c);
        return;
    }
    if (c->et->greet) {
        static const char hello[] = "hello from burrow\n";
        /* 0, BW_PAUSE (> 0: taken, but stop reading the source until
         * on_drain) or < 0. A short greeting never needs the pause, and a
         * failed write shows up again in the join below. */
        (void)H->stream_write(c->pub, hello, sizeof hello - 1);
    }
    /* The host forwards both ways with backpressure and closes both ends. */
    if (H->stream_join(c->pub, local, joined, c) < 0)
        conn_done(c);
}

static void ex_conn_open(void *tstate, bw_stream_t *pub, const bw_conn_info_t *info)
{
    ex_tunnel_t *et = tstate;
    ex_conn_t *c = calloc(1, sizeof *c);
    if (!c || !et->t) {
        free(c);
        H->stream_close(pub, 1);
        return;
    }
    c->et = et;
    c->pub = pub;
    c->start_ns = H->now_ns();
    et->live++;
    H->metric_conn_open(et->t);
    int rc = H->connect(et->t, H->tunnel_addr(et->t), 0, connected, c);
    if (rc < 0)
        connected(c, NULL, rc);
}

static const bw_plugin_t ex_plugin = {
    BW_PLUGIN_HEADER,
    .name = "example",
    .version = "0.1.0",
    .description = "raw forwarding with an optional greeting (SDK template)",
    .public_scheme = "tcp",
    .edge_type = BW_EDGE_TCP,
    .options = ex_options,
    .init = ex_init,
    .destroy = ex_destroy,
    .tunnel_start = ex_tunnel_start,
    .tunnel_stop = ex_tunnel_stop,
    .conn_open = ex_conn_open,
};

BW_PLUGIN_DEFINE(ex_plugin)
