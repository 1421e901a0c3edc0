/* What the edge's parts share: edge.c (sessions, binds) offers routing of
 * http/https requests to a tunnel's session; http_edge.c runs the public
 * HTTP and HTTPS listeners on top of it. */
#ifndef BW_EDGE_EDGE_INT_H
#define BW_EDGE_EDGE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "edge.h"
#include "stream.h"

#define BW_TUNNEL_ID_LEN 33

/* ---- edge.c ---- */

/* The tunnel serving `host` (lowercased, no port) on the listener of
 * `scheme` (BW_SCHEME_*): 0 with its id in tunnel_id, BW_ENOENT when no one
 * holds the name, BW_ECONNABORTED when it is held but its agent is not
 * connected. */
int bw__edge_http_route(bw_edge_t *e, int scheme, const char *host,
                        char tunnel_id[BW_TUNNEL_ID_LEN]);

/* Route as above and open a stream to the agent carrying the Conn header
 * (client_addr, server_name). Returns 0 with a new stream in *out (the
 * caller owns it) and the tunnel id, or BW_ENOENT / BW_ECONNABORTED. */
int bw__edge_http_open(bw_edge_t *e, int scheme, const char *host, const char *client_addr,
                       const char *server_name, char tunnel_id[BW_TUNNEL_ID_LEN],
                       bw_stream_t **out);

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

#endif /* BW_EDGE_EDGE_INT_H */
