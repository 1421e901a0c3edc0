/* burrowd: agent sessions. Each accepted agent connection becomes a link
 * (TLS + yamux); its control stream carries Auth, Bind and Unbind, which bind
 * public addresses for the session's tunnels. See docs/protocol.md.
 *
 * A little over 600 lines: one session's life (auth, binds, unbinds, the
 * stream that carries each public connection) reads as one piece; ports,
 * reservations and public sides are already edge_public.c and edge_state.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "control.h"
#include "edge_int.h"
#include "hostnames.h"
#include "link.h"
#include "log.h"
#include "stream.h"
#include "util.h"

#define CLOSE_DELAY_MS 200 /* lets a refusal reach the agent before we hang up */

/* ---------------------------------------------------------------------------
 * Control messages
 * ------------------------------------------------------------------------- */

static int send_msg(edge_session_t *s, json_t *m)
{
    int rc = m && s->ctl ? bw_link_send_msg(s->ctl, m) : BW_ENOMEM;
    json_decref(m);
    return rc;
}

static int token_ok(bw_edge_t *e, const char *token)
{
    if (e->n_tokens == 0)
        return 1;
    size_t n = strlen(token);
    int ok = 0;
    for (size_t i = 0; i < e->n_tokens; i++)
        if (strlen(e->tokens[i]) == n && CRYPTO_memcmp(e->tokens[i], token, n) == 0)
            ok = 1;
    return ok;
}

static void close_later(uv_timer_t *h)
{
    edge_session_t *s = BW_CONTAINER_OF(h, edge_session_t, timer);
    bw__edge_session_end(s, "authentication refused"); /* only refusals close later */
}

/* The session keeps only a SHA-256 of its token: enough to tell the same
 * agent again, and safe to write into the reservations file. */
static char *token_hash(const char *token)
{
    unsigned char md[32];
    unsigned int n = 0;
    char hex[65];
    if (!EVP_Digest(token, strlen(token), md, &n, EVP_sha256(), NULL) || n != 32)
        return NULL;
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return bw_strdup(hex);
}

static int client_known(bw_edge_t *e, const char *cid, const char *token)
{
    for (reservation_t *r = e->reservations; r; r = r->next)
        if (strcmp(r->client_id, cid) == 0 && strcmp(r->token, token) == 0)
            return 1;
    if (bw_hosts_reserved_for(e->hosts, cid, token, uv_now(e->loop)))
        return 1;
    BW_LIST_FOREACH (o, &e->sessions, edge_session_t, node)
        if (o->authed && strcmp(o->client_id, cid) == 0 && strcmp(o->token, token) == 0)
            return 1;
    return 0;
}

/* Answer the Auth with `why` and hang up once the answer had time to leave. */
static void refuse_auth(edge_session_t *s, const char *why)
{
    send_msg(s, bw_msg_auth_resp("", BW_VERSION, why));
    s->ending = 1;
    uv_timer_start(&s->timer, close_later, CLOSE_DELAY_MS, 0);
}

/* The protocol major is the agent version's leading number (protocol.md §9):
 * anything else, or a major this edge does not speak, is refused before the
 * token is even looked at, so a future agent learns why instead of failing
 * later on messages it expects us to understand. */
static int version_ok(const char *version)
{
    char *end;
    if (*version < '0' || *version > '9')
        return 0;
    unsigned long major = strtoul(version, &end, 10);
    return major == BW_PROTO_MAJOR && (*end == '\0' || *end == '.');
}

#define REPORT_MS 60000 /* the window of the aggregated failure log lines */

static void report_one(void *ud, const char *ip, unsigned count)
{
    char n[16];
    snprintf(n, sizeof n, "%u", count);
    bw_log(BW_LOG_WARN, "repeated authentication failures", "obj", "edge", "r", ip, "count", n,
           "window", "1m", NULL);
}

static void report_fired(uv_timer_t *h)
{
    bw_edge_t *e = BW_CONTAINER_OF(h, bw_edge_t, report_timer);
    bw_auth_throttle_report(e->throttle, report_one, NULL);
}

