/* Unit tests for the http plugin's parts without I/O: plugins/http/h1.c
 * (message framing, heads, rewriting, local responses) and policy.c (CIDRs,
 * Basic authentication). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h1.h"
#include "policy.h"

/* One event as a test sees it: kind and the offset in the input where it
 * happened (bytes consumed up to and including it). */
typedef struct seen {
    h1_ev_t ev;
    size_t at;
    int status;
    char uri[64];
} seen_t;

/* Feed `in` in pieces of `step` bytes (0: all at once); record events. */
static size_t run(h1_t *h, const char *in, size_t len, size_t step, seen_t *out, size_t max)
{
    size_t pos = 0, n = 0;
    while (n < max) {
        size_t avail = len - pos;
        size_t give = step && avail > step ? step : avail;
        h1_ev_t ev;
        size_t used = h1_feed(h, in + pos, give, &ev);
        pos += used;
        if (ev != H1_EV_NONE) {
            out[n] = (seen_t){.ev = ev, .at = pos, .status = h->head.status};
            if (ev == H1_EV_HEAD && h->head.uri)
                snprintf(out[n].uri, sizeof out[n].uri, "%s", h->head.uri);
            n++;
            if (ev == H1_EV_ERROR)
                break;
            continue;
        }
        if (pos == len)
            break;
    }
    return n;
}

static void test_get_any_split(void **state)
{
    const char *req = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Two: 2\r\n\r\n";
    for (size_t step = 0; step < 8; step++) {
        h1_t h;
        seen_t s[4];
        h1_init(&h, H1_REQUEST);
        assert_int_equal(run(&h, req, strlen(req), step, s, 4), 2);
        assert_int_equal(s[0].ev, H1_EV_HEAD);
        assert_int_equal(s[0].at, strlen(req));
        assert_string_equal(s[0].uri, "/a?b=1");
        assert_int_equal(s[1].ev, H1_EV_DONE);
        h1_free(&h);
    }
}

static void test_head_fields(void **state)
{
    const char *req = "\r\nPOST /up HTTP/1.0\r\nHost: x\r\nEmpty:\r\nContent-Length: 3\r\n\r\n";
    h1_t h;
    h1_ev_t ev;
    h1_init(&h, H1_REQUEST);
    size_t n = h1_feed(&h, req, strlen(req), &ev);
    assert_int_equal(ev, H1_EV_HEAD);
    assert_int_equal(n, strlen(req));
    assert_string_equal(h.head.method, "POST");
    assert_string_equal(h.head.proto, "HTTP/1.0");
    assert_int_equal(h.head.n_headers, 3);
    assert_int_equal(h1_find(&h.head, "empty", 0), 1);
    assert_int_equal(h.head.headers[1].value_len, 0);
    assert_int_equal(h.keep_alive, 0);
    /* the raw head excludes the leading empty line */
    assert_memory_equal(h.head.raw.data, "POST /up", 8);
    bw_http_head_t v;
    h1_capture_view(&h.head, &v);
    assert_string_equal(v.uri, "/up");
    assert_int_equal(v.n_headers, 3);
    h1_free(&h);
}

