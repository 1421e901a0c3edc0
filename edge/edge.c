/* burrowd: agent sessions, tunnel bindings and public TCP listeners.
 * See edge.h and docs/protocol.md. */
#include "edge.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "control.h"
#include "edge_int.h"
#include "hostnames.h"
#include "link.h"
#include "log.h"
#include "stream.h"
#include "tls.h"
#include "util.h"

#define MAX_TOKENS     1024
#define CLOSE_DELAY_MS 200 /* lets a refusal reach the agent before we hang up */

typedef struct edge_session edge_session_t;

typedef struct edge_tunnel {
    edge_session_t *sess;
    char id[33];
    char url[320];
    int port;
    int scheme;        /* BW_SCHEME_* for http/https tunnels, -1 for tcp */
    uv_tcp_t listener; /* tcp tunnels only */
    struct edge_tunnel *next;
} edge_tunnel_t;

/* A lost session's port, kept for its client for the grace period. */
typedef struct reservation {
    char client_id[33];
    char *token;
    int port;
    uint64_t expires_ms;
    struct reservation *next;
} reservation_t;

struct edge_session {
    bw_edge_t *e;
    bw_link_t *link;
    bw_mux_stream_t *ctl;
    bw_frame_reader_t reader;
    char id[13];
    char client_id[33];
    char *token;
    char peer[BW_ADDRSTRLEN];
    int authed;
    int ending;
    uv_timer_t timer; /* auth timeout, then the delayed close of a refusal */
    edge_tunnel_t *tunnels;
    unsigned n_tunnels;
    edge_session_t *next, *prev;
};

struct bw_edge {
    bw_io_t *io; /* borrowed */
    uv_loop_t *loop;
    bw_edge_config_t cfg;
    char *domain, *tcp_addr;
    SSL_CTX *ctx;
    uv_tcp_t agents;
    int agents_open; /* `agents` is initialised and must be closed */
    char *tokens[MAX_TOKENS];
    size_t n_tokens;
    edge_session_t *sessions;
    reservation_t *reservations;
    bw_hosts_t *hosts;
    bw_http_edge_t *http;
    int stopping;
};

static void session_end(edge_session_t *s, const char *reason);

/* ---------------------------------------------------------------------------
 * Ports and reservations
 * ------------------------------------------------------------------------- */

static void reservation_free(reservation_t *r)
{
    free(r->token);
    free(r);
}

/* Who may bind `port`: returns 0 when free for this session's client,
 * BW_EEXIST when a live tunnel or another client's reservation holds it. */
static int port_available(bw_edge_t *e, edge_session_t *s, int port)
{
    uint64_t now = uv_now(e->loop);
    for (reservation_t **rp = &e->reservations; *rp;) {
        reservation_t *r = *rp;
        if (r->expires_ms <= now) {
            *rp = r->next;
            reservation_free(r);
            continue;
        }
        if (r->port == port && (strcmp(r->client_id, s->client_id) != 0 ||
                                strcmp(r->token, s->token ? s->token : "") != 0))
            return BW_EEXIST;
        rp = &r->next;
    }
    for (edge_session_t *o = e->sessions; o; o = o->next)
        for (edge_tunnel_t *t = o->tunnels; t; t = t->next)
            if (t->port == port)
                return BW_EEXIST;
    return 0;
}

static void reservation_take(bw_edge_t *e, int port)
{
    for (reservation_t **rp = &e->reservations; *rp; rp = &(*rp)->next)
        if ((*rp)->port == port) {
            reservation_t *r = *rp;
            *rp = r->next;
            reservation_free(r);
            return;
        }
}

static void reserve(bw_edge_t *e, edge_session_t *s, int port)
{
    reservation_t *r = calloc(1, sizeof *r);
    if (!r || !(r->token = bw_strdup(s->token ? s->token : ""))) {
        free(r);
        return;
    }
    snprintf(r->client_id, sizeof r->client_id, "%s", s->client_id);
    r->port = port;
    r->expires_ms = uv_now(e->loop) + e->cfg.grace_ms;
    r->next = e->reservations;
    e->reservations = r;
}

/* A listening socket on tcp_addr:port, or < 0. A raw socket lets us probe
 * ports cheaply before handing the winner to libuv. */
static int listen_port(bw_edge_t *e, int port)
{
    struct sockaddr_storage ss;
    if (bw_resolve(e->tcp_addr, port, &ss) != 0)
        return BW_EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 511) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* ---------------------------------------------------------------------------
 * Public connections
 * ------------------------------------------------------------------------- */

