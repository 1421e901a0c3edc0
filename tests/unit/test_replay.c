/* Replay (replay.h): rebuilding a captured request with modifications, and
 * the synthetic connection a replay feeds into a tunnel's plugin, run on a
 * real loop with an in-test plugin descriptor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "host.h"
#include "log.h"
#include "replay.h"
#include "stream.h"

/* Linked with --wrap=calloc (tests/unit/meson.build): the g_calloc_fail'th
 * calloc from now returns NULL. */
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
static int g_calloc_fail;

void *__wrap_calloc(size_t n, size_t size)
{
    if (g_calloc_fail > 0 && --g_calloc_fail == 0)
        return NULL;
    return __real_calloc(n, size);
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

#define REQ "POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc"

/* ---- bw_replay_modify ---- */

static char *modify(const char *raw, const char *mods_json, int want_rc, char *err)
{
    json_error_t jerr;
    json_t *mods = json_loads(mods_json, 0, &jerr);
    assert_non_null(mods);
    void *out = NULL;
    size_t len = 0;
    assert_non_null(mods);
    int rc = bw_replay_modify(raw, strlen(raw), mods, &out, &len, err, 256);
    json_decref(mods);
    assert_int_equal(rc, want_rc);
    if (rc < 0) {
        assert_null(out);
        return NULL;
    }
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, out, len);
    s[len] = '\0';
    free(out);
    return s;
}

static void expect(const char *raw, const char *mods, const char *want)
{
    char err[256] = "";
    char *got = modify(raw, mods, 0, err);
    assert_string_equal(got, want);
    free(got);
}

static void expect_error(const char *raw, const char *mods, const char *needle)
{
    char err[256] = "";
    modify(raw, mods, BW_EINVAL, err);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void modify_nothing_keeps_bytes(void **state)
{
    expect(REQ, "{}", REQ);
    /* bare LF line ends come out as CRLF; the body is untouched */
    expect("GET / HTTP/1.0\nA: b\n\nxy\n", "{}", "GET / HTTP/1.0\r\nA: b\r\n\r\nxy\n");
}

static void modify_method_uri_headers(void **state)
{
    expect(REQ, "{\"method\":\"PUT\",\"uri\":\"/z\"}",
           "PUT /z HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc");
    /* replacing is case-insensitive, a null removes, arrays repeat */
    expect(REQ, "{\"headers\":{\"x-a\":null,\"HOST\":\"y\",\"X-B\":[\"1\",\"2\"]}}",
           "POST /a?b=1 HTTP/1.1\r\nContent-Length: 3\r\nHOST: y\r\nX-B: 1\r\nX-B: 2\r\n\r\nabc");
    /* a folded continuation line goes with its header */
    expect("GET / HTTP/1.1\r\nX-A: 1\r\n  more\r\nB: 2\r\n\r\n", "{\"headers\":{\"X-A\":null}}",
           "GET / HTTP/1.1\r\nB: 2\r\n\r\n");
    expect("GET / HTTP/1.1\r\nX-A: 1\r\n  more\r\nB: 2\r\n\r\n", "{\"headers\":{\"B\":null}}",
           "GET / HTTP/1.1\r\nX-A: 1\r\n  more\r\n\r\n");
}

static void modify_body_fixes_framing(void **state)
{
    expect(REQ, "{\"body\":\"hello!\"}",
           "POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nContent-Length: 6\r\n\r\nhello!");
    expect("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
           "{\"body\":\"\",\"headers\":{\"content-length\":\"99\"}}",
           "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    expect(
        REQ, "{\"body_base64\":\"AAEC/w==\"}",
        "POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nContent-Length: 4\r\n\r\n\x00\x01\x02\xff");
}

static void modify_body_base64_binary(void **state)
{
    json_t *mods = json_pack("{s:s}", "body_base64", "AAEC/w");
    assert_non_null(mods);
    void *out;
    size_t len;
    char err[128];
    assert_int_equal(bw_replay_modify(REQ, strlen(REQ), mods, &out, &len, err, sizeof err), 0);
    assert_int_equal(len, strlen("POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n"
                                 "Content-Length: 4\r\n\r\n") +
                              4);
    assert_memory_equal((char *)out + len - 4, "\x00\x01\x02\xff", 4);
    free(out);
    json_decref(mods);
}

static void modify_rejects_bad_input(void **state)
{
    expect_error(REQ, "[]", "modifications must be an object");
    expect_error(REQ, "{\"method\":1}", "modifications.method must be a string");
    expect_error(REQ, "{\"method\":\"GE T\"}", "not a valid HTTP method");
    expect_error(REQ, "{\"uri\":\"/a b\"}", "modifications.uri");
    expect_error(REQ, "{\"uri\":\"\"}", "modifications.uri");
    expect_error(REQ, "{\"headers\":[]}", "headers must be an object");
    expect_error(REQ, "{\"headers\":{\"a b\":\"1\"}}", "invalid header name 'a b'");
    expect_error(REQ, "{\"headers\":{\"A\":\"1\\r\\nB: 2\"}}", "contains CR, LF or NUL");
    expect_error(REQ, "{\"headers\":{\"A\":5}}", "must be a string, an array of strings or null");
    expect_error(REQ, "{\"headers\":{\"A\":[\"x\",5]}}", "modifications.headers.A[1]");
    expect_error(REQ, "{\"body\":\"a\",\"body_base64\":\"YQ==\"}", "not both");
    expect_error(REQ, "{\"body_base64\":\"!!\"}", "not valid base64");
    expect_error(REQ, "{\"trailers\":{}}", "unknown modification 'trailers'");
    expect_error("garbage", "{}", "no valid request line");
    expect_error("GET / HTTP/1.1\r\nA: b\r\n", "{}", "no complete head");
}

/* ---- the synthetic connection ---- */

typedef struct fake {
    bw_stream_t *s;
    char got[256];
    size_t got_len;
    int eof, opened, answer, slot_calls;
    char client_addr[64], client_ip[64];
    bw_edge_type_t edge;
} fake_t;

static fake_t F;

static void f_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    memcpy(F.got + F.got_len, data, len);
    F.got_len += len;
}

