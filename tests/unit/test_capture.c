/* Unit tests for core/capture/capture.c: the JSON of captured requests (spec §2.5),
 * ids, ordering, filters, the byte budget and eviction (including entries
 * still being written), truncation and replayability. Time is injected:
 * every start time is a literal.
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
#include <time.h>

#include <burrow/error.h>

#include "capture.h"

#define SEC 1000000000LL
/* 2014-12-16T04:32:07Z, the spec's example (0x548fb5c7). */
#define T0  (1418704327LL * SEC)
#define MIB (1024 * 1024)

#define REQ_RAW                                                                                    \
    "GET /favicon.ico?x=1 HTTP/1.1\r\nHost: x.ngrok.io\r\naccept: */*\r\nX-Multi: a\r\n"           \
    "x-multi: b\r\n\r\n"
#define RESP_RAW "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static char *dump(json_t *j)
{
    char *s;
    assert_non_null(j);
    s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    assert_non_null(s);
    return s;
}

static bw_http_head_t req_head(const bw_http_header_t *h, size_t n)
{
    bw_http_head_t head = {.struct_size = sizeof(head),
                           .method = "GET",
                           .uri = "/favicon.ico?x=1",
                           .proto = "HTTP/1.1",
                           .headers = h,
                           .n_headers = n};
    return head;
}

#define HDR(n, v)                                                                                  \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static const bw_http_header_t req_hdrs[] = {HDR("Host", "x.ngrok.io"), HDR("accept", "*/*"),
                                            HDR("X-Multi", "a"), HDR("x-multi", "b")};
static const bw_http_header_t resp_hdrs[] = {HDR("content-length", "2")};

/* An exchange: the request head and bytes, then (with `respond`) the
 * response, as a plugin drives the slots. Returns the writer's handle. */
static bw_capture_t *exchange(bw_capture_store_t *s, const char *tunnel, int64_t start, int respond)
{
    bw_capture_t *c = bw_capture_begin(s, tunnel, "192.168.100.25", start);
    assert_non_null(c);
    bw_http_head_t rq = req_head(req_hdrs, 4);
    bw_http_head_t rs = {.struct_size = sizeof(rs),
                         .proto = "HTTP/1.1",
                         .status = 200,
                         .reason = "OK",
                         .headers = resp_hdrs,
                         .n_headers = 1};

    assert_non_null(c);
    assert_int_equal(bw_capture_head(c, BW_CAPTURE_REQUEST, &rq), 0);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, REQ_RAW, strlen(REQ_RAW)), 0);
    if (respond) {
        bw_capture_req_state(c, BW_CAPTURE_REQ_DONE);
        assert_int_equal(bw_capture_head(c, BW_CAPTURE_RESPONSE, &rs), 0);
        assert_int_equal(bw_capture_raw(c, BW_CAPTURE_RESPONSE, RESP_RAW, strlen(RESP_RAW)), 0);
    }
    return c;
}

static void test_json_get_with_response(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *c;
    char id[BW_CAPTURE_ID_LEN + 1], want[2048];
    json_t *j;
    char *got;

    set_tz("UTC0");
    c = exchange(s, "command_line (http)", T0, 1);
    memcpy(id, bw_capture_id(c), sizeof id);
    bw_capture_end(c, 3893202);
    assert_int_equal(bw_capture_store_get_json(s, id, &j), 0);
    got = dump(j);
    snprintf(want, sizeof want,
             "{\"uri\":\"/api/requests/http/%s\",\"id\":\"%s\","
             "\"tunnel_name\":\"command_line (http)\",\"remote_addr\":\"192.168.100.25\","
             "\"start\":\"2014-12-16T04:32:07Z\",\"duration\":3893202,"
             "\"request\":{\"method\":\"GET\",\"proto\":\"HTTP/1.1\","
             "\"headers\":{\"Host\":[\"x.ngrok.io\"],\"Accept\":[\"*/*\"],"
             "\"X-Multi\":[\"a\",\"b\"]},\"uri\":\"/favicon.ico?x=1\","
             "\"raw\":\"R0VUIC9mYXZpY29uLmljbz94PTEgSFRUUC8xLjENCkhvc3Q6IHgubmdyb2suaW8NCmFjY2Vw"
             "dDogKi8qDQpYLU11bHRpOiBhDQp4LW11bHRpOiBiDQoNCg==\"},"
             "\"response\":{\"status\":\"200 OK\",\"status_code\":200,\"proto\":\"HTTP/1.1\","
             "\"headers\":{\"Content-Length\":[\"2\"]},"
             "\"raw\":\"SFRUUC8xLjEgMjAwIE9LDQpDb250ZW50LUxlbmd0aDogMg0KDQpvaw==\"}}",
             id, id);
    assert_string_equal(got, want);
    free(got);
    assert_int_equal(bw_capture_store_get_json(s, "airt_nope", &j), BW_ENOENT);
    assert_null(j);
    bw_capture_store_free(s);
}

