/* The edge's reservations file parser (edge/edge_state_parse.c): what each
 * entry becomes, which entries are dropped or counted as malformed, and
 * which texts are refused whole (docs/edge.md "Reservations across
 * restarts"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "burrow/error.h"
#include "edge_state_parse.h"
#include "hostnames.h"

#define NOW   1796550000000ull
#define GRACE 60000u
#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CID   "9f0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"
#define ENTRY "\"client_id\": \"" CID "\", \"token_sha256\": \"" TOKEN "\""

typedef struct seen {
    size_t n;
    bw_edge_hold_t h[8];
    char host[8][BW_HOSTNAME_MAX + 1], client[8][33];
    int refuse; /* the callback's answer */
} seen_t;

static int on_hold(void *arg, const bw_edge_hold_t *h)
{
    seen_t *s = arg;
    assert_true(s->n < 8);
    s->h[s->n] = *h;
    /* the strings are borrowed for the call only */
    if (h->host)
        snprintf(s->host[s->n], sizeof s->host[0], "%s", h->host);
    snprintf(s->client[s->n], sizeof s->client[0], "%s", h->client_id);
    s->h[s->n].client_id = s->h[s->n].token_sha256 = s->h[s->n].host = NULL;
    s->n++;
    return s->refuse;
}

static int parse(const char *text, seen_t *s, size_t *ok, size_t *bad, char *why, size_t whylen)
{
    return bw_edge_state_parse(text, strlen(text), NOW, GRACE, on_hold, s, ok, bad, why, whylen);
}

static void test_entries(void **state)
{
    (void)state;
    seen_t s = {0};
    size_t ok, bad;
    char why[128] = "";
    const char *text =
        "{\"version\": 1, \"saved_at\": 1, \"reservations\": ["
        "{" ENTRY ", \"port\": 10042, \"expires\": null},"
        "{" ENTRY ", \"name\": {\"host\": \"Kept.Localhost\", \"scheme\": \"https\"},"
        " \"expires\": 1796550030000},"
        "{" ENTRY ", \"name\": {\"host\": \"pt.localhost\", \"scheme\": \"tls\"},"
        " \"expires\": null}]}";
    assert_int_equal(parse(text, &s, &ok, &bad, why, sizeof why), 0);
    assert_int_equal(ok, 3);
    assert_int_equal(bad, 0);
    assert_int_equal(s.n, 3);
    /* a tls tunnel's name comes back as tls, not https */
    assert_int_equal(s.h[2].scheme, BW_SCHEME_TLS);
    /* a live tunnel gets the whole grace from now */
    assert_int_equal(s.h[0].port, 10042);
    assert_null(s.h[0].host);
    assert_int_equal(s.h[0].left_ms, GRACE);
    assert_string_equal(s.client[0], CID);
    /* a reservation keeps what was left, under its lowercased name */
    assert_int_equal(s.h[1].port, 0);
    assert_string_equal(s.host[1], "kept.localhost");
    assert_int_equal(s.h[1].scheme, BW_SCHEME_HTTPS);
    assert_int_equal(s.h[1].left_ms, 30000);
}

static void test_expired_and_clock_set_back(void **state)
{
    (void)state;
    seen_t s = {0};
    size_t ok, bad;
    char why[128] = "";
    const char *text = "{\"version\": 1, \"reservations\": ["
                       "{" ENTRY ", \"port\": 1, \"expires\": 1796549999999},"
                       "{" ENTRY ", \"port\": 2, \"expires\": 1796550000000},"
                       "{" ENTRY ", \"port\": 3, \"expires\": 9223372036854775807}]}";
    assert_int_equal(parse(text, &s, &ok, &bad, why, sizeof why), 0);
    /* expired ones are dropped without a complaint */
    assert_int_equal(bad, 0);
    assert_int_equal(ok, 1);
    assert_int_equal(s.h[0].port, 3);
    assert_int_equal(s.h[0].left_ms, GRACE);
}

