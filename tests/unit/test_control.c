/* Unit tests for the control-protocol codec (core/session/control.c).
 *
 * Over 600 lines: one test program per module, as tests/unit/meson.build
 * builds them; its cases share the fixtures above them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <burrow/error.h>

#include "control.h"

#define ID_A "0123456789abcdef0123456789abcdef"

/* Build a frame by hand: length prefix + raw body, so tests can send bytes
 * that bw_frame_encode would never produce. Caller frees. */
static uint8_t *raw_frame(uint32_t declared, const char *body, size_t *outlen)
{
    size_t blen = strlen(body);
    uint8_t *f = malloc(4 + blen);

    assert_non_null(f);
    f[0] = (uint8_t)(declared >> 24);
    f[1] = (uint8_t)(declared >> 16);
    f[2] = (uint8_t)(declared >> 8);
    f[3] = (uint8_t)declared;
    memcpy(f + 4, body, blen);
    *outlen = 4 + blen;
    return f;
}

static uint8_t *frame_of(const char *body, size_t *outlen)
{
    return raw_frame((uint32_t)strlen(body), body, outlen);
}

/* Feed a whole buffer in one call; expects the reader to fail with want_rc
 * and err to contain want_text. */
static void expect_feed_error(const char *body, uint32_t declared, ssize_t want_rc,
                              const char *want_text)
{
    bw_frame_reader_t r;
    json_t *msg = (json_t *)1;
    char err[256] = "";
    size_t len;
    uint8_t *f = raw_frame(declared, body, &len);

    bw_frame_reader_init(&r, 0);
    ssize_t rc = bw_frame_reader_feed(&r, f, len, &msg, err, sizeof err);
    assert_int_equal(rc, want_rc);
    assert_null(msg);
    if (!strstr(err, want_text))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want_text);
    /* the reader stays failed: resynchronising mid-stream would misparse */
    rc = bw_frame_reader_feed(&r, f, len, &msg, err, sizeof err);
    assert_true(rc < 0);
    bw_frame_reader_free(&r);
    bw_frame_reader_free(&r);
    free(f);
}

/* Encode msg, decode it through a fresh reader in one call, and check the
 * decoded message is equal, has the expected type and validates. */
static void roundtrip(json_t *msg, bw_msg_type_t want)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    bw_frame_reader_t r;
    json_t *out = NULL;
    char err[256] = "";

    assert_non_null(msg);
    assert_int_equal(bw_frame_encode(msg, &buf, &len), 0);
    assert_true(len > 4);
    assert_int_equal(((size_t)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3]), len - 4);
    /* compact: no whitespace outside strings in what we produce */
    assert_null(memchr(buf + 4, '\n', len - 4));
    assert_null(memmem(buf + 4, len - 4, ": ", 2));

    bw_frame_reader_init(&r, 0);
    assert_int_equal(bw_frame_reader_feed(&r, buf, len, &out, err, sizeof err), (ssize_t)len);
    assert_non_null(out);
    assert_true(json_equal(msg, out));
    assert_int_equal(bw_msg_type(out), want);
    if (bw_msg_validate(out, err, sizeof err) != 0)
        fail_msg("validate: %s", err);
    json_decref(out);
    bw_frame_reader_free(&r);
    free(buf);
    json_decref(msg);
}

static void test_roundtrip_builders(void **state)
{
    (void)state;
    roundtrip(bw_msg_auth("tok", "", "0.1.0"), BW_MSG_AUTH);
    roundtrip(bw_msg_auth("tok", ID_A, "0.1.0"), BW_MSG_AUTH);
    roundtrip(bw_msg_auth_resp(ID_A, "0.1.0", ""), BW_MSG_AUTH_RESP);
    roundtrip(bw_msg_auth_resp("", "0.1.0", "invalid authtoken"), BW_MSG_AUTH_RESP);
    roundtrip(bw_msg_bind("1", "tcp", "tcp", "ssh", "", "", "127.0.0.1:10001"), BW_MSG_BIND);
    roundtrip(bw_msg_bind("2", "http", "https", "web", "x", NULL, NULL), BW_MSG_BIND);
    roundtrip(bw_msg_bind_resp("1", ID_A, "tcp://localhost:10001", ""), BW_MSG_BIND_RESP);
    roundtrip(bw_msg_bind_resp("1", "", "", "tunnel limit reached"), BW_MSG_BIND_RESP);
    roundtrip(bw_msg_unbind(ID_A), BW_MSG_UNBIND);
    roundtrip(bw_msg_unbind_resp(ID_A, ""), BW_MSG_UNBIND_RESP);
    roundtrip(bw_msg_notice("warn", "going down for maintenance"), BW_MSG_NOTICE);
    roundtrip(bw_msg_conn(ID_A, "203.0.113.7:5555", "tls", "a.example.com", "198.51.100.1:443"),
              BW_MSG_CONN);
    roundtrip(bw_msg_conn(ID_A, "[2001:db8::1]:80", "http", NULL, NULL), BW_MSG_CONN);
}

