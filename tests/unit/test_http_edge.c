/* The edge's request rewriter and hostname registry (edge/http_rewrite.c,
 * edge/hostnames.c): exact output, read boundaries, errors, name rules.
 *
 * Over 600 lines: one test program per module, as tests/unit/meson.build
 * builds them; its cases share the fixtures above them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "burrow/error.h"
#include "hostnames.h"
#include "http_rewrite.h"

/* Feed `in` in reads of `step` bytes; returns the concatenated output (or
 * NULL after an error, with *status set). */
static char *feed_all(const char *in, size_t step, int https, int *status, size_t *nheads)
{
    bw_hrw_t *r = bw_hrw_new("10.0.0.9", https);
    size_t len = strlen(in), total = 0;
    char *out = calloc(1, len * 2 + 4096);
    *nheads = 0;
    *status = 0;
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step, olen;
        if (bw_hrw_feed(r, in + off, n) < 0) {
            *status = bw_hrw_status(r);
            free(out);
            bw_hrw_free(r);
            return NULL;
        }
        const char *o = bw_hrw_out(r, &olen);
        memcpy(out + total, o, olen);
        total += olen;
        *nheads += bw_hrw_heads(r);
        bw_hrw_trim(r); /* as the edge does after each delivery */
    }
    bw_hrw_free(r);
    return out;
}

static const char *const REQ =
    "POST /x?y HTTP/1.1\r\nHost: App.Example:8080\r\nX-Forwarded-For: 1.1.1.1\r\n"
    "x-forwarded-proto: ftp\r\nX-Keep:  a  \r\nTransfer-Encoding: chunked\r\n\r\n"
    "3;ext\r\nabc\r\n0\r\n\r\n"
    "GET /2 HTTP/1.1\r\nHost: app.example\r\n\r\n";

static const char *const WANT =
    "POST /x?y HTTP/1.1\r\nHost: App.Example:8080\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.9\r\n"
    "X-Keep:  a  \r\nTransfer-Encoding: chunked\r\nX-Forwarded-Proto: https\r\n"
    "X-Forwarded-Host: App.Example:8080\r\n\r\n"
    "3;ext\r\nabc\r\n0\r\n\r\n"
    "GET /2 HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 10.0.0.9\r\n"
    "X-Forwarded-Proto: https\r\nX-Forwarded-Host: app.example\r\n\r\n";

static void rewrite_exact_at_every_split(void **state)
{
    for (size_t step = 1; step <= strlen(REQ); step++) {
        int status;
        size_t heads;
        char *out = feed_all(REQ, step, 1, &status, &heads);
        assert_non_null(out);
        assert_string_equal(out, WANT);
        assert_int_equal(heads, 2);
        free(out);
    }
}

static void head_host_and_offsets(void **state)
{
    bw_hrw_t *r = bw_hrw_new("::1", 0);
    size_t len;
    assert_int_equal(bw_hrw_feed(r, REQ, strlen(REQ)), 0);
    assert_int_equal(bw_hrw_heads(r), 2);
    assert_string_equal(bw_hrw_head(r, 0)->host, "app.example");
    assert_int_equal(bw_hrw_head(r, 0)->off, 0);
    const char *out = bw_hrw_out(r, &len);
    assert_memory_equal(out + bw_hrw_head(r, 1)->off, "GET /2 ", 7);
    assert_false(bw_hrw_in_head(r));
    assert_int_equal(bw_hrw_feed(r, "GET / HTTP/1.1\r\nHost: X.Y.:80\r\n\r\n", 33), 0);
    assert_string_equal(bw_hrw_head(r, 0)->host, "x.y");
    assert_int_equal(bw_hrw_feed(r, "GET / HT", 8), 0);
    assert_true(bw_hrw_in_head(r));
    bw_hrw_free(r);
}

/* The body timer runs exactly while a body is owed: not after a bodyless
 * head, not once the last body byte arrived. */
