/* Feeds arbitrary bytes, as a client's request stream, through the agent
 * API server's connection core (parser, limits, router, olive responses)
 * without sockets. The first byte picks how the input is split into reads,
 * so request boundaries falling across reads get exercised too. One route
 * answers later (after the next feed) to cover the async path. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "httpd.h"
#include "log.h"

static bw_httpd_req_t *held;

static void out_discard(void *ud, const char *data, size_t len)
{
    size_t *total = ud;
    *total += len;
}

static void h_get(bw_httpd_req_t *req, void *ud)
{
    char *v = NULL;
    if (bw_httpd_req_query(req, "limit", &v) == 0)
        free(v);
    bw_httpd_json(
        req, 200,
        json_pack("{s:s, s:s?}", "path", bw_httpd_req_path(req), "name", bw_httpd_req_param(req)));
}

static void h_post(bw_httpd_req_t *req, void *ud)
{
    size_t len;
    const char *body = bw_httpd_req_body(req, &len);
    json_error_t err;
    json_t *j = json_loadb(body, len, 0, &err);
    if (!j) {
        bw_httpd_error(req, 400, "failed to deserialize request parameter",
                       json_pack("{s:s}", "err", err.text));
        return;
    }
    bw_httpd_json(req, 201, j);
}

static void h_later(bw_httpd_req_t *req, void *ud)
{
    held = req;
}

static void answer_held(void)
{
    bw_httpd_req_t *r = held;
    held = NULL;
    if (r)
        bw_httpd_respond(r, 204, NULL, NULL, 0, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bw_httpd_t *h;
    if (!h) {
        bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
        static const char *const allow[] = {"example.com", NULL};
        bw_httpd_cfg_t cfg = {
            .allow_hosts = allow, .max_header_bytes = 2048, .max_body_bytes = 4096};
        h = bw__httpd_new_detached(&cfg);
        if (!h)
            abort();
        bw_httpd_route(h, "GET", "/api/tunnels", 0, h_get, NULL);
        bw_httpd_route(h, "POST", "/api/tunnels", BW_HTTPD_BODY, h_post, NULL);
        bw_httpd_route(h, "GET", "/api/tunnels/:name", 0, h_get, NULL);
        bw_httpd_route(h, "DELETE", "/api/tunnels/:name", 0, h_later, NULL);
    }
    if (size == 0)
        return 0;
    size_t total = 0;
    size_t chunk = (size_t)data[0] + 1;
    data++;
    size--;
    bw__httpd_sess_t *s = bw__httpd_sess_new(h, out_discard, &total);
    if (!s)
        return 0;
    int closed = 0;
    while (size > 0 && !closed) {
        size_t n = size < chunk ? size : chunk;
        closed = bw__httpd_sess_feed(s, data, n);
        data += n;
        size -= n;
        if (n % 2)
            answer_held();
    }
    bw__httpd_sess_free(s);
    answer_held(); /* cancelled by now: just freed */
    return 0;
}
