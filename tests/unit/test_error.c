/* bw_strerror and the util helpers every module leans on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <burrow/error.h>

#include "util.h"

static void strerror_names_codes(void **state)
{
    assert_string_equal(bw_strerror(0), "success");
    assert_string_equal(bw_strerror(BW_EABI), "plugin ABI mismatch");
    assert_string_equal(bw_strerror(BW_ECONNREFUSED), "connection refused");
    assert_string_equal(bw_strerror(BW_EPROTO), "protocol error");
    assert_string_equal(bw_strerror(-99999), "unknown error");
    assert_true(BW_EAGAIN == -EAGAIN); /* codes are -errno where one exists */
    assert_true(BW_PAUSE > 0);         /* a success: rc < 0 still means failure */
    assert_string_equal(bw_strerror(BW_PAUSE), "accepted, pause the source");
}

static void split_hostport_forms(void **state)
{
    char host[64];
    int port;
    assert_int_equal(bw_split_hostport("localhost:22", host, sizeof host, &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 22);
    assert_int_equal(bw_split_hostport("8080", host, sizeof host, &port), 0);
    assert_string_equal(host, "");
    assert_int_equal(port, 8080);
    assert_int_equal(bw_split_hostport("[::1]:443", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(bw_split_hostport(":9", host, sizeof host, &port), 0);
    assert_int_equal(port, 9);
    assert_int_equal(bw_split_hostport("host:99999", host, sizeof host, &port), BW_EINVAL);
    assert_int_equal(bw_split_hostport("::1:80", host, sizeof host, &port), BW_EINVAL);
    assert_int_equal(bw_split_hostport("host:", host, sizeof host, &port), BW_EINVAL);
    assert_int_equal(bw_split_hostport("", host, sizeof host, &port), BW_EINVAL);
    assert_int_equal(bw_split_hostport("abc", host, sizeof host, &port), BW_EINVAL);
}

static void durations_parse_go_style(void **state)
{
    uint64_t ms;
    assert_int_equal(bw_parse_duration_ms("10s", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(bw_parse_duration_ms("1m30s", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(bw_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(bw_parse_duration_ms("2h", &ms), 0);
    assert_int_equal(ms, 7200000);
    assert_int_equal(bw_parse_duration_ms("15", &ms), 0);
    assert_int_equal(ms, 15000);
    assert_int_equal(bw_parse_duration_ms("10x", &ms), BW_EINVAL);
    assert_int_equal(bw_parse_duration_ms("", &ms), BW_EINVAL);
    assert_int_equal(bw_parse_duration_ms("-1s", &ms), BW_EINVAL);
    assert_int_equal(bw_parse_duration_ms("1e400s", &ms), BW_EINVAL);
    assert_int_equal(bw_parse_duration_ms("99999999999999999999", &ms), BW_EINVAL);
}

static void loopback_hosts(void **state)
{
    assert_true(bw_is_loopback_host("localhost"));
    assert_true(bw_is_loopback_host("abc.localhost"));
    assert_true(bw_is_loopback_host("127.0.0.2"));
    assert_true(bw_is_loopback_host("::1"));
    assert_false(bw_is_loopback_host("0.0.0.0"));
    assert_false(bw_is_loopback_host("example.com"));
    assert_false(bw_is_loopback_host("localhost.evil.com"));
}

static void random_hex_is_hex_and_varies(void **state)
{
    char a[33], b[33];
    assert_int_equal(bw_random_hex(a, 16), 0);
    assert_int_equal(bw_random_hex(b, 16), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
}

static void parse_int_bounds(void **state)
{
    long long v;
    assert_int_equal(bw_parse_int("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(bw_parse_int("101", 0, 100, &v), BW_EINVAL);
    assert_int_equal(bw_parse_int("4x", 0, 100, &v), BW_EINVAL);
    assert_int_equal(bw_parse_int("", 0, 100, &v), BW_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strerror_names_codes),         cmocka_unit_test(split_hostport_forms),
        cmocka_unit_test(durations_parse_go_style),     cmocka_unit_test(loopback_hosts),
        cmocka_unit_test(random_hex_is_hex_and_varies), cmocka_unit_test(parse_int_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
