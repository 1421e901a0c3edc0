/* The agent API's captured-request routes (/api/requests/http, spec
 * §2.5-2.8) and the raw downloads of the inspection UI
 * (/inspect/http/<id>/request|response, spec §5). See api.h. */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "host.h"
#include "log.h"
#include "replay.h"
#include "util.h"

enum { E_TUNNEL_NOT_FOUND = 100, E_INVALID = 102, E_REQUEST_NOT_FOUND = 106, E_INTERNAL = 107 };

static json_t *details(const char *key, const char *value)
{
    return json_pack("{s:s}", key, value ? value : "");
}

static void not_found(bw_httpd_req_t *req, const char *id)
{
    bw_httpd_error_code(req, 404, E_REQUEST_NOT_FOUND, "request entry not found",
                        details("id", id));
}

/* A query parameter, or NULL when absent; answers 400 and sets *bad for a
 * bad escape. */
static char *query(bw_httpd_req_t *req, const char *key, int *bad)
{
    char *v = NULL;
    int rc = bw_httpd_req_query(req, key, &v);
    if (rc == BW_EINVAL || rc == BW_ENOMEM) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s: invalid URL escape", key);
        bw_httpd_error(req, 400, "failed to deserialize request parameter", details("err", msg));
        *bad = 1;
    }
    return rc == 0 ? v : NULL;
}

static void list_requests(bw_httpd_req_t *req, void *ud)
{
    int bad = 0;
    long long n = 0;
    char *limit = query(req, "limit", &bad), *tunnel = NULL, *remote = NULL;
    if (!bad && limit && bw_parse_int(limit, 0, INT32_MAX, &n) != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "limit must be a non-negative integer, got '%.64s'", limit);
        bw_httpd_error(req, 400, "failed to deserialize request parameter", details("err", msg));
        bad = 1;
    }
    if (!bad)
        tunnel = query(req, "tunnel_name", &bad);
    if (!bad)
        remote = query(req, "remote_addr", &bad);
    if (!bad) {
        bw_capture_filter_t f = {.limit = (size_t)n, .tunnel_name = tunnel, .remote_addr = remote};
        bw_httpd_json(req, 200, bw_capture_store_list_json(bw_agent_captures(ud), &f));
    }
    free(limit);
    free(tunnel);
    free(remote);
}

static void get_request(bw_httpd_req_t *req, void *ud)
{
    const char *id = bw_httpd_req_param(req);
    json_t *entry = NULL;
    int rc = id ? bw_capture_store_get_json(bw_agent_captures(ud), id, &entry) : BW_ENOENT;
    if (rc == BW_ENOENT)
        not_found(req, id ? id : bw_httpd_req_param_raw(req));
    else
        bw_httpd_json(req, 200, rc == 0 ? entry : NULL);
}

static void delete_requests(bw_httpd_req_t *req, void *ud)
{
    bw_capture_store_clear(bw_agent_captures(ud));
    bw_log(BW_LOG_INFO, "deleted all requests", "obj", "web", "pg", bw_httpd_req_path(req), "id",
           bw_httpd_req_id(req), NULL);
    bw_httpd_respond(req, 204, NULL, NULL, 0, NULL);
}

/* --- replay --- */

static const char *const replay_msgs[] = {
    [BW_CAPTURE_REPLAY_PARTIAL - 109] = "cannot replay request that was only partially captured",
    [BW_CAPTURE_REPLAY_READING - 109] =
        "cannot replay request while the request body is still being read",
    [BW_CAPTURE_REPLAY_READ_ERROR - 109] =
        "cannot replay request that encountered an error while being read",
};

/* Validate the body; answers and returns NULL when it will not do. */
static json_t *replay_input(bw_httpd_req_t *req)
{
    size_t len;
    const char *body = bw_httpd_req_body(req, &len);
    json_error_t jerr;
    json_t *in = json_loadb(body, len, 0, &jerr);
    const char *bad = NULL;
    if (!json_is_object(in))
        bad = in ? "request body must be a JSON object" : jerr.text;
    else if (!json_is_string(json_object_get(in, "id")))
        bad = "id must be a string";
    else if (json_object_get(in, "tunnel_name") &&
             !json_is_string(json_object_get(in, "tunnel_name")))
        bad = "tunnel_name must be a string";
    if (bad) {
        bw_httpd_error(req, 400, "failed to deserialize request parameter", details("err", bad));
        json_decref(in);
        return NULL;
    }
    return in;
}

/* The bytes to send: the captured request, rebuilt when modified. Answers
 * and returns < 0 when the modifications will not do. */
static int replay_bytes(bw_httpd_req_t *req, json_t *in, void **raw, size_t *len)
{
    json_t *mods = json_object_get(in, "modifications");
    char err[256];
    void *out;
    size_t outlen;
    if (!mods || json_is_null(mods))
        return 0;
    int rc = bw_replay_modify(*raw, *len, mods, &out, &outlen, err, sizeof err);
    if (rc < 0) {
        bw_httpd_error_code(req, 400, E_INVALID, "invalid replay modifications",
                            details("err", rc == BW_ENOMEM ? "out of memory" : err));
        return rc;
    }
    free(*raw);
    *raw = out;
    *len = outlen;
    return 0;
}

