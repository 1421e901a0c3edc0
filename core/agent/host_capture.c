/* The capture slots of the host table: plugins that inspect traffic record
 * each exchange in the agent's capture store (capture.h). See host.h. */
#include <string.h>
#include <time.h>

#include "capture.h"
#include "host.h"

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int option_bool(const json_t *v, int *out)
{
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    const char *s = json_string_value(v);
    if (s && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)) {
        *out = strcmp(s, "true") == 0;
        return 0;
    }
    return -1;
}

int bw_tunnel_inspect_option(const bw_loaded_plugin_t *plugin, const json_t *options)
{
    int on = 1;
    if (option_bool(json_object_get(options, "inspect"), &on) == 0)
        return on;
    for (const bw_option_t *o = plugin->desc.options; o && o->key; o++)
        if (strcmp(o->key, "inspect") == 0 && o->default_value)
            return strcmp(o->default_value, "false") != 0;
    return 1;
}

/* NULL ("inspection off") unless the store is enabled, the plugin inspects
 * and the tunnel's definition did not turn inspection off. */
bw_capture_t *bw__host_capture_begin(bw_tunnel_t *t, const bw_conn_info_t *info)
{
    if (!t || !t->captures || bw_capture_store_disabled(t->captures) || !t->inspect ||
        !(t->plugin->desc.flags & BW_PLUGIN_F_INSPECTS))
        return NULL;
    return bw_capture_begin(t->captures, t->name, info ? info->client_ip : NULL, wall_ns());
}

int bw__host_capture_head(bw_capture_t *c, bw_capture_dir_t dir, const bw_http_head_t *head)
{
    return bw_capture_head(c, dir, head);
}

int bw__host_capture_raw(bw_capture_t *c, bw_capture_dir_t dir, const void *data, size_t len)
{
    return bw_capture_raw(c, dir, data, len);
}

void bw__host_capture_end(bw_capture_t *c, uint64_t duration_ns)
{
    bw_capture_end(c, duration_ns);
}

void bw__host_capture_request_done(bw_capture_t *c, int err)
{
    bw_capture_req_state(c, err == 0 ? BW_CAPTURE_REQ_DONE : BW_CAPTURE_REQ_ERROR);
}
