/* burrowd: the edge. Accepts agent sessions (TLS + yamux), authenticates
 * them, binds public addresses for their tunnels and carries every public
 * connection to the agent that owns it (docs/protocol.md, docs/edge.md). */
#ifndef BW_EDGE_EDGE_H
#define BW_EDGE_EDGE_H

#include <stdint.h>

#include <uv.h>

#include "stream.h"

typedef struct bw_edge bw_edge_t;

typedef struct bw_edge_config {
    const char *agent_addr; /* "127.0.0.1:4443" */
    const char *tcp_addr;   /* interface TCP tunnel ports bind on: "127.0.0.1" */
    int tcp_port_lo, tcp_port_hi;
    const char *domain;    /* public domain for URLs: "localhost" */
    const char *state_dir; /* dev certificates */
    const char *tls_cert, *tls_key;
    const char *auth_tokens;  /* file, or NULL */
    uint64_t grace_ms;        /* how long a lost session's addresses stay reserved */
    uint64_t handshake_ms;    /* an agent's TLS handshake must end within this (0: 10 s) */
    uint64_t auth_timeout_ms; /* Auth must arrive within this of the handshake's end */
    uint64_t idle_ms;         /* a session silent this long (from the handshake's end) is dead */
    unsigned max_tunnels;     /* per session */
    uint32_t max_window;
    /* Public HTTP/HTTPS listeners ("host:port"; NULL, "" or "false": off). */
    const char *http_addr, *https_addr;
    const char *const *host_certs; /* "CERT.pem:KEY.pem" for the HTTPS listener */
    size_t n_host_certs;
    uint64_t http_header_timeout_ms; /* a request head must be complete within this */
    uint64_t http_idle_ms;           /* a public connection silent this long is closed */
    uint64_t http_body_timeout_ms;   /* a request body must bring 1 KiB (or its end) this often */
    /* Failed authentications per source IP: this many are free, then the
     * address is locked out for auth_lock_ms, doubling per further failure
     * (0: 5 and 1 s; docs/edge.md "Authentication"). */
    unsigned auth_fail_free;
    uint64_t auth_lock_ms;
    /* Public connections (http, https and tcp tunnel ports) open at once
     * from one source IP and in all; past them new ones are closed at once
     * (0: 256 per IP, no total; docs/edge.md "Descriptors and public
     * connections"). */
    unsigned max_conns_per_ip, max_public_conns;
} bw_edge_config_t;

/* Check the settings without opening or creating anything: addresses parse
 * and resolve, and a non-loopback agent listener has tokens. Returns 0, or
 * < 0 with err[errlen] naming the flag and the value. */
int bw_edge_config_check(const bw_edge_config_t *cfg, char *err, size_t errlen);

/* Create the edge on `io` (its loop and streams; the caller keeps it):
 * settings checked, files loaded, then the listeners opened. Returns NULL
 * with err[errlen] when anything is wrong, having closed whatever it
 * opened. */
bw_edge_t *bw_edge_new(bw_io_t *io, const bw_edge_config_t *cfg, char *err, size_t errlen);

/* Close every listener and session; the loop then runs dry. */
void bw_edge_stop(bw_edge_t *e);

/* Free after the loop finished. NULL-safe. */
void bw_edge_free(bw_edge_t *e);

#endif /* BW_EDGE_EDGE_H */
