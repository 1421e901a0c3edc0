/* A link: one TCP connection carrying TLS carrying yamux, the session
 * transport between an agent and the edge (docs/protocol.md). It wires the
 * TLS object and the yamux engine together (bytes in, frames out,
 * backpressure both ways), runs the heartbeat, and turns every way a session
 * can die into one on_closed callback.
 */
#ifndef BW_CORE_LINK_H
#define BW_CORE_LINK_H

#include <jansson.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "yamux.h"

typedef struct bw_link bw_link_t;

typedef struct bw_link_cbs {
    /* TLS is up (status 0) or the connection/handshake failed (< 0, then
     * on_closed follows). */
    void (*on_ready)(bw_link_t *l, void *ud, int status);
    /* The peer opened a yamux stream; see bw_mux_callbacks_t.on_stream. */
    void (*on_stream)(bw_link_t *l, void *ud, bw_mux_stream_t *ms);
    /* The link died by itself (peer, network, heartbeat, protocol error).
     * Called once, never after bw_link_close(). The link is freed later;
     * do not use it after this returns. */
    void (*on_closed)(bw_link_t *l, void *ud, int err, const char *reason);
} bw_link_cbs_t;

typedef struct bw_link_config {
    int is_client;
    const char *server_name; /* client: SNI and the name verified */
    uint64_t heartbeat_ms;   /* client: ping interval; 0 disables */
    uint64_t tolerance_ms;   /* client: dead when no pong for this long */
    uint64_t idle_ms;        /* server: dead when nothing arrives for this long, counted
                              * from the end of the TLS handshake */
    uint64_t handshake_ms;   /* server: the TLS handshake must end within this of
                              * bw_link_start; 0: no bound of its own */
    uint32_t max_window;     /* yamux receive window ceiling */
} bw_link_config_t;

/* Create a link. Returns a new link or NULL. `ctx` is referenced. */
bw_link_t *bw_link_new(uv_loop_t *loop, SSL_CTX *ctx, const bw_link_config_t *cfg,
                       const bw_link_cbs_t *cbs, void *ud);
/* The TCP handle to uv_accept() into (server side). */
uv_tcp_t *bw_link_tcp(bw_link_t *l);
/* Client: connect and handshake. Server: start the handshake on an accepted
 * handle (addr == NULL). Returns 0 or < 0 (then nothing is called back). */
int bw_link_start(bw_link_t *l, const struct sockaddr *addr);
/* The multiplexer (valid from creation until close). */
bw_mux_t *bw_link_mux(bw_link_t *l);
/* "ip:port" of the peer. */
const char *bw_link_peer(bw_link_t *l);
/* Round-trip time of the last heartbeat, ns (0 before one). */
uint64_t bw_link_rtt(bw_link_t *l);

/* Close: go-away with `code`, TLS close, every stream aborted (their owners
 * see BW_ECONNABORTED). No on_closed follows. Safe from any callback. */
void bw_link_close(bw_link_t *l, uint32_t code);

/* Send one control message (a frame of control.h) on `ms`. Returns 0 or < 0. */
int bw_link_send_msg(bw_mux_stream_t *ms, json_t *msg);

#endif /* BW_CORE_LINK_H */
