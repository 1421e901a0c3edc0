/* A local address as ngrok normalises it for tunnels whose plugin has no
 * normalize_addr slot (spec §1.3). See addr.h. */
#include "addr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <burrow/error.h>

#include "util.h"

static int all_digits(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

__attribute__((format(printf, 3, 4))) static int addr_fail(char *err, size_t errlen,
                                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return BW_EINVAL;
}

/* Characters no host name or IP literal contains. */
static int host_ok(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)h[i] <= ' ' || strchr("@/?#\"'<>\\`{}|^%", h[i]))
            return 0;
    return 1;
}

/* "host:port" (port 1..65535, host may be empty); "why" says what is wrong. */
static int hostport_ok(const char *in, const char **why)
{
    char host[256];
    int port;

    *why = "invalid port";
    if (!strchr(in, ':')) {
        *why = "missing port in address";
        return 0;
    }
    if (bw_split_hostport(in, host, sizeof host, &port) != 0 || port == 0)
        return 0;
    *why = "invalid host";
    return host_ok(host, strlen(host));
}

static int norm_port(const char *in, long long *port, const char *name, char *err, size_t errlen)
{
    if (bw_parse_int(in, 1, 65535, port) != 0)
        return addr_fail(err, errlen,
                         "Tunnel %s specifies an invalid or malformed address '%s': invalid port",
                         name, in);
    return 0;
}

static int norm_hostport(const char *in, char *out, size_t outlen, const char *name, char *err,
                         size_t errlen)
{
    const char *why;
    long long port;

    if (all_digits(in)) {
        if (norm_port(in, &port, name, err, errlen) != 0)
            return BW_EINVAL;
        return bw_fmt(out, outlen, "localhost:%lld", port);
    }
    if (strstr(in, "://"))
        return addr_fail(err, errlen, "Tunnel %s specifies a URL instead of a host address: %s",
                         name, in);
    if (strchr(in, '/'))
        return addr_fail(err, errlen, "Tunnel %s specifies a path '%s', this is unsupported", name,
                         in);
    if (!hostport_ok(in, &why))
        return addr_fail(err, errlen,
                         "Tunnel %s specifies an invalid or malformed address '%s': %s", name, in,
                         why);
    if (in[0] == ':')
        return bw_fmt(out, outlen, "localhost%s", in);
    return bw_fmt(out, outlen, "%s", in);
}

int bw_addr_normalize(const char *in, char *out, size_t outlen, const char *tunnel_name, char *err,
                      size_t errlen)
{
    const char *name = tunnel_name ? tunnel_name : "";

    if (!in || !*in)
        return addr_fail(err, errlen, "Tunnel %s must specify 'addr' to tunnel to", name);
    int rc = norm_hostport(in, out, outlen, name, err, errlen);
    if (rc == BW_EMSGSIZE)
        addr_fail(err, errlen, "Tunnel %s: address '%s' is too long", name, in);
    return rc;
}