static void test_builder_members(void **state)
{
    (void)state;
    json_t *m = bw_msg_bind("r1", "tcp", "tcp", NULL, "sub", NULL, NULL);

    assert_non_null(m);
    assert_string_equal(bw_msg_str(m, "type"), "Bind");
    assert_string_equal(bw_msg_str(m, "req_id"), "r1");
    assert_string_equal(bw_msg_str(m, "subdomain"), "sub");
    assert_string_equal(bw_msg_str(m, "name"), "");
    assert_string_equal(bw_msg_str(m, "absent"), "");
    json_decref(m);

    m = bw_msg_notice("info", "hello");
    assert_string_equal(bw_msg_str(m, "msg"), "hello");
    assert_string_equal(bw_msg_str(m, "level"), "info");
    json_decref(m);

    /* the wire form puts "type" first, which helps anyone reading captures */
    uint8_t *buf;
    size_t len;
    m = bw_msg_unbind(ID_A);
    assert_int_equal(bw_frame_encode(m, &buf, &len), 0);
    const char want[] = "{\"type\":\"Unbind\",\"tunnel_id\":\"" ID_A "\"}";
    assert_int_equal(len, 4 + sizeof want - 1);
    assert_memory_equal(buf + 4, want, sizeof want - 1);
    free(buf);
    json_decref(m);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    json_t *a = bw_msg_auth("secret", "", "0.1.0");
    json_t *b = bw_msg_notice("error", "x");
    uint8_t *fa, *fb;
    size_t la, lb;
    assert_int_equal(bw_frame_encode(a, &fa, &la), 0);
    assert_int_equal(bw_frame_encode(b, &fb, &lb), 0);
    uint8_t *both = malloc(la + lb);
    assert_non_null(both);
    memcpy(both, fa, la);
    memcpy(both + la, fb, lb);

    bw_frame_reader_t r;
    bw_frame_reader_init(&r, 0);
    json_t *got[2] = {NULL, NULL};
    size_t ngot = 0;
    for (size_t i = 0; i < la + lb; i++) {
        json_t *m = NULL;
        char err[128];
        assert_int_equal(bw_frame_reader_feed(&r, both + i, 1, &m, err, sizeof err), 1);
        if (m) {
            assert_true(ngot < 2);
            /* a frame completes exactly on its last byte */
            assert_int_equal(i + 1, ngot == 0 ? la : la + lb);
            got[ngot++] = m;
        }
    }
    assert_int_equal(ngot, 2);
    assert_true(json_equal(got[0], a));
    assert_true(json_equal(got[1], b));

    json_decref(got[0]);
    json_decref(got[1]);
    json_decref(a);
    json_decref(b);
    bw_frame_reader_free(&r);
    free(both);
    free(fa);
    free(fb);
}

/* Every split point of a frame, in two feeds. */
static void test_every_split(void **state)
{
    (void)state;
    json_t *c = bw_msg_conn(ID_A, "1.2.3.4:5", "tcp", "", "");
    uint8_t *f;
    size_t len;
    assert_int_equal(bw_frame_encode(c, &f, &len), 0);

    for (size_t cut = 0; cut <= len; cut++) {
        bw_frame_reader_t r;
        json_t *m = NULL;
        char err[128];
        bw_frame_reader_init(&r, 0);
        assert_int_equal(bw_frame_reader_feed(&r, f, cut, &m, err, sizeof err), (ssize_t)cut);
        assert_true(cut == len ? m != NULL : m == NULL);
        if (!m) {
            ssize_t rc = bw_frame_reader_feed(&r, f + cut, len - cut, &m, err, sizeof err);
            assert_int_equal(rc, (ssize_t)(len - cut));
            assert_non_null(m);
        }
        assert_true(json_equal(m, c));
        json_decref(m);
        bw_frame_reader_free(&r);
    }
    free(f);
    json_decref(c);
}

