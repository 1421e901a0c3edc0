/* Test-only plugins "httpraw" (edge type http) and "httpsraw" (https): join
 * each public stream to the local address byte for byte, so integration
 * tests see exactly what the edge sends for an http/https tunnel (the
 * rewritten request stream of docs/protocol.md §5.8) without the real http
 * plugin. Built twice, HTTPRAW_HTTPS picks the edge type. */
#include <stdlib.h>
#include <string.h>

#include <burrow/plugin.h>

#ifdef HTTPRAW_HTTPS
#define PROTO "httpsraw"
#define EDGE  BW_EDGE_HTTPS
#else
#define PROTO "httpraw"
#define EDGE  BW_EDGE_HTTP
#endif

static const bw_host_t *H;

/* Only the binding keys its http/https edge type uses. */
static const bw_option_t options[] = {
    {.key = "subdomain", .type = BW_OPT_STRING, .description = "request this subdomain"},
    {.key = "hostname", .type = BW_OPT_STRING, .description = "request this full hostname"},
    {.key = NULL},
};

static int init(const bw_host_t *host, void **state, bw_error_t *err)
{
    H = host;
    *state = NULL;
    return 0;
}

static void destroy(void *state)
{
}

static int tunnel_start(void *state, bw_tunnel_t *t, void **tstate, bw_error_t *err)
{
    *tstate = t;
    return 0;
}

static void tunnel_stop(void *tstate)
{
}

static void connected(void *ud, bw_stream_t *local, int status)
{
    bw_stream_t *pub = ud;
    if (status < 0) {
        H->stream_close(pub, 1);
        return;
    }
    H->stream_join(pub, local, NULL, NULL);
}

static void conn_open(void *tstate, bw_stream_t *pub, const bw_conn_info_t *info)
{
    bw_tunnel_t *t = tstate;
    H->log(BW_LOG_INFO, "raw http conn", "obj", "httpraw", "server_name", info->server_name,
           "client", info->client_addr, NULL);
    /* The address is normalised as a URL ("http://localhost:80"). */
    const char *addr = H->tunnel_addr(t), *p = strstr(addr, "://");
    int rc = H->connect(t, p ? p + 3 : addr, 0, connected, pub);
    if (rc < 0)
        H->stream_close(pub, 1);
}

static const bw_plugin_t plugin = {
    .abi_major = BW_PLUGIN_ABI_MAJOR,
    .abi_minor = BW_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(bw_plugin_t),
    .name = PROTO,
    .version = "0.0.1",
    .description = "test only: raw bytes of an http/https edge stream",
    .public_scheme = EDGE == BW_EDGE_HTTPS ? "https" : "http",
    .edge_type = EDGE,
    .options = options,
    .init = init,
    .destroy = destroy,
    .tunnel_start = tunnel_start,
    .tunnel_stop = tunnel_stop,
    .conn_open = conn_open,
};

BW_PLUGIN_EXPORT const bw_plugin_t *bw_plugin_entry(void);

const bw_plugin_t *bw_plugin_entry(void)
{
    return &plugin;
}
