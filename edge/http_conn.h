/* One public HTTP/HTTPS connection of the edge (http_conn.c) and the
 * listeners that accept them (http_edge.c). Private to those two files. */
#ifndef BW_EDGE_HTTP_CONN_H
#define BW_EDGE_HTTP_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "edge_int.h"
#include "http_rewrite.h"
#include "list.h"
#include "tls.h"
#include "util.h"

enum { T_HEAD, T_BODY, T_IDLE, T_DRAIN, T_LINGER, T_FLUSH, T_NONE };

typedef struct hconn hconn_t;

typedef struct listener {
    bw_http_edge_t *he;
    int scheme;
    int port;
    bw_acceptor_t *acc;
} listener_t;

struct bw_http_edge {
    bw_io_t *io; /* borrowed */
    uv_loop_t *loop;
    bw_edge_t *edge;
    listener_t *l[2];
    bw_certs_t *certs;
    uint64_t header_ms, idle_ms, body_ms;
    bw_list_t conns; /* hconn_t, open ones */
    int stopping;
};

struct hconn {
    bw_http_edge_t *he;
    int scheme;
    bw_stream_t *tcp; /* the public side over http */
    bw_tls_t *tls;    /* ... or over https */
    bw_stream_t *agent;
    bw_hrw_t *rw;
    uv_timer_t timer;
    int tkind;
    unsigned refs; /* the timer, and the TLS object */
    char client[BW_ADDRSTRLEN], ip[BW_ADDRSTRLEN], sni[256];
    char self[BW_ADDRSTRLEN]; /* the listener's address the client reached */
    char tunnel_id[BW_TUNNEL_ID_LEN], host[BW_HRW_HOSTLEN];
    int status;             /* the error answer waiting for the agent's response */
    size_t flush_left;      /* T_FLUSH: TLS bytes queued at the last poll */
    uint64_t flush_idle_ms; /* T_FLUSH: how long they have not moved */
    char text[320];
    size_t body_bytes; /* T_BODY: client bytes since the timer was armed */
    uint8_t *hello;    /* https: a ClientHello still incomplete (tls_route.c) */
    size_t hello_len;
    unsigned client_eof : 1, agent_eof : 1, closing : 1, draining : 1, lingering : 1;
    unsigned pub_paused : 1, agent_paused : 1, shut : 1;
    unsigned up_wait : 1;       /* client reading stopped: an Upgrade awaits its answer */
    unsigned handshaken : 1;    /* https: TLS is up, answers can be written */
    unsigned counted : 1;       /* against the edge's connection caps (ip) */
    unsigned body_answered : 1; /* T_BODY: the agent sent bytes since the body began */
    bw_list_node_t node;        /* on he->conns until it closes */
};

/* A connection accepted on l, before its transport exists: the owner sets
 * c->tcp or c->tls (and a reference for it), then calls bw__hconn_start.
 * Returns NULL on allocation failure. */
hconn_t *bw__hconn_new(listener_t *l);
/* The client is `peer` ("ip:port"): count it against the edge's connection
 * caps, start its rewriter and header timer. Returns 0, BW_EAGAIN when a cap
 * refuses it, or BW_ENOMEM; the caller then closes c. */
int bw__hconn_start(hconn_t *c, const char *peer);
/* What the public transport reports. */
void bw__hconn_data(hconn_t *c, const uint8_t *data, size_t len);
void bw__hconn_eof(hconn_t *c);
void bw__hconn_drain(hconn_t *c);
/* Close both sides (abort: reset them); c goes once its handles closed. */
void bw__hconn_close(hconn_t *c, int abort);
/* Drop a reference (the TLS object's on_close does). */
void bw__hconn_unref(hconn_t *c);

/* tls_route.c: the bw_tls_peek_cb of https connections (ud: the hconn):
 * routes on the ClientHello's SNI to a tls tunnel, or lets TLS go on. */
int bw__hconn_peek(bw_tls_t *t, void *ud, const uint8_t *data, size_t len, const uint8_t **feed,
                   size_t *feed_len);

#endif /* BW_EDGE_HTTP_CONN_H */
