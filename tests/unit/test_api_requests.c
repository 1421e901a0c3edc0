/* The captured-request routes (api_requests.c) driven through the real
 * router on a socketless server, with a real agent whose store is filled
 * through the bw_capture_* calls, and the host's capture slots on real
 * tunnels (tcptls fixture: inspects; tcp: does not). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "agent.h"
#include "api.h"
#include "capture.h"
#include "host.h"
#include "log.h"
#include "stream.h"

typedef struct out {
    char buf[1 << 16];
    size_t len;
} out_t;

static void collect(void *ud, const char *data, size_t len)
{
    out_t *o = ud;
    assert_true(o->len + len < sizeof o->buf);
    memcpy(o->buf + o->len, data, len);
    o->len += len;
    o->buf[o->len] = '\0';
}

typedef struct env {
    bw_registry_t *reg;
    bw_agent_t *a;
    bw_httpd_t *h;
    bw_capture_store_t *store;
} env_t;

static env_t *env_new(int64_t db_size)
{
    char err[256];
    env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->reg = bw_registry_new(bw_host_table_for);
    assert_non_null(e->reg);
    assert_int_equal(
        bw_registry_load(e->reg, BW_TEST_PLUGIN_DIR "/tcptls/tcptls.so", err, sizeof err), 0);
    assert_int_equal(bw_registry_load(e->reg, BW_TCP_PLUGIN, err, sizeof err), 0);
    bw_agent_config_t cfg = {.server_addr = "127.0.0.1:9", .inspect_db_size = db_size};
    e->a = bw_agent_new(bw_host_io(), e->reg, &cfg, err, sizeof err);
    assert_non_null(e->a);
    e->h = bw__httpd_new_detached(NULL);
    assert_non_null(e->h);
    assert_int_equal(bw_api_register(e->h, e->a), 0);
    e->store = bw_agent_captures(e->a);
    return e;
}

static void env_free(env_t *e)
{
    bw_httpd_close(e->h);
    bw_agent_stop(e->a);
    for (int i = 0; i < 10; i++) /* the agent's timer closes */
        uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    bw_agent_free(e->a);
    bw_registry_free(e->reg);
    free(e);
}

/* One request; returns the status and points *body at the response body. */
static int http(env_t *e, const char *method, const char *path, const char *json, out_t *o,
                const char **body)
{
    char req[4096];
    o->len = 0;
    if (json) {
        snprintf(req, sizeof req,
                 "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 method, path, strlen(json), json);
    } else {
        snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                 method, path);
    }
    bw__httpd_sess_t *s = bw__httpd_sess_new(e->h, collect, o);
    assert_non_null(s);
    bw__httpd_sess_feed(s, req, strlen(req));
    bw__httpd_sess_free(s);
    int status = 0;
    assert_int_equal(sscanf(o->buf, "HTTP/1.1 %d", &status), 1);
    char *b = strstr(o->buf, "\r\n\r\n");
    assert_non_null(b);
    *body = b + 4;
    return status;
}

static bw_capture_t *add(env_t *e, const char *tunnel, const char *ip, const char *req,
                         const char *resp, bw_capture_req_t state)
{
    bw_capture_t *c = bw_capture_begin(e->store, tunnel, ip, 1700000000LL * 1000000000LL);
    assert_non_null(c);
    bw_capture_raw(c, BW_CAPTURE_REQUEST, req, strlen(req));
    if (state != BW_CAPTURE_REQ_READING)
        bw_capture_req_state(c, state);
    if (resp)
        bw_capture_raw(c, BW_CAPTURE_RESPONSE, resp, strlen(resp));
    return c;
}

static json_t *parse(const char *body)
{
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    assert_non_null(j);
    return j;
}

static void assert_error(const char *body, int code, const char *msg, const char *key,
                         const char *value)
{
    json_t *j = parse(body);
    assert_int_equal(json_integer_value(json_object_get(j, "error_code")), code);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), msg);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "details"), key)),
                        value);
    json_decref(j);
}