static void test_json_pending_response(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *c = exchange(s, "t", T0, 0);
    json_t *j;
    char *got;

    assert_int_equal(bw_capture_store_get_json(s, bw_capture_id(c), &j), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "duration")), 0);
    got = dump(json_incref(json_object_get(j, "response")));
    assert_string_equal(got, "{\"status\":\"\",\"status_code\":0,\"proto\":\"\",\"headers\":null,"
                             "\"raw\":null}");
    free(got);
    json_decref(j);

    /* A response without a reason phrase, then its end. */
    bw_http_head_t rs = {.struct_size = sizeof(rs), .proto = "HTTP/1.0", .status = 204};
    assert_int_equal(bw_capture_head(c, BW_CAPTURE_RESPONSE, &rs), 0);
    assert_int_equal(bw_capture_store_get_json(s, bw_capture_id(c), &j), 0);
    got = dump(json_incref(json_object_get(j, "response")));
    assert_string_equal(got, "{\"status\":\"204\",\"status_code\":204,\"proto\":\"HTTP/1.0\","
                             "\"headers\":{},\"raw\":\"\"}");
    free(got);
    json_decref(j);
    bw_capture_end(c, 1);
    bw_capture_store_free(s);
}

static void test_canonical_keys(void **state)
{
    static const char *cases[][2] = {{"content-type", "Content-Type"},
                                     {"X-FOO-bar", "X-Foo-Bar"},
                                     {"www-authenticate", "Www-Authenticate"},
                                     {"x_y", "X_y"},
                                     {"1abc-d", "1abc-D"},
                                     {"-x", "-X"},
                                     {"foo bar", "foo bar"},
                                     {"ünicode", "ünicode"},
                                     {"a:b", "a:b"},
                                     {"", ""}};
    char out[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bw_capture_canonical_key(cases[i][0], strlen(cases[i][0]), out);
        assert_string_equal(out, cases[i][1]);
    }
}

/* A header without a name (NULL, 0) is an empty key, and NULL never
 * reaches memcpy (UBSan: "null pointer passed as argument 2"). */
static void test_canonical_key_of_no_name(void **state)
{
    char out[4] = "xyz";
    const char *volatile none = NULL; /* as a caller's struct would hold it */

    assert_ptr_equal(bw_capture_canonical_key(none, 0, out), out);
    assert_string_equal(out, "");
}

static void test_headers_aggregate_and_utf8(void **state)
{
    static const bw_http_header_t h[] = {HDR("set-cookie", "a=1"), HDR("accept", "\xc3\xa9"),
                                         HDR("SET-COOKIE", "b=2"), HDR("X-Bin", "\xff\x00z"),
                                         HDR("bad\xc3", "v")};
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *c = bw_capture_begin(s, "t", "::1", T0);
    assert_non_null(c);
    bw_http_head_t head = req_head(h, 5);
    json_t *j;
    char *got;

    assert_int_equal(bw_capture_head(c, BW_CAPTURE_REQUEST, &head), 0);
    assert_int_equal(bw_capture_store_get_json(s, bw_capture_id(c), &j), 0);
    /* Invalid UTF-8 becomes U+FFFD as with Go (which escapes it; jansson
     * writes the character itself, the same JSON value). */
    got = dump(json_incref(json_object_get(json_object_get(j, "request"), "headers")));
    assert_string_equal(got, "{\"Set-Cookie\":[\"a=1\",\"b=2\"],\"Accept\":[\"\xc3\xa9\"],"
                             "\"X-Bin\":[\"\xef\xbf\xbd\\u0000z\"],\"bad\xef\xbf\xbd\":[\"v\"]}");
    free(got);
    json_decref(j);
    bw_capture_end(c, 0);
    bw_capture_store_free(s);
}

/* Ids are kept as numbers and compared as such: only the exact text of a
 * listed id finds it. */
