/* Unit tests for the http plugin's connection logic (plugins/http/conn.c)
 * against a fake host: streams are records of what was written and whether
 * reading is on, connect completes when the test says, and the capture slots
 * record what the plugin reported. Checks what integration tests cannot see
 * yet: capture contents, request-done reporting and backpressure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <burrow/plugin.h>

#include "h1.h"

#include "http_fake_host.h"

const bw_plugin_t *bw_plugin_entry(void);

/* ---- helpers ----------------------------------------------------------------- */

static const bw_plugin_t *P;
static void *g_state, *g_tstate;

static int setup(void **st)
{
    memset(&g_pub, 0, sizeof g_pub);
    memset(&g_up, 0, sizeof g_up);
    g_connects = g_conn_closes = g_http_metrics = 0;
    g_inspect = 1;
    P = bw_plugin_entry();
    assert_int_equal(P->init(&fake_host, &g_state, NULL), 0);
    assert_int_equal(P->tunnel_start(g_state, &g_tunnel, &g_tstate, NULL), 0);
    bw_conn_info_t info = {.struct_size = sizeof info,
                           .client_addr = "127.0.0.1:5555",
                           .client_ip = "127.0.0.1",
                           .edge_type = BW_EDGE_HTTPS,
                           .server_name = "abc.example",
                           .server_addr = "10.0.0.1:443"};
    P->conn_open(g_tstate, &g_pub, &info);
    return 0;
}

static int teardown(void **st)
{
    if (!g_pub.closed)
        g_pub.cbs->on_error(&g_pub, g_pub.ud, BW_ECONNRESET);
    if (g_connect_cb) {
        bw_connect_cb cb = g_connect_cb;
        g_connect_cb = NULL;
        cb(g_connect_ud, NULL, BW_ECANCELED);
    }
    P->tunnel_stop(g_tstate);
    P->destroy(g_state);
    h1_buf_free(&g_pub.written);
    h1_buf_free(&g_up.written);
    for (int i = 0; i < 3; i++)
        h1_buf_free(&g_cap.raw[i]);
    return 0;
}

static void client(const char *s)
{
    g_pub.cbs->on_read(&g_pub, g_pub.ud, s, strlen(s));
}

static void server(const char *s)
{
    g_up.cbs->on_read(&g_up, g_up.ud, s, strlen(s));
}

static void connect_ok(void)
{
    assert_non_null(g_connect_cb);
    bw_connect_cb cb = g_connect_cb;
    g_connect_cb = NULL;
    h1_buf_t w = g_up.written;
    memset(&g_up, 0, sizeof g_up);
    g_up.written = w;
    cb(g_connect_ud, &g_up, 0);
}

static void written_is(struct bw_stream *s, const char *want)
{
    assert_int_equal(s->written.len, strlen(want));
    assert_memory_equal(s->written.data, want, strlen(want));
}

/* ---- tests ----------------------------------------------------------------------- */

#define REQ                                                                                        \
    "POST /x HTTP/1.1\r\nHost: abc.example\r\nTransfer-Encoding: chunked\r\n\r\n"                  \
    "3\r\nabc\r\n0\r\n\r\n"
#define RES "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

static void test_capture_exact_bytes_with_host_rewrite(void **st)
{
    g_host_header = "rewrite";
    teardown(st);
    setup(st);
    g_host_header = NULL;
    client(REQ);
    assert_int_equal(g_connects, 1);
    assert_int_equal(g_pub.reading, 0); /* waits for the local connection */
    connect_ok();
    /* the local service sees the rewritten head, the capture the received one */
    assert_non_null(strstr(g_up.written.data, "Host: localhost:8080\r\n"));
    assert_non_null(strstr(g_up.written.data, "X-Original-Host: abc.example\r\n"));
    assert_int_equal(g_cap.raw[BW_CAPTURE_REQUEST].len, strlen(REQ));
    assert_memory_equal(g_cap.raw[BW_CAPTURE_REQUEST].data, REQ, strlen(REQ));
    assert_int_equal(g_cap.req_done, 1);
    assert_int_equal(g_cap.req_err, 0);
    assert_string_equal(g_cap.uri, "/x");
    server(RES);
    written_is(&g_pub, RES);
    assert_int_equal(g_cap.status, 200);
    assert_memory_equal(g_cap.raw[BW_CAPTURE_RESPONSE].data, RES, strlen(RES));
    assert_int_equal(g_cap.ended, 1);
    assert_int_equal(g_http_metrics, 1);
    assert_int_equal(g_pub.closed, 0); /* keep-alive */
}

static void test_fast_path_forwards_received_bytes(void **st)
{
    client(REQ);
    connect_ok();
    written_is(&g_up, REQ);
}