/* A Conn frame is followed by raw stream bytes the reader must not eat. */
static void test_frame_then_raw(void **state)
{
    (void)state;
    json_t *c = bw_msg_conn(ID_A, "1.2.3.4:5", "tcp", "", "");
    uint8_t *f;
    size_t len;
    assert_int_equal(bw_frame_encode(c, &f, &len), 0);
    const char raw[] = "\0\0\0\x05GET / HTTP/1.1\r\n";
    uint8_t *buf = malloc(len + sizeof raw);
    assert_non_null(buf);
    memcpy(buf, f, len);
    memcpy(buf + len, raw, sizeof raw);

    bw_frame_reader_t r;
    json_t *m = NULL;
    char err[128];
    bw_frame_reader_init(&r, 0);
    /* split the frame so the raw bytes arrive with its tail */
    assert_int_equal(bw_frame_reader_feed(&r, buf, 3, &m, err, sizeof err), 3);
    assert_null(m);
    ssize_t rc = bw_frame_reader_feed(&r, buf + 3, len + sizeof raw - 3, &m, err, sizeof err);
    assert_int_equal(rc, (ssize_t)(len - 3));
    assert_non_null(m);
    assert_int_equal(bw_msg_type(m), BW_MSG_CONN);
    assert_int_equal(bw_msg_validate(m, err, sizeof err), 0);
    assert_memory_equal(buf + 3 + rc, raw, sizeof raw);

    json_decref(m);
    bw_frame_reader_free(&r);
    free(buf);
    free(f);
    json_decref(c);
}

static void test_empty_feed(void **state)
{
    (void)state;
    bw_frame_reader_t r;
    json_t *m = (json_t *)1;
    char err[64];
    bw_frame_reader_init(&r, 0);
    assert_int_equal(bw_frame_reader_feed(&r, (const uint8_t *)"", 0, &m, err, sizeof err), 0);
    assert_null(m);
    bw_frame_reader_free(&r);
}

static void test_zero_length(void **state)
{
    (void)state;
    expect_feed_error("", 0, BW_EMSGSIZE, "frame length 0 is out of range (1..65536)");
}

static void test_oversize_length(void **state)
{
    (void)state;
    expect_feed_error("{}", BW_PROTO_MAX_MSG + 1, BW_EMSGSIZE,
                      "frame length 65537 is out of range (1..65536)");
    expect_feed_error("", 0xffffffffu, BW_EMSGSIZE, "frame length 4294967295 is out of range");
}

/* The length is judged on the 4 header bytes alone: no body byte is needed
 * (and none may be allocated) to refuse it. */
static void test_oversize_before_body(void **state)
{
    (void)state;
    bw_frame_reader_t r;
    json_t *m = NULL;
    char err[128] = "";
    const uint8_t hdr[] = {0x7f, 0xff, 0xff, 0xff};
    bw_frame_reader_init(&r, 0);
    assert_int_equal(bw_frame_reader_feed(&r, hdr, 3, &m, err, sizeof err), 3);
    assert_int_equal(bw_frame_reader_feed(&r, hdr + 3, 1, &m, err, sizeof err), BW_EMSGSIZE);
    assert_null(r.body);
    bw_frame_reader_free(&r);
}