/* A failed attempt was counted: make sure its minute gets reported. */
static void report_later(bw_edge_t *e)
{
    if (!e->stopping && !uv_is_active((uv_handle_t *)&e->report_timer))
        uv_timer_start(&e->report_timer, report_fired, REPORT_MS, 0);
}

/* The source address of s without its port: what the throttle counts. */
static void peer_ip(const edge_session_t *s, char *ip, size_t len)
{
    int port;
    if (bw_split_hostport(s->peer, ip, len, &port) != 0)
        snprintf(ip, len, "%s", s->peer);
}

/* Per source IP, failed tokens lock the address out for a while (see
 * auth_throttle.h), so guessing tokens runs at a few tries per minute, not
 * hundreds a second; the log gets the first failure of a minute and then
 * one line per address and minute, not a line per guess. Returns 1 when s
 * was refused. */
static int throttled(edge_session_t *s, const char *token)
{
    bw_edge_t *e = s->e;
    char ip[BW_ADDRSTRLEN], why[160];
    uint64_t now = uv_now(e->loop), wait;
    peer_ip(s, ip, sizeof ip);
    if ((wait = bw_auth_throttle_check(e->throttle, ip, now)) > 0) {
        snprintf(why, sizeof why, "too many failed authentications from %s; try again in %llus", ip,
                 (unsigned long long)((wait + 999) / 1000));
        report_later(e);
        refuse_auth(s, why);
        return 1;
    }
    if (token_ok(e, token)) {
        bw_auth_throttle_ok(e->throttle, ip);
        return 0;
    }
    if (bw_auth_throttle_fail(e->throttle, ip, now))
        bw_log(BW_LOG_WARN, "authentication failed", "obj", "session", "id", s->id, "r", s->peer,
               NULL);
    report_later(e);
    refuse_auth(s, "invalid authtoken");
    return 1;
}

static void on_auth(edge_session_t *s, const json_t *m)
{
    bw_edge_t *e = s->e;
    const char *token = bw_msg_str(m, "token"), *cid = bw_msg_str(m, "client_id");
    const char *version = bw_msg_str(m, "version");
    if (!version_ok(version)) {
        /* Quoted at most in part: the answer's error must itself stay
         * within the protocol's string limit whatever the agent sent. */
        char shown[72], why[160];
        snprintf(shown, sizeof shown, "%.64s%s", version, strlen(version) > 64 ? "..." : "");
        snprintf(why, sizeof why, "unsupported protocol version \"%s\" (this edge speaks %d)",
                 shown, BW_PROTO_MAJOR);
        bw_log(BW_LOG_WARN, "unsupported protocol version", "obj", "session", "id", s->id, "r",
               s->peer, "version", shown, NULL);
        refuse_auth(s, why);
        return;
    }
    if (throttled(s, token))
        return;
    /* Without its own copy of the token the session could neither be
     * resumed nor compared against reservations: fail it as internal. */
    s->token = token_hash(token);
    if (!s->token) {
        if (s->link)
            bw_link_close(s->link, BW_MUX_GOAWAY_INTERNAL_ERROR);
        s->link = NULL;
        bw__edge_session_end(s, "out of memory");
        return;
    }
    /* Only ids this edge issued and still remembers (a live session or a
     * reservation, under the same token) are resumed; any other gets a
     * fresh id, which tells the agent nothing was resumed. */
    if (*cid && client_known(e, cid, s->token))
        snprintf(s->client_id, sizeof s->client_id, "%s", cid);
    else
        bw_random_hex(s->client_id, 16);
    /* The same agent reconnecting before we noticed its old session died:
     * end the old one so its addresses pass to this one. */
    BW_LIST_FOREACH (o, &e->sessions, edge_session_t, node)
        if (o != s && o->authed && strcmp(o->client_id, s->client_id) == 0 &&
            strcmp(o->token ? o->token : "", s->token ? s->token : "") == 0) {
            bw__edge_session_end(o, "replaced by a new session of the same agent");
            break;
        }
    s->authed = 1;
    uv_timer_stop(&s->timer);
    bw_log(BW_LOG_INFO, "session established", "obj", "session", "id", s->id, "client_id",
           s->client_id, "r", s->peer, NULL);
    send_msg(s, bw_msg_auth_resp(s->client_id, BW_VERSION, ""));
}