static void f_eof(bw_stream_t *s, void *ud)
{
    F.eof = 1;
    if (F.answer) { /* answer, then close: the replay reads to EOF */
        bw_stream_write(s, "HTTP/1.1 204 No Content\r\n\r\n", 27);
        bw_stream_close(s, 0);
        F.s = NULL;
    }
}

static const bw_stream_cbs_t f_cbs = {
    .struct_size = sizeof f_cbs, .on_read = f_read, .on_eof = f_eof};

static void f_conn_open(void *tstate, bw_stream_t *pub, const bw_conn_info_t *info)
{
    F.opened++;
    F.s = pub;
    F.edge = info->edge_type;
    snprintf(F.client_addr, sizeof F.client_addr, "%s", info->client_addr);
    snprintf(F.client_ip, sizeof F.client_ip, "%s", info->client_ip);
    assert_string_equal(info->server_name, "");
    bw_stream_set_callbacks(pub, &f_cbs, NULL);
}

static int f_replay(void *tstate, const void *raw, size_t len, bw_error_t *err)
{
    F.slot_calls++;
    return 0;
}

static bw_loaded_plugin_t fake_plugin(int with_slot)
{
    bw_loaded_plugin_t p;
    memset(&p, 0, sizeof p);
    p.desc.name = "fake";
    p.desc.edge_type = BW_EDGE_HTTP;
    p.desc.conn_open = f_conn_open;
    if (with_slot)
        p.desc.replay = f_replay;
    return p;
}

static bw_tunnel_t *fake_tunnel(const bw_loaded_plugin_t *p)
{
    bw_conf_t conf = {.obj = json_object()};
    bw_tunnel_t *t = bw_tunnel_new("t", "localhost:1", p, &conf);
    assert_non_null(t);
    t->tstate = &F; /* no tunnel_stop slot is called: tstate is cleared first */
    return t;
}

static void run_until(int (*done)(void), int max_ms)
{
    uint64_t end = uv_now(uv_default_loop()) + (uint64_t)max_ms;
    while (!done() && uv_now(uv_default_loop()) < end)
        uv_run(uv_default_loop(), UV_RUN_ONCE);
}

static bw_tunnel_t *g_t;

static int replay_gone(void)
{
    return bw_replay_count(g_t) == 0;
}

static void drain_loop(void)
{
    for (int i = 0; i < 10; i++)
        uv_run(uv_default_loop(), UV_RUN_NOWAIT);
}

static void free_tunnel(bw_tunnel_t *t)
{
    t->tstate = NULL; /* the fake plugin has no tunnel_stop */
    bw_tunnel_free(t);
}

static void replay_feeds_plugin_and_reads_to_eof(void **state)
{
    char err[128];
    bw_loaded_plugin_t p = fake_plugin(0);
    memset(&F, 0, sizeof F);
    F.answer = 1;
    g_t = fake_tunnel(&p);
    assert_int_equal(bw_replay_start(g_t, REQ, strlen(REQ), "10.1.2.3", 0, err, sizeof err), 0);
    assert_int_equal(F.opened, 1); /* conn_open ran at once, like a public connection */
    assert_string_equal(F.client_addr, "10.1.2.3:0");
    assert_string_equal(F.client_ip, "10.1.2.3");
    assert_int_equal(F.edge, BW_EDGE_HTTP);
    assert_int_equal(bw_replay_count(g_t), 1);
    run_until(replay_gone, 5000);
    assert_int_equal(bw_replay_count(g_t), 0);
    assert_int_equal(F.got_len, strlen(REQ));
    assert_memory_equal(F.got, REQ, F.got_len);
    assert_true(F.eof);
    free_tunnel(g_t);
    drain_loop();
}

