/* Per-request policies of the http plugin without I/O: CIDR lists and Basic
 * authentication. */
#ifndef BW_HTTP_POLICY_H
#define BW_HTTP_POLICY_H

#include <stddef.h>
#include <stdint.h>

typedef struct http_cidr {
    int v6;
    uint8_t addr[16];
    unsigned bits;
} http_cidr_t;

/* Parse "10.0.0.0/8", "::1/128" or a bare address (a /32 or /128).
 * Returns 0 or BW_EINVAL. */
int http_cidr_parse(const char *s, http_cidr_t *out);
/* Does `ip` (textual, IPv4 or IPv6; IPv4-mapped IPv6 counts as IPv4) fall
 * in c? Returns 1/0; 0 when ip does not parse. */
int http_cidr_match(const http_cidr_t *c, const char *ip);
/* May `ip` connect: not in deny, and in allow when allow is non-empty. */
int http_ip_allowed(const http_cidr_t *allow, size_t n_allow, const http_cidr_t *deny,
                    size_t n_deny, const char *ip);

/* Does an Authorization header value ("Basic base64(user:pass)") carry one
 * of creds[] ("user:pass")? Returns 1/0. */
int http_basic_auth_ok(const char *value, size_t len, char *const *creds, size_t n_creds);

#endif
