/* Hostnames of http/https tunnels: who holds which name for which scheme,
 * and names kept for a lost session's client during the grace period
 * (docs/edge.md, "Hostnames"). */
#ifndef BW_EDGE_HOSTNAMES_H
#define BW_EDGE_HOSTNAMES_H

#include <stddef.h>
#include <stdint.h>

#define BW_HOSTNAME_MAX 253

/* The HTTPS listener serves https and tls tunnels on one port, routed by
 * SNI, so a name is held as one of those two, never both. */
enum { BW_SCHEME_HTTP = 0, BW_SCHEME_HTTPS = 1, BW_SCHEME_TLS = 2, BW_SCHEMES = 3 };

/* "http", "https" or "tls". */
const char *bw_scheme_name(int scheme);

typedef struct bw_hosts bw_hosts_t;

/* Check a DNS name (letters, digits, hyphens, dots; at most 253 bytes,
 * labels 1..63) and copy it lowercased into out[BW_HOSTNAME_MAX + 1].
 * Returns 0, or BW_EINVAL with why[whylen] saying what is wrong. */
int bw_hostname_check(const char *in, char *out, char *why, size_t whylen);

/* An empty registry, or NULL on allocation failure. */
bw_hosts_t *bw_hosts_new(void);
/* Called when a name stops being held or reserved for `scheme` (unbind,
 * expired reservation, a reservation taken over by its client's new bind),
 * with the lowercased name. */
typedef void (*bw_hosts_gone_cb)(void *arg, const char *host, int scheme);
void bw_hosts_on_gone(bw_hosts_t *h, bw_hosts_gone_cb cb, void *arg);

/* Frees every entry, without calling the on_gone callback. NULL-safe. */
void bw_hosts_free(bw_hosts_t *h);

/* Give `host` for `scheme` to `tunnel` of session `sess` (client `client`,
 * token `token`). A session may hold a name once per scheme; a name held
 * by another session, or reserved for another client, is refused, and so
 * is a name held or reserved as https for tls and the other way round. A
 * reservation of the same client for this scheme is taken over. Returns 0,
 * BW_EEXIST or BW_ENOMEM. */
int bw_hosts_claim(bw_hosts_t *h, const char *host, int scheme, const void *sess,
                   const char *client, const char *token, void *tunnel, uint64_t now);

/* Whether `host` is held or reserved by anyone but `client`/`token`, for any
 * scheme (used before picking a random name). */
int bw_hosts_taken(bw_hosts_t *h, const char *host, const char *client, const char *token,
                   uint64_t now);

/* Who asks for a name in a Bind (docs/protocol.md §5.3). */
typedef struct bw_host_req {
    const char *domain;    /* the edge's --domain */
    const char *subdomain; /* "" when not asked */
    const char *hostname;  /* "" when not asked */
    int scheme;
    const void *sess;
    const char *client, *token;
    void *tunnel;
    uint64_t now;
} bw_host_req_t;

/* Choose the name for a Bind (<subdomain>.<domain>, the hostname, or a
 * random 16-hex-digit subdomain) and claim it. Returns 0 with the name in
 * host[BW_HOSTNAME_MAX + 1], or < 0 with the BindResp error in err. */
int bw_hosts_bind(bw_hosts_t *h, const bw_host_req_t *req, char *host, char *err, size_t errlen);

/* Whether a name is reserved for client/token (its session may resume). */
int bw_hosts_reserved_for(bw_hosts_t *h, const char *client, const char *token, uint64_t now);

/* Forget the name of `tunnel` (unbind). */
void bw_hosts_release(bw_hosts_t *h, const void *tunnel);

/* The session of `tunnel` is gone: keep its name for its client until
 * `expires`. */
void bw_hosts_reserve(bw_hosts_t *h, const void *tunnel, uint64_t expires);

/* The tunnel serving `host` for `scheme`, or NULL; *held is set to 1 when
 * the name is only reserved (its session is gone). */
/* Hold `host` for `scheme` for client/token until `expires` (as if a lost
 * session had it), unless someone holds it already: a reservation loaded
 * from disk. Returns 0, BW_EEXIST or BW_ENOMEM. */
int bw_hosts_hold(bw_hosts_t *h, const char *host, int scheme, const char *client,
                  const char *token, uint64_t expires);

/* Every name held or reserved at `now`: cb(arg, host, scheme, client,
 * token, live, expires) with live set for a bound tunnel (expires is then
 * meaningless). */
typedef void (*bw_hosts_each_cb)(void *arg, const char *host, int scheme, const char *client,
                                 const char *token, int live, uint64_t expires);
void bw_hosts_each(bw_hosts_t *h, uint64_t now, bw_hosts_each_cb cb, void *arg);

void *bw_hosts_find(bw_hosts_t *h, const char *host, int scheme, uint64_t now, int *held);

#endif /* BW_EDGE_HOSTNAMES_H */
