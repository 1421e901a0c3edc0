/* The edge's failed-authentication throttle (edge/auth_throttle.c): free
 * failures, doubling lockouts with a cap, forgiveness after success or a
 * long quiet, the counts behind the per-minute report, bounded memory.
 * Pure data: every time is passed in, nothing waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth_throttle.h"

static const bw_auth_throttle_cfg_t cfg = {
    .free_failures = 3, .base_ms = 1000, .max_ms = 8000, .forget_ms = 600000};

static void fail_n(bw_auth_throttle_t *t, const char *ip, unsigned n, uint64_t now)
{
    for (unsigned i = 0; i < n; i++)
        bw_auth_throttle_fail(t, ip, now);
}

static void free_failures_then_doubling_lockouts(void **state)
{
    bw_auth_throttle_t *t = bw_auth_throttle_new(&cfg);
    assert_non_null(t);
    fail_n(t, "10.0.0.1", 3, 0);
    assert_int_equal(bw_auth_throttle_check(t, "10.0.0.1", 0), 0);
    bw_auth_throttle_fail(t, "10.0.0.1", 0); /* 4th: locked 1 s */
    assert_int_equal(bw_auth_throttle_check(t, "10.0.0.1", 0), 1000);
    assert_int_equal(bw_auth_throttle_check(t, "10.0.0.1", 400), 600);
    assert_int_equal(bw_auth_throttle_check(t, "10.0.0.2", 400), 0); /* others are not */
    bw_auth_throttle_fail(t, "10.0.0.1", 1000);                      /* 5th: 2 s */
    assert_int_equal(bw_auth_throttle_check(t, "10.0.0.1", 1000), 2000);
    fail_n(t, "10.0.0.1", 10, 3000); /* capped */
    assert_int_equal(bw_auth_throttle_check(t, "10.0.0.1", 3000), 8000);
    fail_n(t, "10.0.0.1", 100, 3000); /* no overflow however many */
    assert_int_equal(bw_auth_throttle_check(t, "10.0.0.1", 3000), 8000);
    bw_auth_throttle_free(t);
}

static void success_and_quiet_forgive(void **state)
{
    bw_auth_throttle_t *t = bw_auth_throttle_new(&cfg);
    fail_n(t, "a", 4, 0);
    assert_true(bw_auth_throttle_check(t, "a", 0) > 0);
    bw_auth_throttle_ok(t, "a");
    assert_int_equal(bw_auth_throttle_check(t, "a", 0), 0);
    fail_n(t, "a", 3, 0);
    assert_int_equal(bw_auth_throttle_check(t, "a", 0), 0); /* free ones again */

    fail_n(t, "b", 3, 0);
    bw_auth_throttle_fail(t, "b", 600001); /* the old ones no longer count */
    assert_int_equal(bw_auth_throttle_check(t, "b", 600001), 0);
    bw_auth_throttle_free(t);
}

static unsigned reported[4];
static char reported_ip[4][16];
static size_t n_reported;

static void on_report(void *ud, const char *ip, unsigned count)
{
    assert_true(n_reported < 4);
    snprintf(reported_ip[n_reported], sizeof reported_ip[0], "%s", ip);
    reported[n_reported++] = count;
}

static void report_counts_each_address_once_per_window(void **state)
{
    bw_auth_throttle_t *t = bw_auth_throttle_new(&cfg);
    n_reported = 0;
    assert_int_equal(bw_auth_throttle_fail(t, "x", 0), 1); /* logged on its own */
    assert_int_equal(bw_auth_throttle_fail(t, "x", 0), 0); /* in the report */
    fail_n(t, "x", 5, 0);
    assert_true(bw_auth_throttle_check(t, "x", 0) > 0); /* a locked try counts too */
    assert_int_equal(bw_auth_throttle_fail(t, "y", 0), 1);
    assert_int_equal(bw_auth_throttle_report(t, on_report, NULL), 2);
    assert_int_equal(n_reported, 1); /* y failed once: its own line was enough */
    assert_string_equal(reported_ip[0], "x");
    assert_int_equal(reported[0], 8);
    /* A new window: the next failure is logged on its own again. */
    assert_int_equal(bw_auth_throttle_fail(t, "x", 1), 1);
    n_reported = 0;
    bw_auth_throttle_report(t, on_report, NULL);
    assert_int_equal(n_reported, 0);
    bw_auth_throttle_free(t);
}

static void memory_is_bounded(void **state)
{
    bw_auth_throttle_t *t = bw_auth_throttle_new(NULL);
    char ip[32];
    fail_n(t, "first", 6, 0); /* locked, and idle longest */
    for (unsigned i = 0; i < BW_AUTH_THROTTLE_SLOTS + 10; i++) {
        snprintf(ip, sizeof ip, "10.1.%u.%u", i / 256, i % 256);
        bw_auth_throttle_fail(t, ip, 1 + i);
    }
    /* The oldest was forgotten to make room; the newest is tracked. */
    assert_int_equal(bw_auth_throttle_check(t, "first", 1), 0);
    fail_n(t, ip, 5, 5000);
    assert_true(bw_auth_throttle_check(t, ip, 5000) > 0);
    bw_auth_throttle_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(free_failures_then_doubling_lockouts),
        cmocka_unit_test(success_and_quiet_forgive),
        cmocka_unit_test(report_counts_each_address_once_per_window),
        cmocka_unit_test(memory_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