static void test_lookup_by_id_text(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *c = exchange(s, "t", T0, 1);
    char id[BW_CAPTURE_ID_LEN + 1], bad[BW_CAPTURE_ID_LEN + 1];
    json_t *j;

    snprintf(id, sizeof id, "%s", bw_capture_id(c));
    assert_int_equal(bw_capture_store_get_json(s, id, &j), 0);
    assert_string_equal(json_string_value(json_object_get(j, "id")), id);
    json_decref(j);
    const char *wrong[] = {"airt_zzzzzzzzzzzzzzzzzzzzzzzzzzz", /* past 160 bits */
                           "airt_00000000000000000000000000-", "AIRT_00000000000000000000000000",
                           "", "airt_"};
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++)
        assert_int_equal(bw_capture_store_get_json(s, wrong[i], &j), BW_ENOENT);
    memcpy(bad, id, sizeof bad);
    bad[BW_CAPTURE_ID_LEN - 1] = bad[BW_CAPTURE_ID_LEN - 1] == 'a' ? 'b' : 'a'; /* another id */
    assert_int_equal(bw_capture_store_get_json(s, bad, &j), BW_ENOENT);
    memcpy(bad, id, sizeof bad);
    bad[0] = 'A'; /* the prefix is part of the id */
    assert_int_equal(bw_capture_store_get_json(s, bad, &j), BW_ENOENT);
    bw_capture_end(c, 0);
    bw_capture_store_free(s);
}

/* Names are stored as sent and made canonical when shown; a long one too. */
static void test_long_header_name_canonical(void **state)
{
    char name[301], want[301];
    memset(name, 'a', 300);
    name[0] = 'x';
    name[1] = '-';
    name[300] = '\0';
    memcpy(want, name, sizeof want);
    want[0] = 'X';
    want[2] = 'A';
    bw_http_header_t h[] = {{name, 300, "v", 1}};
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *c = bw_capture_begin(s, "t", "::1", T0);
    assert_non_null(c);
    bw_http_head_t head = req_head(h, 1);
    json_t *j;

    assert_int_equal(bw_capture_head(c, BW_CAPTURE_REQUEST, &head), 0);
    assert_int_equal(bw_capture_store_get_json(s, bw_capture_id(c), &j), 0);
    json_t *hs = json_object_get(json_object_get(j, "request"), "headers");
    assert_non_null(json_object_get(hs, want));
    assert_null(json_object_get(hs, name));
    json_decref(j);
    bw_capture_end(c, 0);
    bw_capture_store_free(s);
}

static int b64val(char ch)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(tbl, ch);
    assert_non_null(p);
    return (int)(p - tbl);
}

/* A deliberately naive decoder, independent of the encoder under test. */
static unsigned char *b64decode(const char *in, size_t *outlen)
{
    size_t n = strlen(in), o = 0;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    assert_non_null(out);

    assert_int_equal(n % 4, 0);
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            v <<= 6;
            if (in[i + k] == '=')
                pad++;
            else
                v |= (uint32_t)b64val(in[i + k]);
        }
        out[o++] = (unsigned char)(v >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(v >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)v;
    }
    *outlen = o;
    return out;
}

static void test_base64_raw_with_body(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *c = bw_capture_begin(s, "t", "1.2.3.4", T0);
    assert_non_null(c);
    size_t total = 300001, off = 0, step = 1, dlen;
    unsigned char *body = malloc(total), *dec;
    json_t *j;

    assert_non_null(body);
    srand(7);
    for (size_t i = 0; i < total; i++)
        body[i] = (unsigned char)rand();
    /* Uneven pieces so base64 groups straddle chunk boundaries. */
    while (off < total) {
        size_t n = step < total - off ? step : total - off;
        assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, body + off, n), 0);
        off += n;
        step = step * 3 % 7919 + 1;
    }
    assert_int_equal(bw_capture_store_get_json(s, bw_capture_id(c), &j), 0);
    dec =
        b64decode(json_string_value(json_object_get(json_object_get(j, "request"), "raw")), &dlen);
    assert_int_equal(dlen, total);
    assert_memory_equal(dec, body, total);
    free(dec);
    json_decref(j);
    bw_capture_end(c, 0);
    bw_capture_store_free(s);
    free(body);
}

static void assert_rfc3339(int64_t ns, const char *want)
{
    char buf[64];
    assert_int_equal(bw_capture_rfc3339(ns, buf, sizeof buf), 0);
    assert_string_equal(buf, want);
}

static void test_rfc3339_offsets(void **state)
{
    char small[8];

    set_tz("UTC0");
    assert_rfc3339(T0 + 999999999, "2014-12-16T04:32:07Z");
    assert_rfc3339(-1, "1969-12-31T23:59:59Z");
    set_tz("PST8PDT,M3.2.0,M11.1.0");
    assert_rfc3339(T0, "2014-12-15T20:32:07-08:00");
    assert_rfc3339(T0 - 180LL * 86400 * SEC, "2014-06-18T21:32:07-07:00");
    set_tz("IST-5:30");
    assert_rfc3339(T0, "2014-12-16T10:02:07+05:30");
    set_tz("NST3:30");
    assert_rfc3339(T0, "2014-12-16T01:02:07-03:30");
    /* A zone whose offset is zero prints Z, as Go's Z07:00 does. */
    set_tz("GMT0BST,M3.5.0/1,M10.5.0");
    assert_rfc3339(T0, "2014-12-16T04:32:07Z");
    assert_int_equal(bw_capture_rfc3339(T0, small, sizeof small), BW_EMSGSIZE);
    set_tz("UTC0");
}

