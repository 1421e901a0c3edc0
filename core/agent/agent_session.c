/* The agent's session to the edge: connect, authenticate, control
 * messages, reconnect with capped exponential backoff, and the streams the
 * edge opens for public connections. See docs/protocol.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "agent_int.h"
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
/* The backoff starts over only after a session that worked: every tunnel
 * it had to bind was bound, or it stayed up this long. A session that
 * authenticates and then dies at once (its binds refused, the edge closing
 * it) must not reset the backoff, or a persistent failure becomes a
 * reconnect a second forever; a healthy session cut by the network must
 * not pay for the cuts before it either. */
#define BACKOFF_STABLE_MS 30000

/* Every tunnel of the session that is ending was bound (and there was at
 * least one, or the session lived for BACKOFF_STABLE_MS). */
static int session_worked(const bw_agent_t *a)
{
    if (!a->authed)
        return 0;
    if (uv_now(a->loop) - a->authed_at >= BACKOFF_STABLE_MS)
        return 1;
    int any = 0;
    for (const agent_tunnel_t *at = a->tunnels; at; at = at->next) {
        if (!at->bound)
            return 0;
        any = 1;
    }
    return any;
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
        .server_addr = bw_msg_str(m, "server_addr"),
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

void bw__agent_session_lost(bw_agent_t *a)
{
    if (session_worked(a))
        a->backoff_ms = 0;
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
        bw__agent_forget_leader(a, at);
        bw__agent_tunnel_refused(a, at, BW_ECONNABORTED,
                                 "the session to the edge closed before the tunnel was bound");
        at = a->tunnels;
    }
    if (!a->stopping)
        schedule_reconnect(a);
}

/* Go's duration format, as ngrok prints it: "2s", "1.5s". */
static void retry_text(const bw_agent_t *a, char *buf, size_t len)
{
    snprintf(buf, len, "%gs", (double)a->backoff_ms / 1000.0);
}

/* An authenticated session ended; retry says when the next attempt is
 * due (before jitter), so a growing backoff is visible in the log. */
static void log_reconnect_loop(const bw_agent_t *a)
{
    char retry[32];
    if (a->stopping)
        return;
    retry_text(a, retry, sizeof retry);
    bw_log(BW_LOG_INFO, "session closed, starting reconnect loop", "obj", "csess", "retry", retry,
           NULL);
}

/* Drop the session on our side (protocol trouble, timeout). */
static void session_abort(bw_agent_t *a, uint32_t code, const char *why)
{
    if (!a->link)
        return;
    int was_authed = a->authed;
    bw_log(BW_LOG_ERROR, "session closing", "obj", "tunnels.session", "err", why, NULL);
    bw_link_close(a->link, code);
    bw__agent_session_lost(a);
    if (was_authed)
        log_reconnect_loop(a);
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
    a->authed_at = uv_now(a->loop);
    uv_timer_stop(&a->retry);
    bw_random_hex(a->session_id, 6);
    bw_log(BW_LOG_INFO, "client session established", "obj", "csess", "id", a->session_id, NULL);
    bw_log(BW_LOG_INFO, "tunnel session started", "obj", "tunnels.session", NULL);
    bw__agent_rebinds_reset(a);
    for (agent_tunnel_t *at = a->tunnels; at; at = at->next)
        bw__agent_try_bind(a, at);
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
        bw__agent_on_bind_resp(a, m);
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
    if (was_authed)
        bw_log(BW_LOG_ERROR, "session closing", "obj", "tunnels.session", "err", reason, NULL);
    bw__agent_session_lost(a);
    if (was_authed)
        log_reconnect_loop(a);
    if (!was_authed && !a->stopping) {
        char retry[32];
        retry_text(a, retry, sizeof retry);
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
        bw__agent_session_lost(a);
        bw_log(BW_LOG_WARN, "failed to reconnect session", "obj", "csess", "err",
               "timed out connecting to the edge", NULL);
        return;
    }
    if (!a->link && !a->stopping)
        bw__agent_connect(a);
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

void bw__agent_connect(bw_agent_t *a)
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