static void test_custom_limit(void **state)
{
    (void)state;
    bw_frame_reader_t r;
    json_t *m = NULL;
    char err[128] = "";
    size_t len;
    uint8_t *f = frame_of("{\"type\":\"Notice\"}", &len); /* 17 bytes of body */

    bw_frame_reader_init(&r, 16);
    assert_int_equal(bw_frame_reader_feed(&r, f, len, &m, err, sizeof err), BW_EMSGSIZE);
    assert_non_null(strstr(err, "(1..16)"));
    bw_frame_reader_free(&r);

    bw_frame_reader_init(&r, 17);
    assert_int_equal(bw_frame_reader_feed(&r, f, len, &m, err, sizeof err), (ssize_t)len);
    assert_non_null(m);
    json_decref(m);
    bw_frame_reader_free(&r);

    /* a limit above the protocol's is clamped to it */
    bw_frame_reader_init(&r, 1 << 20);
    assert_int_equal(r.max, BW_PROTO_MAX_MSG);
    bw_frame_reader_free(&r);
    free(f);
}

static void feed_bad_body(const char *body, const char *want_text)
{
    expect_feed_error(body, (uint32_t)strlen(body), BW_EPROTO, want_text);
}

static void test_invalid_json(void **state)
{
    (void)state;
    feed_bad_body("{\"type\":\"Auth\"", "invalid JSON");
    feed_bad_body("{\"type\":\"Auth\"} x", "invalid JSON");
    feed_bad_body("not json", "invalid JSON");
    feed_bad_body("{\"type\":\"Auth\",\"type\":\"Bind\"}", "invalid JSON");
    feed_bad_body("{\"type\":\"A\\u0000\"}", "invalid JSON");
    feed_bad_body("{\"type\":\"\\ud800\"}", "invalid JSON");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    feed_bad_body("{\"type\":\"Auth\",\"token\":\"\xff\xfe\"}", "invalid JSON");
    feed_bad_body("{\"type\":\"Auth\",\"token\":\"\xc0\xaf\"}", "invalid JSON"); /* overlong */
    feed_bad_body("{\"type\":\"\xed\xa0\x80\"}", "invalid JSON");                /* surrogate */
}

static void test_non_object(void **state)
{
    (void)state;
    feed_bad_body("[\"type\",\"Auth\"]", "message is not a JSON object");
    feed_bad_body("\"Auth\"", "invalid JSON"); /* jansson refuses scalars at top level */
    feed_bad_body("42", "invalid JSON");
}

static void test_missing_type(void **state)
{
    (void)state;
    feed_bad_body("{}", "message: member \"type\" is missing");
    feed_bad_body("{\"token\":\"x\"}", "message: member \"type\" is missing");
    feed_bad_body("{\"type\":1}", "message: member \"type\" must be a string");
    feed_bad_body("{\"type\":null}", "message: member \"type\" must be a string");
}

static void test_unknown_type(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = frame_of("{\"type\":\"Future\",\"x\":[1,2,{\"y\":null}]}", &len);
    bw_frame_reader_t r;
    json_t *m = NULL;
    char err[128] = "";

    bw_frame_reader_init(&r, 0);
    assert_int_equal(bw_frame_reader_feed(&r, f, len, &m, err, sizeof err), (ssize_t)len);
    assert_non_null(m);
    assert_int_equal(bw_msg_type(m), BW_MSG_UNKNOWN);
    assert_int_equal(bw_msg_validate(m, err, sizeof err), 0);
    json_decref(m);
    bw_frame_reader_free(&r);
    free(f);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(bw_msg_type_name(BW_MSG_AUTH), "Auth");
    assert_string_equal(bw_msg_type_name(BW_MSG_AUTH_RESP), "AuthResp");
    assert_string_equal(bw_msg_type_name(BW_MSG_BIND), "Bind");
    assert_string_equal(bw_msg_type_name(BW_MSG_BIND_RESP), "BindResp");
    assert_string_equal(bw_msg_type_name(BW_MSG_UNBIND), "Unbind");
    assert_string_equal(bw_msg_type_name(BW_MSG_UNBIND_RESP), "UnbindResp");
    assert_string_equal(bw_msg_type_name(BW_MSG_NOTICE), "Notice");
    assert_string_equal(bw_msg_type_name(BW_MSG_CONN), "Conn");
    assert_string_equal(bw_msg_type_name(BW_MSG_UNKNOWN), "unknown");
    assert_string_equal(bw_msg_type_name((bw_msg_type_t)99), "unknown");
    assert_int_equal(bw_msg_type(NULL), BW_MSG_UNKNOWN);
    json_t *m = json_pack("{s:s}", "type", "auth"); /* names are case-sensitive */
    assert_int_equal(bw_msg_type(m), BW_MSG_UNKNOWN);
    json_decref(m);
}