/* Each of these is skipped and counted; the good entry among them loads. */
static void test_malformed_entries_counted(void **state)
{
    (void)state;
    static const char *const bad_entries[] = {
        "7",
        "null",
        "{\"client_id\": \"x\"}",
        "{" ENTRY ", \"port\": 0, \"expires\": null}",
        "{" ENTRY ", \"port\": 65536, \"expires\": null}",
        "{" ENTRY ", \"port\": \"80\", \"expires\": null}",
        "{" ENTRY ", \"port\": 8.5, \"expires\": null}",
        "{" ENTRY ", \"port\": 80, \"expires\": \"soon\"}",
        "{" ENTRY ", \"expires\": null}",
        "{" ENTRY ", \"name\": \"x.y\", \"expires\": null}",
        "{" ENTRY ", \"name\": {\"host\": \"a..b\", \"scheme\": \"http\"}, \"expires\": null}",
        "{" ENTRY ", \"name\": {\"host\": \"ok.host\", \"scheme\": \"ftp\"}, \"expires\": null}",
        "{\"client_id\": \"\", \"token_sha256\": \"" TOKEN "\", \"port\": 9, \"expires\": null}",
        "{\"client_id\": \"" CID "0\", \"token_sha256\": \"" TOKEN "\", \"port\": 9, \"expires\": "
        "null}",
        "{\"client_id\": \"c\", \"token_sha256\": \"ab\", \"port\": 9, \"expires\": null}",
        /* 64 characters, but not what SHA-256 hex looks like */
        "{\"client_id\": \"c\", \"token_sha256\": \"" TOKEN "\", \"port\": 9, \"expires\": null}",
    };
    for (size_t i = 0; i < sizeof bad_entries / sizeof bad_entries[0]; i++) {
        char text[1024], why[128] = "";
        seen_t s = {0};
        size_t ok, bad;
        snprintf(text, sizeof text,
                 "{\"version\": 1, \"reservations\": [%s, {" ENTRY ", \"port\": 7, \"expires\": "
                 "null}]}",
                 bad_entries[i]);
        if (i == sizeof bad_entries / sizeof bad_entries[0] - 1)
            memcpy(strstr(text, TOKEN), "0123456789ABCDEF", 16);
        assert_int_equal(parse(text, &s, &ok, &bad, why, sizeof why), 0);
        if (bad != 1 || ok != 1)
            fail_msg("entry %zu (%s): %zu bad, %zu ok", i, bad_entries[i], bad, ok);
        assert_int_equal(s.h[0].port, 7);
    }
}

/* An entry the caller cannot take (a name someone holds) counts as bad. */
static void test_refused_by_caller_counted(void **state)
{
    (void)state;
    seen_t s = {.refuse = BW_EEXIST};
    size_t ok, bad;
    char why[128] = "";
    assert_int_equal(parse("{\"version\": 1, \"reservations\": [{" ENTRY
                           ", \"port\": 7, \"expires\": null}]}",
                           &s, &ok, &bad, why, sizeof why),
                     0);
    assert_int_equal(ok, 0);
    assert_int_equal(bad, 1);
}

static void test_refused_whole(void **state)
{
    (void)state;
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"", "line 1"},
        {"{\"version\": 1, \"reservations\": [{\"port\": ", "line 1"},
        {"[1, 2]", "not a version 1 reservations file"},
        {"{\"version\": 2, \"reservations\": []}", "not a version 1 reservations file"},
        {"{\"version\": \"1\", \"reservations\": []}", "not a version 1 reservations file"},
        {"{\"version\": 1.0, \"reservations\": []}", "not a version 1 reservations file"},
        {"{\"version\": 1, \"reservations\": {}}", "not a version 1 reservations file"},
        {"{\"version\": 1}", "not a version 1 reservations file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        seen_t s = {0};
        size_t ok = 9, bad = 9;
        char why[128] = "";
        assert_int_equal(parse(cases[i].text, &s, &ok, &bad, why, sizeof why), BW_EINVAL);
        if (!strstr(why, cases[i].why))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, why, cases[i].why);
        assert_int_equal(ok + bad + s.n, 0);
    }
}

static void test_too_long_refused(void **state)
{
    (void)state;
    size_t len = BW_EDGE_STATE_MAX + 1, ok, bad;
    char *text = malloc(len), why[128] = "";
    seen_t s = {0};
    assert_non_null(text);
    memset(text, ' ', len);
    assert_int_equal(
        bw_edge_state_parse(text, len, NOW, GRACE, on_hold, &s, &ok, &bad, why, sizeof why),
        BW_EINVAL);
    assert_non_null(strstr(why, "longer than"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries),
        cmocka_unit_test(test_expired_and_clock_set_back),
        cmocka_unit_test(test_malformed_entries_counted),
        cmocka_unit_test(test_refused_by_caller_counted),
        cmocka_unit_test(test_refused_whole),
        cmocka_unit_test(test_too_long_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
