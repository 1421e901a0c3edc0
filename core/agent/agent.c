/* The agent runtime. See agent.h and docs/protocol.md. */
#include "agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "capture.h"
#include "config.h"
#include "control.h"
#include "host.h"
#include "link.h"
#include "log.h"
#include "stream.h"
#include "tls.h"
#include "util.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000

typedef struct agent_tunnel {
    bw_agent_t *a;
    bw_tunnel_t *t;
    char *proto;
    char *remote_addr; /* requested, or the last bound address (resume) */
    char *subdomain;
    char *hostname;
    char req_id[24];
    /* A twin binds after its leader, asking for the leader's host name
     * (spec §2.2: "X" and "X (http)" share one host). */
    struct agent_tunnel *leader;
    int waits; /* has a leader that has not been bound yet */
    int bound;
    int ever_bound;
    bw_agent_bind_cb cb; /* first bind's outcome goes here, once */
    void *cb_ud;
    struct agent_tunnel *next;
} agent_tunnel_t;

struct bw_agent {
    bw_io_t *io; /* borrowed */
    uv_loop_t *loop;
    bw_registry_t *reg;
    bw_agent_config_t cfg;
    char *server_addr, *authtoken, *root_cas;
    char server_host[256];
    int server_port;
    SSL_CTX *ctx;

    bw_link_t *link;
    bw_mux_stream_t *ctl;
    bw_frame_reader_t ctl_reader;
    int authed;
    char client_id[33];
    char session_id[13];
    unsigned next_req;

    agent_tunnel_t *tunnels;
    bw_capture_store_t *captures;

    uv_timer_t retry; /* reconnect backoff and connect timeout */
    uint64_t backoff_ms;
    int stopping;
    int exit_code;
};

static void agent_connect(bw_agent_t *a);

/* ---------------------------------------------------------------------------
 * Tunnels
 * ------------------------------------------------------------------------- */

static const char *edge_type_name(bw_edge_type_t t)
{
    switch (t) {
    case BW_EDGE_HTTP:
        return "http";
    case BW_EDGE_HTTPS:
        return "https";
    case BW_EDGE_TLS:
        return "tls";
    default:
        return "tcp";
    }
}

static void tunnel_free(agent_tunnel_t *at)
{
    if (!at)
        return;
    bw_tunnel_free(at->t);
    free(at->proto);
    free(at->remote_addr);
    free(at->subdomain);
    free(at->hostname);
    free(at);
}

/* Take `at` out of the list (it is not freed). */
static void tunnel_unlink(bw_agent_t *a, agent_tunnel_t *at)
{
    for (agent_tunnel_t **p = &a->tunnels; *p; p = &(*p)->next)
        if (*p == at) {
            *p = at->next;
            return;
        }
}

/* The first bind of a tunnel started with a callback failed: report it and
 * forget the tunnel. */
static void tunnel_refused(bw_agent_t *a, agent_tunnel_t *at, int status, const char *err)
{
    bw_agent_bind_cb cb = at->cb;
    at->cb = NULL;
    tunnel_unlink(a, at);
    cb(at->cb_ud, status, err, NULL);
    tunnel_free(at);
}

static int send_bind(bw_agent_t *a, agent_tunnel_t *at)
{
    snprintf(at->req_id, sizeof at->req_id, "%u", ++a->next_req);
    json_t *m = bw_msg_bind(at->req_id, at->proto, edge_type_name(at->t->plugin->desc.edge_type),
                            at->t->name, at->subdomain, at->hostname, at->remote_addr);
    if (!m)
        return BW_ENOMEM;
    int rc = bw_link_send_msg(a->ctl, m);
    json_decref(m);
    return rc;
}

/* Bind `at` now unless it is a twin still waiting for its leader's host. */
static void try_bind(bw_agent_t *a, agent_tunnel_t *at)
{
    if (at->waits)
        return;
    send_bind(a, at);
}