static void in_body_while_body_owed(void **state)
{
    bw_hrw_t *r = bw_hrw_new("1.2.3.4", 0);
    const char *get = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    const char *post = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab";
    assert_int_equal(bw_hrw_feed(r, get, strlen(get)), 0);
    assert_false(bw_hrw_in_body(r));
    assert_int_equal(bw_hrw_feed(r, post, strlen(post)), 0);
    assert_true(bw_hrw_in_body(r));
    assert_int_equal(bw_hrw_feed(r, "cd", 2), 0);
    assert_true(bw_hrw_in_body(r));
    assert_int_equal(bw_hrw_feed(r, "e", 1), 0);
    assert_false(bw_hrw_in_body(r));
    const char *chunked = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx";
    assert_int_equal(bw_hrw_feed(r, chunked, strlen(chunked)), 0);
    assert_true(bw_hrw_in_body(r));
    assert_int_equal(bw_hrw_feed(r, "\r\n0\r\n\r\n", 7), 0);
    assert_false(bw_hrw_in_body(r));
    bw_hrw_free(r);
}

static const char *const UPGRADE =
    "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n";
static const char *const SWITCHED =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n";

/* What the client sends after an Upgrade request waits for the answer and
 * becomes raw bytes on a 101, in the order sent. */
static void upgrade_goes_raw_on_101(void **state)
{
    bw_hrw_t *r = bw_hrw_new("1.2.3.4", 0);
    size_t len;
    char in[256];
    snprintf(in, sizeof in, "%s\x01\x02 not http", UPGRADE);
    assert_int_equal(bw_hrw_feed(r, in, strlen(in)), 0);
    assert_false(bw_hrw_raw(r));
    assert_true(bw_hrw_waiting(r));
    bw_hrw_out(r, &len);
    assert_int_equal(len, strlen(in) - 11 + strlen("X-Forwarded-For: 1.2.3.4\r\n") +
                              strlen("X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n"));
    assert_int_equal(bw_hrw_feed(r, "\r\nmore", 6), 0); /* held too */
    bw_hrw_out(r, &len);
    assert_int_equal(len, 0);
    /* the response arrives in pieces; the 101's head decides */
    assert_int_equal(bw_hrw_response(r, SWITCHED, 20), 0);
    assert_int_equal(bw_hrw_response(r, SWITCHED + 20, strlen(SWITCHED) - 20), 1);
    assert_true(bw_hrw_raw(r));
    const char *out = bw_hrw_out(r, &len);
    assert_int_equal(len, 17);
    assert_memory_equal(out, "\x01\x02 not http\r\nmore", 17);
    assert_int_equal(bw_hrw_feed(r, "\r\n\r\nGARBAGE", 11), 0);
    bw_hrw_out(r, &len);
    assert_int_equal(len, 11);
    assert_int_equal(bw_hrw_response(r, "raw", 3), 0);
    bw_hrw_free(r);
}

/* A declined Upgrade (the service answered 200) leaves HTTP: the next
 * request on the connection is parsed, routed and rewritten like any, so
 * forged X-Forwarded-* and another tunnel's Host cannot slip through. */
static void declined_upgrade_stays_http(void **state)
{
    static const char *const next = "GET /2 HTTP/1.1\r\nHost: other\r\nX-Forwarded-For: 6.6.6.6\r\n"
                                    "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n";
    static const char *const want =
        "GET /2 HTTP/1.1\r\nHost: other\r\nX-Forwarded-For: 6.6.6.6, 1.2.3.4\r\n"
        "X-Forwarded-Proto: http\r\nX-Forwarded-Host: other\r\n\r\n";
    static const char *const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for (int pipelined = 0; pipelined <= 1; pipelined++) {
        bw_hrw_t *r = bw_hrw_new("1.2.3.4", 0);
        size_t len;
        char in[512];
        snprintf(in, sizeof in, "%s%s", UPGRADE, pipelined ? next : "");
        assert_int_equal(bw_hrw_feed(r, in, strlen(in)), 0);
        assert_int_equal(bw_hrw_heads(r), 1);
        assert_int_equal(bw_hrw_response(r, ok, strlen(ok)), 1); /* reading may go on */
        assert_false(bw_hrw_raw(r));
        assert_false(bw_hrw_waiting(r));
        if (!pipelined)
            assert_int_equal(bw_hrw_feed(r, next, strlen(next)), 0);
        const char *out = bw_hrw_out(r, &len);
        assert_int_equal(bw_hrw_heads(r), 1);
        assert_string_equal(bw_hrw_head(r, 0)->host, "other");
        assert_int_equal(len, strlen(want));
        assert_memory_equal(out, want, len);
        /* still parsed: garbage is refused, not passed on */
        assert_int_equal(bw_hrw_feed(r, "\x01\x02 not http\r\n", 12), BW_EINVAL);
        bw_hrw_free(r);
    }
}

