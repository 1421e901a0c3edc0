/* Small helpers: ids, addresses, durations. See util.h. */
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <burrow/error.h>

int bw_random_bytes(void *out, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom((unsigned char *)out + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    return 0;
}

int bw_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    if (nbytes > sizeof raw)
        return BW_EINVAL;
    int rc = bw_random_bytes(raw, nbytes);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

int bw_parse_int(const char *s, long long min, long long max, long long *out)
{
    if (!s || !*s)
        return BW_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return BW_EINVAL;
    *out = v;
    return 0;
}

int bw_split_hostport(const char *in, char *host, size_t hostlen, int *port)
{
    const char *colon, *hstart = in, *hend;
    long long p;
    if (!in || !*in)
        return BW_EINVAL;
    if (in[0] == '[') {
        hend = strchr(in, ']');
        if (!hend || hend[1] != ':')
            return BW_EINVAL;
        hstart = in + 1;
        colon = hend + 1;
    } else {
        colon = strrchr(in, ':');
        if (!colon) {
            /* A bare port. */
            if (bw_parse_int(in, 0, 65535, &p) != 0)
                return BW_EINVAL;
            if (hostlen)
                host[0] = '\0';
            *port = (int)p;
            return 0;
        }
        if (memchr(in, ':', (size_t)(colon - in)))
            return BW_EINVAL; /* unbracketed IPv6 */
        hend = colon;
    }
    size_t hl = (size_t)(hend - hstart);
    if (hl >= hostlen || bw_parse_int(colon + 1, 0, 65535, &p) != 0)
        return BW_EINVAL;
    memcpy(host, hstart, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

int bw_resolve(const char *host, int port, struct sockaddr_storage *out)
{
    struct addrinfo hints, *res = NULL;
    char sport[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (!host || !*host)
        host = "127.0.0.1";
    snprintf(sport, sizeof sport, "%d", port);
    if (getaddrinfo(host, sport, &hints, &res) != 0 || !res)
        return BW_ENOENT;
    /* Prefer IPv4: "localhost" services usually listen on 127.0.0.1. */
    struct addrinfo *pick = res;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    memset(out, 0, sizeof *out);
    memcpy(out, pick->ai_addr, pick->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

const char *bw_sockaddr_ip(const struct sockaddr *sa, char *buf, size_t len)
{
    if (len)
        buf[0] = '\0';
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)len);
    return buf;
}

int bw_sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

const char *bw_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    bw_sockaddr_ip(sa, ip, sizeof ip);
    if (sa->sa_family == AF_INET6)
        snprintf(buf, len, "[%s]:%d", ip, bw_sockaddr_port(sa));
    else
        snprintf(buf, len, "%s:%d", ip, bw_sockaddr_port(sa));
    return buf;
}

int bw_is_loopback_host(const char *host)
{
    if (!host)
        return 0;
    size_t n = strlen(host);
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.localdomain") == 0)
        return 1;
    if (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0)
        return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

int bw_parse_duration_ms(const char *s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ms", 1},  {"us", 1e-3}, {"µs", 1e-3}, {"ns", 1e-6},
                 {"s", 1e3}, {"m", 60e3},  {"h", 3600e3}};
    double total = 0;
    if (!s || !*s)
        return BW_EINVAL;
    char *end;
    double v = strtod(s, &end);
    /* Bound before converting: a double past 2^64 is undefined as an integer.
     * 1e15 ms is over 30,000 years, far beyond any sensible setting. */
    if (end != s && *end == '\0' && v >= 0) {
        if (!(v * 1000 < 1e15))
            return BW_EINVAL;
        *ms = (uint64_t)(v * 1000);
        return 0;
    }
    while (*s) {
        v = strtod(s, &end);
        if (end == s || v < 0)
            return BW_EINVAL;
        size_t i;
        for (i = 0; i < BW_ARRAY_SIZE(units); i++) {
            size_t ul = strlen(units[i].unit);
            /* "m" must not swallow the "m" of "ms". */
            if (strncmp(end, units[i].unit, ul) == 0 &&
                !(ul == 1 && end[0] == 'm' && end[1] == 's'))
                break;
        }
        if (i == BW_ARRAY_SIZE(units))
            return BW_EINVAL;
        total += v * units[i].ms;
        if (!(total < 1e15))
            return BW_EINVAL;
        s = end + strlen(units[i].unit);
    }
    *ms = (uint64_t)total;
    return 0;
}

char *bw_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

int bw_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= len) ? BW_EMSGSIZE : 0;
}

/* Room for `n` more bytes and a NUL. Returns 0 or the sticky error. */
static int buf_reserve(bw_buf_t *b, size_t n)
{
    if (b->err)
        return b->err;
    if (b->max && n > b->max - (b->len < b->max ? b->len : b->max))
        return b->err = BW_EMSGSIZE;
    if (n < b->cap - b->len)
        return 0;
    /* Sizes that cannot be allocated (or would wrap below) fail as ENOMEM. */
    if (n > (SIZE_MAX - 256) / 2 - 1 - b->len)
        return b->err = BW_ENOMEM;
    size_t cap = (b->len + n + 1) * 2 + 256;
    char *np = realloc(b->p, cap);
    if (!np)
        return b->err = BW_ENOMEM;
    b->p = np;
    b->cap = cap;
    return 0;
}

int bw_buf_put(bw_buf_t *b, const void *data, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc != 0)
        return rc;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int bw_buf_puts(bw_buf_t *b, const char *s)
{
    return bw_buf_put(b, s, strlen(s));
}

int bw_buf_printf(bw_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 && !b->err)
        b->err = BW_EINVAL;
    int rc = n < 0 ? b->err : buf_reserve(b, (size_t)n);
    if (rc != 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

const char *bw_buf_cstr(const bw_buf_t *b)
{
    return b->p ? b->p : "";
}

char *bw_buf_take(bw_buf_t *b, size_t *len)
{
    char *p = b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    b->err = 0;
    return p;
}

void bw_buf_free(bw_buf_t *b)
{
    if (b)
        free(bw_buf_take(b, NULL));
}
