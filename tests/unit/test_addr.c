/* Local addresses as ngrok normalises them (spec §1.3): the core's host:port
 * rules (core/base/addr.c) for every plugin without a normalize_addr slot,
 * and the http plugin's URL forms (plugins/http/upstream.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "upstream.h"

/* As the agent picks: the http plugin's rules for its protos, the core's
 * for the rest. */
static int normalize(const char *proto, const char *in, char *out, size_t outlen, const char *name,
                     char *err, size_t errlen)
{
    if (strcmp(proto, "http") == 0 || strcmp(proto, "https") == 0)
        return http_addr_normalize(in, out, outlen, name, err, errlen);
    return bw_addr_normalize(in, out, outlen, name, err, errlen);
}

static void normalize_table(void **state)
{
    static const struct {
        const char *proto, *in, *out;
    } ok[] = {
        {"http", "80", "http://localhost:80"},
        {"http", "443", "https://localhost:443"},
        {"http", "8080", "http://localhost:8080"},
        {"http", "localhost:80", "http://localhost:80"},
        {"http", "site.dev:80", "http://site.dev:80"},
        {"http", "site.dev", "http://site.dev:80"},
        {"http", "[::1]:8080", "http://[::1]:8080"},
        {"http", "http://localhost:443", "http://localhost:443"},
        {"http", "https://localhost:8443", "https://localhost:8443"},
        {"http", "https://localhost:8443/", "https://localhost:8443/"},
        {"https", "3000", "http://localhost:3000"},
        {"tcp", "22", "localhost:22"},
        {"tcp", "10.0.0.2:5432", "10.0.0.2:5432"},
        {"tcp", "[::1]:22", "[::1]:22"},
        {"tcp", ":22", "localhost:22"},
        {"tls", "443", "localhost:443"},
        {"postgres", "5432", "localhost:5432"},
    };
    static const struct {
        const char *proto, *in, *err;
    } bad[] = {
        {"tcp", "tcp://x:22", "Tunnel t specifies a URL instead of a host address: tcp://x:22"},
        {"tls", "https://x:443", "Tunnel t specifies a URL instead of a host address"},
        {"tcp", "localhost",
         "Tunnel t specifies an invalid or malformed address 'localhost': "
         "missing port"},
        {"tcp", "host:99999", "invalid or malformed address 'host:99999': invalid port"},
        {"tcp", "0", "invalid or malformed address '0'"},
        {"http", "70000", "invalid or malformed address '70000'"},
        {"http", "ftp://x", "Tunnel t specifies a URL with an unsupported scheme: ftp://x"},
        {"http", "/var/www", "Tunnel t specifies a path '/var/www', this is unsupported"},
        {"http", "localhost:80/x", "specifies a path"},
        {"http", "http://localhost:80/app",
         "Tunnel t specifies a path '/app', this is unsupported"},
        {"tcp", "a/b:1", "specifies a path"},
        {"http", "file://host/srv",
         "file scheme doesn't support host; should appear as "
         "file:///path/to/content"},
        {"http", "file:///nonexistent/bw/dir",
         "File tunnel t points to a non-existing directory '/nonexistent/bw/dir'"},
        {"http", "file:///etc/hostname",
         "File tunnel t refers to a file '/etc/hostname', must "
         "be a directory"},
        {"http", "http://", "invalid or malformed address 'http://'"},
        {"http", "http://a b", "invalid or malformed address"},
        {"http", "::1", "invalid or malformed address '::1'"},
        {"http", "", "Tunnel t must specify 'addr' to tunnel to"},
    };
    char out[128], err[512];

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        err[0] = '\0';
        if (normalize(ok[i].proto, ok[i].in, out, sizeof out, "t", err, sizeof err) != 0)
            fail_msg("%s %s: %s", ok[i].proto, ok[i].in, err);
        assert_string_equal(out, ok[i].out);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = normalize(bad[i].proto, bad[i].in, out, sizeof out, "t", err, sizeof err);
        if (rc != BW_EINVAL || !strstr(err, bad[i].err))
            fail_msg("%s %s: rc=%d err=%s", bad[i].proto, bad[i].in, rc, err);
    }
    /* file:// to an existing directory is kept */
    assert_int_equal(normalize("http", "file:///tmp", out, sizeof out, "t", err, sizeof err), 0);
    assert_string_equal(out, "file:///tmp");
    assert_int_equal(normalize("http", "80", out, 8, "t", err, sizeof err), BW_EMSGSIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(normalize_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