/* The answer to the Upgrade is found behind the responses to earlier
 * requests: a body framed by length and by chunks, a HEAD response whose
 * Content-Length announces no body, an interim 100; and a response stream
 * that cannot be followed never yields raw. */
static void upgrade_answer_found_behind_others(void **state)
{
    static const char *const reqs = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                                    "HEAD /b HTTP/1.1\r\nHost: h\r\n\r\n"
                                    "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
    static const char *const resps =
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/"
        "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n101\r\n0\r\n\r\n"
        "HTTP/1.1 100 Continue\r\n\r\n";
    for (size_t step = 1; step <= strlen(resps) + strlen(SWITCHED); step += 5) {
        bw_hrw_t *r = bw_hrw_new("1.2.3.4", 0);
        char all[1024];
        int released = 0;
        assert_int_equal(bw_hrw_feed(r, reqs, strlen(reqs)), 0);
        assert_int_equal(bw_hrw_feed(r, UPGRADE, strlen(UPGRADE)), 0);
        assert_int_equal(bw_hrw_feed(r, "raw", 3), 0);
        snprintf(all, sizeof all, "%s%s", resps, SWITCHED);
        for (size_t off = 0; off < strlen(all); off += step) {
            size_t n = strlen(all) - off < step ? strlen(all) - off : step;
            int rc = bw_hrw_response(r, all + off, n);
            assert_true(rc >= 0);
            released += rc;
            assert_int_equal(bw_hrw_raw(r), off + n >= strlen(all));
        }
        assert_int_equal(released, 1);
        bw_hrw_free(r);
    }
    /* a declined HEAD with Upgrade: its response has no body either */
    bw_hrw_t *hr = bw_hrw_new("1.2.3.4", 0);
    static const char *const head_up =
        "HEAD / HTTP/1.1\r\nHost: h\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n";
    static const char *const head_ok = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
    assert_int_equal(bw_hrw_feed(hr, head_up, strlen(head_up)), 0);
    assert_int_equal(bw_hrw_response(hr, head_ok, strlen(head_ok)), 1);
    assert_int_equal(bw_hrw_feed(hr, UPGRADE, strlen(UPGRADE)), 0);
    assert_int_equal(bw_hrw_response(hr, SWITCHED, strlen(SWITCHED)), 1);
    assert_true(bw_hrw_raw(hr));
    bw_hrw_free(hr);
    /* not HTTP: the Upgrade counts as declined and "raw" is parsed (400) */
    bw_hrw_t *r = bw_hrw_new("1.2.3.4", 0);
    assert_int_equal(bw_hrw_feed(r, UPGRADE, strlen(UPGRADE)), 0);
    assert_int_equal(bw_hrw_feed(r, "raw\r\n", 5), 0);
    assert_int_equal(bw_hrw_response(r, "\x16\x03\x01", 3), BW_EINVAL);
    assert_int_equal(bw_hrw_status(r), 400);
    bw_hrw_free(r);
    /* a 101 nobody asked for is not believed later either */
    r = bw_hrw_new("1.2.3.4", 0);
    assert_int_equal(bw_hrw_feed(r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27), 0);
    assert_int_equal(bw_hrw_response(r, SWITCHED, strlen(SWITCHED)), 0);
    assert_int_equal(bw_hrw_feed(r, UPGRADE, strlen(UPGRADE)), 0);
    assert_false(bw_hrw_waiting(r));
    assert_int_equal(bw_hrw_response(r, SWITCHED, strlen(SWITCHED)), 0);
    assert_false(bw_hrw_raw(r));
    bw_hrw_free(r);
}