/* Choose and open the public port for a tcp bind. Returns an fd or < 0 with
 * err. */
static int bind_tcp_port(edge_session_t *s, const char *remote_addr, int *port_out, char *err,
                         size_t errlen)
{
    bw_edge_t *e = s->e;
    int lo = e->cfg.tcp_port_lo, hi = e->cfg.tcp_port_hi, port, fd;
    char host[256];
    if (*remote_addr) {
        if (bw_split_hostport(remote_addr, host, sizeof host, &port) != 0) {
            snprintf(err, errlen, "invalid remote_addr \"%s\" (expected host:port)", remote_addr);
            return BW_EINVAL;
        }
        if (port < lo || port > hi) {
            snprintf(err, errlen, "remote address port %d is outside this edge's range %d-%d", port,
                     lo, hi);
            return BW_EINVAL;
        }
        if (bw__edge_port_available(e, s, port) != 0 || (fd = bw__edge_listen_port(e, port)) < 0) {
            snprintf(err, errlen, "remote address %s is already bound", remote_addr);
            return BW_EEXIST;
        }
        *port_out = port;
        return fd;
    }
    char hex[9];
    bw_random_hex(hex, 4);
    unsigned span = (unsigned)(hi - lo + 1), start = (unsigned)strtoul(hex, NULL, 16) % span;
    for (unsigned i = 0; i < span; i++) {
        port = lo + (int)((start + i) % span);
        if (bw__edge_port_available(e, s, port) == 0 && (fd = bw__edge_listen_port(e, port)) >= 0) {
            *port_out = port;
            return fd;
        }
    }
    snprintf(err, errlen, "no free port left in this edge's range %d-%d", lo, hi);
    return BW_EEXIST;
}

/* An http, https or tls tunnel: a hostname on a listener (tls tunnels
 * share the HTTPS one), no port of its own. */
static int bind_http(edge_session_t *s, const json_t *m, int scheme, edge_tunnel_t **out, char *err,
                     size_t errlen)
{
    bw_edge_t *e = s->e;
    int listener = scheme == BW_SCHEME_HTTP ? BW_SCHEME_HTTP : BW_SCHEME_HTTPS;
    int port = bw_http_edge_port(e->http, listener);
    const char *name = bw_scheme_name(scheme);
    char host[BW_HOSTNAME_MAX + 1];
    if (port == 0) {
        snprintf(err, errlen, "%s tunnels are disabled on this edge (no %s)", name,
                 listener ? "--https-addr" : "--http-addr");
        return BW_ENOTSUP;
    }
    edge_tunnel_t *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return BW_ENOMEM;
    }
    bw_host_req_t q = {.domain = e->domain,
                       .subdomain = bw_msg_str(m, "subdomain"),
                       .hostname = bw_msg_str(m, "hostname"),
                       .scheme = scheme,
                       .sess = s,
                       .client = s->client_id,
                       .token = s->token ? s->token : "",
                       .tunnel = t,
                       .now = uv_now(e->loop)};
    int rc = bw_hosts_bind(e->hosts, &q, host, err, errlen);
    if (rc != 0) {
        free(t);
        return rc;
    }
    t->sess = s;
    t->scheme = scheme;
    if (scheme == BW_SCHEME_HTTPS)
        bw_certs_host_add(bw_http_edge_certs(e->http), host);
    bw_random_hex(t->id, 16);
    if (port == (listener ? 443 : 80))
        snprintf(t->url, sizeof t->url, "%s://%s", name, host);
    else
        snprintf(t->url, sizeof t->url, "%s://%s:%d", name, host, port);
    *out = t;
    return 0;
}

