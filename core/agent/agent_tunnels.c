/* The agent's tunnels: their records, Bind and BindResp, resume of the last
 * address, and twins that bind after their leader. See docs/protocol.md. */
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

void bw__agent_tunnel_free(agent_tunnel_t *at)
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
void bw__agent_tunnel_unlink(bw_agent_t *a, agent_tunnel_t *at)
{
    for (agent_tunnel_t **p = &a->tunnels; *p; p = &(*p)->next)
        if (*p == at) {
            *p = at->next;
            return;
        }
}

/* The first bind of a tunnel started with a callback failed: report it and
 * forget the tunnel. */
void bw__agent_tunnel_refused(bw_agent_t *a, agent_tunnel_t *at, int status, const char *err)
{
    bw_agent_bind_cb cb = at->cb;
    at->cb = NULL;
    bw__agent_tunnel_unlink(a, at);
    cb(at->cb_ud, status, err, NULL);
    bw__agent_tunnel_free(at);
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
void bw__agent_try_bind(bw_agent_t *a, agent_tunnel_t *at)
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
int bw__agent_take_leader_host(agent_tunnel_t *f, const agent_tunnel_t *leader)
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
void bw__agent_bind_followers(bw_agent_t *a, agent_tunnel_t *at)
{
    for (agent_tunnel_t *f = a->tunnels; f; f = f->next)
        if (f->leader == at && f->waits && bw__agent_take_leader_host(f, at) == 0) {
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
            bw__agent_tunnel_refused(a, f, BW_EACCES, err);
            f = a->tunnels; /* the list changed */
            continue;
        }
        f = f->next;
    }
}

/* `at` is going away: its twins carry on alone; one still waiting for it
 * binds now on what it asked for itself. */
void bw__agent_forget_leader(bw_agent_t *a, agent_tunnel_t *at)
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

#define REBIND_FIRST_MS 500
#define REBIND_MAX_MS   30000

static void rebind_fired(uv_timer_t *h);

/* Start the timer for the earliest re-bind due, if any. */
static void schedule_rebind(bw_agent_t *a)
{
    uint64_t next = 0, now = uv_now(a->loop);
    for (agent_tunnel_t *at = a->tunnels; at; at = at->next)
        if (at->rebind_at && (!next || at->rebind_at < next))
            next = at->rebind_at;
    if (next && !a->stopping)
        uv_timer_start(&a->rebind, rebind_fired, next > now ? next - now : 0, 0);
}

static void rebind_fired(uv_timer_t *h)
{
    bw_agent_t *a = BW_CONTAINER_OF(h, bw_agent_t, rebind);
    uint64_t now = uv_now(a->loop);
    for (agent_tunnel_t *at = a->tunnels; at; at = at->next)
        if (at->rebind_at && at->rebind_at <= now) {
            at->rebind_at = 0;
            if (a->authed && a->ctl && !at->bound && !at->req_id[0])
                send_bind(a, at);
        }
    schedule_rebind(a);
}

void bw__agent_rebinds_reset(bw_agent_t *a)
{
    uv_timer_stop(&a->rebind);
    for (agent_tunnel_t *at = a->tunnels; at; at = at->next)
        at->rebind_at = at->rebind_delay_ms = 0;
}

/* A tunnel that had an address lost it (another client holds it now): it
 * shows no URL but the reason, and asks again with a capped backoff while
 * the session lives (docs/api.md "Failed tunnels"). */
static void rebind_refused(bw_agent_t *a, agent_tunnel_t *at, const char *err)
{
    char retry[32];
    at->rebind_delay_ms = at->rebind_delay_ms ? at->rebind_delay_ms * 2 : REBIND_FIRST_MS;
    if (at->rebind_delay_ms > REBIND_MAX_MS)
        at->rebind_delay_ms = REBIND_MAX_MS;
    at->rebind_at = uv_now(a->loop) + at->rebind_delay_ms;
    bw_tunnel_set_url(at->t, "");
    snprintf(at->t->bind_error, sizeof at->t->bind_error, "%s", err);
    snprintf(retry, sizeof retry, "%gs", (double)at->rebind_delay_ms / 1000);
    bw_log(BW_LOG_WARN, "tunnel address refused, retrying", "obj", "tunnels", "name", at->t->name,
           "err", err, "retry", retry, NULL);
    schedule_rebind(a);
}

void bw__agent_on_bind_resp(bw_agent_t *a, const json_t *m)
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
    if (*err && at->ever_bound && !at->cb) {
        refuse_followers(a, at, err);
        rebind_refused(a, at, err);
        return;
    }
    if (*err) {
        bw_log(BW_LOG_ERROR, "failed to start tunnel", "obj", "tunnels", "name", at->t->name, "err",
               err, NULL);
        refuse_followers(a, at, err);
        if (at->cb) {
            bw__agent_forget_leader(a, at);
            bw__agent_tunnel_refused(a, at, BW_EACCES, err);
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
    at->rebind_at = at->rebind_delay_ms = 0;
    at->t->bind_error[0] = '\0';
    remember_address(at);
    bw_log(BW_LOG_INFO, "started tunnel", "obj", "tunnels", "name", at->t->name, "addr",
           at->t->addr, "url", at->t->public_url, NULL);
    bw__agent_bind_followers(a, at);
    if (at->cb) {
        bw_agent_bind_cb cb = at->cb;
        at->cb = NULL;
        cb(at->cb_ud, 0, "", at->t);
    }
}