/* Parse a JSON object literal, validate it, and compare the outcome. */
static void expect_invalid(const char *json, const char *want)
{
    json_error_t jerr;
    json_t *m = json_loads(json, 0, &jerr);
    char err[256] = "";

    if (!m)
        fail_msg("bad test JSON %s: %s", json, jerr.text);
    assert_int_equal(bw_msg_validate(m, err, sizeof err), BW_EPROTO);
    if (strcmp(err, want) != 0)
        fail_msg("validate(%s):\n  got  \"%s\"\n  want \"%s\"", json, err, want);
    json_decref(m);
}

static void expect_valid(const char *json)
{
    json_error_t jerr;
    json_t *m = json_loads(json, 0, &jerr);
    char err[256] = "";

    if (!m)
        fail_msg("bad test JSON %s: %s", json, jerr.text);
    if (bw_msg_validate(m, err, sizeof err) != 0)
        fail_msg("validate(%s) failed: %s", json, err);
    json_decref(m);
}

static void test_validate_auth(void **state)
{
    (void)state;
    expect_valid("{\"type\":\"Auth\",\"version\":\"0.1.0\",\"token\":\"t\",\"client_id\":\"\","
                 "\"extra\":5}");
    expect_invalid("{\"type\":\"Auth\",\"token\":\"t\",\"client_id\":\"\"}",
                   "Auth: member \"version\" is missing");
    expect_invalid("{\"type\":\"Auth\",\"version\":1,\"token\":\"t\",\"client_id\":\"\"}",
                   "Auth: member \"version\" must be a string");
    expect_invalid("{\"type\":\"Auth\",\"version\":\"0.1.0\",\"token\":null,\"client_id\":\"\"}",
                   "Auth: member \"token\" must be a string");
    expect_invalid("{\"type\":\"Auth\",\"version\":\"0.1.0\",\"token\":\"t\"}",
                   "Auth: member \"client_id\" is missing");
    expect_invalid(
        "{\"type\":\"Auth\",\"version\":\"0.1.0\",\"token\":\"t\",\"client_id\":\"abc\"}",
        "Auth: member \"client_id\" must be empty or 32 lowercase hex characters");
    expect_invalid("{\"type\":\"Auth\",\"version\":\"0.1.0\",\"token\":\"t\","
                   "\"client_id\":\"0123456789ABCDEF0123456789abcdef\"}",
                   "Auth: member \"client_id\" must be empty or 32 lowercase hex characters");
    expect_invalid("{\"type\":\"Auth\",\"version\":\"0.1.0\",\"token\":\"t\","
                   "\"client_id\":\"0123456789abcdef0123456789abcdeg\"}",
                   "Auth: member \"client_id\" must be empty or 32 lowercase hex characters");
}

static void test_validate_auth_resp(void **state)
{
    (void)state;
    expect_valid(
        "{\"type\":\"AuthResp\",\"client_id\":\"\",\"version\":\"0.1.0\",\"error\":\"no\"}");
    expect_invalid("{\"type\":\"AuthResp\",\"version\":\"0.1.0\",\"error\":\"\"}",
                   "AuthResp: member \"client_id\" is missing");
    expect_invalid("{\"type\":\"AuthResp\",\"client_id\":\"\",\"version\":[],\"error\":\"\"}",
                   "AuthResp: member \"version\" must be a string");
    expect_invalid(
        "{\"type\":\"AuthResp\",\"client_id\":\"\",\"version\":\"0.1.0\",\"error\":false}",
        "AuthResp: member \"error\" must be a string");
}

#define BIND_TAIL "\"name\":\"n\",\"subdomain\":\"\",\"hostname\":\"\",\"remote_addr\":\"\"}"