static void test_start_in_entry_uses_local_zone(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *c = bw_capture_begin(s, "t", "1.2.3.4", T0);
    assert_non_null(c);
    json_t *j;

    set_tz("PST8PDT,M3.2.0,M11.1.0");
    assert_int_equal(bw_capture_store_get_json(s, bw_capture_id(c), &j), 0);
    assert_string_equal(json_string_value(json_object_get(j, "start")),
                        "2014-12-15T20:32:07-08:00");
    json_decref(j);
    set_tz("UTC0");
    bw_capture_end(c, 0);
    bw_capture_store_free(s);
}

static json_t *list(bw_capture_store_t *s, size_t limit, const char *tunnel, const char *addr)
{
    bw_capture_filter_t f = {.limit = limit, .tunnel_name = tunnel, .remote_addr = addr};
    json_t *j = bw_capture_store_list_json(s, &f);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "uri")), "/api/requests/http");
    return j;
}

static size_t list_len(bw_capture_store_t *s, size_t limit, const char *tunnel, const char *addr)
{
    json_t *j = list(s, limit, tunnel, addr);
    size_t n = json_array_size(json_object_get(j, "requests"));
    json_decref(j);
    return n;
}

static void test_order_and_limit(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    char ids[150][BW_CAPTURE_ID_LEN + 1];
    json_t *j, *reqs;

    for (int i = 0; i < 150; i++) {
        bw_capture_t *c = exchange(s, "t", T0 + (i / 50) * SEC, 1);
        memcpy(ids[i], bw_capture_id(c), sizeof ids[i]);
        bw_capture_end(c, (uint64_t)i);
    }
    j = list(s, 0, NULL, NULL);
    reqs = json_object_get(j, "requests");
    assert_int_equal(json_array_size(reqs), 100);
    for (size_t i = 0; i < 100; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(reqs, i), "id")),
                            ids[149 - i]);
    json_decref(j);
    assert_int_equal(list_len(s, 5, NULL, NULL), 5);
    assert_int_equal(list_len(s, 1000, NULL, NULL), 150);
    assert_int_equal(list_len(s, 1, NULL, NULL), 1);
    assert_int_equal(bw_capture_store_count(s), 150);
    bw_capture_store_free(s);
}

static void test_filters(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    const char *names[] = {"x", "x (http)", "y"};
    json_t *j, *reqs;

    for (int i = 0; i < 30; i++)
        bw_capture_end(exchange(s, names[i % 3], T0, 1), 0);
    bw_capture_end(bw_capture_begin(s, "x", "10.0.0.1", T0), 0);
    assert_int_equal(list_len(s, 0, "x", NULL), 11);
    assert_int_equal(list_len(s, 0, "x (http)", NULL), 10);
    assert_int_equal(list_len(s, 3, "y", NULL), 3);
    assert_int_equal(list_len(s, 0, "X", NULL), 0);
    assert_int_equal(list_len(s, 0, NULL, "10.0.0.1"), 1);
    assert_int_equal(list_len(s, 0, "y", "10.0.0.1"), 0);
    j = list(s, 0, "x (http)", "192.168.100.25");
    reqs = json_object_get(j, "requests");
    assert_int_equal(json_array_size(reqs), 10);
    for (size_t i = 0; i < json_array_size(reqs); i++)
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(reqs, i), "tunnel_name")), "x (http)");
    json_decref(j);
    bw_capture_store_free(s);
}

/* The accounting matches the entries and covers at least what they keep. */
static void assert_accounting(bw_capture_store_t *s, json_t *list_all)
{
    json_t *reqs = json_object_get(list_all, "requests");
    size_t sum = 0;

    assert_int_equal(json_array_size(reqs), bw_capture_store_count(s));
    for (size_t i = 0; i < json_array_size(reqs); i++) {
        bw_capture_info_t info;
        const char *id = json_string_value(json_object_get(json_array_get(reqs, i), "id"));
        assert_int_equal(bw_capture_store_info(s, id, &info), 0);
        assert_true(info.bytes >= info.captured[0] + info.captured[1] + 64);
        sum += info.bytes;
    }
    assert_int_equal(sum, bw_capture_store_bytes(s));
}

