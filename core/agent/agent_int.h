/* What the parts of the agent runtime share: agent.c (the public API),
 * agent_tunnels.c (tunnel records, binds, twins) and agent_session.c (the
 * session to the edge: connect, control messages, reconnect, public
 * connections). */
#ifndef BW_AGENT_AGENT_INT_H
#define BW_AGENT_AGENT_INT_H

#include <jansson.h>

#include "agent.h"
#include "capture.h"
#include "control.h"
#include "link.h"
#include "tls.h"

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
    /* A refused re-bind is retried on the same session: the next attempt's
     * loop time (0: none due) and the current, doubling, delay. */
    uint64_t rebind_at, rebind_delay_ms;
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

    uv_timer_t retry;  /* reconnect backoff and connect timeout */
    uv_timer_t rebind; /* the next retry of a refused re-bind */
    uint64_t backoff_ms;
    uint64_t authed_at; /* loop time of the last successful AuthResp */
    int stopping;
    int exit_code;
};

/* agent_tunnels.c */

/* Free `at` and its tunnel. NULL-safe. */
void bw__agent_tunnel_free(agent_tunnel_t *at);
/* Take `at` out of the list (it is not freed). */
void bw__agent_tunnel_unlink(bw_agent_t *a, agent_tunnel_t *at);
/* The first bind of a tunnel started with a callback failed: report it and
 * forget the tunnel. */
void bw__agent_tunnel_refused(bw_agent_t *a, agent_tunnel_t *at, int status, const char *err);
/* Bind `at` now unless it is a twin still waiting for its leader's host. */
void bw__agent_try_bind(bw_agent_t *a, agent_tunnel_t *at);
/* Twin `f` asks for exactly the host its leader got. Returns 0 or BW_ENOMEM. */
int bw__agent_take_leader_host(agent_tunnel_t *f, const agent_tunnel_t *leader);
/* The leader `at` is bound: its waiting twins ask for the same host. */
void bw__agent_bind_followers(bw_agent_t *a, agent_tunnel_t *at);
/* Re-binds refused since the last AuthResp: forget them, every tunnel binds
 * afresh on a new session. */
void bw__agent_rebinds_reset(bw_agent_t *a);
/* `at` is going away: its twins carry on alone; one still waiting for it
 * binds now on what it asked for itself. */
void bw__agent_forget_leader(bw_agent_t *a, agent_tunnel_t *at);
/* A BindResp arrived on the control stream. */
void bw__agent_on_bind_resp(bw_agent_t *a, const json_t *m);

/* agent_session.c */

/* The session is gone: tunnels are unbound, first binds waiting for it are
 * refused, and (unless stopping) a reconnect is scheduled. */
void bw__agent_session_lost(bw_agent_t *a);
/* Start connecting to the edge; failures schedule a reconnect. */
void bw__agent_connect(bw_agent_t *a);

#endif /* BW_AGENT_AGENT_INT_H */
