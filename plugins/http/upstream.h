/* Local (upstream) addresses of http tunnels (upstream.c). */
#ifndef BW_HTTP_UPSTREAM_H
#define BW_HTTP_UPSTREAM_H

#include <stddef.h>

#include <burrow/error.h>

/* Normalise an http tunnel's `addr` as ngrok does (spec §1.3) into
 * out[outlen]. Returns 0, BW_EINVAL with ngrok's message (naming
 * `tunnel_name`) in err[errlen], or BW_EMSGSIZE. */
int http_addr_normalize(const char *in, char *out, size_t outlen, const char *tunnel_name,
                        char *err, size_t errlen);

#endif /* BW_HTTP_UPSTREAM_H */