static int bind_tunnel(edge_session_t *s, const json_t *m, edge_tunnel_t **out, char *err,
                       size_t errlen)
{
    bw_edge_t *e = s->e;
    const char *edge_type = bw_msg_str(m, "edge_type");
    int port, fd;
    if (s->n_tunnels >= e->cfg.max_tunnels) {
        snprintf(err, errlen, "tunnel limit reached (%u per session)", e->cfg.max_tunnels);
        return BW_EINVAL;
    }
    for (int scheme = 0; scheme < BW_SCHEMES; scheme++)
        if (strcmp(edge_type, bw_scheme_name(scheme)) == 0)
            return bind_http(s, m, scheme, out, err, errlen);
    if (strcmp(edge_type, "tcp") != 0) {
        snprintf(err, errlen,
                 "unsupported edge type \"%s\" (this edge serves tcp, http, https and "
                 "tls)",
                 edge_type);
        return BW_ENOTSUP;
    }
    fd = bind_tcp_port(s, bw_msg_str(m, "remote_addr"), &port, err, errlen);
    if (fd < 0)
        return fd;
    edge_tunnel_t *t = calloc(1, sizeof *t);
    if (!t) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return BW_ENOMEM;
    }
    t->sess = s;
    t->port = port;
    t->scheme = -1;
    bw_random_hex(t->id, 16);
    snprintf(t->url, sizeof t->url, "tcp://%s:%d", e->domain, port);
    char name[BW_ADDRSTRLEN + 8];
    snprintf(name, sizeof name, "%s:%d", e->tcp_addr, port);
    t->acc = bw_acceptor_new(e->loop, fd, name, bw__edge_public_fd_max(e), bw__edge_public_conn, t);
    if (!t->acc) { /* fd closed */
        snprintf(err, errlen, "cannot listen on port %d", port);
        bw__edge_tunnel_close(t);
        return BW_EINVAL;
    }
    bw__edge_reservation_take(e, port);
    *out = t;
    return 0;
}

static void on_bind(edge_session_t *s, const json_t *m)
{
    char err[256] = "";
    edge_tunnel_t *t = NULL;
    const char *req = bw_msg_str(m, "req_id");
    if (bind_tunnel(s, m, &t, err, sizeof err) < 0) {
        bw_log(BW_LOG_INFO, "bind refused", "obj", "session", "id", s->id, "err", err, NULL);
        send_msg(s, bw_msg_bind_resp(req, "", "", err));
        return;
    }
    t->next = s->tunnels;
    s->tunnels = t;
    s->n_tunnels++;
    bw_log(BW_LOG_INFO, "tunnel bound", "obj", "session", "id", s->id, "name",
           bw_msg_str(m, "name"), "url", t->url, NULL);
    bw__edge_state_save(s->e);
    send_msg(s, bw_msg_bind_resp(req, t->id, t->url, ""));
}

static void on_unbind(edge_session_t *s, const json_t *m)
{
    const char *id = bw_msg_str(m, "tunnel_id");
    for (edge_tunnel_t **tp = &s->tunnels; *tp; tp = &(*tp)->next)
        if (strcmp((*tp)->id, id) == 0) {
            edge_tunnel_t *t = *tp;
            *tp = t->next;
            s->n_tunnels--;
            bw_log(BW_LOG_INFO, "tunnel unbound", "obj", "session", "id", s->id, "url", t->url,
                   NULL);
            bw__edge_tunnel_close(t);
            bw__edge_state_save(s->e);
            send_msg(s, bw_msg_unbind_resp(id, ""));
            return;
        }
    send_msg(s, bw_msg_unbind_resp(id, "no such tunnel"));
}

static void protocol_error(edge_session_t *s, const char *why)
{
    s->violation = 1;
    if (s->link)
        bw_link_close(s->link, BW_MUX_GOAWAY_PROTO_ERROR);
    s->link = NULL;
    bw__edge_session_end(s, why);
}

/* A Bind that breaks a member rule but carries a usable req_id concerns one
 * tunnel only: it is answered with a BindResp error naming the member, and
 * the session and its other tunnels carry on (protocol.md §4). Without a
 * usable req_id there is nothing to answer to, so it stays a protocol
 * error. Returns 1 when it answered. */
