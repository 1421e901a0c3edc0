/* ngrok's agent API on the agent's web address (ngrok-compat.md §2):
 * /api/tunnels (list, start, detail, stop) with metrics, /api/requests/http
 * (captured requests: list, detail, clear, replay; api_requests.c), the
 * inspection UI's raw downloads /inspect/http/<id>/request|response, and a
 * Prometheus text endpoint at /metrics. */
#ifndef BW_CORE_API_H
#define BW_CORE_API_H

#include "agent.h"
#include "httpd.h"

/* Register every API route on `h`, serving `a`. Both must outlive the
 * server's routes (close the server first). Returns 0 or < 0. */
int bw_api_register(bw_httpd_t *h, bw_agent_t *a);

/* The /api/requests/http and /inspect/http routes (api_requests.c), called
 * by bw_api_register. Returns 0 or < 0. */
int bw__api_requests_register(bw_httpd_t *h, bw_agent_t *a);

/* The Prometheus text exposition of every tunnel's metrics, as a new
 * malloc()ed string (caller frees), or NULL on ENOMEM. */
char *bw_api_prometheus(bw_agent_t *a, uint64_t now_ns);

#endif /* BW_CORE_API_H */