static void test_replay_style_eof_finishes_then_closes(void **st)
{
    client("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    g_pub.cbs->on_eof(&g_pub, g_pub.ud);
    assert_int_equal(g_pub.closed, 0);
    connect_ok();
    server(RES);
    written_is(&g_pub, RES);
    assert_int_equal(g_pub.closed, 1);
    assert_int_equal(g_pub.aborted, 0);
    assert_int_equal(g_cap.ended, 1);
}

static void test_connect_failure_is_a_captured_502(void **st)
{
    client("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    bw_connect_cb cb = g_connect_cb;
    g_connect_cb = NULL;
    cb(g_connect_ud, NULL, BW_ECONNREFUSED);
    assert_non_null(strstr(g_pub.written.data, "HTTP/1.1 502 Bad Gateway\r\n"));
    assert_non_null(strstr(g_pub.written.data, "Connection: close\r\n"));
    assert_non_null(
        strstr(g_pub.written.data, "dial tcp localhost:8080: connect: connection refused"));
    assert_non_null(strstr(g_pub.written.data, "<a href=\"https://abc.example\">"));
    assert_int_equal(g_cap.status, 502);
    assert_int_equal(g_cap.raw[BW_CAPTURE_RESPONSE].len, g_pub.written.len);
    assert_int_equal(g_cap.ended, 1);
    assert_int_equal(g_pub.closed, 1);
}

static void test_client_vanishes_mid_body(void **st)
{
    client("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
    connect_ok();
    g_pub.cbs->on_eof(&g_pub, g_pub.ud);
    assert_int_equal(g_cap.req_done, 1);
    assert_int_equal(g_cap.req_err, BW_ECONNRESET);
    assert_int_equal(g_cap.ended, 1);
    assert_int_equal(g_pub.closed, 1);
}

static void test_backpressure_both_ways(void **st)
{
    client("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n");
    connect_ok();
    g_up.paused = 1;
    client("0123456789");
    assert_int_equal(g_pub.reading, 0);
    g_up.paused = 0;
    g_up.cbs->on_drain(&g_up, g_up.ud);
    assert_int_equal(g_pub.reading, 1);
    g_pub.paused = 1;
    server("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
    assert_int_equal(g_up.reading, 0);
    g_pub.paused = 0;
    g_pub.cbs->on_drain(&g_pub, g_pub.ud);
    assert_int_equal(g_up.reading, 1);
}

static void test_interim_100_not_captured(void **st)
{
    client("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    connect_ok();
    server("HTTP/1.1 100 Continue\r\n\r\n");
    written_is(&g_pub, "HTTP/1.1 100 Continue\r\n\r\n");
    assert_int_equal(g_cap.res_heads, 0);
    client("hi");
    server(RES);
    assert_int_equal(g_cap.res_heads, 1);
    assert_int_equal(g_cap.status, 200);
    assert_memory_equal(g_cap.raw[BW_CAPTURE_RESPONSE].data, RES, strlen(RES));
}

static void test_inspection_off(void **st)
{
    g_inspect = 0;
    client("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    connect_ok();
    server(RES);
    written_is(&g_pub, RES);
    assert_int_equal(g_http_metrics, 1);
}

static void test_bad_request_answers_400(void **st)
{
    client("GET / HTTP/1.1\r\nHost h\r\n\r\n");
    assert_non_null(strstr(g_pub.written.data, "HTTP/1.1 400 Bad Request\r\n"));
    assert_int_equal(g_pub.closed, 1);
    assert_int_equal(g_connects, 0);
}

static void restart_with_auth(void **st)
{
    g_auth = "u:p";
    teardown(st);
    setup(st);
    g_auth = NULL;
}

static void test_auth_refusal_keeps_connection(void **st)
{
    restart_with_auth(st);
    client("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
           "GET /2 HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dTpw\r\n\r\n");
    assert_non_null(strstr(g_pub.written.data, "HTTP/1.1 401 Unauthorized\r\n"));
    assert_non_null(strstr(g_pub.written.data, "WWW-Authenticate: Basic realm=\"burrow\"\r\n"));
    assert_int_equal(g_pub.closed, 0);
    assert_int_equal(g_connects, 1); /* only the authorised request goes on */
    connect_ok();
    written_is(&g_up, "GET /2 HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dTpw\r\n\r\n");
}

static void test_auth_refusal_with_expect_closes(void **st)
{
    restart_with_auth(st);
    client("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_non_null(strstr(g_pub.written.data, "HTTP/1.1 401 Unauthorized\r\n"));
    assert_int_equal(g_pub.closed, 1);
    assert_int_equal(g_pub.aborted, 0);
    assert_int_equal(g_cap.ended, 1);
}

/* proxy_proto: the header goes first on every local connection, the
 * public connection's client in each, and again after the service closed
 * between exchanges. */
static void test_proxy_header_first_on_each_local_connection(void **st)
{
    g_proxy_proto = "1";
    teardown(st);
    setup(st);
    g_proxy_proto = NULL;
#define PP1  "PROXY TCP4 127.0.0.1 10.0.0.1 5555 443\r\n"
#define GET1 "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
#define GET2 "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
    client(GET1);
    connect_ok();
    written_is(&g_up, PP1 GET1);
    server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    g_up.cbs->on_eof(&g_up, g_up.ud);
    assert_int_equal(g_up.closed, 1);
    client(GET2);
    assert_int_equal(g_connects, 2);
    connect_ok();
    written_is(&g_up, PP1 GET1 PP1 GET2);
}

static void test_proxy_proto_values(void **st)
{
    static const struct {
        const char *value;
        int rc;
    } cases[] = {{"1", 0}, {"2", 0}, {"0", 0}, {"3", BW_EINVAL}, {"true", BW_EINVAL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        g_proxy_proto = cases[i].value;
        assert_int_equal(P->validate(g_state, NULL, "t", NULL), cases[i].rc);
        void *ts = NULL;
        int rc = P->tunnel_start(g_state, &g_tunnel, &ts, NULL);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0)
            P->tunnel_stop(ts);
    }
    g_proxy_proto = NULL;
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_capture_exact_bytes_with_host_rewrite),
        T(test_fast_path_forwards_received_bytes),
        T(test_replay_style_eof_finishes_then_closes),
        T(test_connect_failure_is_a_captured_502),
        T(test_client_vanishes_mid_body),
        T(test_backpressure_both_ways),
        T(test_interim_100_not_captured),
        T(test_inspection_off),
        T(test_bad_request_answers_400),
        T(test_auth_refusal_keeps_connection),
        T(test_auth_refusal_with_expect_closes),
        T(test_proxy_header_first_on_each_local_connection),
        T(test_proxy_proto_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