static void errors_name_the_problem(void **state)
{
    static const struct {
        const char *in;
        int status;
        const char *reason;
    } cases[] = {
        {"GET /a b\r\nHost: h\r\n\r\n", 400, "invalid request line"},
        {"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400,
         "invalid chunk size"},
        {"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400, "invalid Content-Length"},
        {"GET / HTTP/1.1\r\nA B: c\r\nHost: h\r\n\r\n", 400, "invalid header"},
        /* each names the fault, not a neighbouring one */
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", 400,
         "duplicate Content-Length"},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         400, "Content-Length together with Transfer-Encoding"},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
         "fffffffffffffffffff\r\n",
         400, "invalid chunk size: too large"},
        {"GET / HTTP/1.1\r\n\r\n", 400, "missing Host header"},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "multiple Host headers"},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host header"},
        {"CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n\r\n", 405, "CONNECT is not supported"},
        /* a line ending must be CRLF: backends that end lines at CR
         * alone or at LF alone would see other headers */
        {"GET / HTTP/1.1\nHost: h\n\n", 400, "invalid line ending: LF without CR"},
        {"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400, "invalid line ending: LF without CR"},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n\n", 400, "invalid line ending: LF without CR"},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400, "invalid header"},
        /* RFC 9112 3.2.2: a backend routes an absolute-form request by its
         * target, the edge by Host: they must name the same host and port */
        {"GET http://other.x/p HTTP/1.1\r\nHost: h\r\n\r\n", 400,
         "request target does not match Host"},
        {"GET http://h:8080/p HTTP/1.1\r\nHost: h\r\n\r\n", 400,
         "request target does not match Host"},
        {"GET https://h/p HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request target does not match Host"},
        {"GET http://u@h/p HTTP/1.1\r\nHost: h\r\n\r\n", 400,
         "invalid request line: bad request target"},
        {"GET ftp://h/p HTTP/1.1\r\nHost: h\r\n\r\n", 400,
         "invalid request line: bad request target"},
        /* chunked framing: every line ends in CRLF, data is followed by
         * CRLF, extensions stay small; else backends end the body elsewhere */
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", 400,
         "invalid chunk: data not followed by CRLF"},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n\n0\r\n\r\n",
         400, "invalid chunk: data not followed by CRLF"},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x\nabc\r\n0\r\n\r\n",
         400, "invalid line ending: LF without CR"},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\rXabc\r\n0\r\n\r\n",
         400, "invalid"},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\n", 400,
         "invalid line ending: LF without CR"},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n folded\r\n\r\n",
         400, "invalid header"},
        /* only HTTP/1.0 and 1.1 are framed the way the edge frames them */
        {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 400, "unsupported HTTP version"},
        {"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 400, "unsupported HTTP version"},
        {"GET /\r\nHost: h\r\n\r\n", 400, "unsupported HTTP version"},
        /* RFC 9112 5.2: a folded Transfer-Encoding is read differently by
         * different parsers, so it never passes */
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400,
         "obsolete line folding"},
        {"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n\tc\r\n\r\n", 400, "obsolete line folding"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bw_hrw_t *r = bw_hrw_new("1.2.3.4", 0);
        size_t len;
        assert_int_equal(bw_hrw_feed(r, cases[i].in, strlen(cases[i].in)), BW_EINVAL);
        assert_int_equal(bw_hrw_status(r), cases[i].status);
        assert_non_null(strstr(bw_hrw_reason(r), cases[i].reason));
        bw_hrw_out(r, &len);
        assert_int_equal(len, 0);
        assert_int_equal(bw_hrw_feed(r, "x", 1), BW_EINVAL); /* stays failed */
        bw_hrw_free(r);
    }
}

/* RFC 9112 2.2: empty lines before a request-line are skipped, up to
 * BW_HRW_MAX_BLANK CRLFs, and never forwarded, whichever way reads split
 * them. */
static void empty_lines_between_requests_dropped(void **state)
{
    static const char in[] = "\r\nGET /1 HTTP/1.1\r\nHost: h\r\n\r\n\r\n\r\n"
                             "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab"
                             "\r\n\r\n\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n\r\n";
    static const char want[] = "GET /1 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.9\r\n"
                               "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
                               "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"
                               "X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n"
                               "X-Forwarded-Host: h\r\n\r\nab"
                               "GET /3 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.9\r\n"
                               "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n";
    for (size_t step = 1; step <= strlen(in); step++) {
        int status;
        size_t heads;
        char *out = feed_all(in, step, 0, &status, &heads);
        assert_non_null(out);
        assert_string_equal(out, want);
        assert_int_equal(heads, 3);
        free(out);
    }
    static const struct {
        const char *in;
        const char *reason;
    } bad[] = {
        {"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
         "too many empty lines before the request line"},
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
         "too many empty lines before the request line"},
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
         "invalid line ending: LF without CR"},
        {"\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", "invalid line ending: CR without LF"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (size_t step = 1; step <= strlen(bad[i].in); step++) {
            bw_hrw_t *r = bw_hrw_new("1.2.3.4", 0);
            const char *in = bad[i].in;
            int rc = 0;
            for (size_t off = 0; off < strlen(in) && rc == 0; off += step)
                rc = bw_hrw_feed(r, in + off, strlen(in) - off < step ? strlen(in) - off : step);
            assert_int_equal(rc, BW_EINVAL);
            assert_int_equal(bw_hrw_status(r), 400);
            assert_string_equal(bw_hrw_reason(r), bad[i].reason);
            bw_hrw_free(r);
        }
}