static void test_validate_bind(void **state)
{
    (void)state;
    expect_valid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"tcp\",\"edge_type\":\"tls\"}");
    expect_valid(
        "{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"tcp\",\"edge_type\":\"http\"," BIND_TAIL);
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"\",\"proto\":\"tcp\",\"edge_type\":\"tcp\"}",
                   "Bind: member \"req_id\" must not be empty");
    expect_invalid("{\"type\":\"Bind\",\"proto\":\"tcp\",\"edge_type\":\"tcp\"}",
                   "Bind: member \"req_id\" is missing");
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":7,\"edge_type\":\"tcp\"}",
                   "Bind: member \"proto\" must be a string");
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"\",\"edge_type\":\"tcp\"}",
                   "Bind: member \"proto\" must not be empty");
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"tcp\",\"edge_type\":\"foo\"}",
                   "Bind: member \"edge_type\" must be one of tcp, http, https, tls");
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"tcp\",\"edge_type\":\"TCP\"}",
                   "Bind: member \"edge_type\" must be one of tcp, http, https, tls");
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"tcp\"}",
                   "Bind: member \"edge_type\" is missing");
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"tcp\",\"edge_type\":\"tcp\","
                   "\"name\":1}",
                   "Bind: member \"name\" must be a string");
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"tcp\",\"edge_type\":\"tcp\","
                   "\"subdomain\":{}}",
                   "Bind: member \"subdomain\" must be a string");
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"tcp\",\"edge_type\":\"tcp\","
                   "\"hostname\":true}",
                   "Bind: member \"hostname\" must be a string");
    expect_invalid("{\"type\":\"Bind\",\"req_id\":\"1\",\"proto\":\"tcp\",\"edge_type\":\"tcp\","
                   "\"remote_addr\":10001}",
                   "Bind: member \"remote_addr\" must be a string");
}

static void test_validate_bind_resp(void **state)
{
    (void)state;
    expect_valid("{\"type\":\"BindResp\",\"req_id\":\"1\",\"tunnel_id\":\"\",\"url\":\"\","
                 "\"error\":\"tunnel limit reached\"}");
    expect_invalid("{\"type\":\"BindResp\",\"tunnel_id\":\"\",\"url\":\"\",\"error\":\"\"}",
                   "BindResp: member \"req_id\" is missing");
    expect_invalid("{\"type\":\"BindResp\",\"req_id\":\"1\",\"tunnel_id\":2,\"url\":\"\","
                   "\"error\":\"\"}",
                   "BindResp: member \"tunnel_id\" must be a string");
    expect_invalid("{\"type\":\"BindResp\",\"req_id\":\"1\",\"tunnel_id\":\"\",\"error\":\"\"}",
                   "BindResp: member \"url\" is missing");
    expect_invalid("{\"type\":\"BindResp\",\"req_id\":\"1\",\"tunnel_id\":\"\",\"url\":\"\"}",
                   "BindResp: member \"error\" is missing");
}

static void test_validate_unbind(void **state)
{
    (void)state;
    expect_valid("{\"type\":\"Unbind\",\"tunnel_id\":\"" ID_A "\"}");
    expect_invalid("{\"type\":\"Unbind\",\"tunnel_id\":\"\"}",
                   "Unbind: member \"tunnel_id\" must not be empty");
    expect_invalid("{\"type\":\"Unbind\"}", "Unbind: member \"tunnel_id\" is missing");
    expect_valid("{\"type\":\"UnbindResp\",\"tunnel_id\":\"x\",\"error\":\"\"}");
    expect_invalid("{\"type\":\"UnbindResp\",\"tunnel_id\":1,\"error\":\"\"}",
                   "UnbindResp: member \"tunnel_id\" must be a string");
    expect_invalid("{\"type\":\"UnbindResp\",\"tunnel_id\":\"x\"}",
                   "UnbindResp: member \"error\" is missing");
}

static void test_validate_notice(void **state)
{
    (void)state;
    expect_valid("{\"type\":\"Notice\",\"level\":\"error\",\"msg\":\"\"}");
    expect_invalid("{\"type\":\"Notice\",\"level\":\"debug\",\"msg\":\"x\"}",
                   "Notice: member \"level\" must be one of info, warn, error");
    expect_invalid("{\"type\":\"Notice\",\"level\":\"\",\"msg\":\"x\"}",
                   "Notice: member \"level\" must be one of info, warn, error");
    expect_invalid("{\"type\":\"Notice\",\"level\":\"info\"}", "Notice: member \"msg\" is missing");
    expect_invalid("{\"type\":\"Notice\",\"level\":\"info\",\"msg\":1.5}",
                   "Notice: member \"msg\" must be a string");
}

