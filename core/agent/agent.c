/* The agent runtime's public API: creation, tunnels added and removed,
 * start, stop. Tunnel binds are in agent_tunnels.c, the session to the edge
 * in agent_session.c. See agent.h and docs/protocol.md. */
#include "agent.h"

#include "addr.h"

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
#include "tunnel_def.h"
#include "util.h"

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

_Static_assert(BW_CONFIG_MAX_AUTHTOKEN == BW_PROTO_MAX_STR,
               "config check must refuse exactly the tokens Auth cannot carry");

int bw_agent_check_root_cas(const char *root_cas, char *err, size_t errlen)
{
    SSL_CTX *ctx = client_ctx(root_cas, err, errlen);
    if (!ctx)
        return BW_EINVAL;
    SSL_CTX_free(ctx);
    return 0;
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
    /* Auth carries the token; the edge would refuse a longer one only
     * after we connected, and we would then retry forever. */
    if (strlen(a->authtoken) > BW_PROTO_MAX_STR) {
        snprintf(err, errlen, "the authtoken is %zu bytes, longer than the protocol's limit of %d",
                 strlen(a->authtoken), BW_PROTO_MAX_STR);
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
    uv_timer_init(a->loop, &a->rebind);
    return a;
fail:
    bw_capture_store_free(a->captures);
    free(a->server_addr);
    free(a->authtoken);
    free(a);
    return NULL;
}

/* Messages name the tunnel as the user wrote it (a twin's definition). */
static const char *spec_label(const bw_tunnel_spec_t *spec)
{
    return spec->label ? spec->label : spec->name;
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
    int rc = bw__tunnel_addr(p, spec->addr, spec_label(spec), addr, sizeof addr, err, errlen);
    if (rc < 0)
        return rc;
    json_t *empty = spec->options ? NULL : json_object();
    rc = bw_conf_build(p->desc.options, spec->options ? spec->options : empty, 0, &conf, err,
                       errlen);
    json_decref(empty);
    if (rc < 0)
        return rc;
    bw_error_t e = {{0}};
    if (p->desc.validate && (rc = p->desc.validate(p->state, &conf, spec_label(spec), &e)) < 0) {
        snprintf(err, errlen, "%s", e.msg);
        bw_conf_free(&conf);
        return rc;
    }
    bw_conf_warn_unused(&conf, spec->name);
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
        bw__agent_tunnel_free(at);
        return rc < 0 ? rc : BW_ENOMEM;
    }
    at->cb = cb;
    at->cb_ud = ud;
    if (spec->follows) {
        for (at->leader = a->tunnels; at->leader; at->leader = at->leader->next)
            if (strcmp(at->leader->t->name, spec->follows) == 0)
                break;
        if (at->leader && at->leader->ever_bound)
            bw__agent_take_leader_host(at, at->leader);
        else if (at->leader)
            at->waits = 1; /* bind_followers sends it on the leader's host */
    }
    /* Appended: the API lists tunnels in the order they were started. */
    agent_tunnel_t **tail = &a->tunnels;
    while (*tail)
        tail = &(*tail)->next;
    *tail = at;
    if (a->authed)
        bw__agent_try_bind(a, at);
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
    bw__agent_tunnel_unlink(a, at);
    bw__agent_forget_leader(a, at);
    if (at->cb) {
        bw_agent_bind_cb cb = at->cb;
        at->cb = NULL;
        cb(at->cb_ud, BW_ECANCELED, "tunnel stopped before it was bound", NULL);
    }
    bw__agent_tunnel_free(at);
    return 0;
}

bw_registry_t *bw_agent_registry(bw_agent_t *a)
{
    return a->reg;
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
    bw__agent_connect(a);
    return 0;
}

void bw_agent_stop(bw_agent_t *a)
{
    if (a->stopping)
        return;
    a->stopping = 1;
    if (a->link)
        bw_link_close(a->link, BW_MUX_GOAWAY_NORMAL);
    bw__agent_session_lost(a);
    while (a->tunnels) {
        agent_tunnel_t *at = a->tunnels;
        a->tunnels = at->next;
        bw__agent_tunnel_free(at);
    }
    if (!uv_is_closing((uv_handle_t *)&a->retry))
        uv_close((uv_handle_t *)&a->retry, NULL);
    if (!uv_is_closing((uv_handle_t *)&a->rebind))
        uv_close((uv_handle_t *)&a->rebind, NULL);
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
        bw__agent_tunnel_free(at);
    }
    bw_capture_store_free(a->captures);
    SSL_CTX_free(a->ctx);
    free(a->server_addr);
    free(a->authtoken);
    free(a);
}
