/* burrowd's public HTTP and HTTPS listeners: accept, terminate TLS for
 * https, and hand each connection to http_conn.c. See docs/edge.md ("HTTP
 * and HTTPS"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostnames.h"
#include "http_conn.h"
#include "log.h"

/* TCP public side */

static void tcp_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    bw__hconn_data(ud, data, len);
}

static void tcp_eof(bw_stream_t *s, void *ud)
{
    bw__hconn_eof(ud);
}

static void tcp_drain(bw_stream_t *s, void *ud)
{
    bw__hconn_drain(ud);
}

static void tcp_error(bw_stream_t *s, void *ud, int err)
{
    bw__hconn_close(ud, 1);
}

static const bw_stream_cbs_t tcp_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = tcp_read,
    .on_eof = tcp_eof,
    .on_drain = tcp_drain,
    .on_error = tcp_error,
};

/* TLS public side */

static void tls_handshake(bw_tls_t *t, void *ud, int status)
{
    hconn_t *c = ud;
    if (status < 0) {
        bw_log(BW_LOG_DEBUG, "TLS handshake failed", "obj", "http", "r", c->client, "err",
               bw_tls_error(t), NULL);
        bw__hconn_close(c, 1);
        return;
    }
    c->handshaken = 1;
    const char *sn = SSL_get_servername(bw_tls_ssl(t), TLSEXT_NAMETYPE_host_name);
    char why[64];
    if (sn && bw_hostname_check(sn, c->sni, why, sizeof why) != 0)
        c->sni[0] = '\0';
}

static void tls_read(bw_tls_t *t, void *ud, const uint8_t *data, size_t len)
{
    bw__hconn_data(ud, data, len);
}

static void tls_eof(bw_tls_t *t, void *ud)
{
    bw__hconn_eof(ud);
}

static void tls_drain(bw_tls_t *t, void *ud)
{
    bw__hconn_drain(ud);
}

static void tls_error(bw_tls_t *t, void *ud, int err)
{
    bw__hconn_close(ud, 1);
}

static void tls_closed(bw_tls_t *t, void *ud)
{
    bw__hconn_unref(ud);
}

static const bw_tls_cbs_t tls_cbs = {
    .on_handshake = tls_handshake,
    .on_read = tls_read,
    .on_eof = tls_eof,
    .on_drain = tls_drain,
    .on_error = tls_error,
    .on_close = tls_closed,
};

/* ---------------------------------------------------------------------------
 * Listeners
 * ------------------------------------------------------------------------- */

/* Upgraded connections have no idle limit (a quiet WebSocket is fine), so
 * TCP keepalive is what notices a client that vanished without FIN/RST. */
static int keepalive(uv_tcp_t *h)
{
    return uv_tcp_keepalive(h, 1, 60);
}

static void on_public(bw_acceptor_t *a, void *ud)
{
    listener_t *l = ud;
    hconn_t *c = l->he->stopping ? NULL : bw__hconn_new(l);
    if (!c)
        return;
    if (l->scheme == BW_SCHEME_HTTPS) {
        c->tls = bw_tls_new(l->he->loop, bw_certs_ctx(l->he->certs), 1, NULL, &tls_cbs, c);
        if (!c->tls) {
            bw__hconn_close(c, 1);
            return;
        }
        c->refs++;
        bw_tls_set_peek(c->tls, bw__hconn_peek, c);
        struct sockaddr_storage ss;
        int len = sizeof ss;
        char peer[BW_ADDRSTRLEN] = "";
        if (bw_acceptor_take(a, bw_tls_tcp(c->tls)) != 0 || keepalive(bw_tls_tcp(c->tls)) != 0 ||
            uv_tcp_getpeername(bw_tls_tcp(c->tls), (struct sockaddr *)&ss, &len) != 0 ||
            !bw_sockaddr_str((struct sockaddr *)&ss, peer, sizeof peer) ||
            bw__hconn_start(c, peer) != 0 || bw_tls_start(c->tls) != 0) {
            bw__hconn_close(c, 1);
            return;
        }
        bw__edge_sockname(bw_tls_tcp(c->tls), c->self, sizeof c->self);
        return;
    }
    c->tcp = bw_stream_tcp_new(l->he->io);
    if (!c->tcp) {
        bw__hconn_close(c, 1);
        return;
    }
    if (bw_acceptor_take(a, bw_stream_tcp_handle(c->tcp)) != 0 ||
        keepalive(bw_stream_tcp_handle(c->tcp)) != 0) {
        bw__hconn_close(c, 1);
        return;
    }
    bw_stream_tcp_ready(c->tcp);
    if (bw__hconn_start(c, bw_stream_peer(c->tcp)) != 0) {
        bw__hconn_close(c, 1);
        return;
    }
    bw__edge_sockname(bw_stream_tcp_handle(c->tcp), c->self, sizeof c->self);
    bw_stream_set_callbacks(c->tcp, &tcp_cbs, c);
}

