/* What the edge's parts share: edge.c (setup), edge_session.c (agent
 * sessions, control messages, binds) and edge_public.c (ports, reservations,
 * public connections) share the edge's state and offer routing of http/https
 * requests to a tunnel's session; http_edge.c runs the public HTTP and HTTPS
 * listeners on top of it. */
#ifndef BW_EDGE_EDGE_INT_H
#define BW_EDGE_EDGE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "accept.h"
#include "auth_throttle.h"
#include "conn_limit.h"
#include "control.h"
#include "edge.h"
#include "hostnames.h"
#include "link.h"
#include "list.h"
#include "stream.h"
#include "util.h"

#define BW_TUNNEL_ID_LEN 33

/* ---- edge_public.c ---- */

/* The tunnel serving `host` (lowercased, no port) as `scheme` (BW_SCHEME_*;
 * tls tunnels are on the HTTPS listener): 0 with its id in tunnel_id, BW_ENOENT when no one
 * holds the name, BW_ECONNABORTED when it is held but its agent is not
 * connected. */
int bw__edge_http_route(bw_edge_t *e, int scheme, const char *host,
                        char tunnel_id[BW_TUNNEL_ID_LEN]);

/* Route as above and open a stream to the agent carrying the Conn header
 * (client_addr, server_name, server_addr: the public socket's own address,
 * "" when unknown). Returns 0 with a new stream in *out (the
 * caller owns it) and the tunnel id, or BW_ENOENT / BW_ECONNABORTED. */
int bw__edge_http_open(bw_edge_t *e, int scheme, const char *host, const char *client_addr,
                       const char *server_name, const char *server_addr,
                       char tunnel_id[BW_TUNNEL_ID_LEN], bw_stream_t **out);

/* ---- http_edge.c ---- */

typedef struct bw_http_edge bw_http_edge_t;

/* Check --http-addr/--https-addr without binding. Returns 0 or < 0 with
 * err[errlen]. */
int bw_http_edge_config_check(const bw_edge_config_t *cfg, char *err, size_t errlen);
/* Load the certificates, then start the listeners cfg asks for (http_addr/https_addr; NULL or "" is
 * off). Returns NULL with err[errlen] on failure. */
bw_http_edge_t *bw_http_edge_new(bw_io_t *io, bw_edge_t *e, const bw_edge_config_t *cfg, char *err,
                                 size_t errlen);
/* Bound port of the listener for `scheme`, 0 when it is off. */
int bw_http_edge_port(const bw_http_edge_t *h, int scheme);
/* Close the listeners and every public connection. */
void bw_http_edge_stop(bw_http_edge_t *h);
/* Free after the loop finished. NULL-safe. */
void bw_http_edge_free(bw_http_edge_t *h);

typedef struct bw_certs bw_certs_t;
/* The HTTPS listener's certificates (owned by h), or NULL when it is off. */
bw_certs_t *bw_http_edge_certs(const bw_http_edge_t *h);

/* ---- http_certs.c ---- */

/* The HTTPS listener's certificates: --host-cert pairs ("CERT:KEY", names
 * from their SAN DNS entries) and the dev wildcard certificate for
 * "*.<domain>" in state_dir. Returns NULL with err[errlen]. */
bw_certs_t *bw_certs_new(const char *state_dir, const char *domain, const char *const *host_certs,
                         size_t n, char *err, size_t errlen);
/* Load every --host-cert pair ("CERT:KEY") and let it go again: returns 0,
 * or < 0 with err[errlen] naming the flag, the file and the fault. Writes
 * nothing, so it runs before the dev CA is created. */
int bw_certs_check(const char *const *host_certs, size_t n, char *err, size_t errlen);
/* An https tunnel now holds `host` (lowercased): unless a --host-cert
 * covers it, mint a certificate for exactly that name, signed by the dev CA,
 * and serve it to that SNI until bw_certs_host_remove. A failure is logged
 * and leaves the name to the wildcard. NULL-safe. */
void bw_certs_host_add(bw_certs_t *c, const char *host);
/* The name is no longer held or reserved: forget its certificate. */
void bw_certs_host_remove(bw_certs_t *c, const char *host);
/* The context to accept with; picks the certificate by SNI. Owned by c. */
SSL_CTX *bw_certs_ctx(const bw_certs_t *c);
void bw_certs_free(bw_certs_t *c);

/* ---- the edge's state (edge.c, edge_session.c, edge_public.c) ---- */

/* An agent's TLS handshake must end within this of the accept; the Auth
 * deadline and the idle clock start when it does (docs/protocol.md). */
#define BW_EDGE_HANDSHAKE_MS 10000

#define BW_EDGE_MAX_TOKENS 1024

typedef struct edge_session edge_session_t;

typedef struct edge_tunnel {
    edge_session_t *sess;
    char id[33];
    char url[320];
    int port;
    int scheme;         /* BW_SCHEME_* for http/https/tls tunnels, -1 for tcp */
    bw_acceptor_t *acc; /* tcp tunnels only: their port's listener */
    struct edge_tunnel *next;
} edge_tunnel_t;