/* "localhost:22" from a tcp:// URL, to ask for the same address again. */
static char *url_address(const char *url)
{
    const char *p = strstr(url, "://");
    return bw_strdup(p ? p + 3 : url);
}

/* "abc.localhost" from "https://abc.localhost:8443". */
static char *url_host(const char *url)
{
    char *hp = url_address(url), host[256];
    int port;
    if (hp && bw_split_hostport(hp, host, sizeof host, &port) == 0) {
        free(hp);
        return bw_strdup(host);
    }
    return hp;
}

/* Ask for the same public address again after a reconnect (resume). */
static void remember_address(agent_tunnel_t *at)
{
    if (at->t->plugin->desc.edge_type == BW_EDGE_TCP) {
        char *addr = url_address(at->t->public_url);
        if (addr) {
            free(at->remote_addr);
            at->remote_addr = addr;
        }
        return;
    }
    char *host = url_host(at->t->public_url), *none = bw_strdup("");
    if (!host || !none) {
        free(host);
        free(none);
        return;
    }
    free(at->hostname);
    free(at->subdomain);
    at->hostname = host;
    at->subdomain = none;
}

/* Twin `f` asks for exactly the host its leader got. */
static int take_leader_host(agent_tunnel_t *f, const agent_tunnel_t *leader)
{
    char *host = bw_strdup(leader->hostname), *none = bw_strdup("");
    if (!host || !none) {
        free(host);
        free(none);
        return BW_ENOMEM;
    }
    free(f->hostname);
    free(f->subdomain);
    f->hostname = host;
    f->subdomain = none;
    return 0;
}

/* The leader `at` is bound: its waiting twins ask for the same host. */
static void bind_followers(bw_agent_t *a, agent_tunnel_t *at)
{
    for (agent_tunnel_t *f = a->tunnels; f; f = f->next)
        if (f->leader == at && f->waits && take_leader_host(f, at) == 0) {
            f->waits = 0;
            send_bind(a, f);
        }
}

/* The leader `at` was refused: twins that were waiting for it fail too. */
static void refuse_followers(bw_agent_t *a, agent_tunnel_t *at, const char *err)
{
    agent_tunnel_t *f = a->tunnels;
    while (f) {
        if (f->leader == at && f->waits && f->cb) {
            tunnel_refused(a, f, BW_EACCES, err);
            f = a->tunnels; /* the list changed */
            continue;
        }
        f = f->next;
    }
}

/* `at` is going away: its twins carry on alone; one still waiting for it
 * binds now on what it asked for itself. */
static void forget_leader(bw_agent_t *a, agent_tunnel_t *at)
{
    for (agent_tunnel_t *f = a->tunnels; f; f = f->next) {
        if (f->leader != at)
            continue;
        f->leader = NULL;
        if (f->waits) {
            f->waits = 0;
            if (a->authed && a->ctl && !f->bound && !f->req_id[0])
                send_bind(a, f);
        }
    }
}

static void on_bind_resp(bw_agent_t *a, const json_t *m)
{
    const char *req = bw_msg_str(m, "req_id"), *err = bw_msg_str(m, "error");
    agent_tunnel_t *at;
    for (at = a->tunnels; at; at = at->next)
        if (!at->bound && strcmp(at->req_id, req) == 0)
            break;
    if (!at) {
        /* Removed while its Bind was in flight: give the address back. */
        const char *id = bw_msg_str(m, "tunnel_id");
        json_t *u = !*err && *id && a->ctl ? bw_msg_unbind(id) : NULL;
        if (u)
            bw_link_send_msg(a->ctl, u);
        json_decref(u);
        return;
    }
    at->req_id[0] = '\0';
    if (*err) {
        bw_log(BW_LOG_ERROR, "failed to start tunnel", "obj", "tunnels", "name", at->t->name, "err",
               err, NULL);
        refuse_followers(a, at, err);
        if (at->cb) {
            forget_leader(a, at);
            tunnel_refused(a, at, BW_EACCES, err);
        } else if (!at->ever_bound) {
            fprintf(stderr, "ERROR:  failed to start tunnel: %s\n", err);
            a->exit_code = 1;
            bw_agent_stop(a);
        }
        return;
    }
    snprintf(at->t->tunnel_id, sizeof at->t->tunnel_id, "%s", bw_msg_str(m, "tunnel_id"));
    bw_tunnel_set_url(at->t, bw_msg_str(m, "url"));
    at->bound = 1;
    at->ever_bound = 1;
    remember_address(at);
    bw_log(BW_LOG_INFO, "started tunnel", "obj", "tunnels", "name", at->t->name, "addr",
           at->t->addr, "url", at->t->public_url, NULL);
    bind_followers(a, at);
    if (at->cb) {
        bw_agent_bind_cb cb = at->cb;
        at->cb = NULL;
        cb(at->cb_ud, 0, "", at->t);
    }
}

