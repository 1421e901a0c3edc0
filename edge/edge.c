/* burrowd: the edge's lifecycle. Checks the settings, loads tokens and
 * certificates, opens the agent listener, and stops and frees the edge.
 * Sessions live in edge_session.c, ports and public connections in
 * edge_public.c. See edge.h and docs/protocol.md. */
#include "edge.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
        if (e->n_tokens == BW_EDGE_MAX_TOKENS) {
            snprintf(err, errlen, "%s:%u: too many tokens (at most %d)", path, lineno,
                     BW_EDGE_MAX_TOKENS);
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
        rc = uv_listen((uv_stream_t *)&e->agents, 511, bw__edge_agent_conn);
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

static void close_report_timer(bw_edge_t *e)
{
    if (e->report_timer_open && !uv_is_closing((uv_handle_t *)&e->report_timer))
        uv_close((uv_handle_t *)&e->report_timer, NULL);
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
    bw_auth_throttle_cfg_t tc = {.free_failures = cfg->auth_fail_free,
                                 .base_ms = cfg->auth_lock_ms};
    e->throttle = bw_auth_throttle_new(&tc);
    e->limit = bw_conn_limit_new(cfg->max_conns_per_ip ? cfg->max_conns_per_ip : 256,
                                 cfg->max_public_conns);
    if (!e->domain || !e->tcp_addr || !(e->hosts = bw_hosts_new()) || !e->throttle || !e->limit) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* Every setting is checked and every file loaded before the first
     * listener opens: a refused setting never leaves a port half open. */
    if (bw_edge_config_check(cfg, err, errlen) != 0)
        goto fail;
    if (cfg->auth_tokens && load_tokens(e, cfg->auth_tokens, err, errlen) != 0)
        goto fail;
    /* Every file is read before the first is written: a --host-cert that
     * does not load (even with HTTPS off) leaves no dev CA behind. */
    if (bw_certs_check(cfg->host_certs, cfg->n_host_certs, err, errlen) != 0)
        goto fail;
    if (setup_tls(e, err, errlen) != 0)
        goto fail;
    /* Before any listener: public ones leave the agents a reserve of it. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur <= 0x7fffffff)
        e->fd_limit = (unsigned)rl.rlim_cur;
    /* Before any listener: no agent may bind what a previous run held. */
    bw_hosts_on_gone(e->hosts, bw__edge_host_gone, e);
    bw__edge_state_load(e);
    if (!(e->http = bw_http_edge_new(io, e, cfg, err, errlen)))
        goto fail;
    if (listen_agents(e, err, errlen) != 0)
        goto fail;
    uv_timer_init(e->loop, &e->report_timer);
    e->report_timer_open = 1;
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
    close_report_timer(e);
    bw_http_edge_stop(e->http);
    edge_session_t *s;
    while ((s = BW_LIST_FIRST(&e->sessions, edge_session_t, node)))
        bw__edge_session_end(s, "edge shutting down"); /* unlinks s */
}

void bw_edge_free(bw_edge_t *e)
{
    if (!e)
        return;
    while (e->reservations) {
        reservation_t *r = e->reservations;
        e->reservations = r->next;
        bw__edge_reservation_free(r);
    }
    for (size_t i = 0; i < e->n_tokens; i++)
        free(e->tokens[i]);
    bw_http_edge_free(e->http);
    bw_hosts_free(e->hosts);
    bw_auth_throttle_free(e->throttle);
    bw_conn_limit_free(e->limit);
    SSL_CTX_free(e->ctx);
    free(e->domain);
    free(e->tcp_addr);
    free(e);
}