static void replay_times_out_and_cancels_with_tunnel(void **state)
{
    char err[128];
    bw_loaded_plugin_t p = fake_plugin(0);
    memset(&F, 0, sizeof F); /* a plugin that never answers */
    g_t = fake_tunnel(&p);
    assert_int_equal(bw_replay_start(g_t, "x", 1, NULL, 50, err, sizeof err), 0);
    assert_string_equal(F.client_addr, "127.0.0.1:0");
    run_until(replay_gone, 5000);
    assert_int_equal(bw_replay_count(g_t), 0); /* the timeout ended it */
    assert_true(F.eof);
    bw_stream_close(F.s, 1);

    memset(&F, 0, sizeof F);
    assert_int_equal(bw_replay_start(g_t, "y", 1, "::1", 0, err, sizeof err), 0);
    assert_string_equal(F.client_addr, "[::1]:0");
    assert_int_equal(bw_replay_count(g_t), 1);
    bw_tunnel_t *t = g_t;
    t->tstate = NULL;
    bw_tunnel_free(t); /* cancels the replay; its memory goes with the handles */
    drain_loop();
    bw_stream_close(F.s, 1);
    drain_loop();
}

static void replay_prefers_plugin_slot(void **state)
{
    char err[128];
    bw_loaded_plugin_t p = fake_plugin(1);
    memset(&F, 0, sizeof F);
    g_t = fake_tunnel(&p);
    assert_int_equal(bw_replay_start(g_t, REQ, strlen(REQ), NULL, 0, err, sizeof err), 0);
    assert_int_equal(F.slot_calls, 1);
    assert_int_equal(F.opened, 0);
    assert_int_equal(bw_replay_count(g_t), 0);
    free_tunnel(g_t);
}

/* A replay that cannot be set up (no memory for it, or for the stream the
 * plugin would get) leaves no socket behind. */
static void replay_setup_failure_closes_sockets(void **state)
{
    char err[128];
    bw_loaded_plugin_t p = fake_plugin(0);
    memset(&F, 0, sizeof F);
    g_t = fake_tunnel(&p);
    int before = open_fds();
    for (int nth = 1; nth <= 2; nth++) {
        g_calloc_fail = nth; /* 1: the replay itself, 2: the plugin's stream */
        assert_int_equal(bw_replay_start(g_t, REQ, strlen(REQ), NULL, 0, err, sizeof err),
                         BW_ENOMEM);
        g_calloc_fail = 0;
        drain_loop();
        assert_int_equal(bw_replay_count(g_t), 0);
        assert_int_equal(open_fds(), before);
    }
    assert_int_equal(F.opened, 0);
    free_tunnel(g_t);
    drain_loop();
}

/* An empty request is replayed as an empty connection. */
static void replay_empty_request(void **state)
{
    char err[128];
    bw_loaded_plugin_t p = fake_plugin(0);
    memset(&F, 0, sizeof F);
    F.answer = 1;
    g_t = fake_tunnel(&p);
    assert_int_equal(bw_replay_start(g_t, NULL, 0, NULL, 0, err, sizeof err), 0);
    run_until(replay_gone, 5000);
    assert_int_equal(F.got_len, 0);
    assert_true(F.eof);
    free_tunnel(g_t);
    drain_loop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(modify_nothing_keeps_bytes),
        cmocka_unit_test(modify_method_uri_headers),
        cmocka_unit_test(modify_body_fixes_framing),
        cmocka_unit_test(modify_body_base64_binary),
        cmocka_unit_test(modify_rejects_bad_input),
        cmocka_unit_test(replay_feeds_plugin_and_reads_to_eof),
        cmocka_unit_test(replay_times_out_and_cancels_with_tunnel),
        cmocka_unit_test(replay_prefers_plugin_slot),
        cmocka_unit_test(replay_setup_failure_closes_sockets),
        cmocka_unit_test(replay_empty_request),
    };
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
    bw_io_t *io = bw_io_new(uv_default_loop());
    assert_non_null(io);
    bw_host_set_io(io);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bw_host_set_io(NULL);
    bw_io_free(io);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    uv_loop_close(uv_default_loop());
    return rc;
}