static int refuse_invalid_bind(edge_session_t *s, const json_t *m, const char *why)
{
    const json_t *req = json_object_get(m, "req_id");
    size_t len = json_string_length(req);
    if (!s->authed || s->ending || bw_msg_type(m) != BW_MSG_BIND || !json_is_string(req) ||
        len == 0 || len > BW_PROTO_MAX_STR || strlen(json_string_value(req)) != len)
        return 0;
    bw_log(BW_LOG_INFO, "bind refused", "obj", "session", "id", s->id, "err", why, NULL);
    send_msg(s, bw_msg_bind_resp(json_string_value(req), "", "", why));
    return 1;
}

static void on_msg(edge_session_t *s, const json_t *m)
{
    char err[256];
    if (bw_msg_validate(m, err, sizeof err) != 0) {
        if (!refuse_invalid_bind(s, m, err))
            protocol_error(s, err);
        return;
    }
    bw_msg_type_t type = bw_msg_type(m);
    if (s->ending || type == BW_MSG_UNKNOWN)
        return;
    if (!s->authed && type != BW_MSG_AUTH) {
        snprintf(err, sizeof err, "%s before Auth", bw_msg_type_name(type));
        protocol_error(s, err);
        return;
    }
    switch (type) {
    case BW_MSG_AUTH:
        if (s->authed)
            protocol_error(s, "second Auth on one session");
        else
            on_auth(s, m);
        break;
    case BW_MSG_BIND:
        on_bind(s, m);
        break;
    case BW_MSG_UNBIND:
        on_unbind(s, m);
        break;
    default:
        snprintf(err, sizeof err, "unexpected %s from an agent", bw_msg_type_name(type));
        protocol_error(s, err);
        break;
    }
}

/* Handle one control message; stop once it ended the session. */
static int ctl_msg(void *ud, const json_t *m)
{
    edge_session_t *s = ud;
    on_msg(s, m);
    return s->ctl == NULL;
}

static void ctl_data(bw_mux_stream_t *ms, void *ud, const uint8_t *data, size_t len)
{
    edge_session_t *s = ud;
    char err[256];
    if (bw_frame_reader_each(&s->reader, data, len, ctl_msg, s, err, sizeof err) < 0) {
        protocol_error(s, err);
        return;
    }
    if (s->ctl == ms)
        bw_mux_stream_consumed(ms, len);
}

static void ctl_eof(bw_mux_stream_t *ms, void *ud)
{
    bw__edge_session_end(ud, "agent closed the control stream");
}

/* The yamux engine's reason when it failed on a violation, else NULL. */
static const char *mux_violation(bw_link_t *l)
{
    bw_mux_t *m = l ? bw_link_mux(l) : NULL;
    return m ? bw_mux_error(m) : NULL;
}

/* A yamux violation aborts every stream before the link reports it, so the
 * control stream's end is where the session first hears of it: log the
 * engine's reason, not the symptom. */
static void ctl_close(bw_mux_stream_t *ms, void *ud, int err)
{
    edge_session_t *s = ud;
    const char *why = mux_violation(s->link);
    s->ctl = NULL;
    if (why)
        s->violation = 1;
    bw__edge_session_end(s, why ? why : "control stream reset");
}

static const bw_mux_stream_cbs_t ctl_cbs = {
    .on_data = ctl_data,
    .on_eof = ctl_eof,
    .on_close = ctl_close,
};

/* ---------------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------------- */

static void on_stream(bw_link_t *l, void *ud, bw_mux_stream_t *ms)
{
    edge_session_t *s = ud;
    if (s->ctl || s->ending) {
        /* Only the control stream may be opened by an agent. */
        bw_mux_stream_reset(ms);
        return;
    }
    if (bw_mux_stream_id(ms) != BW_PROTO_CONTROL_STREAM) {
        /* protocol.md §1: the control stream is the agent's first, id 1.
         * Taking another one as control would let two implementations
         * disagree about which stream carries Auth. */
        char why[96];
        snprintf(why, sizeof why, "control stream must be stream %d, agent opened stream %lu first",
                 BW_PROTO_CONTROL_STREAM, (unsigned long)bw_mux_stream_id(ms));
        bw_mux_stream_reset(ms);
        protocol_error(s, why);
        return;
    }
    s->ctl = ms;
    bw_frame_reader_init(&s->reader, 0);
    bw_mux_stream_set_callbacks(ms, &ctl_cbs, s);
}

