/* burrowd: the public side of tunnels. The ports tcp tunnels listen on and
 * the reservations that keep a lost session's ports for its client, then the
 * public connections: accepted on a tcp tunnel's port, or routed to an
 * http/https tunnel by http_conn.c. See edge.h and docs/protocol.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "edge_int.h"
#include "hostnames.h"
#include "link.h"
#include "log.h"
#include "stream.h"
#include "util.h"

/* ---------------------------------------------------------------------------
 * Ports and reservations
 * ------------------------------------------------------------------------- */

void bw__edge_reservation_free(reservation_t *r)
{
    free(r->token);
    free(r);
}

/* Who may bind `port`: returns 0 when free for this session's client,
 * BW_EEXIST when a live tunnel or another client's reservation holds it. */
int bw__edge_port_available(bw_edge_t *e, edge_session_t *s, int port)
{
    uint64_t now = uv_now(e->loop);
    for (reservation_t **rp = &e->reservations; *rp;) {
        reservation_t *r = *rp;
        if (r->expires_ms <= now) {
            *rp = r->next;
            bw__edge_reservation_free(r);
            continue;
        }
        if (r->port == port && (strcmp(r->client_id, s->client_id) != 0 ||
                                strcmp(r->token, s->token ? s->token : "") != 0))
            return BW_EEXIST;
        rp = &r->next;
    }
    BW_LIST_FOREACH (o, &e->sessions, edge_session_t, node)
        for (edge_tunnel_t *t = o->tunnels; t; t = t->next)
            if (t->port == port)
                return BW_EEXIST;
    return 0;
}

void bw__edge_reservation_take(bw_edge_t *e, int port)
{
    for (reservation_t **rp = &e->reservations; *rp; rp = &(*rp)->next)
        if ((*rp)->port == port) {
            reservation_t *r = *rp;
            *rp = r->next;
            bw__edge_reservation_free(r);
            return;
        }
}

void bw__edge_reserve(bw_edge_t *e, edge_session_t *s, int port)
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
 * ports cheaply before handing the winner to an acceptor. */
int bw__edge_listen_port(bw_edge_t *e, int port)
{
    struct sockaddr_storage ss;
    if (bw_resolve(e->tcp_addr, port, &ss) != 0)
        return BW_EINVAL;
    return bw__edge_listen_fd(&ss);
}