/* An absolute-form target naming the Host's host and port passes as sent. */
static void absolute_form_matching_host_passes(void **state)
{
    static const char *const ok[] = {
        "GET http://H.example./p?q HTTP/1.1\r\nHost: h.example\r\n\r\n",
        "GET http://h:80/p HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://h:8080 HTTP/1.1\r\nHost: H:8080\r\n\r\n",
        "GET http://[::1]/ HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int status;
        size_t heads;
        char *out = feed_all(ok[i], strlen(ok[i]), 0, &status, &heads);
        assert_non_null(out);
        assert_int_equal(heads, 1);
        assert_memory_equal(out, ok[i], strcspn(ok[i], "\r"));
        free(out);
    }
    int status;
    size_t heads;
    char *out = feed_all("GET https://h/ HTTP/1.1\r\nHost: h:443\r\n\r\n", 100, 1, &status, &heads);
    assert_non_null(out);
    free(out);
}

/* Chunk extensions pass as sent up to BW_HRW_MAX_CHUNK_EXT bytes a line;
 * a longer one is refused, whatever the read boundaries. */
static void chunk_extension_bound(void **state)
{
    char in[1024], ext[BW_HRW_MAX_CHUNK_EXT + 2];
    for (int over = 0; over <= 1; over++) {
        size_t n = BW_HRW_MAX_CHUNK_EXT + (size_t)over;
        memset(ext, 'e', n);
        ext[0] = ';';
        ext[n] = '\0';
        snprintf(in, sizeof in,
                 "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3%s\r\nabc\r\n0%s\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
                 ext, ext);
        for (size_t step = 1; step <= strlen(in); step += 7) {
            int status;
            size_t heads;
            char *out = feed_all(in, step, 0, &status, &heads);
            if (over) {
                assert_null(out);
                assert_int_equal(status, 400);
            } else {
                assert_non_null(out);
                assert_int_equal(heads, 2);
                assert_non_null(strstr(out, ext));
                free(out);
            }
        }
    }
}

static void head_limit_431(void **state)
{
    size_t n = BW_HRW_MAX_HEAD + 100;
    char *in = malloc(n + 1);
    const char *start = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
    memcpy(in, start, strlen(start));
    memset(in + strlen(start), 'a', n - strlen(start));
    in[n] = '\0';
    int status;
    size_t heads;
    assert_null(feed_all(in, 1000, 0, &status, &heads));
    assert_int_equal(status, 431);
    free(in);
}

/* A head of exactly BW_HRW_MAX_HEAD bytes passes at any read size, its
 * buffer growing across reads and trims, and the small request after it
 * too. */
static void head_at_limit_passes(void **state)
{
    const char *start = "GET / HTTP/1.1\r\nHost: h\r\nX: ", *end = "\r\n\r\n";
    const char *next = "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t n = BW_HRW_MAX_HEAD, fill = n - strlen(start) - strlen(end);
    char *in = malloc(n + strlen(next) + 1);
    assert_non_null(in);
    memcpy(in, start, strlen(start));
    memset(in + strlen(start), 'a', fill);
    memcpy(in + strlen(start) + fill, end, strlen(end));
    memcpy(in + n, next, strlen(next) + 1);
    static const size_t steps[] = {1, 700, 4096, 100000};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        int status;
        size_t heads;
        char *out = feed_all(in, steps[i], 0, &status, &heads);
        assert_non_null(out);
        assert_int_equal(heads, 2);
        assert_non_null(strstr(out, "GET /2 HTTP/1.1\r\n"));
        free(out);
    }
    free(in);
}

static void hostname_rules(void **state)
{
    char out[BW_HOSTNAME_MAX + 1], why[128], label[70];
    assert_int_equal(bw_hostname_check("A-b.Example.COM", out, why, sizeof why), 0);
    assert_string_equal(out, "a-b.example.com");
    assert_int_equal(bw_hostname_check("a_b.com", out, why, sizeof why), BW_EINVAL);
    assert_int_equal(bw_hostname_check("a..com", out, why, sizeof why), BW_EINVAL);
    assert_int_equal(bw_hostname_check("", out, why, sizeof why), BW_EINVAL);
    memset(label, 'x', 64);
    label[64] = '\0';
    assert_int_equal(bw_hostname_check(label, out, why, sizeof why), BW_EINVAL);
    assert_non_null(strstr(why, "63"));
}