static void on_closed(bw_link_t *l, void *ud, int err, const char *reason)
{
    edge_session_t *s = ud;
    if (mux_violation(l))
        s->violation = 1;
    s->link = NULL; /* dead: it frees itself */
    bw__edge_session_end(s, reason);
}

static void auth_timeout(uv_timer_t *h);

/* TLS is up: the link's idle clock started, and so does the Auth deadline
 * (docs/protocol.md). A failed handshake ends in on_closed. */
static void on_ready(bw_link_t *l, void *ud, int status)
{
    edge_session_t *s = ud;
    if (status != 0 || s->ending || uv_is_closing((uv_handle_t *)&s->timer))
        return;
    snprintf(s->peer, sizeof s->peer, "%s", bw_link_peer(l));
    uv_timer_start(&s->timer, auth_timeout, s->e->cfg.auth_timeout_ms, 0);
}

static const bw_link_cbs_t link_cbs = {
    .on_ready = on_ready,
    .on_stream = on_stream,
    .on_closed = on_closed,
};

static void session_timer_closed(uv_handle_t *h)
{
    edge_session_t *s = BW_CONTAINER_OF(h, edge_session_t, timer);
    bw_frame_reader_free(&s->reader);
    free(s->token);
    free(s);
}

void bw__edge_session_end(edge_session_t *s, const char *reason)
{
    bw_edge_t *e = s->e;
    if (uv_is_closing((uv_handle_t *)&s->timer))
        return; /* already ended */
    bw_log(s->authed && !s->violation ? BW_LOG_INFO : BW_LOG_WARN, "session closed", "obj",
           "session", "id", s->id, "r", s->peer, "err", reason, NULL);
    bw_list_remove(&s->node);
    while (s->tunnels) {
        edge_tunnel_t *t = s->tunnels;
        s->tunnels = t->next;
        if (s->authed && !e->stopping && t->scheme < 0)
            bw__edge_reserve(e, s, t->port);
        if (s->authed && !e->stopping && t->scheme >= 0)
            bw_hosts_reserve(e->hosts, t, uv_now(e->loop) + e->cfg.grace_ms);
        bw__edge_tunnel_close(t);
    }
    if (s->authed)
        bw__edge_state_save(e);
    if (s->ctl) {
        bw_mux_stream_t *ctl = s->ctl;
        s->ctl = NULL;
        bw_mux_stream_reset(ctl);
    }
    if (s->link)
        bw_link_close(s->link, BW_MUX_GOAWAY_NORMAL);
    s->link = NULL;
    uv_close((uv_handle_t *)&s->timer, session_timer_closed);
}

static void auth_timeout(uv_timer_t *h)
{
    edge_session_t *s = BW_CONTAINER_OF(h, edge_session_t, timer);
    bw__edge_session_end(s, "authentication timeout");
}

void bw__edge_agent_conn(uv_stream_t *server, int status)
{
    bw_edge_t *e = BW_CONTAINER_OF(server, bw_edge_t, agents);
    if (status < 0 || e->stopping)
        return;
    edge_session_t *s = calloc(1, sizeof *s);
    if (!s)
        return;
    s->e = e;
    bw_random_hex(s->id, 6);
    bw_link_config_t lc = {
        .is_client = 0,
        .idle_ms = e->cfg.idle_ms,
        .handshake_ms = e->cfg.handshake_ms ? e->cfg.handshake_ms : BW_EDGE_HANDSHAKE_MS,
        .max_window = e->cfg.max_window,
    };
    s->link = bw_link_new(e->loop, e->ctx, &lc, &link_cbs, s);
    if (!s->link) {
        free(s);
        return;
    }
    uv_timer_init(e->loop, &s->timer);
    bw_list_push(&e->sessions, &s->node);
    if (uv_accept(server, (uv_stream_t *)bw_link_tcp(s->link)) != 0 ||
        bw_link_start(s->link, NULL) != 0) {
        bw__edge_session_end(s, "accept failed");
        return;
    }
    snprintf(s->peer, sizeof s->peer, "%s", bw_link_peer(s->link));
}