/* ---------------------------------------------------------------------------
 * Public connections
 * ------------------------------------------------------------------------- */

/* A stream the edge opened, until its Conn header has been read. */
typedef struct incoming {
    bw_agent_t *a;
    bw_mux_stream_t *ms;
    bw_frame_reader_t reader;
} incoming_t;

static bw_tunnel_t *find_tunnel_by_id(bw_agent_t *a, const char *id)
{
    for (agent_tunnel_t *at = a->tunnels; at; at = at->next)
        if (at->bound && strcmp(at->t->tunnel_id, id) == 0)
            return at->t;
    return NULL;
}

static void incoming_free(incoming_t *in)
{
    bw_frame_reader_free(&in->reader);
    free(in);
}

static void incoming_dispatch(incoming_t *in, json_t *m, const uint8_t *rest, size_t rest_len)
{
    bw_tunnel_t *t = NULL;
    char err[160];
    if (bw_msg_type(m) != BW_MSG_CONN || bw_msg_validate(m, err, sizeof err) != 0 ||
        !(t = find_tunnel_by_id(in->a, bw_msg_str(m, "tunnel_id")))) {
        bw_log(BW_LOG_DEBUG, "dropping stream for unknown tunnel", "obj", "csess", NULL);
        bw_mux_stream_reset(in->ms);
        return;
    }
    const char *client = bw_msg_str(m, "client_addr");
    char ip[BW_ADDRSTRLEN];
    int port;
    if (bw_split_hostport(client, ip, sizeof ip, &port) != 0)
        snprintf(ip, sizeof ip, "%s", client);
    bw_stream_t *s = bw_stream_mux_new(in->a->io, in->ms, client);
    if (!s)
        return;
    if (bw_stream_unread(s, rest, rest_len) != 0) {
        bw_stream_close(s, 1);
        return;
    }
    bw_conn_info_t info = {
        .struct_size = sizeof info,
        .client_addr = client,
        .client_ip = ip,
        .edge_type = t->plugin->desc.edge_type,
        .server_name = bw_msg_str(m, "server_name"),
    };
    bw_tunnel_conn(t, s, &info);
}

static void incoming_data(bw_mux_stream_t *ms, void *ud, const uint8_t *data, size_t len)
{
    incoming_t *in = ud;
    json_t *m = NULL;
    char err[160];
    ssize_t used = bw_frame_reader_feed(&in->reader, data, len, &m, err, sizeof err);
    if (used < 0) {
        bw_log(BW_LOG_WARN, "bad connection header from edge", "obj", "csess", "err", err, NULL);
        bw_mux_stream_reset(ms);
        incoming_free(in);
        return;
    }
    bw_mux_stream_consumed(ms, (size_t)used);
    if (!m)
        return;
    incoming_dispatch(in, m, data + used, len - (size_t)used);
    json_decref(m);
    incoming_free(in);
}

static void incoming_eof(bw_mux_stream_t *ms, void *ud)
{
    incoming_t *in = ud;
    bw_mux_stream_reset(ms);
    incoming_free(in);
}

