/* The agent API routes. See api.h and docs/api.md. */
#include "api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "api_json.h"
#include "log.h"
#include "tunnel_def.h"
#include "util.h"

/* ngrok's error catalogue (§2.9). */
enum {
    E_TUNNEL_NOT_FOUND = 100,
    E_INVALID_TUNNEL = 102,
    E_START_FAILED = 103,
    E_NOT_READY = 104,
    E_INTERNAL = 107,
    E_UNESCAPE = 108
};

/* npm's client retries on exactly this text. */
#define NOT_READY_ERR "a successful ngrok tunnel session has not yet been established"

static json_t *err_details(const char *key, const char *value)
{
    return json_pack("{s:s}", key, value ? value : "");
}

static void root(bw_httpd_req_t *req, void *ud)
{
    bw_httpd_json(req, 200,
                  json_pack("{s:s, s:s}", "tunnels_uri", "/api/tunnels", "http_requests_uri",
                            "/api/requests/http"));
}

static void list_tunnels(bw_httpd_req_t *req, void *ud)
{
    bw_agent_t *a = ud;
    uint64_t now = uv_hrtime();
    json_t *arr = json_array();
    /* A tunnel that cannot be listed fails the list (500), rather than
     * vanishing from it. */
    for (size_t i = 0; arr && i < bw_agent_tunnel_count(a); i++)
        if (json_array_append_new(arr, bw_api_tunnel(bw_agent_tunnel_at(a, i), now)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    bw_httpd_json(req, 200,
                  arr ? json_pack("{s:o, s:s}", "tunnels", arr, "uri", "/api/tunnels") : NULL);
}

/* The named tunnel of a /api/tunnels/:name request, or NULL after
 * answering the error (108 bad escape, 100 unknown). */
static bw_tunnel_t *named_tunnel(bw_httpd_req_t *req, bw_agent_t *a)
{
    const char *name = bw_httpd_req_param(req);
    if (!name) {
        bw_httpd_error_code(req, 400, E_UNESCAPE, "failed to unescape tunnel name",
                            err_details("err", "invalid URL escape in tunnel name"));
        return NULL;
    }
    bw_tunnel_t *t = bw_agent_find_tunnel(a, name);
    if (!t)
        bw_httpd_error_code(req, 404, E_TUNNEL_NOT_FOUND, "tunnel not found",
                            err_details("name", name));
    return t;
}

static void get_tunnel(bw_httpd_req_t *req, void *ud)
{
    bw_tunnel_t *t = named_tunnel(req, ud);
    if (t)
        bw_httpd_json(req, 200, bw_api_tunnel(t, uv_hrtime()));
}

static void delete_tunnel(bw_httpd_req_t *req, void *ud)
{
    bw_tunnel_t *t = named_tunnel(req, ud);
    if (!t)
        return;
    char name[512];
    snprintf(name, sizeof name, "%s", t->name);
    if (bw_agent_remove_tunnel(ud, name) != 0)
        bw_httpd_error_code(req, 500, E_INTERNAL, "internal error",
                            err_details("err", "tunnel vanished while stopping"));
    else
        bw_httpd_respond(req, 204, NULL, NULL, 0, NULL);
}

/* The first bind of a tunnel started through the API finished. */
static void bound(void *ud, int status, const char *err, bw_tunnel_t *t)
{
    bw_httpd_req_t *req = ud;
    if (status == 0)
        bw_httpd_json(req, 201, bw_api_tunnel(t, uv_hrtime()));
    else
        bw_httpd_error_code(req, 502, E_START_FAILED, "failed to start tunnel",
                            err_details("err", err));
}

static void start_tunnel(bw_httpd_req_t *req, void *ud)
{
    bw_agent_t *a = ud;
    size_t len;
    const char *body = bw_httpd_req_body(req, &len);
    json_error_t jerr;
    char err[512];
    json_t *def = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(def)) {
        json_decref(def);
        bw_httpd_error(req, 400, "failed to deserialize request parameter",
                       err_details("err", def ? "request body must be a JSON object" : jerr.text));
        return;
    }
    const char *name = json_string_value(json_object_get(def, "name"));
    if (!name || !*name) {
        bw_httpd_error_code(req, 400, E_INVALID_TUNNEL, "invalid tunnel configuration",
                            err_details("err", "Tunnel declaration must contain a 'name'"));
        goto out;
    }
    if (!bw_agent_ready(a)) {
        bw_httpd_error_code(req, 503, E_NOT_READY, "ngrok is not yet ready to start tunnels",
                            err_details("err", NOT_READY_ERR));
        goto out;
    }
    if (bw_agent_add_definition(a, name, def, bound, req, err, sizeof err) < 0)
        bw_httpd_error_code(req, 400, E_INVALID_TUNNEL, "invalid tunnel configuration",
                            err_details("err", err));
out:
    json_decref(def);
}

/* --- Prometheus --- */

/* Label values escape backslash, quote and newline (exposition format). */
static void label_value(const char *in, char *out, size_t len)
{
    size_t n = 0;
    for (; *in && n + 2 < len; in++) {
        if (*in == '\\' || *in == '"' || *in == '\n')
            out[n++] = '\\';
        out[n++] = *in == '\n' ? 'n' : *in;
    }
    out[n] = '\0';
}

/* One labelled snapshot per tunnel, plus the agent-wide total (tunnel=""). */
typedef struct prom_row {
    char label[700];
    bw_metric_snapshot_t conns, http;
} prom_row_t;

/* Prometheus wants every sample of a family together, so print family by
 * family over all rows. `off` picks the value out of a snapshot; the header
 * is printed when `help` is given. */
static void prom_family(bw_buf_t *b, const prom_row_t *rows, size_t n, const char *name,
                        const char *type, const char *help, int http, size_t off, double scale,
                        const char *extra)
{
    if (help)
        bw_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (size_t i = 0; i < n; i++) {
        const bw_metric_snapshot_t *s = http ? &rows[i].http : &rows[i].conns;
        double v;
        if (off == offsetof(bw_metric_snapshot_t, count))
            v = (double)s->count;
        else if (off == offsetof(bw_metric_snapshot_t, gauge))
            v = (double)s->gauge;
        else
            memcpy(&v, (const char *)s + off, sizeof v);
        bw_buf_printf(b, "%s{%s%s} %.17g\n", name, rows[i].label, extra, v / scale);
    }
}

#define SNAP(f) offsetof(bw_metric_snapshot_t, f)

char *bw_api_prometheus(bw_agent_t *a, uint64_t now_ns)
{
    static const struct {
        const char *suffix, *type, *help, *extra;
        size_t off;
        double scale;
    } fields[] = {
        {"total", "counter", "Finished %s.", "", SNAP(count), 1},
        {"rate", "gauge", "%s per second, 1-minute moving average.", ",window=\"1m\"", SNAP(rate1),
         1},
        {"rate", "gauge", NULL, ",window=\"5m\"", SNAP(rate5), 1},
        {"rate", "gauge", NULL, ",window=\"15m\"", SNAP(rate15), 1},
        {"duration_seconds", "gauge", "Duration percentiles of %s.", ",quantile=\"0.5\"", SNAP(p50),
         1e9},
        {"duration_seconds", "gauge", NULL, ",quantile=\"0.9\"", SNAP(p90), 1e9},
        {"duration_seconds", "gauge", NULL, ",quantile=\"0.95\"", SNAP(p95), 1e9},
        {"duration_seconds", "gauge", NULL, ",quantile=\"0.99\"", SNAP(p99), 1e9},
    };
    size_t n = bw_agent_tunnel_count(a) + 1;
    prom_row_t *rows = calloc(n, sizeof *rows);
    bw_buf_t b = {0};
    char esc[600], name[64], help[128];
    if (!rows)
        return NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        bw_tunnel_t *t = bw_agent_tunnel_at(a, i);
        label_value(t->name, esc, sizeof esc);
        snprintf(rows[i].label, sizeof rows[i].label, "tunnel=\"%s\"", esc);
        bw_timer_metric_snapshot(&t->conns, now_ns, &rows[i].conns);
        bw_timer_metric_snapshot(&t->http, now_ns, &rows[i].http);
    }
    snprintf(rows[n - 1].label, sizeof rows[n - 1].label, "tunnel=\"\"");
    bw_timer_metric_snapshot(bw_host_total_conns(), now_ns, &rows[n - 1].conns);
    bw_timer_metric_snapshot(bw_host_total_http(), now_ns, &rows[n - 1].http);
    for (int http = 0; http < 2; http++) {
        const char *kind = http ? "http" : "conns", *what = http ? "HTTP requests" : "connections";
        snprintf(name, sizeof name, "burrow_%s_open", kind);
        if (!http)
            prom_family(&b, rows, n, name, "gauge", "Connections open now.", 0, SNAP(gauge), 1, "");
        for (size_t f = 0; f < BW_ARRAY_SIZE(fields); f++) {
            snprintf(name, sizeof name, "burrow_%s_%s", kind, fields[f].suffix);
            if (fields[f].help) {
                snprintf(help, sizeof help, fields[f].help, what);
                bw_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, fields[f].type);
            }
            prom_family(&b, rows, n, name, NULL, NULL, http, fields[f].off, fields[f].scale,
                        fields[f].extra);
        }
    }
    free(rows);
    if (b.err) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static void prometheus(bw_httpd_req_t *req, void *ud)
{
    char *text = bw_api_prometheus(ud, uv_hrtime());
    if (!text) {
        bw_httpd_error(req, 500, "Internal Server Error", NULL);
        return;
    }
    bw_httpd_respond(req, 200, "text/plain; version=0.0.4", text, strlen(text), NULL);
    free(text);
}

int bw_api_register(bw_httpd_t *h, bw_agent_t *a)
{
    static const struct {
        const char *method, *pattern;
        unsigned flags;
        bw_httpd_handler_fn fn;
    } routes[] = {
        {"GET", "/api/", 0, root},
        {"GET", "/api", 0, root},
        {"GET", "/api/tunnels", 0, list_tunnels},
        {"POST", "/api/tunnels", BW_HTTPD_BODY, start_tunnel},
        {"GET", "/api/tunnels/:name", 0, get_tunnel},
        {"DELETE", "/api/tunnels/:name", 0, delete_tunnel},
        {"GET", "/metrics", BW_HTTPD_ANY_ACCEPT, prometheus},
    };
    for (size_t i = 0; i < BW_ARRAY_SIZE(routes); i++) {
        int rc = bw_httpd_route(h, routes[i].method, routes[i].pattern, routes[i].flags,
                                routes[i].fn, a);
        if (rc < 0)
            return rc;
    }
    return bw__api_requests_register(h, a);
}