static void test_eviction_budget(void **state)
{
    const int64_t budget = 8 * MIB;
    bw_capture_store_t *s = bw_capture_store_new(budget, 0);
    size_t passed = 0, n = 0, cap = 4096;
    char(*ids)[BW_CAPTURE_ID_LEN + 1] = malloc(cap * sizeof(*ids));
    static unsigned char piece[4096];
    json_t *j, *reqs;

    memset(piece, 'b', sizeof piece);
    while (passed < 200 * MIB) {
        bw_capture_t *c = exchange(s, "t", T0 + (int64_t)n * 1000, 0);
        size_t body = 1024 + (n * 7919) % (256 * 1024);
        assert_true(n < cap);
        memcpy(ids[n++], bw_capture_id(c), sizeof ids[0]);
        for (size_t done = 0; done < body; done += sizeof piece) {
            assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, piece, sizeof piece), 0);
            assert_true(bw_capture_store_bytes(s) <= (size_t)budget);
        }
        bw_capture_end(c, 1);
        passed += body;
    }
    /* What is left is exactly the newest entries: the oldest went first. */
    j = list(s, 100000, NULL, NULL);
    reqs = json_object_get(j, "requests");
    assert_true(json_array_size(reqs) > 20);
    for (size_t i = 0; i < json_array_size(reqs); i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(reqs, i), "id")),
                            ids[n - 1 - i]);
    assert_accounting(s, j);
    /* Keeps most of the budget: eviction stops once under it. */
    assert_true(bw_capture_store_bytes(s) > (size_t)budget - 300 * 1024);
    json_decref(j);
    free(ids);
    bw_capture_store_free(s);
}

static void test_evict_in_progress(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(64 * 1024, 0);
    static unsigned char big[40 * 1024];
    bw_capture_t *a = exchange(s, "t", T0, 0), *b, *self;
    bw_http_head_t rs = {.struct_size = sizeof(rs),
                         .proto = "HTTP/1.1",
                         .status = 200,
                         .reason = "OK",
                         .headers = resp_hdrs,
                         .n_headers = 1};
    char aid[BW_CAPTURE_ID_LEN + 1];
    json_t *j;

    memcpy(aid, bw_capture_id(a), sizeof aid);
    assert_int_equal(bw_capture_raw(a, BW_CAPTURE_REQUEST, big, 30000), 0);
    b = exchange(s, "t", T0, 0);
    assert_int_equal(bw_capture_raw(b, BW_CAPTURE_REQUEST, big, sizeof big), 0);
    assert_int_equal(bw_capture_store_get_json(s, aid, &j), BW_ENOENT);
    assert_int_equal(bw_capture_store_count(s), 1);
    /* The writer of the evicted entry carries on; nothing is recorded. */
    size_t before = bw_capture_store_bytes(s);
    assert_int_equal(bw_capture_head(a, BW_CAPTURE_RESPONSE, &rs), 0);
    assert_int_equal(bw_capture_raw(a, BW_CAPTURE_RESPONSE, big, sizeof big), 0);
    bw_capture_req_state(a, BW_CAPTURE_REQ_DONE);
    assert_string_equal(bw_capture_id(a), aid);
    assert_int_equal(bw_capture_store_bytes(s), before);
    bw_capture_end(a, 5);

    /* An entry bigger than the budget evicts itself. */
    self = exchange(s, "t", T0, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(bw_capture_raw(self, BW_CAPTURE_REQUEST, big, sizeof big), 0);
    assert_true(bw_capture_store_bytes(s) <= 64 * 1024);
    assert_int_equal(bw_capture_store_get_json(s, bw_capture_id(self), &j), BW_ENOENT);
    bw_capture_end(self, 1);

    /* Freeing the store leaves live handles usable until their end. */
    bw_capture_store_free(s);
    assert_int_equal(bw_capture_raw(b, BW_CAPTURE_RESPONSE, big, 10), 0);
    assert_int_equal(bw_capture_head(b, BW_CAPTURE_RESPONSE, &rs), 0);
    bw_capture_end(b, 1);
}

static void test_truncation(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 1000);
    bw_capture_t *c = bw_capture_begin(s, "t", "1.2.3.4", T0);
    assert_non_null(c);
    static unsigned char buf[600];
    bw_capture_info_t info;
    bw_capture_replay_t why;
    void *raw;
    size_t len;
    char *tn;
    json_t *j;

    memset(buf, 'x', sizeof buf);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, buf, 600), 0);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, buf, 600), 0);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, buf, 600), 0);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_RESPONSE, buf, 600), 0);
    assert_int_equal(bw_capture_store_info(s, bw_capture_id(c), &info), 0);
    assert_int_equal(info.seen[0], 1800);
    assert_int_equal(info.captured[0], 1000);
    assert_true(info.truncated[0]);
    assert_int_equal(info.seen[1], 600);
    assert_int_equal(info.captured[1], 600);
    assert_false(info.truncated[1]);
    assert_true(info.in_progress);
    assert_true(info.bytes >= 1600);
    assert_int_equal(bw_capture_store_get_json(s, bw_capture_id(c), &j), 0);
    assert_int_equal(
        strlen(json_string_value(json_object_get(json_object_get(j, "request"), "raw"))),
        1336); /* base64 of 1000 bytes */
    json_decref(j);
    bw_capture_req_state(c, BW_CAPTURE_REQ_DONE);
    assert_int_equal(bw_capture_store_replay(s, bw_capture_id(c), &why, &raw, &len, &tn), 0);
    assert_int_equal(why, BW_CAPTURE_REPLAY_PARTIAL);
    assert_null(raw);
    assert_null(tn);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_RESPONSE, buf, 600), 0);
    assert_int_equal(bw_capture_store_info(s, bw_capture_id(c), &info), 0);
    assert_true(info.truncated[1]);
    assert_int_equal(info.captured[1], 1000);
    bw_capture_end(c, 1);
    bw_capture_store_free(s);
}

