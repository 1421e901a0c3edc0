/* Local addresses of tunnels, as ngrok writes them. */
#ifndef BW_CORE_ADDR_H
#define BW_CORE_ADDR_H

#include <stddef.h>

/* Normalise a tunnel's `addr` by ngrok's host:port rules (spec §1.3), used
 * for every plugin without a normalize_addr slot: "22" -> "localhost:22",
 * ":22" -> "localhost:22", "host:port" kept; URLs and paths are refused.
 * Protocol-specific forms (http's URLs, file://) are the plugin's. Writes
 * out[outlen]. Returns 0, BW_EINVAL with ngrok's message (naming
 * `tunnel_name`) in err[errlen], or BW_EMSGSIZE. */
int bw_addr_normalize(const char *in, char *out, size_t outlen, const char *tunnel_name, char *err,
                      size_t errlen);

#endif /* BW_CORE_ADDR_H */
