/* The edge's ClientHello parser (edge/sni.c): the server name of hellos in
 * one record, cut across records and reads, without SNI or extensions;
 * plain HTTP, other records, malformed and oversized hellos. Pure data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "sni.h"

/* A ClientHello handshake message: a fixed body, an optional padding
 * extension of `pad` bytes, and an SNI extension naming `host` (NULL: no
 * SNI). `exts` 0 leaves out the extensions block. Returns its length. */
static size_t build_hello(uint8_t *out, const char *host, size_t pad, int exts)
{
    uint8_t *p = out + 4;
    size_t n = 0;
    p[n++] = 3, p[n++] = 3;
    memset(p + n, 0xab, 32), n += 32;
    p[n++] = 0;                                           /* session id */
    p[n++] = 0, p[n++] = 2, p[n++] = 0x13, p[n++] = 0x01; /* one cipher */
    p[n++] = 1, p[n++] = 0;                               /* null compression */
    if (exts) {
        size_t at = n;
        n += 2;
        if (pad) {
            p[n++] = 0, p[n++] = 21, p[n++] = (uint8_t)(pad >> 8), p[n++] = (uint8_t)pad;
            memset(p + n, 0, pad), n += pad;
        }
        if (host) {
            size_t hl = strlen(host);
            p[n++] = 0, p[n++] = 0;
            p[n++] = (uint8_t)((hl + 5) >> 8), p[n++] = (uint8_t)(hl + 5);
            p[n++] = (uint8_t)((hl + 3) >> 8), p[n++] = (uint8_t)(hl + 3);
            p[n++] = 0, p[n++] = (uint8_t)(hl >> 8), p[n++] = (uint8_t)hl;
            memcpy(p + n, host, hl), n += hl;
        }
        p[at] = (uint8_t)((n - at - 2) >> 8), p[at + 1] = (uint8_t)(n - at - 2);
    }
    out[0] = 1, out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
    return n + 4;
}

/* hs[0..n) cut into records of `size` bytes. */
static size_t records(uint8_t *out, const uint8_t *hs, size_t n, size_t size)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i += size) {
        size_t k = n - i < size ? n - i : size;
        out[len++] = 22, out[len++] = 3, out[len++] = 1;
        out[len++] = (uint8_t)(k >> 8), out[len++] = (uint8_t)k;
        memcpy(out + len, hs + i, k), len += k;
    }
    return len;
}

static uint8_t hs[70000], wire[200000];
static char name[256];

static void one_record(void **state)
{
    size_t n = records(wire, hs, build_hello(hs, "app.example.com", 0, 1), 16384);
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_FOUND);
    assert_string_equal(name, "app.example.com");
    /* Every shorter read asks for more. */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(bw_sni_parse(wire, k, name, sizeof name), BW_SNI_MORE);
    /* Bytes after the hello (early data) change nothing. */
    memset(wire + n, 0x17, 10);
    assert_int_equal(bw_sni_parse(wire, n + 10, name, sizeof name), BW_SNI_FOUND);
}

static void split_across_records(void **state)
{
    size_t hl = build_hello(hs, "split.localhost", 3000, 1);
    size_t sizes[] = {1, 2, 3, 7, 100, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (hl + (hl / sizes[i] + 1) * 5 >= BW_SNI_MAX_INPUT)
            continue; /* the input bound refuses those: see too_large */
        size_t n = records(wire, hs, hl, sizes[i]);
        assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_FOUND);
        assert_string_equal(name, "split.localhost");
        assert_int_equal(bw_sni_parse(wire, n - 1, name, sizeof name), BW_SNI_MORE);
    }
}

static void no_server_name(void **state)
{
    size_t n = records(wire, hs, build_hello(hs, NULL, 10, 1), 16384);
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_NONE);
    assert_string_equal(name, "");
    n = records(wire, hs, build_hello(hs, NULL, 0, 0), 16384);
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_NONE);
}

static void not_tls(void **state)
{
    const char *get = "GET / HTTP/1.1\r\n";
    assert_int_equal(bw_sni_parse((const uint8_t *)get, 1, name, sizeof name), BW_SNI_NOT_TLS);
    const uint8_t sslv2[] = {0x80, 0x2e, 0x01};
    assert_int_equal(bw_sni_parse(sslv2, sizeof sslv2, name, sizeof name), BW_SNI_NOT_TLS);
    const uint8_t v4[] = {22, 4, 1};
    assert_int_equal(bw_sni_parse(v4, sizeof v4, name, sizeof name), BW_SNI_NOT_TLS);
}

static void malformed(void **state)
{
    /* A handshake message that is not a ClientHello. */
    size_t hl = build_hello(hs, "x.y", 0, 1);
    hs[0] = 2;
    size_t n = records(wire, hs, hl, 16384);
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_BAD);
    /* An alert record after the first fragment. */
    hs[0] = 1;
    n = records(wire, hs, hl, 10);
    wire[15] = 21;
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_BAD);
    /* An SNI length that runs past its extension. */
    n = records(wire, hs, hl, 16384);
    wire[n - 4] = 0x40;
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_BAD);
    /* A zero-length record. */
    const uint8_t empty[] = {22, 3, 1, 0, 0};
    assert_int_equal(bw_sni_parse(empty, sizeof empty, name, sizeof name), BW_SNI_BAD);
    /* A name with a NUL in it. */
    n = records(wire, hs, build_hello(hs, "a.b", 0, 1), 16384);
    wire[n - 2] = 0;
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_BAD);
    /* A name longer than the caller's buffer. */
    char small[4];
    n = records(wire, hs, build_hello(hs, "long.name", 0, 1), 16384);
    assert_int_equal(bw_sni_parse(wire, n, small, sizeof small), BW_SNI_BAD);
}

static void too_large(void **state)
{
    /* Announced larger than the bound: refused from the header on. */
    size_t hl = build_hello(hs, "big.localhost", BW_SNI_MAX_HELLO, 1);
    size_t n = records(wire, hs, hl, 16384);
    assert_int_equal(bw_sni_parse(wire, 9, name, sizeof name), BW_SNI_TOO_LARGE);
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_TOO_LARGE);
    /* Within the bound but cut into so many records the input bound hits. */
    hl = build_hello(hs, "tiny.localhost", 4000, 1);
    n = records(wire, hs, hl, 1);
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_TOO_LARGE);
    /* The largest hello the bound allows still parses. */
    hl = build_hello(hs, "max.localhost", 0, 1);
    hl = build_hello(hs, "max.localhost", BW_SNI_MAX_HELLO - (hl - 4) - 4, 1);
    assert_int_equal(hl - 4, BW_SNI_MAX_HELLO);
    n = records(wire, hs, hl, 16384);
    assert_int_equal(bw_sni_parse(wire, n, name, sizeof name), BW_SNI_FOUND);
    assert_string_equal(name, "max.localhost");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_record),     cmocka_unit_test(split_across_records),
        cmocka_unit_test(no_server_name), cmocka_unit_test(not_tls),
        cmocka_unit_test(malformed),      cmocka_unit_test(too_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