/* A lost session's port, kept for its client for the grace period. */
typedef struct reservation {
    char client_id[33];
    char *token; /* SHA-256 hex of the client's token */
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
    char *token; /* SHA-256 hex of the authtoken: all the edge keeps of it */
    char peer[BW_ADDRSTRLEN];
    int authed;
    int violation; /* ended by a protocol violation: logged at warn even after auth */
    int ending;
    uv_timer_t timer; /* auth timeout, then the delayed close of a refusal */
    edge_tunnel_t *tunnels;
    unsigned n_tunnels;
    bw_list_node_t node; /* on e->sessions until it ends */
};

struct bw_edge {
    bw_io_t *io; /* borrowed */
    uv_loop_t *loop;
    bw_edge_config_t cfg;
    char *domain, *tcp_addr;
    SSL_CTX *ctx;
    uv_tcp_t agents;
    int agents_open; /* `agents` is initialised and must be closed */
    char *tokens[BW_EDGE_MAX_TOKENS];
    size_t n_tokens;
    bw_list_t sessions; /* edge_session_t, newest first */
    reservation_t *reservations;
    bw_hosts_t *hosts;
    bw_http_edge_t *http;
    bw_auth_throttle_t *throttle; /* failed authentications per source IP */
    bw_conn_limit_t *limit;       /* public connections per source IP and in all */
    unsigned fd_limit;            /* RLIMIT_NOFILE at start, 0: unknown or unlimited */
    uv_timer_t report_timer;      /* logs the throttle's counts once a minute */
    int report_timer_open;
    int stopping;
};

/* edge_public.c: ports and reservations. */
void bw__edge_reservation_free(reservation_t *r);
/* Who may bind `port`: returns 0 when free for this session's client,
 * BW_EEXIST when a live tunnel or another client's reservation holds it. */
int bw__edge_port_available(bw_edge_t *e, edge_session_t *s, int port);
/* The client's reservation of `port`, if any, is used up: forget it. */
void bw__edge_reservation_take(bw_edge_t *e, int port);
/* Keep `port` for s's client (and token) for the grace period. */
void bw__edge_reserve(bw_edge_t *e, edge_session_t *s, int port);
/* A listening socket on tcp_addr:port, or < 0. */
int bw__edge_listen_port(bw_edge_t *e, int port);
/* A listening, non-blocking socket bound to `ss` (SO_REUSEADDR), or a
 * negative errno. */
int bw__edge_listen_fd(const struct sockaddr_storage *ss);

/* edge_public.c: public connections. */
/* Join public connection `pub` from `ip` (counted by bw__edge_public_admit)
 * with `priv`, its agent stream; the count is released when the join ends.
 * Takes both streams. Returns 0, or BW_ENOMEM (both closed, released). */
int bw__edge_public_join(bw_edge_t *e, const char *ip, bw_stream_t *pub, bw_stream_t *priv);
/* A tcp tunnel's port has a connection pending (bw_accept_cb, ud: the
 * edge_tunnel_t). */
void bw__edge_public_conn(bw_acceptor_t *a, void *ud);
/* A public connection from `ip` was accepted: returns 0 when it may stay
 * (counted: bw__edge_public_release it once it closes), or BW_EAGAIN when a
 * cap is reached (the caller closes it; the refusal is logged, aggregated). */
int bw__edge_public_admit(bw_edge_t *e, const char *ip);
void bw__edge_public_release(bw_edge_t *e, const char *ip);
/* Public listeners leave the last BW_EDGE_FD_RESERVE descriptors to the
 * agent listener: the fd_max of their acceptors (0: no limit known). */
#define BW_EDGE_FD_RESERVE 64
unsigned bw__edge_public_fd_max(const bw_edge_t *e);
/* The local address ("ip:port") of an accepted public connection into
 * buf[len], for the Conn header's server_addr; "" when the kernel will not
 * say. */
void bw__edge_sockname(uv_tcp_t *h, char *buf, size_t len);
/* bw_hosts_on_gone callback (arg: the edge). */
void bw__edge_host_gone(void *arg, const char *host, int scheme);
/* Release t's name or close its listener; frees t. */
void bw__edge_tunnel_close(edge_tunnel_t *t);

/* edge_state.c: the reservations file in state_dir (docs/edge.md). */
/* Write every live tunnel's address and every reservation, crash-safely;
 * a failure is logged, never fatal. Call after each change. */
void bw__edge_state_save(bw_edge_t *e);
/* Load the file written by a previous run into e's reservations; a
 * missing file is silence, an unreadable or malformed one a warning. */
void bw__edge_state_load(bw_edge_t *e);

/* edge_session.c */
/* End s: reserve its addresses (when authenticated and the edge is not
 * stopping), close its tunnels and link; s is freed from a close callback.
 * Safe to call again. */
void bw__edge_session_end(edge_session_t *s, const char *reason);
/* The agent listener accepted a connection: a new session. */
void bw__edge_agent_conn(uv_stream_t *server, int status);

#endif /* BW_EDGE_EDGE_INT_H */