/* A stream to t's agent that starts with the Conn header, or NULL. */
static bw_stream_t *open_conn(edge_tunnel_t *t, const char *client, const char *edge_type,
                              const char *server_name)
{
    edge_session_t *s = t->sess;
    bw_mux_stream_t *ms = s->link ? bw_mux_stream_open(bw_link_mux(s->link)) : NULL;
    if (!ms)
        return NULL;
    json_t *m = bw_msg_conn(t->id, client, edge_type, server_name);
    int rc = m ? bw_link_send_msg(ms, m) : BW_ENOMEM;
    json_decref(m);
    bw_stream_t *priv = bw_stream_mux_new(s->e->io, ms, s->peer);
    if (priv && rc < 0) {
        bw_stream_close(priv, 1);
        priv = NULL;
    }
    return priv;
}

static void public_conn(uv_stream_t *server, int status)
{
    edge_tunnel_t *t = BW_CONTAINER_OF(server, edge_tunnel_t, listener);
    edge_session_t *s = t->sess;
    if (status < 0)
        return;
    bw_stream_t *pub = bw_stream_tcp_new(s->e->io);
    if (!pub)
        return;
    if (uv_accept(server, (uv_stream_t *)bw_stream_tcp_handle(pub)) != 0 || !s->link) {
        bw_stream_close(pub, 1);
        return;
    }
    bw_stream_tcp_ready(pub);
    bw_stream_t *priv = open_conn(t, bw_stream_peer(pub), "tcp", "");
    if (!priv) {
        bw_stream_close(pub, 1);
        return;
    }
    bw_stream_join(pub, priv, NULL, NULL);
}

int bw__edge_http_route(bw_edge_t *e, int scheme, const char *host,
                        char tunnel_id[BW_TUNNEL_ID_LEN])
{
    int held;
    edge_tunnel_t *t = bw_hosts_find(e->hosts, host, scheme, uv_now(e->loop), &held);
    if (!t)
        return held ? BW_ECONNABORTED : BW_ENOENT;
    snprintf(tunnel_id, BW_TUNNEL_ID_LEN, "%s", t->id);
    return t->sess->link ? 0 : BW_ECONNABORTED;
}

int bw__edge_http_open(bw_edge_t *e, int scheme, const char *host, const char *client_addr,
                       const char *server_name, char tunnel_id[BW_TUNNEL_ID_LEN], bw_stream_t **out)
{
    int held;
    edge_tunnel_t *t = bw_hosts_find(e->hosts, host, scheme, uv_now(e->loop), &held);
    if (!t)
        return held ? BW_ECONNABORTED : BW_ENOENT;
    *out = open_conn(t, client_addr, scheme ? "https" : "http", server_name);
    if (!*out)
        return BW_ECONNABORTED;
    snprintf(tunnel_id, BW_TUNNEL_ID_LEN, "%s", t->id);
    return 0;
}

/* An https name is gone for good (not merely reserved): drop its cert. */
static void host_gone(void *arg, const char *host, int scheme)
{
    bw_edge_t *e = arg;
    if (scheme == BW_SCHEME_HTTPS)
        bw_certs_host_remove(bw_http_edge_certs(e->http), host);
}

static void tunnel_closed(uv_handle_t *h)
{
    free(BW_CONTAINER_OF(h, edge_tunnel_t, listener));
}

static void tunnel_close(edge_tunnel_t *t)
{
    if (t->scheme >= 0) {
        bw_hosts_release(t->sess->e->hosts, t);
        free(t);
        return;
    }
    uv_close((uv_handle_t *)&t->listener, tunnel_closed);
}

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
    session_end(s, "authentication refused"); /* only refusals close later */
}

static int client_known(bw_edge_t *e, const char *cid, const char *token)
{
    for (reservation_t *r = e->reservations; r; r = r->next)
        if (strcmp(r->client_id, cid) == 0 && strcmp(r->token, token) == 0)
            return 1;
    if (bw_hosts_reserved_for(e->hosts, cid, token, uv_now(e->loop)))
        return 1;
    for (edge_session_t *o = e->sessions; o; o = o->next)
        if (o->authed && strcmp(o->client_id, cid) == 0 && strcmp(o->token, token) == 0)
            return 1;
    return 0;
}