/* Linked with -Wl,--wrap=json_integer (only the truncation marks call it
 * directly): fail_json_integer makes it fail. */
static int fail_json_integer;
json_t *__real_json_integer(json_int_t v);
json_t *__wrap_json_integer(json_int_t v);
json_t *__wrap_json_integer(json_int_t v)
{
    return fail_json_integer ? NULL : __real_json_integer(v);
}

/* Out of memory for "raw_size" fails the entry (a 500), rather than serving
 * it marked truncated without its size. */
static void test_truncation_marks_without_memory(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 1000);
    bw_capture_t *c = bw_capture_begin(s, "t", "1.2.3.4", T0);
    static unsigned char buf[1200];
    json_t *j;

    assert_non_null(c);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, buf, sizeof buf), 0);
    fail_json_integer = 1;
    int rc = bw_capture_store_get_json(s, bw_capture_id(c), &j);
    fail_json_integer = 0;
    assert_int_equal(rc, BW_ENOMEM);
    assert_null(j);
    bw_capture_end(c, 1);
    bw_capture_store_free(s);
}

static bw_capture_replay_t replay_why(bw_capture_store_t *s, const char *id)
{
    bw_capture_replay_t why;
    void *raw;
    size_t len;
    char *tn;

    assert_int_equal(bw_capture_store_replay(s, id, &why, &raw, &len, &tn), 0);
    if (why == BW_CAPTURE_REPLAY_OK) {
        assert_int_equal(len, strlen(REQ_RAW));
        assert_memory_equal(raw, REQ_RAW, len);
        assert_string_equal(tn, "t");
    } else {
        assert_null(raw);
        assert_int_equal(len, 0);
    }
    free(raw);
    free(tn);
    return why;
}

static void test_replay_codes(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *a = exchange(s, "t", T0, 0), *b = exchange(s, "t", T0, 0);
    char aid[BW_CAPTURE_ID_LEN + 1], bid[BW_CAPTURE_ID_LEN + 1];
    bw_capture_replay_t why;
    void *raw;
    size_t len;
    char *tn;

    memcpy(aid, bw_capture_id(a), sizeof aid);
    memcpy(bid, bw_capture_id(b), sizeof bid);
    assert_int_equal(replay_why(s, aid), BW_CAPTURE_REPLAY_READING);
    bw_capture_req_state(a, BW_CAPTURE_REQ_DONE);
    assert_int_equal(replay_why(s, aid), BW_CAPTURE_REPLAY_OK);
    bw_capture_req_state(b, BW_CAPTURE_REQ_ERROR);
    assert_int_equal(replay_why(s, bid), BW_CAPTURE_REPLAY_READ_ERROR);
    /* An error sticks; the end does not make it replayable. */
    bw_capture_req_state(b, BW_CAPTURE_REQ_DONE);
    bw_capture_end(b, 1);
    assert_int_equal(replay_why(s, bid), BW_CAPTURE_REPLAY_READ_ERROR);
    bw_capture_end(a, 1);
    assert_int_equal(replay_why(s, aid), BW_CAPTURE_REPLAY_OK);
    /* Ending without a word on the body means it was read. */
    bw_capture_t *c = exchange(s, "t", T0, 0);
    char cid[BW_CAPTURE_ID_LEN + 1];
    memcpy(cid, bw_capture_id(c), sizeof cid);
    bw_capture_end(c, 1);
    assert_int_equal(replay_why(s, cid), BW_CAPTURE_REPLAY_OK);
    assert_int_equal(bw_capture_store_replay(s, "airt_x", &why, &raw, &len, &tn), BW_ENOENT);
    bw_capture_store_free(s);
}

