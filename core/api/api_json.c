/* JSON shapes of the agent API. See api_json.h. */
#include "api_json.h"
#include "json_build.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

size_t bw_path_escape(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                   (*p >= '0' && *p <= '9') || strchr("-_.~:@&=+$", *p);
        size_t need = keep ? 1 : 3;
        if (n + need >= outlen)
            return (size_t)-1;
        if (keep) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    if (n >= outlen)
        return (size_t)-1;
    out[n] = '\0';
    return n;
}

json_t *bw_api_number(double v)
{
    if (isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0)
        return json_integer((json_int_t)v);
    return json_real(isfinite(v) ? v : 0);
}

json_t *bw_api_metric(bw_timer_metric_t *m, uint64_t now_ns, int with_gauge)
{
    bw_metric_snapshot_t s;
    bw_timer_metric_snapshot(m, now_ns, &s);
    json_t *o = json_object();
    int bad = 0;
    if (!o)
        return NULL;
    bw_json_put(o, "count", json_integer(s.count), &bad);
    if (with_gauge)
        bw_json_put(o, "gauge", json_integer(s.gauge), &bad);
    bw_json_put(o, "rate1", bw_api_number(s.rate1), &bad);
    bw_json_put(o, "rate5", bw_api_number(s.rate5), &bad);
    bw_json_put(o, "rate15", bw_api_number(s.rate15), &bad);
    bw_json_put(o, "p50", bw_api_number(s.p50), &bad);
    bw_json_put(o, "p90", bw_api_number(s.p90), &bad);
    bw_json_put(o, "p95", bw_api_number(s.p95), &bad);
    bw_json_put(o, "p99", bw_api_number(s.p99), &bad);
    return bw_json_whole(o, bad);
}

json_t *bw_api_tunnel(bw_tunnel_t *t, uint64_t now_ns)
{
    char uri[1024] = "/api/tunnels/";
    size_t off = strlen(uri);
    if (bw_path_escape(t->name, uri + off, sizeof uri - off) == (size_t)-1)
        return NULL;
    int inspect = (t->plugin->desc.flags & BW_PLUGIN_F_INSPECTS) && t->inspect;
    /* jansson keeps insertion order, which is ngrok's struct order. */
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:b}, s:{s:o, s:o}}", "name", t->name,
                          "ID", t->api_id, "uri", uri, "public_url", t->public_url, "proto",
                          t->plugin->desc.public_scheme, "config", "addr", t->addr, "inspect",
                          inspect, "metrics", "conns", bw_api_metric(&t->conns, now_ns, 1), "http",
                          bw_api_metric(&t->http, now_ns, 0));
    /* Additive, only while the edge refuses the tunnel's address: ngrok's
     * shape is unchanged for every bound tunnel (docs/api.md). */
    int bad = 0;
    if (o && t->bind_error[0])
        bw_json_put(o, "error", json_string(t->bind_error), &bad);
    return bw_json_whole(o, bad);
}

json_t *bw_api_error(int error_code, int status_code, const char *msg, json_t *details)
{
    json_t *o = json_object();
    int bad = 0;
    if (!o) {
        json_decref(details);
        return NULL;
    }
    if (error_code)
        bw_json_put(o, "error_code", json_integer(error_code), &bad);
    bw_json_put(o, "status_code", json_integer(status_code), &bad);
    bw_json_put(o, "msg", json_string(msg), &bad);
    bw_json_put(o, "details", details ? details : json_object(), &bad);
    return bw_json_whole(o, bad);
}