static int listen_on(bw_http_edge_t *he, int scheme, const char *addr, char *err, size_t errlen)
{
    const char *flag = scheme == BW_SCHEME_HTTPS ? "--https-addr" : "--http-addr";
    char host[256], bound[BW_ADDRSTRLEN];
    int port, fd;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (bw_split_hostport(addr, host, sizeof host, &port) != 0 ||
        bw_resolve(host, port, &ss) != 0) {
        snprintf(err, errlen, "invalid %s '%s' (expected host:port)", flag, addr);
        return BW_EINVAL;
    }
    listener_t *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return BW_ENOMEM;
    }
    l->he = he;
    l->scheme = scheme;
    he->l[scheme] = l;
    /* An acceptor, not uv_listen: it pauses while descriptors run out
     * (accept.h). */
    fd = bw__edge_listen_fd(&ss);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s %s: %s", flag, addr, uv_strerror(fd));
        bw_log(BW_LOG_ERROR, "cannot listen", "obj", "http", "addr", addr, "err", uv_strerror(fd),
               NULL);
        return fd;
    }
    getsockname(fd, (struct sockaddr *)&ss, &len);
    l->port = bw_sockaddr_port((struct sockaddr *)&ss);
    bw_sockaddr_str((struct sockaddr *)&ss, bound, sizeof bound);
    l->acc = bw_acceptor_new(he->loop, fd, bound, bw__edge_public_fd_max(he->edge), on_public, l);
    if (!l->acc) {
        snprintf(err, errlen, "cannot listen on %s %s: out of memory", flag, addr);
        return BW_ENOMEM;
    }
    bw_log(BW_LOG_INFO, scheme == BW_SCHEME_HTTPS ? "listening for https" : "listening for http",
           "obj", "edge", "addr", bound, NULL);
    return 0;
}

static int enabled(const char *addr)
{
    return addr && *addr && strcmp(addr, "false") != 0;
}

static int addr_check(const char *flag, const char *addr, char *err, size_t errlen)
{
    char host[256];
    int port;
    struct sockaddr_storage ss;
    if (!enabled(addr))
        return 0;
    if (bw_split_hostport(addr, host, sizeof host, &port) != 0 ||
        bw_resolve(host, port, &ss) != 0) {
        snprintf(err, errlen, "invalid %s '%s' (expected host:port)", flag, addr);
        return BW_EINVAL;
    }
    return 0;
}

int bw_http_edge_config_check(const bw_edge_config_t *cfg, char *err, size_t errlen)
{
    int rc = addr_check("--http-addr", cfg->http_addr, err, errlen);
    return rc ? rc : addr_check("--https-addr", cfg->https_addr, err, errlen);
}

bw_http_edge_t *bw_http_edge_new(bw_io_t *io, bw_edge_t *e, const bw_edge_config_t *cfg, char *err,
                                 size_t errlen)
{
    bw_http_edge_t *he = calloc(1, sizeof *he);
    if (!he) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    he->io = io;
    he->loop = bw_io_loop(io);
    he->edge = e;
    he->header_ms = cfg->http_header_timeout_ms ? cfg->http_header_timeout_ms : 10000;
    he->idle_ms = cfg->http_idle_ms ? cfg->http_idle_ms : 90000;
    he->body_ms = cfg->http_body_timeout_ms ? cfg->http_body_timeout_ms : 30000;
    /* Certificates first: a file that does not load stops burrowd before
     * any listener opens. */
    if (enabled(cfg->https_addr)) {
        he->certs = bw_certs_new(cfg->state_dir, cfg->domain ? cfg->domain : "localhost",
                                 cfg->host_certs, cfg->n_host_certs, err, errlen);
        if (!he->certs)
            goto fail;
    }
    if (enabled(cfg->http_addr) && listen_on(he, BW_SCHEME_HTTP, cfg->http_addr, err, errlen))
        goto fail;
    if (enabled(cfg->https_addr) && listen_on(he, BW_SCHEME_HTTPS, cfg->https_addr, err, errlen))
        goto fail;
    return he;
fail:
    bw_http_edge_stop(he);
    uv_run(he->loop, UV_RUN_NOWAIT);
    bw_http_edge_free(he);
    return NULL;
}

bw_certs_t *bw_http_edge_certs(const bw_http_edge_t *h)
{
    return h ? h->certs : NULL;
}

int bw_http_edge_port(const bw_http_edge_t *h, int scheme)
{
    return h && h->l[scheme] ? h->l[scheme]->port : 0;
}

void bw_http_edge_stop(bw_http_edge_t *h)
{
    if (!h || h->stopping)
        return;
    h->stopping = 1;
    for (int i = 0; i < 2; i++)
        if (h->l[i]) {
            bw_acceptor_close(h->l[i]->acc);
            free(h->l[i]);
            h->l[i] = NULL;
        }
    hconn_t *c;
    while ((c = BW_LIST_FIRST(&h->conns, hconn_t, node)))
        bw__hconn_close(c, 1); /* unlinks c */
}

void bw_http_edge_free(bw_http_edge_t *h)
{
    if (!h)
        return;
    bw_certs_free(h->certs);
    free(h);
}