static void test_pipelined_with_bodies(void **state)
{
    const char *in = "POST /1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                     "POST /2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3;x=y\r\nabc\r\n0\r\nTrailer: t\r\n\r\n"
                     "GET /3 HTTP/1.1\r\n\r\n";
    size_t a = strlen("POST /1 HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
    size_t b = a + 5;
    size_t c = strstr(in, "GET /3") - in;
    for (size_t step = 0; step < 5; step++) {
        h1_t h;
        seen_t s[8];
        h1_init(&h, H1_REQUEST);
        assert_int_equal(run(&h, in, strlen(in), step, s, 8), 6);
        assert_int_equal(s[0].ev, H1_EV_HEAD);
        assert_int_equal(s[0].at, a);
        assert_int_equal(s[1].ev, H1_EV_DONE);
        assert_int_equal(s[1].at, b);
        assert_string_equal(s[2].uri, "/2");
        assert_int_equal(s[3].ev, H1_EV_DONE);
        assert_int_equal(s[3].at, c);
        assert_string_equal(s[4].uri, "/3");
        assert_int_equal(s[5].ev, H1_EV_DONE);
        assert_int_equal(s[5].at, strlen(in));
        assert_int_equal(h1_busy(&h), 0);
        h1_free(&h);
    }
}

static void test_errors(void **state)
{
    static const struct {
        const char *in;
        int status;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400},
        {"GARBAGE\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        h1_t h;
        seen_t s[4];
        h1_init(&h, H1_REQUEST);
        size_t n = run(&h, cases[i].in, strlen(cases[i].in), 0, s, 4);
        assert_true(n >= 1);
        assert_int_equal(s[n - 1].ev, H1_EV_ERROR);
        assert_int_equal(h.err_status, cases[i].status);
        assert_true(h.err[0] != '\0');
        h1_free(&h);
    }
}

static void test_head_too_large(void **state)
{
    h1_t h;
    h1_ev_t ev;
    char *big = malloc(H1_HEAD_MAX + 100);
    memset(big, 'a', H1_HEAD_MAX + 100);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    h1_init(&h, H1_REQUEST);
    h1_feed(&h, big, H1_HEAD_MAX + 100, &ev);
    assert_int_equal(ev, H1_EV_ERROR);
    assert_int_equal(h.err_status, 431);
    free(big);
    h1_free(&h);
}

static void test_responses(void **state)
{
    const char *in = "HTTP/1.1 100 Continue\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                     "HTTP/1.1 204 No Content\r\n\r\n";
    h1_t h;
    seen_t s[8];
    h1_init(&h, H1_RESPONSE);
    assert_int_equal(run(&h, in, strlen(in), 3, s, 8), 6);
    assert_int_equal(s[0].status, 100);
    assert_int_equal(s[1].ev, H1_EV_DONE);
    assert_int_equal(s[2].status, 200);
    assert_int_equal(s[3].ev, H1_EV_DONE);
    assert_int_equal(s[4].status, 204);
    assert_int_equal(s[5].ev, H1_EV_DONE);
    h1_free(&h);
}

static void test_response_to_head_and_until_eof(void **state)
{
    const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    h1_t h;
    seen_t s[4];
    h1_init(&h, H1_RESPONSE);
    h.skip_body = 1;
    assert_int_equal(run(&h, head, strlen(head), 0, s, 4), 2);
    assert_int_equal(s[1].ev, H1_EV_DONE);
    h1_free(&h);

    const char *eof = "HTTP/1.0 200 OK\r\n\r\nstream until close";
    h1_init(&h, H1_RESPONSE);
    assert_int_equal(run(&h, eof, strlen(eof), 0, s, 4), 1);
    assert_true(h1_body_until_eof(&h));
    assert_int_equal(h1_eof(&h), H1_EV_DONE);
    h1_free(&h);

    const char *cut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    h1_init(&h, H1_RESPONSE);
    run(&h, cut, strlen(cut), 0, s, 4);
    assert_int_equal(h1_eof(&h), H1_EV_ERROR);
    h1_free(&h);
}

static void test_upgrade_stops_at_head(void **state)
{
    const char *in = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                     "\x81\x05hello";
    size_t head = strstr(in, "\x81") - in;
    h1_t h;
    seen_t s[4];
    h1_init(&h, H1_REQUEST);
    assert_int_equal(run(&h, in, head, 0, s, 4), 2);
    assert_int_equal(s[1].ev, H1_EV_DONE);
    assert_int_equal(s[1].at, head);
    assert_int_equal(h.upgrade, 1);
    h1_free(&h);
}

static void test_rebuild(void **state)
{
    const char *req = "GET / HTTP/1.1\nHost: pub.example\r\nX-Drop: 1\r\nAccept: */*\r\n"
                      "x-drop: 2\r\n\r\n";
    h1_t h;
    h1_ev_t ev;
    h1_init(&h, H1_REQUEST);
    h1_feed(&h, req, strlen(req), &ev);
    assert_int_equal(ev, H1_EV_HEAD);
    const char *rm[] = {"X-DROP"}, *add[] = {"X-Add: yes"};
    h1_edit_t e = {.remove = rm,
                   .n_remove = 1,
                   .add = add,
                   .n_add = 1,
                   .set_name = "Host",
                   .set_value = "localhost:8080",
                   .set2_name = "X-Original-Host",
                   .set2_value = "pub.example"};
    h1_buf_t out = {0};
    assert_int_equal(h1_head_rebuild(&h.head, &e, &out), 0);
    assert_string_equal(out.data, "GET / HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n"
                                  "X-Original-Host: pub.example\r\nX-Add: yes\r\n\r\n");
    h1_buf_free(&out);
    h1_free(&h);
}

static void test_local_response(void **state)
{
    h1_buf_t b = {0};
    assert_int_equal(h1_html_escape(&b, "<a href=\"x\">&'</a>"), 0);
    assert_string_equal(b.data, "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;");
    b.len = 0;
    assert_int_equal(
        h1_response(&b, 401, NULL, "text/plain", "WWW-Authenticate: Basic\r\n", "no", 2, 1), 0);
    assert_string_equal(b.data, "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\n"
                                "Content-Length: 2\r\nWWW-Authenticate: Basic\r\n"
                                "Connection: close\r\n\r\nno");
    h1_buf_consume(&b, 9);
    assert_memory_equal(b.data, "401", 3);
    h1_buf_free(&b);
    assert_string_equal(h1_reason(502), "Bad Gateway");
}

static void test_cidr(void **state)
{
    http_cidr_t c;
    assert_int_equal(http_cidr_parse("127.0.0.1/8", &c), 0);
    assert_true(http_cidr_match(&c, "127.200.0.1"));
    assert_true(http_cidr_match(&c, "::ffff:127.0.0.9"));
    assert_false(http_cidr_match(&c, "128.0.0.1"));
    assert_false(http_cidr_match(&c, "::1"));
    assert_int_equal(http_cidr_parse("2001:db8::/33", &c), 0);
    assert_true(http_cidr_match(&c, "2001:db8:7fff::1"));
    assert_false(http_cidr_match(&c, "2001:db8:8000::1"));
    assert_int_equal(http_cidr_parse("10.1.2.3", &c), 0);
    assert_int_equal(c.bits, 32);
    assert_int_equal(http_cidr_parse("0.0.0.0/0", &c), 0);
    assert_true(http_cidr_match(&c, "8.8.8.8"));
    const char *bad[] = {"",           "10.0.0.0/33",  "::/129",      "x",
                         "10.0.0.0/",  "10.0.0.0/8/8", "10.0.0.0/-1", "/8",
                         "1.2.3.4.5/8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(http_cidr_parse(bad[i], &c), BW_EINVAL);
    http_cidr_t allow, deny;
    http_cidr_parse("10.0.0.0/8", &allow);
    http_cidr_parse("10.9.0.0/16", &deny);
    assert_true(http_ip_allowed(&allow, 1, &deny, 1, "10.1.1.1"));
    assert_false(http_ip_allowed(&allow, 1, &deny, 1, "10.9.1.1"));
    assert_false(http_ip_allowed(&allow, 1, NULL, 0, "11.0.0.1"));
    assert_true(http_ip_allowed(NULL, 0, NULL, 0, "11.0.0.1"));
}

static void test_basic_auth(void **state)
{
    char *creds[] = {"alice:pw", "bob:x:y"};
    /* base64("alice:pw") = YWxpY2U6cHc=, base64("bob:x:y") = Ym9iOng6eQ== */
    const char *ok[] = {"Basic YWxpY2U6cHc=", "basic   YWxpY2U6cHc", "Basic Ym9iOng6eQ=="};
    const char *no[] = {"",           "Basic",         "Bearer YWxpY2U6cHc=", "Basic YWxpY2U6cHd4",
                        "Basic !!!!", "Basic YWxpY2U="};
    for (size_t i = 0; i < 3; i++)
        assert_true(http_basic_auth_ok(ok[i], strlen(ok[i]), creds, 2));
    for (size_t i = 0; i < 6; i++)
        assert_false(http_basic_auth_ok(no[i], strlen(no[i]), creds, 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_any_split),
        cmocka_unit_test(test_head_fields),
        cmocka_unit_test(test_pipelined_with_bodies),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_response_to_head_and_until_eof),
        cmocka_unit_test(test_upgrade_stops_at_head),
        cmocka_unit_test(test_rebuild),
        cmocka_unit_test(test_local_response),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_basic_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