static void incoming_close(bw_mux_stream_t *ms, void *ud, int err)
{
    incoming_free(ud);
}

static const bw_mux_stream_cbs_t incoming_cbs = {
    .on_data = incoming_data,
    .on_eof = incoming_eof,
    .on_close = incoming_close,
};

static void on_stream(bw_link_t *l, void *ud, bw_mux_stream_t *ms)
{
    bw_agent_t *a = ud;
    incoming_t *in = calloc(1, sizeof *in);
    if (!in || !a->authed) {
        free(in);
        bw_mux_stream_reset(ms);
        return;
    }
    in->a = a;
    in->ms = ms;
    bw_frame_reader_init(&in->reader, 0);
    bw_mux_stream_set_callbacks(ms, &incoming_cbs, in);
}

/* ---------------------------------------------------------------------------
 * Session
 * ------------------------------------------------------------------------- */

static void schedule_reconnect(bw_agent_t *a);

static void session_lost(bw_agent_t *a)
{
    a->link = NULL;
    a->ctl = NULL;
    a->authed = 0;
    bw_frame_reader_free(&a->ctl_reader);
    for (agent_tunnel_t *at = a->tunnels; at; at = at->next) {
        at->bound = 0;
        at->req_id[0] = '\0';
    }
    /* A refusal's callback may remove other tunnels: rescan after each. */
    agent_tunnel_t *at = a->tunnels;
    while (at) {
        if (!at->cb) {
            at = at->next;
            continue;
        }
        forget_leader(a, at);
        tunnel_refused(a, at, BW_ECONNABORTED,
                       "the session to the edge closed before the tunnel was bound");
        at = a->tunnels;
    }
    if (!a->stopping)
        schedule_reconnect(a);
}

/* Drop the session on our side (protocol trouble, timeout). */
static void session_abort(bw_agent_t *a, uint32_t code, const char *why)
{
    if (!a->link)
        return;
    bw_log(BW_LOG_ERROR, "session closing", "obj", "tunnels.session", "err", why, NULL);
    bw_link_close(a->link, code);
    if (a->authed)
        bw_log(BW_LOG_INFO, "session closed, starting reconnect loop", "obj", "csess", NULL);
    session_lost(a);
}

static void on_auth_resp(bw_agent_t *a, const json_t *m)
{
    const char *err = bw_msg_str(m, "error");
    if (*err) {
        bw_log(BW_LOG_CRIT, "authentication failed", "obj", "csess", "err", err, NULL);
        fprintf(stderr, "ERROR:  authentication failed: %s\n", err);
        a->exit_code = 1;
        bw_agent_stop(a);
        return;
    }
    snprintf(a->client_id, sizeof a->client_id, "%s", bw_msg_str(m, "client_id"));
    a->authed = 1;
    a->backoff_ms = 0;
    uv_timer_stop(&a->retry);
    bw_random_hex(a->session_id, 6);
    bw_log(BW_LOG_INFO, "client session established", "obj", "csess", "id", a->session_id, NULL);
    bw_log(BW_LOG_INFO, "tunnel session started", "obj", "tunnels.session", NULL);
    for (agent_tunnel_t *at = a->tunnels; at; at = at->next)
        try_bind(a, at);
}

static void on_ctl_msg(bw_agent_t *a, const json_t *m)
{
    char err[256];
    if (bw_msg_validate(m, err, sizeof err) != 0) {
        session_abort(a, BW_MUX_GOAWAY_PROTO_ERROR, err);
        return;
    }
    bw_msg_type_t type = bw_msg_type(m);
    if (!a->authed && type != BW_MSG_AUTH_RESP && type != BW_MSG_UNKNOWN) {
        session_abort(a, BW_MUX_GOAWAY_PROTO_ERROR, "edge sent a message before AuthResp");
        return;
    }
    switch (type) {
    case BW_MSG_AUTH_RESP:
        on_auth_resp(a, m);
        break;
    case BW_MSG_BIND_RESP:
        on_bind_resp(a, m);
        break;
    case BW_MSG_NOTICE:
        bw_log(BW_LOG_WARN, bw_msg_str(m, "msg"), "obj", "csess", "level", bw_msg_str(m, "level"),
               NULL);
        break;
    default:
        break; /* UnbindResp needs no action; unknown types are ignored */
    }
}

