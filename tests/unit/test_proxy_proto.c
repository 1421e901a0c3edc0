/* include/burrow/proxy_proto.h against byte vectors written from HAProxy's
 * "The PROXY protocol" (versions 1 and 2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <burrow/proxy_proto.h>

#define SIG "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"

static void expect_header(int version, const char *src, const char *dst, const void *want,
                          size_t want_len)
{
    uint8_t out[BW_PROXY_HEADER_MAX];
    memset(out, 0xaa, sizeof out);
    size_t n = bw_proxy_header(version, src, dst, out, sizeof out);
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
}

#define EXPECT_TEXT(v, src, dst, text) expect_header(v, src, dst, text, sizeof(text) - 1)

/* The spec's own v1 example (section 2.1). */
static void v1_tcp4(void **state)
{
    (void)state;
    EXPECT_TEXT(1, "192.168.0.1:56324", "192.168.0.11:443",
                "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    EXPECT_TEXT(1, "127.0.0.1:0", "10.0.0.255:65535",
                "PROXY TCP4 127.0.0.1 10.0.0.255 0 65535\r\n");
}

static void v1_tcp6(void **state)
{
    (void)state;
    EXPECT_TEXT(1, "[2001:db8::1]:51000", "[::1]:443", "PROXY TCP6 2001:db8::1 ::1 51000 443\r\n");
    /* The longest zero run is compressed, the first of equal ones; a lone
     * zero group stays. */
    EXPECT_TEXT(1, "[2001:db8:0:0:1:0:0:0]:1", "[1:0:2:3:4:5:6:7]:2",
                "PROXY TCP6 2001:db8:0:0:1:: 1:0:2:3:4:5:6:7 1 2\r\n");
    EXPECT_TEXT(1, "[::]:1", "[fe80::]:2", "PROXY TCP6 :: fe80:: 1 2\r\n");
    /* The spec's worst case for TCP6, 104 bytes. */
    EXPECT_TEXT(1, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                "[FFFF:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n");
}

static void v1_mapped_and_mixed(void **state)
{
    (void)state;
    /* IPv4-mapped IPv6 is IPv4. */
    EXPECT_TEXT(1, "[::ffff:203.0.113.7]:5000", "[::ffff:10.0.0.1]:80",
                "PROXY TCP4 203.0.113.7 10.0.0.1 5000 80\r\n");
    /* Families differ: both as IPv6, in hex groups (never a dotted tail). */
    EXPECT_TEXT(1, "203.0.113.7:5000", "[2001:db8::2]:80",
                "PROXY TCP6 ::ffff:cb00:7107 2001:db8::2 5000 80\r\n");
}