static void test_validate_conn(void **state)
{
    (void)state;
    expect_valid("{\"type\":\"Conn\",\"tunnel_id\":\"t\",\"client_addr\":\"1.2.3.4:5\","
                 "\"edge_type\":\"https\"}");
    expect_invalid("{\"type\":\"Conn\",\"tunnel_id\":\"\",\"client_addr\":\"\","
                   "\"edge_type\":\"tcp\"}",
                   "Conn: member \"tunnel_id\" must not be empty");
    expect_invalid("{\"type\":\"Conn\",\"tunnel_id\":\"t\",\"edge_type\":\"tcp\"}",
                   "Conn: member \"client_addr\" is missing");
    expect_invalid("{\"type\":\"Conn\",\"tunnel_id\":\"t\",\"client_addr\":\"\","
                   "\"edge_type\":\"udp\"}",
                   "Conn: member \"edge_type\" must be one of tcp, http, https, tls");
    expect_invalid("{\"type\":\"Conn\",\"tunnel_id\":\"t\",\"client_addr\":\"\","
                   "\"edge_type\":\"tcp\",\"server_name\":0}",
                   "Conn: member \"server_name\" must be a string");
    /* server_addr is optional (older edges omit it) but typed when sent. */
    expect_valid("{\"type\":\"Conn\",\"tunnel_id\":\"t\",\"client_addr\":\"1.2.3.4:5\","
                 "\"edge_type\":\"tcp\",\"server_addr\":\"127.0.0.1:10001\"}");
    expect_invalid("{\"type\":\"Conn\",\"tunnel_id\":\"t\",\"client_addr\":\"\","
                   "\"edge_type\":\"tcp\",\"server_addr\":[]}",
                   "Conn: member \"server_addr\" must be a string");
}

static void test_validate_generic(void **state)
{
    (void)state;
    char err[128] = "";
    json_t *a = json_array();
    assert_int_equal(bw_msg_validate(a, err, sizeof err), BW_EPROTO);
    assert_string_equal(err, "message is not a JSON object");
    json_decref(a);
    assert_int_equal(bw_msg_validate(NULL, err, sizeof err), BW_EPROTO);
    expect_invalid("{\"token\":\"x\"}", "message: member \"type\" is missing");
    expect_invalid("{\"type\":[]}", "message: member \"type\" must be a string");
    expect_valid("{\"type\":\"\"}");
    /* NULL err buffer is allowed */
    json_t *m = json_pack("{s:s}", "type", "Unbind");
    assert_int_equal(bw_msg_validate(m, NULL, 0), BW_EPROTO);
    json_decref(m);
}

static void test_validate_string_limit(void **state)
{
    (void)state;
    char *big = malloc(BW_PROTO_MAX_STR + 2);
    char err[128] = "";
    assert_non_null(big);
    memset(big, 'a', BW_PROTO_MAX_STR + 1);
    big[BW_PROTO_MAX_STR] = '\0';

    json_t *m = bw_msg_auth(big, "", "0.1.0"); /* exactly at the limit */
    assert_int_equal(bw_msg_validate(m, err, sizeof err), 0);
    json_decref(m);

    big[BW_PROTO_MAX_STR] = 'a';
    big[BW_PROTO_MAX_STR + 1] = '\0';
    m = bw_msg_auth(big, "", "0.1.0");
    assert_int_equal(bw_msg_validate(m, err, sizeof err), BW_EPROTO);
    assert_string_equal(err, "Auth: member \"token\" is longer than 4096 bytes");
    json_decref(m);

    m = bw_msg_bind("1", "tcp", "tcp", NULL, NULL, big, NULL); /* optional member too */
    assert_int_equal(bw_msg_validate(m, err, sizeof err), BW_EPROTO);
    assert_string_equal(err, "Bind: member \"hostname\" is longer than 4096 bytes");
    json_decref(m);

    m = json_pack("{s:s, s:s#}", "type", "Unbind", "tunnel_id", "a\0b", (size_t)3);
    assert_non_null(m);
    assert_int_equal(bw_msg_validate(m, err, sizeof err), BW_EPROTO);
    assert_string_equal(err, "Unbind: member \"tunnel_id\" must not contain NUL");
    json_decref(m);
    free(big);
}