/* Handle one control message; stop once it ended the session. */
static int ctl_msg(void *ud, const json_t *m)
{
    bw_agent_t *a = ud;
    bw_mux_stream_t *ctl = a->ctl;
    on_ctl_msg(a, m);
    return a->ctl != ctl;
}

static void ctl_data(bw_mux_stream_t *ms, void *ud, const uint8_t *data, size_t len)
{
    bw_agent_t *a = ud;
    char err[256];
    if (bw_frame_reader_each(&a->ctl_reader, data, len, ctl_msg, a, err, sizeof err) < 0) {
        session_abort(a, BW_MUX_GOAWAY_PROTO_ERROR, err);
        return;
    }
    if (a->ctl == ms)
        bw_mux_stream_consumed(ms, len);
}

static void ctl_eof(bw_mux_stream_t *ms, void *ud)
{
    session_abort(ud, BW_MUX_GOAWAY_NORMAL, "edge closed the control stream");
}

static void ctl_close(bw_mux_stream_t *ms, void *ud, int err)
{
    bw_agent_t *a = ud;
    if (a->ctl == ms) {
        a->ctl = NULL;
        session_abort(a, BW_MUX_GOAWAY_NORMAL, "control stream closed");
    }
}

static const bw_mux_stream_cbs_t ctl_cbs = {
    .on_data = ctl_data,
    .on_eof = ctl_eof,
    .on_close = ctl_close,
};

static void on_ready(bw_link_t *l, void *ud, int status)
{
    bw_agent_t *a = ud;
    if (status < 0)
        return; /* on_closed follows */
    a->ctl = bw_mux_stream_open(bw_link_mux(l));
    if (!a->ctl) {
        session_abort(a, BW_MUX_GOAWAY_INTERNAL_ERROR, "cannot open control stream");
        return;
    }
    bw_frame_reader_init(&a->ctl_reader, 0);
    bw_mux_stream_set_callbacks(a->ctl, &ctl_cbs, a);
    json_t *m = bw_msg_auth(a->authtoken, a->client_id, BW_VERSION);
    int rc = m ? bw_link_send_msg(a->ctl, m) : BW_ENOMEM;
    json_decref(m);
    if (rc < 0)
        session_abort(a, BW_MUX_GOAWAY_INTERNAL_ERROR, bw_strerror(rc));
}

static void on_closed(bw_link_t *l, void *ud, int err, const char *reason)
{
    bw_agent_t *a = ud;
    int was_authed = a->authed;
    if (was_authed) {
        bw_log(BW_LOG_ERROR, "session closing", "obj", "tunnels.session", "err", reason, NULL);
        bw_log(BW_LOG_INFO, "session closed, starting reconnect loop", "obj", "csess", NULL);
    }
    session_lost(a);
    if (!was_authed && !a->stopping) {
        char retry[32];
        /* Go's duration format, as ngrok prints it: "2s", "1.5s". */
        snprintf(retry, sizeof retry, "%gs", (double)a->backoff_ms / 1000.0);
        bw_log(BW_LOG_WARN, "failed to reconnect session", "obj", "csess", "err", reason, "retry",
               retry, NULL);
    }
}

static const bw_link_cbs_t link_cbs = {
    .on_ready = on_ready,
    .on_stream = on_stream,
    .on_closed = on_closed,
};

static void retry_fired(uv_timer_t *h)
{
    bw_agent_t *a = BW_CONTAINER_OF(h, bw_agent_t, retry);
    if (a->link && !a->authed) {
        /* TLS or auth did not finish within connect_timeout. */
        bw_link_close(a->link, BW_MUX_GOAWAY_NORMAL);
        session_lost(a);
        bw_log(BW_LOG_WARN, "failed to reconnect session", "obj", "csess", "err",
               "timed out connecting to the edge", NULL);
        return;
    }
    if (!a->link && !a->stopping)
        agent_connect(a);
}

