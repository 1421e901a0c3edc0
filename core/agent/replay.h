/* Replaying captured requests (POST /api/requests/http, spec §2.7).
 *
 * The core feeds the captured request bytes through a synthetic connection
 * into the tunnel's plugin, exactly as if a public client had sent them: a
 * socketpair whose one end becomes a bw_stream handed to the plugin's
 * conn_open (with the original client IP and port 0), while the core writes
 * the request into the other end, half-closes it, and reads and discards
 * the response until EOF. The plugin captures the replay as a new entry. A
 * plugin that offers the optional `replay` slot gets the bytes through it
 * instead. Nothing goes through the edge, so edge policies do not apply.
 *
 * A replay is bounded by a timeout and cancelled when its tunnel stops.
 *
 * bw_replay_modify() rebuilds a captured request with the API's optional
 * `modifications` (method, uri, headers, body); it is pure. */
#ifndef BW_CORE_REPLAY_H
#define BW_CORE_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <burrow/plugin.h>

#define BW_REPLAY_TIMEOUT_MS 30000

typedef struct bw_replay bw_replay_t;

/* Start replaying raw[len] (copied) on tunnel `t` as a connection from
 * `client_ip` (NULL or "" for 127.0.0.1), aborted after `timeout_ms` (0 for
 * BW_REPLAY_TIMEOUT_MS). Returns 0 once the plugin has the connection (or
 * its replay slot accepted the bytes), or < 0 with a message in err. */
int bw_replay_start(bw_tunnel_t *t, const void *raw, size_t len, const char *client_ip,
                    uint64_t timeout_ms, char *err, size_t errlen);

/* Abort every replay of `t` (the tunnel is stopping); their memory goes
 * once libuv has closed their handles. */
void bw_replay_cancel_all(bw_tunnel_t *t);

/* Replays of `t` still in flight. */
size_t bw_replay_count(const bw_tunnel_t *t);

/* Rebuild the request raw[len] (an HTTP/1.x request as captured: head,
 * blank line, body) with `mods`, a JSON object of optional members:
 *   "method": string, "uri": string,
 *   "headers": {name: string | [string, ...] | null} - replaces every
 *       header of that name (case-insensitive); null removes it,
 *   "body": string, or "body_base64": string (not both) - replaces the
 *       body; Content-Length is set to its length and Transfer-Encoding
 *       dropped.
 * Other headers keep their order and bytes; line ends become CRLF. Stores a
 * new malloc()ed request in *out (length *outlen). Returns 0, BW_EINVAL
 * with err naming what was wrong (bad member type or value, unparsable
 * captured request), or BW_ENOMEM. */
int bw_replay_modify(const void *raw, size_t len, const json_t *mods, void **out, size_t *outlen,
                     char *err, size_t errlen);

#endif /* BW_CORE_REPLAY_H */