static void test_clear(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *live = exchange(s, "t", T0, 0);
    char *got;

    for (int i = 0; i < 10; i++)
        bw_capture_end(exchange(s, "t", T0, 1), 1);
    bw_capture_store_clear(s);
    assert_int_equal(bw_capture_store_count(s), 0);
    assert_int_equal(bw_capture_store_bytes(s), 0);
    got = dump(bw_capture_store_list_json(s, NULL));
    assert_string_equal(got, "{\"uri\":\"/api/requests/http\",\"requests\":[]}");
    free(got);
    assert_int_equal(bw_capture_raw(live, BW_CAPTURE_RESPONSE, "x", 1), 0);
    bw_capture_end(live, 1);
    assert_int_equal(bw_capture_store_bytes(s), 0);
    /* New entries after a clear still sort after the old ones. */
    bw_capture_end(exchange(s, "t", T0, 1), 1);
    assert_int_equal(list_len(s, 0, NULL, NULL), 1);
    bw_capture_store_free(s);
}

static void test_disabled(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(-1, 0);
    char *got;

    assert_non_null(s);
    assert_true(bw_capture_store_disabled(s));
    assert_null(bw_capture_begin(s, "t", "1.2.3.4", T0));
    got = dump(bw_capture_store_list_json(s, NULL));
    assert_string_equal(got, "{\"uri\":\"/api/requests/http\",\"requests\":[]}");
    free(got);
    bw_capture_store_free(s);
    assert_null(bw_capture_store_new(-2, 0));
    assert_null(bw_capture_begin(NULL, "t", "1.2.3.4", T0));
    s = bw_capture_store_new(0, 0);
    assert_false(bw_capture_store_disabled(s));
    bw_capture_store_free(s);
}

static void test_bad_arguments(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    bw_capture_t *c = bw_capture_begin(s, NULL, NULL, T0);
    assert_non_null(c);
    bw_http_head_t old = {.struct_size = 8};
    bw_http_head_t nohdrs = {.struct_size = sizeof(nohdrs), .n_headers = 2};

    assert_int_equal(bw_capture_raw(c, 3, "x", 1), BW_EINVAL);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, NULL, 1), BW_EINVAL);
    assert_int_equal(bw_capture_raw(NULL, BW_CAPTURE_REQUEST, "x", 1), BW_EINVAL);
    assert_int_equal(bw_capture_head(c, BW_CAPTURE_REQUEST, NULL), BW_EINVAL);
    assert_int_equal(bw_capture_head(c, BW_CAPTURE_REQUEST, &old), BW_EINVAL);
    assert_int_equal(bw_capture_head(c, BW_CAPTURE_REQUEST, &nohdrs), BW_EINVAL);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, NULL, 0), 0);
    bw_capture_end(c, 0);
    bw_capture_end(NULL, 0);
    bw_capture_req_state(NULL, BW_CAPTURE_REQ_DONE);
    bw_capture_store_free(s);
    bw_capture_store_free(NULL);
}

/* Decode the 27 base62 digits back to 20 bytes (big-endian). */
static void unbase62(const char *in, unsigned char out[20])
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    memset(out, 0, 20);
    for (int i = 0; i < 27; i++) {
        const char *p = strchr(digits, in[i]);
        unsigned carry;
        assert_non_null(p);
        carry = (unsigned)(p - digits);
        for (int k = 19; k >= 0; k--) {
            unsigned v = out[k] * 62u + carry;
            out[k] = (unsigned char)v;
            carry = v >> 8;
        }
        assert_int_equal(carry, 0);
    }
}

static void test_ids(void **state)
{
    enum { N = 20000 };
    bw_capture_store_t *s = bw_capture_store_new(0, 0);
    char prev[BW_CAPTURE_ID_LEN + 1] = "";
    unsigned char raw[20];

    for (int i = 0; i < N; i++) {
        /* All in one second, except a late stretch with the clock stepped
         * back, which must not break the order either. */
        int64_t t = i < N / 2 ? T0 + i : i < N * 3 / 4 ? T0 + 2 * SEC : T0 - 5 * SEC;
        bw_capture_t *c = bw_capture_begin(s, "t", "1.2.3.4", t);
        assert_non_null(c);
        const char *id = bw_capture_id(c);
        assert_int_equal(strlen(id), BW_CAPTURE_ID_LEN);
        assert_memory_equal(id, "airt_", 5);
        assert_true(strcmp(prev, id) < 0); /* strictly rising: unique and sorted */
        unbase62(id + 5, raw);
        uint32_t ts = (uint32_t)raw[0] << 24 | raw[1] << 16 | raw[2] << 8 | raw[3];
        assert_int_equal(ts, i < N / 2 ? 1418704327u - 1400000000u : 1418704329u - 1400000000u);
        memcpy(prev, id, sizeof prev);
        bw_capture_end(c, 0);
    }
    /* Ids of separate stores are random within a second. */
    bw_capture_store_t *s2 = bw_capture_store_new(0, 0);
    bw_capture_t *c2 = bw_capture_begin(s2, "t", "1.2.3.4", T0 + 10 * SEC);
    assert_true(strcmp(prev, bw_capture_id(c2)) < 0);
    bw_capture_end(c2, 0);
    bw_capture_store_free(s2);
    assert_int_equal(bw_capture_store_count(s), N);
    /* A listing stops at BW_CAPTURE_MAX_LIMIT whatever limit it asks for. */
    assert_int_equal(list_len(s, 100000, NULL, NULL), BW_CAPTURE_MAX_LIMIT);
    bw_capture_store_free(s);
}

