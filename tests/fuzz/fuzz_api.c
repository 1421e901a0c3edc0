/* Feeds arbitrary bytes, as a client's request stream, to the real agent
 * API routes (core/api/api.c) on a socketless server: routing, tunnel-name
 * unescaping, query parsing and the JSON bodies of POST /api/tunnels and
 * POST /api/requests/http. The agent has no session, as before it connects,
 * so state-changing requests stop at their validation or at 503/104. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <uv.h>

#include "agent.h"
#include "api.h"
#include "host.h"
#include "log.h"

static void out_discard(void *ud, const char *data, size_t len)
{
    *(size_t *)ud += len;
}

static bw_httpd_t *server(void)
{
    static bw_httpd_t *h;
    char err[256];
    if (h)
        return h;
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
    bw_registry_t *reg = bw_registry_new(bw_host_table_for);
    bw_io_t *io = bw_io_new(uv_default_loop());
    bw_agent_config_t cfg = {.server_addr = "127.0.0.1:9"};
    bw_host_set_io(io);
    bw_agent_t *a = reg && io ? bw_agent_new(io, reg, &cfg, err, sizeof err) : NULL;
    h = bw__httpd_new_detached(NULL);
    if (!a || !h || bw_api_register(h, a) != 0)
        abort();
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bw_httpd_t *h = server();
    size_t total = 0;
    bw__httpd_sess_t *s = bw__httpd_sess_new(h, out_discard, &total);
    if (!s)
        return 0;
    bw__httpd_sess_feed(s, data, size);
    bw__httpd_sess_free(s);
    return 0;
}
