/* The public-connection caps (edge/conn_limit.c): per source address and
 * in all, released counts reused, refusals reported once per window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "conn_limit.h"

static void per_ip_cap_refuses_the_excess_only(void **state)
{
    bw_conn_limit_t *l = bw_conn_limit_new(3, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(bw_conn_limit_take(l, "10.0.0.1"), BW_CONN_OK);
    assert_int_equal(bw_conn_limit_take(l, "10.0.0.1"), BW_CONN_PER_IP);
    assert_int_equal(bw_conn_limit_take(l, "10.0.0.2"), BW_CONN_OK);
    assert_int_equal(bw_conn_limit_open(l, "10.0.0.1"), 3);
    assert_int_equal(bw_conn_limit_open(l, NULL), 4);
    bw_conn_limit_release(l, "10.0.0.1");
    assert_int_equal(bw_conn_limit_take(l, "10.0.0.1"), BW_CONN_OK);
    bw_conn_limit_free(l);
}

static void total_cap_counts_every_source(void **state)
{
    bw_conn_limit_t *l = bw_conn_limit_new(0, 100);
    char ip[32];
    for (int i = 0; i < 100; i++) {
        snprintf(ip, sizeof ip, "192.0.2.%d", i);
        assert_int_equal(bw_conn_limit_take(l, ip), BW_CONN_OK);
    }
    assert_int_equal(bw_conn_limit_take(l, "198.51.100.1"), BW_CONN_TOTAL);
    bw_conn_limit_release(l, "192.0.2.7");
    assert_int_equal(bw_conn_limit_open(l, "192.0.2.7"), 0);
    assert_int_equal(bw_conn_limit_take(l, "198.51.100.1"), BW_CONN_OK);
    for (int i = 0; i < 100; i++) {
        snprintf(ip, sizeof ip, "192.0.2.%d", i);
        bw_conn_limit_release(l, ip);
    }
    bw_conn_limit_release(l, "198.51.100.1");
    assert_int_equal(bw_conn_limit_open(l, NULL), 0);
    bw_conn_limit_free(l);
}

/* Releasing an address never counted (or twice) leaves the counts alone. */
static void unknown_release_is_harmless(void **state)
{
    bw_conn_limit_t *l = bw_conn_limit_new(1, 1);
    bw_conn_limit_release(l, "::1");
    assert_int_equal(bw_conn_limit_take(l, "::1"), BW_CONN_OK);
    bw_conn_limit_release(l, "::1");
    bw_conn_limit_release(l, "::1");
    assert_int_equal(bw_conn_limit_open(l, NULL), 0);
    assert_int_equal(bw_conn_limit_take(l, "::1"), BW_CONN_OK);
    bw_conn_limit_free(l);
}

/* A thousand refusals make one report per window, with their count. */
static void refusals_reported_aggregated(void **state)
{
    bw_conn_limit_t *l = bw_conn_limit_new(1, 0);
    assert_int_equal(bw_conn_limit_report(l, BW_CONN_PER_IP, 0, 10000), 0);
    assert_int_equal(bw_conn_limit_take(l, "a"), BW_CONN_OK);
    assert_int_equal(bw_conn_limit_take(l, "a"), BW_CONN_PER_IP);
    assert_int_equal(bw_conn_limit_report(l, BW_CONN_PER_IP, 1000, 10000), 1);
    for (int i = 0; i < 1000; i++)
        bw_conn_limit_take(l, "a");
    assert_int_equal(bw_conn_limit_report(l, BW_CONN_PER_IP, 5000, 10000), 0);
    assert_int_equal(bw_conn_limit_report(l, BW_CONN_TOTAL, 5000, 10000), 0);
    assert_int_equal(bw_conn_limit_report(l, BW_CONN_PER_IP, 11000, 10000), 1000);
    assert_int_equal(bw_conn_limit_report(l, BW_CONN_PER_IP, 30000, 10000), 0);
    /* refusals the caller decides are reported apart, the same way */
    bw_conn_limit_refused(l, BW_CONN_RESERVE);
    bw_conn_limit_refused(l, BW_CONN_RESERVE);
    assert_int_equal(bw_conn_limit_report(l, BW_CONN_ACCEPT, 30000, 10000), 0);
    assert_int_equal(bw_conn_limit_report(l, BW_CONN_RESERVE, 30000, 10000), 2);
    bw_conn_limit_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(per_ip_cap_refuses_the_excess_only),
        cmocka_unit_test(total_cap_counts_every_source),
        cmocka_unit_test(unknown_release_is_harmless),
        cmocka_unit_test(refusals_reported_aggregated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
