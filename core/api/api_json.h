/* JSON shapes of ngrok's agent API (spec §2): tunnel resources with
 * metrics, errors, and the escaping rules clients depend on. The HTTP side
 * (routes, status codes) lives in api.c; these builders are pure. */
#ifndef BW_CORE_API_JSON_H
#define BW_CORE_API_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "host.h"
#include "metrics.h"

/* Go's url.PathEscape: escape all but unreserved characters and
 * ":@&=+$" into out[outlen]. Returns the escaped length, or (size_t)-1 when
 * it does not fit. */
size_t bw_path_escape(const char *in, char *out, size_t outlen);

/* A float64 as Go's encoding/json prints it: integral values as integers
 * ("0", "90286831083"), others as reals. Returns a new reference. */
json_t *bw_api_number(double v);

/* {"count","gauge"?,"rate1","rate5","rate15","p50","p90","p95","p99"}.
 * `with_gauge` is 1 for conns, 0 for http. Returns a new reference, or NULL
 * when out of memory (never a document with a member missing). */
json_t *bw_api_metric(bw_timer_metric_t *m, uint64_t now_ns, int with_gauge);

/* The tunnel resource: name, ID, uri, public_url, proto, config {addr,
 * inspect}, metrics {conns, http}. Returns a new reference, or NULL (a name
 * too long for its URI, or out of memory: never a partial document). */
json_t *bw_api_tunnel(bw_tunnel_t *t, uint64_t now_ns);

/* olive's error shape: {"error_code"?, "status_code", "msg", "details"}.
 * error_code 0 is omitted. Steals `details` (NULL means {}). Returns a new
 * reference, or NULL when out of memory (never a partial document). */
json_t *bw_api_error(int error_code, int status_code, const char *msg, json_t *details);

#endif /* BW_CORE_API_JSON_H */