static void on_auth(edge_session_t *s, const json_t *m)
{
    bw_edge_t *e = s->e;
    const char *token = bw_msg_str(m, "token"), *cid = bw_msg_str(m, "client_id");
    if (!token_ok(e, token)) {
        bw_log(BW_LOG_WARN, "authentication failed", "obj", "session", "id", s->id, "r", s->peer,
               NULL);
        send_msg(s, bw_msg_auth_resp("", BW_VERSION, "invalid authtoken"));
        s->ending = 1;
        uv_timer_start(&s->timer, close_later, CLOSE_DELAY_MS, 0);
        return;
    }
    s->token = bw_strdup(token);
    /* Only ids this edge issued and still remembers (a live session or a
     * reservation, under the same token) are resumed; any other gets a
     * fresh id, which tells the agent nothing was resumed. */
    if (*cid && client_known(e, cid, token))
        snprintf(s->client_id, sizeof s->client_id, "%s", cid);
    else
        bw_random_hex(s->client_id, 16);
    /* The same agent reconnecting before we noticed its old session died:
     * end the old one so its addresses pass to this one. */
    for (edge_session_t *o = e->sessions; o; o = o->next)
        if (o != s && o->authed && strcmp(o->client_id, s->client_id) == 0 &&
            strcmp(o->token ? o->token : "", s->token ? s->token : "") == 0) {
            session_end(o, "replaced by a new session of the same agent");
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
        if (port_available(e, s, port) != 0 || (fd = listen_port(e, port)) < 0) {
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
        if (port_available(e, s, port) == 0 && (fd = listen_port(e, port)) >= 0) {
            *port_out = port;
            return fd;
        }
    }
    snprintf(err, errlen, "no free port left in this edge's range %d-%d", lo, hi);
    return BW_EEXIST;
}

/* An http/https tunnel: a hostname on that listener, no port of its own. */
static int bind_http(edge_session_t *s, const json_t *m, int scheme, edge_tunnel_t **out, char *err,
                     size_t errlen)
{
    bw_edge_t *e = s->e;
    int port = bw_http_edge_port(e->http, scheme);
    char host[BW_HOSTNAME_MAX + 1];
    if (port == 0) {
        snprintf(err, errlen, "%s tunnels are disabled on this edge (no %s)",
                 scheme ? "https" : "http", scheme ? "--https-addr" : "--http-addr");
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
    if (port == (scheme ? 443 : 80))
        snprintf(t->url, sizeof t->url, "%s://%s", scheme ? "https" : "http", host);
    else
        snprintf(t->url, sizeof t->url, "%s://%s:%d", scheme ? "https" : "http", host, port);
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
    if (strcmp(edge_type, "http") == 0 || strcmp(edge_type, "https") == 0)
        return bind_http(s, m, edge_type[4] == 's', out, err, errlen);
    if (strcmp(edge_type, "tcp") != 0) {
        snprintf(err, errlen,
                 "unsupported edge type \"%s\" (this edge serves tcp, http and "
                 "https)",
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
    uv_tcp_init(e->loop, &t->listener);
    if (uv_tcp_open(&t->listener, fd) != 0 ||
        uv_listen((uv_stream_t *)&t->listener, 511, public_conn) != 0) {
        snprintf(err, errlen, "cannot listen on port %d", port);
        tunnel_close(t); /* closes fd with the handle */
        return BW_EINVAL;
    }
    reservation_take(e, port);
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
            tunnel_close(t);
            send_msg(s, bw_msg_unbind_resp(id, ""));
            return;
        }
    send_msg(s, bw_msg_unbind_resp(id, "no such tunnel"));
}

static void protocol_error(edge_session_t *s, const char *why)
{
    if (s->link)
        bw_link_close(s->link, BW_MUX_GOAWAY_PROTO_ERROR);
    s->link = NULL;
    session_end(s, why);
}

static void on_msg(edge_session_t *s, const json_t *m)
{
    char err[256];
    if (bw_msg_validate(m, err, sizeof err) != 0) {
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
    session_end(ud, "agent closed the control stream");
}

static void ctl_close(bw_mux_stream_t *ms, void *ud, int err)
{
    edge_session_t *s = ud;
    s->ctl = NULL;
    session_end(s, "control stream reset");
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
    s->ctl = ms;
    bw_frame_reader_init(&s->reader, 0);
    bw_mux_stream_set_callbacks(ms, &ctl_cbs, s);
}

static void on_closed(bw_link_t *l, void *ud, int err, const char *reason)
{
    edge_session_t *s = ud;
    s->link = NULL; /* dead: it frees itself */
    session_end(s, reason);
}

static void on_ready(bw_link_t *l, void *ud, int status)
{
    edge_session_t *s = ud;
    if (status == 0)
        snprintf(s->peer, sizeof s->peer, "%s", bw_link_peer(l));
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

static void session_end(edge_session_t *s, const char *reason)
{
    bw_edge_t *e = s->e;
    if (uv_is_closing((uv_handle_t *)&s->timer))
        return; /* already ended */
    bw_log(s->authed ? BW_LOG_INFO : BW_LOG_WARN, "session closed", "obj", "session", "id", s->id,
           "r", s->peer, "err", reason, NULL);
    if (s->prev)
        s->prev->next = s->next;
    else
        e->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    while (s->tunnels) {
        edge_tunnel_t *t = s->tunnels;
        s->tunnels = t->next;
        if (s->authed && !e->stopping && t->scheme < 0)
            reserve(e, s, t->port);
        if (s->authed && !e->stopping && t->scheme >= 0)
            bw_hosts_reserve(e->hosts, t, uv_now(e->loop) + e->cfg.grace_ms);
        tunnel_close(t);
    }
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
    session_end(s, "authentication timeout");
}

static void agent_conn(uv_stream_t *server, int status)
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
        .max_window = e->cfg.max_window,
    };
    s->link = bw_link_new(e->loop, e->ctx, &lc, &link_cbs, s);
    if (!s->link) {
        free(s);
        return;
    }
    uv_timer_init(e->loop, &s->timer);
    s->next = e->sessions;
    if (e->sessions)
        e->sessions->prev = s;
    e->sessions = s;
    if (uv_accept(server, (uv_stream_t *)bw_link_tcp(s->link)) != 0 ||
        bw_link_start(s->link, NULL) != 0) {
        session_end(s, "accept failed");
        return;
    }
    snprintf(s->peer, sizeof s->peer, "%s", bw_link_peer(s->link));
    uv_timer_start(&s->timer, auth_timeout, e->cfg.auth_timeout_ms, 0);
}

/* ---------------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------------- */

static int load_tokens(bw_edge_t *e, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    unsigned lineno = 0;
    if (!f) {
        snprintf(err, errlen, "cannot open auth token file %s: %s", path, strerror(errno));
        return BW_ENOENT;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line, *end;
        while (*p == ' ' || *p == '\t')
            p++;
        end = p + strlen(p);
        while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (!*p || *p == '#')
            continue;
        if (e->n_tokens == MAX_TOKENS) {
            snprintf(err, errlen, "%s:%u: too many tokens (at most %d)", path, lineno, MAX_TOKENS);
            fclose(f);
            return BW_EINVAL;
        }
        e->tokens[e->n_tokens++] = bw_strdup(p);
    }
    fclose(f);
    if (e->n_tokens == 0) {
        snprintf(err, errlen, "auth token file %s holds no token", path);
        return BW_EINVAL;
    }
    return 0;
}

static int setup_tls(bw_edge_t *e, char *err, size_t errlen)
{
    const char *cert = e->cfg.tls_cert, *key = e->cfg.tls_key;
    char certp[1024], keyp[1024], ca[1024], wildcard[300];
    if (!cert != !key) {
        snprintf(err, errlen, "--tls-cert and --tls-key must be given together");
        return BW_EINVAL;
    }
    if (!cert) {
        const char *names[] = {"localhost", "127.0.0.1", "::1", e->domain, wildcard, NULL};
        int created = 0;
        snprintf(wildcard, sizeof wildcard, "*.%s", e->domain);
        if (bw_tls_dev_certs(e->cfg.state_dir, names, &created, err, errlen) != 0)
            return BW_EINVAL;
        snprintf(certp, sizeof certp, "%s/server.pem", e->cfg.state_dir);
        snprintf(keyp, sizeof keyp, "%s/server.key", e->cfg.state_dir);
        snprintf(ca, sizeof ca, "%s/ca.pem", e->cfg.state_dir);
        bw_log(BW_LOG_INFO,
               created ? "created dev certificate authority" : "using dev certificate authority",
               "obj", "edge", "ca", ca, NULL);
        cert = certp;
        key = keyp;
    }
    e->ctx = bw_tls_server_ctx(cert, key, err, errlen);
    return e->ctx ? 0 : BW_EINVAL;
}

/* The agent address as a socket address, refused when it is not loopback
 * and no tokens are configured. Only checks: nothing is bound yet. */
static int agent_addr_check(const bw_edge_config_t *cfg, struct sockaddr_storage *ss, char *err,
                            size_t errlen)
{
    char host[256];
    int port;
    if (bw_split_hostport(cfg->agent_addr, host, sizeof host, &port) != 0 ||
        bw_resolve(host, port, ss) != 0) {
        snprintf(err, errlen, "invalid --agent-addr '%s' (expected host:port)", cfg->agent_addr);
        return BW_EINVAL;
    }
    if (!bw_is_loopback_host(host[0] ? host : "127.0.0.1") && !cfg->auth_tokens) {
        snprintf(err, errlen,
                 "refusing to accept agents on non-loopback address %s without "
                 "--auth-tokens",
                 cfg->agent_addr);
        return BW_EACCES;
    }
    return 0;
}

int bw_edge_config_check(const bw_edge_config_t *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int rc = agent_addr_check(cfg, &ss, err, errlen);
    if (rc == 0)
        rc = bw_http_edge_config_check(cfg, err, errlen);
    if (rc == 0 && cfg->tcp_addr && bw_resolve(cfg->tcp_addr, 0, &ss) != 0) {
        snprintf(err, errlen, "invalid --tcp-addr '%s' (expected an address)", cfg->tcp_addr);
        rc = BW_EINVAL;
    }
    return rc;
}

static int listen_agents(bw_edge_t *e, char *err, size_t errlen)
{
    char bound[BW_ADDRSTRLEN];
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = agent_addr_check(&e->cfg, &ss, err, errlen);
    if (rc != 0)
        return rc;
    if ((rc = uv_tcp_init(e->loop, &e->agents)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", e->cfg.agent_addr, uv_strerror(rc));
        return rc;
    }
    e->agents_open = 1;
    rc = uv_tcp_bind(&e->agents, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&e->agents, 511, agent_conn);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", e->cfg.agent_addr, uv_strerror(rc));
        return rc;
    }
    uv_tcp_getsockname(&e->agents, (struct sockaddr *)&ss, &len);
    bw_log(BW_LOG_INFO, "listening for agents", "obj", "edge", "addr",
           bw_sockaddr_str((struct sockaddr *)&ss, bound, sizeof bound), NULL);
    return 0;
}

static void close_agents(bw_edge_t *e)
{
    if (e->agents_open && !uv_is_closing((uv_handle_t *)&e->agents))
        uv_close((uv_handle_t *)&e->agents, NULL);
}

bw_edge_t *bw_edge_new(bw_io_t *io, const bw_edge_config_t *cfg, char *err, size_t errlen)
{
    bw_edge_t *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->io = io;
    e->loop = bw_io_loop(io);
    e->cfg = *cfg;
    e->domain = bw_strdup(cfg->domain ? cfg->domain : "localhost");
    e->tcp_addr = bw_strdup(cfg->tcp_addr ? cfg->tcp_addr : "127.0.0.1");
    if (!e->domain || !e->tcp_addr || !(e->hosts = bw_hosts_new())) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* Every setting is checked and every file loaded before the first
     * listener opens: a refused setting never leaves a port half open. */
    if (bw_edge_config_check(cfg, err, errlen) != 0)
        goto fail;
    if (cfg->auth_tokens && load_tokens(e, cfg->auth_tokens, err, errlen) != 0)
        goto fail;
    if (setup_tls(e, err, errlen) != 0)
        goto fail;
    if (!(e->http = bw_http_edge_new(io, e, cfg, err, errlen)))
        goto fail;
    if (listen_agents(e, err, errlen) != 0)
        goto fail;
    bw_hosts_on_gone(e->hosts, host_gone, e);
    return e;
fail:
    close_agents(e);
    bw_http_edge_stop(e->http);
    uv_run(e->loop, UV_RUN_NOWAIT);
    bw_edge_free(e);
    return NULL;
}

void bw_edge_stop(bw_edge_t *e)
{
    if (e->stopping)
        return;
    e->stopping = 1;
    close_agents(e);
    bw_http_edge_stop(e->http);
    while (e->sessions)
        session_end(e->sessions, "edge shutting down");
}

void bw_edge_free(bw_edge_t *e)
{
    if (!e)
        return;
    while (e->reservations) {
        reservation_t *r = e->reservations;
        e->reservations = r->next;
        reservation_free(r);
    }
    for (size_t i = 0; i < e->n_tokens; i++)
        free(e->tokens[i]);
    bw_http_edge_free(e->http);
    bw_hosts_free(e->hosts);
    SSL_CTX_free(e->ctx);
    free(e->domain);
    free(e->tcp_addr);
    free(e);
}