static void schedule_reconnect(bw_agent_t *a)
{
    /* Capped exponential backoff with +-25% jitter, so a fleet of agents
     * does not reconnect in lockstep after an edge restart. */
    a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (a->backoff_ms > BACKOFF_MAX_MS)
        a->backoff_ms = BACKOFF_MAX_MS;
    char hex[5];
    bw_random_hex(hex, 2);
    long r = strtol(hex, NULL, 16); /* 0..65535 */
    uint64_t jittered = a->backoff_ms * 3 / 4 + (a->backoff_ms / 2) * (uint64_t)r / 65535;
    uv_timer_start(&a->retry, retry_fired, jittered, 0);
}

static void agent_connect(bw_agent_t *a)
{
    struct sockaddr_storage ss;
    if (bw_resolve(a->server_host, a->server_port, &ss) != 0) {
        bw_log(BW_LOG_WARN, "failed to reconnect session", "obj", "csess", "err",
               "cannot resolve server address", "addr", a->server_addr, NULL);
        schedule_reconnect(a);
        return;
    }
    bw_link_config_t lc = {
        .is_client = 1,
        .server_name = a->server_host,
        .heartbeat_ms = a->cfg.heartbeat_ms,
        .tolerance_ms = a->cfg.tolerance_ms,
        .max_window = a->cfg.max_window,
    };
    a->link = bw_link_new(a->loop, a->ctx, &lc, &link_cbs, a);
    if (!a->link || bw_link_start(a->link, (struct sockaddr *)&ss) != 0) {
        if (a->link)
            bw_link_close(a->link, 0);
        a->link = NULL;
        schedule_reconnect(a);
        return;
    }
    uv_timer_start(&a->retry, retry_fired, a->cfg.connect_timeout_ms, 0);
}

/* ---------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------- */

static SSL_CTX *client_ctx(const char *root_cas, char *err, size_t errlen)
{
    int system = !root_cas || !*root_cas || strcmp(root_cas, "trusted") == 0 ||
                 strcmp(root_cas, "host") == 0;
    SSL_CTX *ctx = bw_tls_client_ctx(system ? NULL : root_cas, err, errlen);
    if (!ctx || !system)
        return ctx;
    /* A local dev edge's CA is a trust anchor its own user created. */
    const char *home = getenv("HOME");
    char dev[1024];
    if (home && bw_fmt(dev, sizeof dev, "%s/.local/share/burrowd/ca.pem", home) == 0 &&
        access(dev, R_OK) == 0 && SSL_CTX_load_verify_locations(ctx, dev, NULL) == 1)
        bw_log(BW_LOG_DEBUG, "trusting local dev certificate authority", "obj", "csess", "path",
               dev, NULL);
    return ctx;
}