static void registry_claims_and_reservations(void **state)
{
    bw_hosts_t *h = bw_hosts_new();
    int s1, s2, t1, t2, t3, held;
    assert_int_equal(bw_hosts_claim(h, "a.x", 0, &s1, "c1", "tok", &t1, 0), 0);
    /* same session, other scheme: allowed once; same scheme: refused */
    assert_int_equal(bw_hosts_claim(h, "a.x", 1, &s1, "c1", "tok", &t2, 0), 0);
    assert_int_equal(bw_hosts_claim(h, "a.x", 1, &s1, "c1", "tok", &t3, 0), BW_EEXIST);
    assert_int_equal(bw_hosts_claim(h, "a.x", 0, &s2, "c2", "tok", &t3, 0), BW_EEXIST);
    assert_ptr_equal(bw_hosts_find(h, "a.x", 0, 0, &held), &t1);
    /* session lost: reserved for c1 only, until it expires */
    bw_hosts_reserve(h, &t1, 100);
    bw_hosts_reserve(h, &t2, 100);
    assert_null(bw_hosts_find(h, "a.x", 0, 50, &held));
    assert_int_equal(held, 1);
    assert_true(bw_hosts_reserved_for(h, "c1", "tok", 50));
    assert_int_equal(bw_hosts_claim(h, "a.x", 0, &s2, "c1", "other", &t3, 50), BW_EEXIST);
    assert_int_equal(bw_hosts_claim(h, "a.x", 0, &s2, "c1", "tok", &t3, 50), 0);
    assert_ptr_equal(bw_hosts_find(h, "a.x", 0, 60, &held), &t3);
    /* unbind frees; expiry frees */
    bw_hosts_release(h, &t3);
    assert_null(bw_hosts_find(h, "a.x", 0, 60, &held));
    assert_int_equal(held, 0);
    assert_null(bw_hosts_find(h, "a.x", 1, 60, &held));
    assert_int_equal(held, 1); /* the https twin is still reserved */
    assert_int_equal(bw_hosts_claim(h, "b.x", 0, &s1, "c1", "tok", &t1, 0), 0);
    bw_hosts_reserve(h, &t1, 100);
    assert_int_equal(bw_hosts_claim(h, "b.x", 0, &s2, "c2", "tok", &t3, 100), 0);
    bw_hosts_free(h);
}

static void bind_names(void **state)
{
    bw_hosts_t *h = bw_hosts_new();
    char host[BW_HOSTNAME_MAX + 1], err[256], first[BW_HOSTNAME_MAX + 1];
    int s1, s2, t1, t2;
    bw_host_req_t q = {.domain = "example.net",
                       .subdomain = "",
                       .hostname = "",
                       .sess = &s1,
                       .client = "c1",
                       .token = "",
                       .tunnel = &t1};
    assert_int_equal(bw_hosts_bind(h, &q, first, err, sizeof err), 0);
    assert_int_equal(strlen(first), 16 + strlen(".example.net"));
    q.tunnel = &t2;
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), 0);
    assert_string_not_equal(host, first);
    q.subdomain = "Api";
    q.tunnel = &t1;
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), 0);
    assert_string_equal(host, "api.example.net");
    q.sess = &s2;
    q.client = "c2";
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), BW_EEXIST);
    assert_string_equal(err, "subdomain \"Api\" is already in use");
    q.subdomain = "";
    q.hostname = "API.example.net";
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), BW_EEXIST);
    assert_string_equal(err, "hostname \"api.example.net\" is already in use");
    q.subdomain = "x";
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), BW_EINVAL);
    q.subdomain = "";
    q.hostname = "bad/name";
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), BW_EINVAL);
    assert_non_null(strstr(err, "invalid hostname \"bad/name\""));
    bw_hosts_free(h);
}

static char gone_log[256];

static void on_gone(void *arg, const char *host, int scheme)
{
    size_t n = strlen(gone_log);
    snprintf(gone_log + n, sizeof gone_log - n, "%s/%d ", host, scheme);
    (*(int *)arg)++;
}