/* The /inspect download accessor: exact bytes per direction, the kept
 * prefix of a truncated capture, errors for unknown ids and directions. */
static void test_raw_accessor(void **state)
{
    bw_capture_store_t *s = bw_capture_store_new(0, 8);
    bw_capture_t *c = exchange(s, "t", 1700000000LL * 1000000000LL, 1);
    char id[BW_CAPTURE_ID_LEN + 1];
    void *raw = (void *)1;
    size_t len = 99;
    snprintf(id, sizeof id, "%s", bw_capture_id(c));
    assert_int_equal(bw_capture_store_raw(s, id, BW_CAPTURE_REQUEST, &raw, &len), 0);
    assert_int_equal(len, 8); /* max_raw 8: the kept prefix */
    assert_memory_equal(raw, REQ_RAW, 8);
    free(raw);
    assert_int_equal(bw_capture_store_raw(s, id, BW_CAPTURE_RESPONSE, &raw, &len), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(raw, RESP_RAW, 8);
    free(raw);
    assert_int_equal(bw_capture_store_raw(s, id, (bw_capture_dir_t)7, &raw, &len), BW_EINVAL);
    assert_null(raw);
    assert_int_equal(bw_capture_store_raw(s, "airt_nope", BW_CAPTURE_REQUEST, &raw, &len),
                     BW_ENOENT);
    assert_null(raw);
    assert_int_equal(len, 0);
    assert_string_equal(bw_capture_store_remote_addr(s, id), "192.168.100.25");
    assert_null(bw_capture_store_remote_addr(s, "airt_nope"));
    bw_capture_end(c, 5);
    bw_capture_store_free(s);

    s = bw_capture_store_new(0, 0);
    c = bw_capture_begin(s, "t", "::1", 1);
    assert_non_null(c);
    snprintf(id, sizeof id, "%s", bw_capture_id(c));
    assert_int_equal(bw_capture_store_raw(s, id, BW_CAPTURE_RESPONSE, &raw, &len), 0);
    assert_non_null(raw); /* nothing captured yet: an empty, non-NULL copy */
    assert_int_equal(len, 0);
    free(raw);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, REQ_RAW, strlen(REQ_RAW)), 0);
    assert_int_equal(bw_capture_store_raw(s, id, BW_CAPTURE_REQUEST, &raw, &len), 0);
    assert_int_equal(len, strlen(REQ_RAW));
    assert_memory_equal(raw, REQ_RAW, len);
    free(raw);
    bw_capture_store_clear(s); /* the writer's handle stays valid */
    assert_int_equal(bw_capture_store_raw(s, id, BW_CAPTURE_REQUEST, &raw, &len), BW_ENOENT);
    assert_int_equal(bw_capture_raw(c, BW_CAPTURE_REQUEST, "x", 1), 0);
    bw_capture_end(c, 1);
    bw_capture_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_get_with_response),
        cmocka_unit_test(test_json_pending_response),
        cmocka_unit_test(test_canonical_keys),
        cmocka_unit_test(test_canonical_key_of_no_name),
        cmocka_unit_test(test_headers_aggregate_and_utf8),
        cmocka_unit_test(test_long_header_name_canonical),
        cmocka_unit_test(test_lookup_by_id_text),
        cmocka_unit_test(test_base64_raw_with_body),
        cmocka_unit_test(test_rfc3339_offsets),
        cmocka_unit_test(test_start_in_entry_uses_local_zone),
        cmocka_unit_test(test_order_and_limit),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_eviction_budget),
        cmocka_unit_test(test_evict_in_progress),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_truncation_marks_without_memory),
        cmocka_unit_test(test_replay_codes),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_raw_accessor),
    };
    set_tz("UTC0");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