static void replay_request(bw_httpd_req_t *req, void *ud)
{
    json_t *in = replay_input(req);
    if (!in)
        return;
    bw_capture_store_t *store = bw_agent_captures(ud);
    const char *id = json_string_value(json_object_get(in, "id"));
    const char *tname = json_string_value(json_object_get(in, "tunnel_name"));
    bw_capture_replay_t why;
    void *raw = NULL;
    size_t len = 0;
    char *recorded = NULL, err[256];
    bw_tunnel_t *t = NULL;
    int rc = bw_capture_store_replay(store, id, &why, &raw, &len, &recorded);
    if (rc == BW_ENOENT) {
        not_found(req, id);
    } else if (rc < 0) {
        bw_httpd_error_code(req, 500, E_INTERNAL, "internal error",
                            details("err", bw_strerror(rc)));
    } else if (why != BW_CAPTURE_REPLAY_OK) {
        bw_httpd_error_code(req, 400, (int)why, replay_msgs[why - 109], details("id", id));
    } else if (!(t = bw_agent_find_tunnel(ud, tname && *tname ? tname : recorded))) {
        bw_httpd_error_code(req, 404, E_TUNNEL_NOT_FOUND, "tunnel not found",
                            details("name", tname && *tname ? tname : recorded));
    } else if (replay_bytes(req, in, &raw, &len) == 0) {
        const char *ip = bw_capture_store_remote_addr(store, id);
        bw_log(BW_LOG_INFO, "replaying request", "obj", "web", "pg", bw_httpd_req_path(req), "id",
               bw_httpd_req_id(req), "entry", id, "tunnel", t->name, NULL);
        if (bw_replay_start(t, raw, len, ip, 0, err, sizeof err) < 0)
            bw_httpd_error_code(req, 500, E_INTERNAL, "internal error", details("err", err));
        else
            bw_httpd_respond(req, 204, NULL, NULL, 0, NULL);
    }
    free(raw);
    free(recorded);
    json_decref(in);
}

/* --- /inspect/http/<id>/request|response --- */

static void download(bw_httpd_req_t *req, bw_agent_t *a, bw_capture_dir_t dir)
{
    char msg[96], hdr[160];
    const char *method = bw_httpd_req_method(req), *id = bw_httpd_req_param(req);
    void *raw;
    size_t len;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        snprintf(msg, sizeof msg, "Invalid method: %.64s\n", method);
        bw_httpd_respond(req, 405, "text/plain; charset=utf-8", msg, strlen(msg), NULL);
        return;
    }
    int rc = id ? bw_capture_store_raw(bw_agent_captures(a), id, dir, &raw, &len) : BW_ENOENT;
    if (rc == BW_ENOENT) {
        static const char nf[] = "404 page not found\n";
        bw_httpd_respond(req, 404, "text/plain; charset=utf-8", nf, sizeof nf - 1, NULL);
        return;
    }
    if (rc < 0) {
        bw_httpd_error(req, 500, "Internal Server Error", NULL);
        return;
    }
    snprintf(hdr, sizeof hdr, "Content-Disposition: attachment; filename=\"%s-%s.txt\"\r\n", id,
             dir == BW_CAPTURE_REQUEST ? "request" : "response");
    bw_httpd_respond(req, 200, "application/octet-stream", raw, len, hdr);
    free(raw);
}

static void download_request(bw_httpd_req_t *req, void *ud)
{
    download(req, ud, BW_CAPTURE_REQUEST);
}

static void download_response(bw_httpd_req_t *req, void *ud)
{
    download(req, ud, BW_CAPTURE_RESPONSE);
}

int bw__api_requests_register(bw_httpd_t *h, bw_agent_t *a)
{
    static const struct {
        const char *method, *pattern;
        unsigned flags;
        bw_httpd_handler_fn fn;
    } routes[] = {
        {"GET", "/api/requests/http", 0, list_requests},
        {"POST", "/api/requests/http", BW_HTTPD_BODY, replay_request},
        {"DELETE", "/api/requests/http", 0, delete_requests},
        {"GET", "/api/requests/http/:id", 0, get_request},
        /* Any method: a wrong one gets Go's plain-text 405, not olive's. */
        {"*", "/inspect/http/:id/request", BW_HTTPD_ANY_ACCEPT, download_request},
        {"*", "/inspect/http/:id/response", BW_HTTPD_ANY_ACCEPT, download_response},
    };
    for (size_t i = 0; i < BW_ARRAY_SIZE(routes); i++) {
        int rc = bw_httpd_route(h, routes[i].method, routes[i].pattern, routes[i].flags,
                                routes[i].fn, a);
        if (rc < 0)
            return rc;
    }
    return 0;
}