/* Whoever keeps state per name (the minted certificates) hears of every
 * way a name goes: unbind, expiry, takeover by its client; not of a
 * reservation or of freeing the registry. */
static void registry_reports_gone_names(void **state)
{
    bw_hosts_t *h = bw_hosts_new();
    int s1, s2, t1, t2, t3, calls = 0, held;
    gone_log[0] = '\0';
    bw_hosts_on_gone(h, on_gone, &calls);
    assert_int_equal(bw_hosts_claim(h, "a.x", 1, &s1, "c1", "tok", &t1, 0), 0);
    assert_int_equal(bw_hosts_claim(h, "b.x", 1, &s1, "c1", "tok", &t2, 0), 0);
    bw_hosts_release(h, &t1);
    assert_string_equal(gone_log, "a.x/1 ");
    bw_hosts_reserve(h, &t2, 100);
    assert_int_equal(calls, 1);
    assert_int_equal(bw_hosts_claim(h, "b.x", 1, &s2, "c1", "tok", &t3, 50), 0); /* takeover */
    assert_string_equal(gone_log, "a.x/1 b.x/1 ");
    bw_hosts_reserve(h, &t3, 100);
    assert_null(bw_hosts_find(h, "b.x", 1, 100, &held)); /* expired */
    assert_string_equal(gone_log, "a.x/1 b.x/1 b.x/1 ");
    assert_int_equal(bw_hosts_claim(h, "c.x", 0, &s1, "c1", "tok", &t1, 100), 0);
    bw_hosts_free(h);
    assert_int_equal(calls, 3);
}

/* https and tls share the HTTPS port: one name is one or the other, even
 * within one session and across a reservation, and the refusal names the
 * holder's type; http twins beside either stay allowed. */
static void https_and_tls_names_exclusive(void **state)
{
    bw_hosts_t *h = bw_hosts_new();
    char host[BW_HOSTNAME_MAX + 1], err[256];
    int s1, s2, t1, t2, t3;
    bw_host_req_t q = {.domain = "example.net",
                       .subdomain = "pt",
                       .hostname = "",
                       .scheme = BW_SCHEME_TLS,
                       .sess = &s1,
                       .client = "c1",
                       .token = "",
                       .tunnel = &t1};
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), 0);
    q.scheme = BW_SCHEME_HTTPS;
    q.tunnel = &t2;
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), BW_EEXIST);
    assert_non_null(strstr(err, "hostname \"pt.example.net\" is already in use by a tls tunnel"));
    q.scheme = BW_SCHEME_HTTP; /* port 80 beside it: the twin rule */
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), 0);
    int held;
    assert_ptr_equal(bw_hosts_find(h, "pt.example.net", BW_SCHEME_TLS, 0, &held), &t1);
    assert_null(bw_hosts_find(h, "pt.example.net", BW_SCHEME_HTTPS, 0, &held));
    /* A reserved https name refuses tls for its own client too. */
    q.subdomain = "web";
    q.scheme = BW_SCHEME_HTTPS;
    q.tunnel = &t3;
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), 0);
    bw_hosts_reserve(h, &t3, 100);
    q.sess = &s2;
    q.scheme = BW_SCHEME_TLS;
    assert_int_equal(bw_hosts_bind(h, &q, host, err, sizeof err), BW_EEXIST);
    assert_non_null(strstr(err, "already in use by an https tunnel"));
    assert_string_equal(bw_scheme_name(BW_SCHEME_TLS), "tls");
    bw_hosts_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rewrite_exact_at_every_split),
        cmocka_unit_test(head_host_and_offsets),
        cmocka_unit_test(in_body_while_body_owed),
        cmocka_unit_test(upgrade_goes_raw_on_101),
        cmocka_unit_test(declined_upgrade_stays_http),
        cmocka_unit_test(upgrade_answer_found_behind_others),
        cmocka_unit_test(errors_name_the_problem),
        cmocka_unit_test(empty_lines_between_requests_dropped),
        cmocka_unit_test(absolute_form_matching_host_passes),
        cmocka_unit_test(chunk_extension_bound),
        cmocka_unit_test(head_limit_431),
        cmocka_unit_test(head_at_limit_passes),
        cmocka_unit_test(hostname_rules),
        cmocka_unit_test(registry_claims_and_reservations),
        cmocka_unit_test(bind_names),
        cmocka_unit_test(https_and_tls_names_exclusive),
        cmocka_unit_test(registry_reports_gone_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