bw_agent_t *bw_agent_new(bw_io_t *io, bw_registry_t *reg, const bw_agent_config_t *cfg, char *err,
                         size_t errlen)
{
    bw_agent_t *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->io = io;
    a->loop = bw_io_loop(io);
    a->reg = reg;
    a->cfg = *cfg;
    a->server_addr = bw_strdup(cfg->server_addr ? cfg->server_addr : "localhost:4443");
    a->authtoken = bw_strdup(cfg->authtoken ? cfg->authtoken : "");
    if (!a->cfg.heartbeat_ms)
        a->cfg.heartbeat_ms = 10000;
    if (!a->cfg.tolerance_ms)
        a->cfg.tolerance_ms = 15000;
    if (!a->cfg.connect_timeout_ms)
        a->cfg.connect_timeout_ms = 10000;
    a->captures = bw_capture_store_new(cfg->inspect_db_size, 0);
    if (!a->server_addr || !a->authtoken || !a->captures) {
        if (!a->captures && cfg->inspect_db_size < -1)
            snprintf(err, errlen, "invalid inspect_db_size %lld", (long long)cfg->inspect_db_size);
        else
            snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (bw_split_hostport(a->server_addr, a->server_host, sizeof a->server_host, &a->server_port) !=
            0 ||
        !a->server_host[0]) {
        snprintf(err, errlen, "invalid server address '%s' (expected host:port)", a->server_addr);
        goto fail;
    }
    a->ctx = client_ctx(cfg->root_cas, err, errlen);
    if (!a->ctx)
        goto fail;
    uv_timer_init(a->loop, &a->retry);
    return a;
fail:
    bw_capture_store_free(a->captures);
    free(a->server_addr);
    free(a->authtoken);
    free(a);
    return NULL;
}

static int spec_addr(const bw_loaded_plugin_t *p, const bw_tunnel_spec_t *spec, char *out,
                     size_t outlen, char *err, size_t errlen)
{
    bw_error_t e = {{0}};
    if (!spec->addr || !*spec->addr) {
        snprintf(err, errlen, "Tunnel %s must specify 'addr' to tunnel to", spec->name);
        return BW_EINVAL;
    }
    if (p->desc.normalize_addr) {
        int rc = p->desc.normalize_addr(p->state, spec->addr, out, outlen, spec->name, &e);
        if (rc < 0)
            snprintf(err, errlen, "%s", e.msg);
        return rc;
    }
    /* ngrok's rules (§1.3), keyed by the plugin's public scheme: http and
     * https tunnels get URLs, the rest host:port. */
    return bw_config_normalize_addr(p->desc.public_scheme, spec->addr, out, outlen, spec->name, err,
                                    errlen);
}

int bw_agent_add_tunnel(bw_agent_t *a, const bw_tunnel_spec_t *spec, bw_agent_bind_cb cb, void *ud,
                        char *err, size_t errlen)
{
    char addr[1024];
    bw_conf_t conf;
    if (bw_agent_find_tunnel(a, spec->name)) {
        snprintf(err, errlen, "tunnel \"%s\" already exists", spec->name);
        return BW_EEXIST;
    }
    const bw_loaded_plugin_t *p = bw_registry_find(a->reg, spec->proto);
    if (!p) {
        snprintf(err, errlen, "Invalid protocol name '%s'", spec->proto ? spec->proto : "");
        return BW_EINVAL;
    }
    int rc = spec_addr(p, spec, addr, sizeof addr, err, errlen);
    if (rc < 0)
        return rc;
    json_t *empty = spec->options ? NULL : json_object();
    rc = bw_conf_build(p->desc.options, spec->options ? spec->options : empty, 0, &conf, err,
                       errlen);
    json_decref(empty);
    if (rc < 0)
        return rc;
    bw_error_t e = {{0}};
    if (p->desc.validate && (rc = p->desc.validate(p->state, &conf, spec->name, &e)) < 0) {
        snprintf(err, errlen, "%s", e.msg);
        bw_conf_free(&conf);
        return rc;
    }
    agent_tunnel_t *at = calloc(1, sizeof *at);
    if (!at || !(at->t = bw_tunnel_new(spec->name, addr, p, &conf))) {
        free(at);
        bw_conf_free(&conf);
        snprintf(err, errlen, "out of memory");
        return BW_ENOMEM;
    }
    at->a = a;
    at->t->owner = at;
    at->t->captures = a->captures;
    at->t->inspect = bw_tunnel_inspect_option(p, spec->options);
    at->proto = bw_strdup(spec->proto);
    at->remote_addr = bw_strdup(spec->remote_addr ? spec->remote_addr : "");
    at->subdomain = bw_strdup(spec->subdomain ? spec->subdomain : "");
    at->hostname = bw_strdup(spec->hostname ? spec->hostname : "");
    rc = bw_tunnel_start(at->t, err, errlen);
    if (rc < 0 || !at->proto || !at->remote_addr || !at->subdomain || !at->hostname) {
        tunnel_free(at);
        return rc < 0 ? rc : BW_ENOMEM;
    }
    at->cb = cb;
    at->cb_ud = ud;
    if (spec->follows) {
        for (at->leader = a->tunnels; at->leader; at->leader = at->leader->next)
            if (strcmp(at->leader->t->name, spec->follows) == 0)
                break;
        if (at->leader && at->leader->ever_bound)
            take_leader_host(at, at->leader);
        else if (at->leader)
            at->waits = 1; /* bind_followers sends it on the leader's host */
    }
    /* Appended: the API lists tunnels in the order they were started. */
    agent_tunnel_t **tail = &a->tunnels;
    while (*tail)
        tail = &(*tail)->next;
    *tail = at;
    if (a->authed)
        try_bind(a, at);
    return 0;
}

int bw_agent_remove_tunnel(bw_agent_t *a, const char *name)
{
    agent_tunnel_t *at;
    for (at = a->tunnels; at; at = at->next)
        if (strcmp(at->t->name, name) == 0)
            break;
    if (!at)
        return BW_ENOENT;
    if (at->bound && a->ctl) {
        json_t *m = bw_msg_unbind(at->t->tunnel_id);
        if (m)
            bw_link_send_msg(a->ctl, m);
        json_decref(m);
    }
    bw_log(BW_LOG_INFO, "stopped tunnel", "obj", "tunnels", "name", at->t->name, NULL);
    tunnel_unlink(a, at);
    forget_leader(a, at);
    if (at->cb) {
        bw_agent_bind_cb cb = at->cb;
        at->cb = NULL;
        cb(at->cb_ud, BW_ECANCELED, "tunnel stopped before it was bound", NULL);
    }
    tunnel_free(at);
    return 0;
}

bw_tunnel_t *bw_agent_find_tunnel(bw_agent_t *a, const char *name)
{
    for (agent_tunnel_t *at = a->tunnels; at; at = at->next)
        if (strcmp(at->t->name, name) == 0)
            return at->t;
    return NULL;
}

size_t bw_agent_tunnel_count(const bw_agent_t *a)
{
    size_t n = 0;
    for (const agent_tunnel_t *at = a->tunnels; at; at = at->next)
        n++;
    return n;
}

bw_tunnel_t *bw_agent_tunnel_at(bw_agent_t *a, size_t i)
{
    agent_tunnel_t *at = a->tunnels;
    while (at && i--)
        at = at->next;
    return at ? at->t : NULL;
}

bw_capture_store_t *bw_agent_captures(bw_agent_t *a)
{
    return a->captures;
}

int bw_agent_ready(const bw_agent_t *a)
{
    return a->authed;
}

int bw_agent_start(bw_agent_t *a)
{
    agent_connect(a);
    return 0;
}

void bw_agent_stop(bw_agent_t *a)
{
    if (a->stopping)
        return;
    a->stopping = 1;
    if (a->link)
        bw_link_close(a->link, BW_MUX_GOAWAY_NORMAL);
    session_lost(a);
    while (a->tunnels) {
        agent_tunnel_t *at = a->tunnels;
        a->tunnels = at->next;
        tunnel_free(at);
    }
    if (!uv_is_closing((uv_handle_t *)&a->retry))
        uv_close((uv_handle_t *)&a->retry, NULL);
    if (a->cfg.on_stop)
        a->cfg.on_stop(a->cfg.stop_ud);
}

int bw_agent_exit_code(const bw_agent_t *a)
{
    return a->exit_code;
}

void bw_agent_free(bw_agent_t *a)
{
    if (!a)
        return;
    while (a->tunnels) {
        agent_tunnel_t *at = a->tunnels;
        a->tunnels = at->next;
        tunnel_free(at);
    }
    bw_capture_store_free(a->captures);
    SSL_CTX_free(a->ctx);
    free(a->server_addr);
    free(a->authtoken);
    free(a);
}