int bw__edge_listen_fd(const struct sockaddr_storage *ss_in)
{
    struct sockaddr_storage ss = *ss_in;
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

#define REFUSED_LOG_MS 10000 /* one line per cap and window, with the count */

static const char *const reasons[BW_CONN_REASONS] = {
    [BW_CONN_PER_IP] = "per-ip limit",
    [BW_CONN_TOTAL] = "total limit",
};

/* One line per cap and window: the refusals counted since the previous
 * one. (Descriptors running out pause the listener instead: accept.c.) */
static void report(bw_edge_t *e, int why, const char *ip)
{
    unsigned long n = bw_conn_limit_report(e->limit, why, uv_now(e->loop), REFUSED_LOG_MS);
    char count[24], open[24];
    if (n == 0)
        return;
    snprintf(count, sizeof count, "%lu", n);
    snprintf(open, sizeof open, "%u",
             bw_conn_limit_open(e->limit, why == BW_CONN_PER_IP ? ip : NULL));
    bw_log(BW_LOG_WARN, "public connections refused", "obj", "edge", "reason", reasons[why], "r",
           ip, "open", open, "count", count, NULL);
}

int bw__edge_public_admit(bw_edge_t *e, const char *ip)
{
    int why = bw_conn_limit_take(e->limit, ip);
    if (why == BW_CONN_OK)
        return 0;
    report(e, why, ip);
    return BW_EAGAIN;
}

unsigned bw__edge_public_fd_max(const bw_edge_t *e)
{
    return e->fd_limit > BW_EDGE_FD_RESERVE ? e->fd_limit - BW_EDGE_FD_RESERVE : 0;
}

void bw__edge_public_release(bw_edge_t *e, const char *ip)
{
    bw_conn_limit_release(e->limit, ip);
}

/* A tcp tunnel connection counted against the caps, until the join ends. */
typedef struct counted {
    bw_edge_t *e;
    char ip[BW_ADDRSTRLEN];
} counted_t;

static void counted_done(void *ud, int err, uint64_t bytes_in, uint64_t bytes_out)
{
    counted_t *k = ud;
    bw__edge_public_release(k->e, k->ip);
    free(k);
}

int bw__edge_public_join(bw_edge_t *e, const char *ip, bw_stream_t *pub, bw_stream_t *priv)
{
    counted_t *k = calloc(1, sizeof *k);
    if (!k) {
        bw__edge_public_release(e, ip);
        bw_stream_close(pub, 1);
        bw_stream_close(priv, 1);
        return BW_ENOMEM;
    }
    k->e = e;
    snprintf(k->ip, sizeof k->ip, "%s", ip);
    if (bw_stream_join(pub, priv, counted_done, k) != 0) {
        counted_done(k, 0, 0, 0);
        return BW_ENOMEM;
    }
    return 0;
}

void bw__edge_sockname(uv_tcp_t *h, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    int n = sizeof ss;
    buf[0] = '\0';
    if (uv_tcp_getsockname(h, (struct sockaddr *)&ss, &n) != 0 ||
        !bw_sockaddr_str((struct sockaddr *)&ss, buf, len))
        buf[0] = '\0';
}

/* A stream to t's agent that starts with the Conn header, or NULL. */
static bw_stream_t *open_conn(edge_tunnel_t *t, const char *client, const char *edge_type,
                              const char *server_name, const char *server_addr)
{
    edge_session_t *s = t->sess;
    bw_mux_stream_t *ms = s->link ? bw_mux_stream_open(bw_link_mux(s->link)) : NULL;
    if (!ms)
        return NULL;
    json_t *m = bw_msg_conn(t->id, client, edge_type, server_name, server_addr);
    int rc = m ? bw_link_send_msg(ms, m) : BW_ENOMEM;
    json_decref(m);
    bw_stream_t *priv = bw_stream_mux_new(s->e->io, ms, s->peer);
    if (priv && rc < 0) {
        bw_stream_close(priv, 1);
        priv = NULL;
    }
    return priv;
}

void bw__edge_public_conn(bw_acceptor_t *a, void *ud)
{
    edge_tunnel_t *t = ud;
    edge_session_t *s = t->sess;
    bw_stream_t *pub = bw_stream_tcp_new(s->e->io);
    if (!pub)
        return;
    if (bw_acceptor_take(a, bw_stream_tcp_handle(pub)) != 0 || !s->link) {
        bw_stream_close(pub, 1);
        return;
    }
    bw_stream_tcp_ready(pub);
    int port;
    char ip[BW_ADDRSTRLEN];
    if (bw_split_hostport(bw_stream_peer(pub), ip, sizeof ip, &port) != 0 ||
        bw__edge_public_admit(s->e, ip) != 0) {
        bw_stream_close(pub, 1);
        return;
    }
    char self[BW_ADDRSTRLEN];
    bw__edge_sockname(bw_stream_tcp_handle(pub), self, sizeof self);
    bw_stream_t *priv = open_conn(t, bw_stream_peer(pub), "tcp", "", self);
    if (!priv) {
        bw__edge_public_release(s->e, ip);
        bw_stream_close(pub, 1);
        return;
    }
    bw__edge_public_join(s->e, ip, pub, priv);
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
                       const char *server_name, const char *server_addr,
                       char tunnel_id[BW_TUNNEL_ID_LEN], bw_stream_t **out)
{
    int held;
    edge_tunnel_t *t = bw_hosts_find(e->hosts, host, scheme, uv_now(e->loop), &held);
    if (!t)
        return held ? BW_ECONNABORTED : BW_ENOENT;
    *out = open_conn(t, client_addr, bw_scheme_name(scheme), server_name, server_addr);
    if (!*out)
        return BW_ECONNABORTED;
    snprintf(tunnel_id, BW_TUNNEL_ID_LEN, "%s", t->id);
    return 0;
}

/* An https name is gone for good (not merely reserved): drop its cert. */
void bw__edge_host_gone(void *arg, const char *host, int scheme)
{
    bw_edge_t *e = arg;
    if (scheme == BW_SCHEME_HTTPS)
        bw_certs_host_remove(bw_http_edge_certs(e->http), host);
}

void bw__edge_tunnel_close(edge_tunnel_t *t)
{
    if (t->scheme >= 0)
        bw_hosts_release(t->sess->e->hosts, t);
    bw_acceptor_close(t->acc); /* tcp tunnels: no callback follows */
    free(t);
}