static void v1_unknown(void **state)
{
    (void)state;
    static const char *const bad[] = {
        NULL,
        "",
        "1.2.3.4",
        "1.2.3.4:",
        "1.2.3.4:65536",
        "1.2.3.4:8x",
        "host:80",
        "[::1]",
        "[::1]80",
        "::1:80",
        "[1.2.3.4]:80",
        "1.2.3.4:123456",
        "[::1:80",
        "256.1.1.1:80",
        ":80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_TEXT(1, bad[i], "10.0.0.1:80", "PROXY UNKNOWN\r\n");
}

static void unknown_destination(void **state)
{
    (void)state;
    EXPECT_TEXT(1, "10.1.2.3:4000", NULL, "PROXY TCP4 10.1.2.3 0.0.0.0 4000 0\r\n");
    EXPECT_TEXT(1, "[::1]:4000", "edge.example:443", "PROXY TCP6 ::1 :: 4000 0\r\n");
}

/* Section 2.2: signature, 0x21 (v2, PROXY), 0x11 (TCP over IPv4), length
 * 12, then source, destination, source port, destination port. */
static void v2_tcp4(void **state)
{
    (void)state;
    EXPECT_TEXT(2, "192.168.0.1:56324", "192.168.0.11:443",
                SIG "\x21\x11\x00\x0c"
                    "\xc0\xa8\x00\x01"
                    "\xc0\xa8\x00\x0b"
                    "\xdc\x04\x01\xbb");
}

static void v2_tcp6(void **state)
{
    (void)state;
    EXPECT_TEXT(2, "[2001:db8::1]:51000", "[::1]:443",
                SIG "\x21\x21\x00\x24"
                    "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
                    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
                    "\xc7\x38\x01\xbb");
    /* Mixed families: the IPv4 side mapped. */
    EXPECT_TEXT(2, "127.0.0.1:1", "[::1]:2",
                SIG "\x21\x21\x00\x24"
                    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x7f\x00\x00\x01"
                    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
                    "\x00\x01\x00\x02");
    /* Mapped on both sides: plain IPv4. */
    EXPECT_TEXT(2, "[::ffff:127.0.0.1]:1", "[::ffff:127.0.0.2]:2",
                SIG "\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x02\x00\x01\x00\x02");
}

/* No usable source: LOCAL (0x20), UNSPEC (0x00), no address block. */
static void v2_local(void **state)
{
    (void)state;
    EXPECT_TEXT(2, "not-an-address", "10.0.0.1:80", SIG "\x20\x00\x00\x00");
    EXPECT_TEXT(2, NULL, NULL, SIG "\x20\x00\x00\x00");
    EXPECT_TEXT(2, "10.1.2.3:4000", NULL,
                SIG "\x21\x11\x00\x0c\x0a\x01\x02\x03\x00\x00\x00\x00\x0f\xa0\x00\x00");
}

/* Section 2.2.5: PP2_TYPE_SSL after the addresses, the length field grown
 * to cover it; sub-TLVs only for what is given. */
static void v2_ssl_tlv(void **state)
{
    (void)state;
    uint8_t out[BW_PROXY_HEADER_SSL_MAX];
    size_t n = bw_proxy_header(2, "10.0.0.1:1", "10.0.0.2:2", out, sizeof out);
    size_t m = bw_proxy_v2_add_ssl(out, n, sizeof out, 1, "TLSv1.3", "client");
    static const char want[] = SIG "\x21\x11\x00\x27"
                                   "\x0a\x00\x00\x01\x0a\x00\x00\x02\x00\x01\x00\x02"
                                   "\x20\x00\x18\x03\x00\x00\x00\x00"
                                   "\x21\x00\x07TLSv1.3"
                                   "\x22\x00\x06"
                                   "client";
    assert_int_equal(m, sizeof want - 1);
    assert_memory_equal(out, want, m);

    /* No certificate: PP2_CLIENT_SSL alone, no sub-TLVs. */
    n = bw_proxy_header(2, "10.0.0.1:1", "10.0.0.2:2", out, sizeof out);
    m = bw_proxy_v2_add_ssl(out, n, sizeof out, 0, NULL, "");
    assert_int_equal(m, n + 8);
    assert_int_equal(out[15], 12 + 8);
    assert_memory_equal(out + n, "\x20\x00\x05\x01\x00\x00\x00\x00", 8);

    /* Only onto a v2 PROXY header, and only when it fits. */
    assert_int_equal(bw_proxy_v2_add_ssl(out, n, n + 7, 0, NULL, NULL), 0);
    n = bw_proxy_header(1, "10.0.0.1:1", "10.0.0.2:2", out, sizeof out);
    assert_int_equal(bw_proxy_v2_add_ssl(out, n, sizeof out, 0, NULL, NULL), 0);
    n = bw_proxy_header(2, NULL, NULL, out, sizeof out); /* LOCAL */
    assert_int_equal(bw_proxy_v2_add_ssl(out, n, sizeof out, 0, NULL, NULL), 0);
}

static void refusals(void **state)
{
    (void)state;
    uint8_t out[BW_PROXY_HEADER_MAX];
    assert_int_equal(bw_proxy_header(0, "1.2.3.4:1", "1.2.3.4:2", out, sizeof out), 0);
    assert_int_equal(bw_proxy_header(3, "1.2.3.4:1", "1.2.3.4:2", out, sizeof out), 0);
    assert_int_equal(bw_proxy_header(1, "1.2.3.4:1", "1.2.3.4:2", NULL, 100), 0);
    /* Too small by one byte, for every form. */
    assert_int_equal(bw_proxy_header(1, "1.2.3.4:1", "1.2.3.4:2", out, 31), 0);
    assert_int_equal(bw_proxy_header(1, "1.2.3.4:1", "1.2.3.4:2", out, 32), 32);
    assert_int_equal(bw_proxy_header(1, NULL, NULL, out, 14), 0);
    assert_int_equal(bw_proxy_header(2, "1.2.3.4:1", "1.2.3.4:2", out, 27), 0);
    assert_int_equal(bw_proxy_header(2, "[::1]:1", "[::1]:2", out, 51), 0);
    assert_int_equal(bw_proxy_header(2, "[::1]:1", "[::1]:2", out, 52), 52);
    assert_int_equal(bw_proxy_header(2, NULL, NULL, out, 15), 0);
}

static void option_values(void **state)
{
    (void)state;
    assert_int_equal(bw_proxy_proto_parse(NULL), 0);
    assert_int_equal(bw_proxy_proto_parse(""), 0);
    assert_int_equal(bw_proxy_proto_parse("0"), 0);
    assert_int_equal(bw_proxy_proto_parse("1"), 1);
    assert_int_equal(bw_proxy_proto_parse("2"), 2);
    assert_int_equal(bw_proxy_proto_parse("3"), -1);
    assert_int_equal(bw_proxy_proto_parse("v2"), -1);
    assert_int_equal(bw_proxy_proto_parse("true"), -1);
    assert_int_equal(bw_proxy_proto_parse(" 1"), -1);
}

static void addr_parse(void **state)
{
    (void)state;
    bw_proxy_addr_t a;
    assert_int_equal(bw_proxy_addr_parse("[::ffff:1.2.3.4]:7", &a), 0);
    assert_int_equal(a.family, 4);
    assert_memory_equal(a.ip, "\x01\x02\x03\x04", 4);
    assert_int_equal(a.port, 7);
    assert_int_equal(bw_proxy_addr_parse("[fe80::1]:65535", &a), 0);
    assert_int_equal(a.family, 6);
    assert_int_equal(a.port, 65535);
    assert_int_equal(bw_proxy_addr_parse("1.2.3.4", &a), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v1_tcp4),
        cmocka_unit_test(v1_tcp6),
        cmocka_unit_test(v1_mapped_and_mixed),
        cmocka_unit_test(v1_unknown),
        cmocka_unit_test(unknown_destination),
        cmocka_unit_test(v2_tcp4),
        cmocka_unit_test(v2_tcp6),
        cmocka_unit_test(v2_local),
        cmocka_unit_test(v2_ssl_tlv),
        cmocka_unit_test(refusals),
        cmocka_unit_test(option_values),
        cmocka_unit_test(addr_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