static size_t list_count(env_t *e, const char *query, char ids[][BW_CAPTURE_ID_LEN + 1])
{
    out_t o;
    const char *body;
    char path[256];
    snprintf(path, sizeof path, "/api/requests/http%s", query);
    assert_int_equal(http(e, "GET", path, NULL, &o, &body), 200);
    json_t *j = parse(body), *arr = json_object_get(j, "requests"), *v;
    size_t i;
    assert_string_equal(json_string_value(json_object_get(j, "uri")), "/api/requests/http");
    json_array_foreach(arr, i, v) if (ids)
        snprintf(ids[i], BW_CAPTURE_ID_LEN + 1, "%s", json_string_value(json_object_get(v, "id")));
    size_t n = json_array_size(arr);
    json_decref(j);
    return n;
}

static void list_order_limit_filters(void **state)
{
    env_t *e = env_new(0);
    char ids[8][BW_CAPTURE_ID_LEN + 1];
    bw_capture_t *c[3];
    out_t o;
    const char *body;
    assert_int_equal(list_count(e, "", NULL), 0);
    c[0] = add(e, "a", "10.0.0.1", "one", "r1", BW_CAPTURE_REQ_DONE);
    c[1] = add(e, "b", "10.0.0.2", "two", "r2", BW_CAPTURE_REQ_DONE);
    c[2] = add(e, "a", "10.0.0.2", "three", NULL, BW_CAPTURE_REQ_READING);
    assert_int_equal(list_count(e, "", ids), 3);
    assert_string_equal(ids[0], bw_capture_id(c[2])); /* newest first */
    assert_string_equal(ids[2], bw_capture_id(c[0]));
    assert_int_equal(list_count(e, "?limit=2", ids), 2);
    assert_string_equal(ids[1], bw_capture_id(c[1]));
    assert_int_equal(list_count(e, "?limit=0", NULL), 3);
    assert_int_equal(list_count(e, "?tunnel_name=a", NULL), 2);
    assert_int_equal(list_count(e, "?tunnel_name=a&remote_addr=10.0.0.2", ids), 1);
    assert_string_equal(ids[0], bw_capture_id(c[2]));
    assert_int_equal(list_count(e, "?tunnel_name=x%20y", NULL), 0);
    assert_int_equal(http(e, "GET", "/api/requests/http?limit=abc", NULL, &o, &body), 400);
    json_t *j = parse(body);
    assert_null(json_object_get(j, "error_code"));
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "failed to deserialize request parameter");
    const char *why = json_string_value(json_object_get(json_object_get(j, "details"), "err"));
    assert_non_null(why); /* empty details: out of memory for them */
    assert_non_null(strstr(why, "limit must be a non-negative integer, got 'abc'"));
    json_decref(j);
    assert_int_equal(http(e, "GET", "/api/requests/http?limit=-1", NULL, &o, &body), 400);
    assert_int_equal(http(e, "GET", "/api/requests/http?tunnel_name=%zz", NULL, &o, &body), 400);
    for (int i = 0; i < 3; i++)
        bw_capture_end(c[i], 1);
    env_free(e);
}

typedef struct grow {
    char *p;
    size_t len;
} grow_t;

static void collect_grow(void *ud, const char *data, size_t len)
{
    grow_t *g = ud;
    g->p = realloc(g->p, g->len + len + 1);
    assert_non_null(g->p);
    memcpy(g->p + g->len, data, len);
    g->len += len;
    g->p[g->len] = '\0';
}

/* GET path; returns the number of entries listed and the body's size. */
static size_t list_big(env_t *e, const char *path, size_t *body_len)
{
    char req[512];
    grow_t g = {0};
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
             path);
    bw__httpd_sess_t *s = bw__httpd_sess_new(e->h, collect_grow, &g);
    assert_non_null(s);
    bw__httpd_sess_feed(s, req, strlen(req));
    bw__httpd_sess_free(s);
    assert_non_null(g.p);
    assert_non_null(strstr(g.p, "HTTP/1.1 200 "));
    const char *body = strstr(g.p, "\r\n\r\n");
    assert_non_null(body);
    *body_len = g.len - (size_t)(body + 4 - g.p);
    json_t *j = parse(body + 4);
    size_t n = json_array_size(json_object_get(j, "requests"));
    json_decref(j);
    free(g.p);
    return n;
}