static void test_encode_limits(void **state)
{
    (void)state;
    uint8_t *out = (uint8_t *)1;
    size_t len = 1;
    /* {"type":"Notice","msg":"<k a's>"} is 26 + k bytes */
    size_t k = BW_PROTO_MAX_MSG - 26;
    char *s = malloc(k + 2);
    assert_non_null(s);
    memset(s, 'a', k + 1);
    s[k] = '\0';

    json_t *m = json_pack("{s:s, s:s}", "type", "Notice", "msg", s);
    assert_int_equal(bw_frame_encode(m, &out, &len), 0);
    assert_int_equal(len, 4 + BW_PROTO_MAX_MSG);
    /* the largest legal frame decodes */
    bw_frame_reader_t r;
    json_t *back = NULL;
    char err[128];
    bw_frame_reader_init(&r, 0);
    assert_int_equal(bw_frame_reader_feed(&r, out, len, &back, err, sizeof err), (ssize_t)len);
    assert_true(json_equal(back, m));
    json_decref(back);
    bw_frame_reader_free(&r);
    free(out);
    json_decref(m);

    s[k] = 'a';
    s[k + 1] = '\0';
    m = json_pack("{s:s, s:s}", "type", "Notice", "msg", s);
    assert_int_equal(bw_frame_encode(m, &out, &len), BW_EMSGSIZE);
    assert_null(out);
    assert_int_equal(len, 0);
    json_decref(m);
    free(s);

    m = json_array();
    assert_int_equal(bw_frame_encode(m, &out, &len), BW_EINVAL);
    json_decref(m);
    m = json_object();
    assert_int_equal(bw_frame_encode(m, &out, &len), BW_EINVAL);
    json_decref(m);
}

static int count_until_notice(void *ud, const json_t *msg)
{
    int *n = ud;
    (*n)++;
    return bw_msg_type(msg) == BW_MSG_NOTICE; /* stop after a Notice */
}

static void test_reader_each(void **state)
{
    bw_frame_reader_t r;
    char err[128];
    uint8_t *a, *b, *c, buf[1024];
    size_t al, bl, cl;
    int n = 0;
    json_t *m1 = bw_msg_unbind("t1"), *m2 = bw_msg_notice("info", "x"), *m3 = bw_msg_unbind("t2");
    assert_int_equal(bw_frame_encode(m1, &a, &al), 0);
    assert_int_equal(bw_frame_encode(m2, &b, &bl), 0);
    assert_int_equal(bw_frame_encode(m3, &c, &cl), 0);
    memcpy(buf, a, al);
    memcpy(buf + al, b, bl);
    memcpy(buf + al + bl, c, cl);
    bw_frame_reader_init(&r, 0);
    /* Two messages delivered, then the handler asks to stop. */
    assert_int_equal(
        bw_frame_reader_each(&r, buf, al + bl + cl, count_until_notice, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    bw_frame_reader_free(&r);
    /* A zero length is reported with the reader's error. */
    bw_frame_reader_init(&r, 0);
    memset(buf, 0, 8);
    assert_int_equal(bw_frame_reader_each(&r, buf, 8, count_until_notice, &n, err, sizeof err),
                     BW_EMSGSIZE);
    bw_frame_reader_free(&r);
    free(a);
    free(b);
    free(c);
    json_decref(m1);
    json_decref(m2);
    json_decref(m3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_builders),
        cmocka_unit_test(test_builder_members),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_frame_then_raw),
        cmocka_unit_test(test_empty_feed),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_oversize_length),
        cmocka_unit_test(test_oversize_before_body),
        cmocka_unit_test(test_custom_limit),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_non_object),
        cmocka_unit_test(test_missing_type),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_validate_auth),
        cmocka_unit_test(test_validate_auth_resp),
        cmocka_unit_test(test_validate_bind),
        cmocka_unit_test(test_validate_bind_resp),
        cmocka_unit_test(test_validate_unbind),
        cmocka_unit_test(test_validate_notice),
        cmocka_unit_test(test_validate_conn),
        cmocka_unit_test(test_validate_generic),
        cmocka_unit_test(test_validate_string_limit),
        cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_reader_each),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
