/* The local address of an http tunnel as ngrok normalises it (spec §1.3):
 * "80" -> "http://localhost:80", "443" -> "https://localhost:443",
 * "host" -> "http://host:80", "host:port" -> "http://host:port";
 * http(s)://host[:port] URLs and file:///dir (an existing directory) are
 * kept. Pure: no host calls, so unit tests and fuzzers run it alone. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "upstream.h"

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return BW_EINVAL;
}

/* snprintf into out[outlen], BW_EMSGSIZE when it does not fit. */
__attribute__((format(printf, 3, 4))) static int put(char *out, size_t outlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= outlen ? BW_EMSGSIZE : 0;
}

static int is_number(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

/* No host name or IP literal holds these. */
static int host_ok(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)h[i] <= ' ' || strchr("@/?#\"'<>\\`{}|^%", h[i]))
            return 0;
    return 1;
}

/* A decimal port 1..65535 in s[0..n). */
static int port_ok(const char *s, size_t n)
{
    unsigned long v = 0;
    if (n == 0 || n > 5)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* "host:port" or "[v6]:port" (the host may be empty); `why` says what is
 * wrong. */
static int hostport_ok(const char *in, const char **why)
{
    const char *colon = strrchr(in, ':'), *host = in;
    size_t hostlen;
    *why = "missing port in address";
    if (!colon)
        return 0;
    *why = "invalid port";
    if (!port_ok(colon + 1, strlen(colon + 1)))
        return 0;
    hostlen = (size_t)(colon - in);
    if (in[0] == '[') {
        if (hostlen < 2 || in[hostlen - 1] != ']')
            return 0;
        host++, hostlen -= 2;
    } else if (memchr(in, ':', hostlen)) {
        return 0; /* an IPv6 literal needs brackets */
    }
    *why = "invalid host";
    return host_ok(host, hostlen);
}

static int port_of(const char *in, long long *port, const char *name, char *err, size_t errlen)
{
    if (!port_ok(in, strlen(in)))
        return fail(err, errlen,
                    "Tunnel %s specifies an invalid or malformed address '%s': invalid port", name,
                    in);
    *port = strtoll(in, NULL, 10);
    return 0;
}

static int norm_file(const char *in, const char *rest, char *out, size_t outlen, const char *name,
                     char *err, size_t errlen)
{
    struct stat st;

    if (rest[0] != '/')
        return fail(err, errlen,
                    "file scheme doesn't support host; should appear as "
                    "file:///path/to/content");
    if (stat(rest, &st) != 0)
        return fail(err, errlen, "File tunnel %s points to a non-existing directory '%s'", name,
                    rest);
    if (!S_ISDIR(st.st_mode))
        return fail(err, errlen, "File tunnel %s refers to a file '%s', must be a directory", name,
                    rest);
    return put(out, outlen, "%s", in);
}

/* http(s)://host[:port][/] kept as given. */
static int norm_http_url(const char *in, const char *rest, char *out, size_t outlen,
                         const char *name, char *err, size_t errlen)
{
    size_t hl = strcspn(rest, "/?#");
    const char *why;
    char hp[300];

    if (rest[hl] && strcmp(rest + hl, "/") != 0)
        return fail(err, errlen, "Tunnel %s specifies a path '%s', this is unsupported", name,
                    rest + hl);
    if (hl == 0 || hl >= sizeof hp || !host_ok(rest, hl))
        return fail(err, errlen,
                    "Tunnel %s specifies an invalid or malformed address '%s': invalid host", name,
                    in);
    memcpy(hp, rest, hl);
    hp[hl] = '\0';
    if ((hp[0] == '[' || strchr(hp, ':')) && !hostport_ok(hp, &why))
        return fail(err, errlen, "Tunnel %s specifies an invalid or malformed address '%s': %s",
                    name, in, why);
    return put(out, outlen, "%s", in);
}

static int norm_url(const char *in, const char *sep, char *out, size_t outlen, const char *name,
                    char *err, size_t errlen)
{
    size_t sl = (size_t)(sep - in);
    const char *rest = sep + 3;

    if (sl == 4 && strncasecmp(in, "file", 4) == 0)
        return norm_file(in, rest, out, outlen, name, err, errlen);
    if ((sl == 4 && strncasecmp(in, "http", 4) == 0) ||
        (sl == 5 && strncasecmp(in, "https", 5) == 0))
        return norm_http_url(in, rest, out, outlen, name, err, errlen);
    return fail(err, errlen, "Tunnel %s specifies a URL with an unsupported scheme: %s", name, in);
}

static int norm_http(const char *in, char *out, size_t outlen, const char *name, char *err,
                     size_t errlen)
{
    const char *sep = strstr(in, "://"), *why;
    long long port = 0;

    if (is_number(in)) {
        if (port_of(in, &port, name, err, errlen) != 0)
            return BW_EINVAL;
        /* ngrok 2.3+: a bare 443 means the local service speaks TLS. */
        return put(out, outlen, "%s://localhost:%lld", port == 443 ? "https" : "http", port);
    }
    if (sep)
        return norm_url(in, sep, out, outlen, name, err, errlen);
    if (strchr(in, '/'))
        return fail(err, errlen, "Tunnel %s specifies a path '%s', this is unsupported", name, in);
    if (!strchr(in, ':') && host_ok(in, strlen(in)))
        return put(out, outlen, "http://%s:80", in);
    if (!hostport_ok(in, &why))
        return fail(err, errlen, "Tunnel %s specifies an invalid or malformed address '%s': %s",
                    name, in, why);
    return put(out, outlen, "http://%s", in);
}

int http_addr_normalize(const char *in, char *out, size_t outlen, const char *tunnel_name,
                        char *err, size_t errlen)
{
    const char *name = tunnel_name ? tunnel_name : "";
    if (!in || !*in)
        return fail(err, errlen, "Tunnel %s must specify 'addr' to tunnel to", name);
    int rc = norm_http(in, out, outlen, name, err, errlen);
    if (rc == BW_EMSGSIZE)
        fail(err, errlen, "Tunnel %s: address '%s' is too long", name, in);
    return rc;
}