static void list_limit_is_capped(void **state)
{
    /* A huge limit must not build a body the size of the whole store: the
     * listing stops at BW_CAPTURE_MAX_LIMIT entries. */
    env_t *e = env_new(0);
    size_t len, len_max;
    for (int i = 0; i < BW_CAPTURE_MAX_LIMIT + 50; i++)
        bw_capture_end(add(e, "a", "10.0.0.1", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n",
                           BW_CAPTURE_REQ_DONE),
                       1);
    assert_int_equal(list_big(e, "/api/requests/http?limit=1000000", &len), BW_CAPTURE_MAX_LIMIT);
    assert_int_equal(list_big(e, "/api/requests/http?limit=2147483647", &len),
                     BW_CAPTURE_MAX_LIMIT);
    assert_int_equal(list_big(e, "/api/requests/http?limit=1000", &len_max), BW_CAPTURE_MAX_LIMIT);
    assert_int_equal(len, len_max);
    assert_int_equal(list_big(e, "/api/requests/http?limit=999", &len), 999);
    assert_true(len < len_max);
    env_free(e);
}

static void get_and_delete(void **state)
{
    env_t *e = env_new(0);
    out_t o;
    const char *body;
    char path[128];
    bw_capture_t *c = add(e, "a", "10.0.0.1", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n",
                          BW_CAPTURE_REQ_DONE);
    char id[BW_CAPTURE_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", bw_capture_id(c));
    bw_capture_end(c, 7);
    snprintf(path, sizeof path, "/api/requests/http/%s", id);
    assert_int_equal(http(e, "GET", path, NULL, &o, &body), 200);
    json_t *j = parse(body);
    assert_string_equal(json_string_value(json_object_get(j, "id")), id);
    assert_int_equal(json_integer_value(json_object_get(j, "duration")), 7);
    json_decref(j);
    assert_int_equal(http(e, "GET", "/api/requests/http/airt_nope", NULL, &o, &body), 404);
    assert_error(body, 106, "request entry not found", "id", "airt_nope");
    assert_int_equal(http(e, "GET", "/api/requests/http/a%zz", NULL, &o, &body), 404);
    assert_error(body, 106, "request entry not found", "id", "a%zz");
    assert_int_equal(http(e, "DELETE", "/api/requests/http", NULL, &o, &body), 204);
    assert_string_equal(body, "");
    assert_int_equal(list_count(e, "", NULL), 0);
    assert_int_equal(http(e, "GET", path, NULL, &o, &body), 404);
    env_free(e);
}

static void replay_errors(void **state)
{
    env_t *e = env_new(0);
    out_t o;
    const char *body;
    char in[256], id[4][BW_CAPTURE_ID_LEN + 1];
    bw_capture_t *c[4];
    c[0] = add(e, "gone", "1.2.3.4", "GET / HTTP/1.1\r\n\r\n", NULL, BW_CAPTURE_REQ_DONE);
    c[1] = add(e, "gone", "1.2.3.4", "GET / HTTP/1.1\r\n\r\n", NULL, BW_CAPTURE_REQ_READING);
    c[2] = add(e, "gone", "1.2.3.4", "GET / HTTP/1.1\r\n\r\n", NULL, BW_CAPTURE_REQ_ERROR);
    c[3] = bw_capture_begin(e->store, "gone", "1.2.3.4", 1);
    char big[4096];
    memset(big, 'x', sizeof big);
    /* over the per-entry cap (10 MiB): partially captured */
    for (int i = 0; i < 2600; i++)
        bw_capture_raw(c[3], BW_CAPTURE_REQUEST, big, sizeof big);
    for (int i = 0; i < 4; i++)
        snprintf(id[i], sizeof id[i], "%s", bw_capture_id(c[i]));

    assert_int_equal(http(e, "POST", "/api/requests/http", "{\"id\":\"airt_nope\"}", &o, &body),
                     404);
    assert_error(body, 106, "request entry not found", "id", "airt_nope");
    snprintf(in, sizeof in, "{\"id\":\"%s\"}", id[0]);
    assert_int_equal(http(e, "POST", "/api/requests/http", in, &o, &body), 404);
    assert_error(body, 100, "tunnel not found", "name", "gone");
    snprintf(in, sizeof in, "{\"id\":\"%s\",\"tunnel_name\":\"other\"}", id[0]);
    assert_int_equal(http(e, "POST", "/api/requests/http", in, &o, &body), 404);
    assert_error(body, 100, "tunnel not found", "name", "other");
    snprintf(in, sizeof in, "{\"id\":\"%s\"}", id[3]);
    assert_int_equal(http(e, "POST", "/api/requests/http", in, &o, &body), 400);
    assert_error(body, 109, "cannot replay request that was only partially captured", "id", id[3]);
    snprintf(in, sizeof in, "{\"id\":\"%s\"}", id[1]);
    assert_int_equal(http(e, "POST", "/api/requests/http", in, &o, &body), 400);
    assert_error(body, 110, "cannot replay request while the request body is still being read",
                 "id", id[1]);
    snprintf(in, sizeof in, "{\"id\":\"%s\"}", id[2]);
    assert_int_equal(http(e, "POST", "/api/requests/http", in, &o, &body), 400);
    assert_error(body, 111, "cannot replay request that encountered an error while being read",
                 "id", id[2]);
    assert_int_equal(http(e, "POST", "/api/requests/http", "{\"id\":5}", &o, &body), 400);
    assert_int_equal(http(e, "POST", "/api/requests/http", "[1]", &o, &body), 400);
    assert_int_equal(http(e, "POST", "/api/requests/http", "{", &o, &body), 400);
    for (int i = 0; i < 4; i++)
        bw_capture_end(c[i], 1);
    env_free(e);
}

static void inspect_downloads(void **state)
{
    env_t *e = env_new(0);
    out_t o;
    const char *body;
    char path[160];
    bw_capture_t *c = add(e, "a", "10.0.0.1", "REQ\x01\x02", "RESP", BW_CAPTURE_REQ_DONE);
    char id[BW_CAPTURE_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", bw_capture_id(c));
    snprintf(path, sizeof path, "/inspect/http/%s/request", id);
    assert_int_equal(http(e, "GET", path, NULL, &o, &body), 200);
    assert_string_equal(body, "REQ\x01\x02");
    assert_non_null(strstr(o.buf, "Content-Type: application/octet-stream\r\n"));
    char want[128];
    snprintf(want, sizeof want, "Content-Disposition: attachment; filename=\"%s-request.txt\"", id);
    assert_non_null(strstr(o.buf, want));
    snprintf(path, sizeof path, "/inspect/http/%s/response", id);
    assert_int_equal(http(e, "GET", path, NULL, &o, &body), 200);
    assert_string_equal(body, "RESP");
    assert_int_equal(http(e, "DELETE", path, NULL, &o, &body), 405);
    assert_string_equal(body, "Invalid method: DELETE\n");
    assert_int_equal(http(e, "PUT", path, NULL, &o, &body), 405);
    assert_string_equal(body, "Invalid method: PUT\n");
    assert_int_equal(http(e, "GET", "/inspect/http/airt_nope/request", NULL, &o, &body), 404);
    assert_string_equal(body, "404 page not found\n");
    assert_int_equal(http(e, "GET", "/inspect/http/a%zz/request", NULL, &o, &body), 404);
    assert_int_equal(http(e, "GET", "/inspect/http/x/other", NULL, &o, &body), 404);
    bw_capture_end(c, 1);
    env_free(e);
}

/* ---- host capture slots on real tunnels ---- */

static bw_tunnel_t *start(env_t *e, const char *name, const char *proto, const char *inspect)
{
    char err[256];
    json_t *def = json_pack("{s:s, s:s}", "proto", proto, "addr", "localhost:1");
    assert_non_null(def);
    if (inspect)
        json_object_set_new(def, "inspect", json_string(inspect));
    bw_tunnel_spec_t spec = {.name = name, .proto = proto, .addr = "localhost:1", .options = def};
    assert_int_equal(bw_agent_add_tunnel(e->a, &spec, NULL, NULL, err, sizeof err), 0);
    json_decref(def);
    return bw_agent_find_tunnel(e->a, name);
}

static void host_capture_slots(void **state)
{
    const bw_host_t *H = bw_host_table();
    bw_conn_info_t info = {.struct_size = sizeof info,
                           .client_addr = "9.9.9.9:5",
                           .client_ip = "9.9.9.9",
                           .edge_type = BW_EDGE_TCP,
                           .server_name = ""};
    env_t *e = env_new(0);
    bw_tunnel_t *on = start(e, "on", "tcptls", NULL), *off = start(e, "off", "tcptls", "false");
    bw_tunnel_t *tcp = start(e, "plain", "tcp", "true");
    assert_null(H->capture_begin(off, &info));
    assert_null(H->capture_begin(tcp, &info)); /* the plugin does not inspect */
    bw_capture_t *c = H->capture_begin(on, &info);
    assert_non_null(c);
    bw_http_head_t head = {
        .struct_size = sizeof head, .method = "GET", .uri = "/", .proto = "HTTP/1.1"};
    assert_int_equal(H->capture_head(c, BW_CAPTURE_REQUEST, &head), 0);
    assert_int_equal(H->capture_raw(c, BW_CAPTURE_REQUEST, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    bw_capture_info_t ci;
    assert_int_equal(bw_capture_store_info(e->store, bw_capture_id(c), &ci), 0);
    assert_int_equal(ci.req, BW_CAPTURE_REQ_READING);
    H->capture_request_done(c, 0);
    assert_int_equal(bw_capture_store_info(e->store, bw_capture_id(c), &ci), 0);
    assert_int_equal(ci.req, BW_CAPTURE_REQ_DONE);
    H->capture_request_done(c, BW_ECONNRESET);
    assert_int_equal(bw_capture_store_info(e->store, bw_capture_id(c), &ci), 0);
    assert_int_equal(ci.req, BW_CAPTURE_REQ_ERROR);
    H->capture_request_done(c, 0); /* a failure is final */
    assert_int_equal(bw_capture_store_info(e->store, bw_capture_id(c), &ci), 0);
    assert_int_equal(ci.req, BW_CAPTURE_REQ_ERROR);
    assert_int_equal(ci.seen[0], 18);
    assert_string_equal(bw_capture_store_remote_addr(e->store, bw_capture_id(c)), "9.9.9.9");
    /* the tunnel stopping and the store clearing leave the handle usable */
    assert_int_equal(bw_agent_remove_tunnel(e->a, "on"), 0);
    bw_capture_store_clear(e->store);
    assert_int_equal(H->capture_raw(c, BW_CAPTURE_RESPONSE, "x", 1), 0);
    H->capture_end(c, 3);
    assert_int_equal(bw_capture_store_count(e->store), 0);
    /* a handle outliving the agent and its store */
    on = start(e, "on", "tcptls", "true");
    c = H->capture_begin(on, &info);
    assert_non_null(c);
    env_free(e);
    assert_int_equal(H->capture_raw(c, BW_CAPTURE_REQUEST, "late", 4), 0);
    H->capture_end(c, 1);

    e = env_new(-1); /* inspect_db_size -1: nothing is captured */
    on = start(e, "on", "tcptls", NULL);
    assert_null(H->capture_begin(on, &info));
    assert_int_equal(list_count(e, "", NULL), 0);
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_order_limit_filters), cmocka_unit_test(list_limit_is_capped),
        cmocka_unit_test(get_and_delete),           cmocka_unit_test(replay_errors),
        cmocka_unit_test(inspect_downloads),        cmocka_unit_test(host_capture_slots),
    };
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
    bw_io_t *io = bw_io_new(uv_default_loop());
    assert_non_null(io);
    bw_host_set_io(io);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bw_host_set_io(NULL);
    bw_io_free(io);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    return rc;
}
