/* CIDR lists and Basic authentication (see policy.h). */
#include "policy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <burrow/error.h>

static int parse_ip(const char *s, uint8_t out[16], int *v6)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, s, &a4) == 1) {
        memcpy(out, &a4, 4);
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &a6) == 1) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6.s6_addr, mapped, 12) == 0) {
            memcpy(out, a6.s6_addr + 12, 4);
            *v6 = 0;
            return 0;
        }
        memcpy(out, a6.s6_addr, 16);
        *v6 = 1;
        return 0;
    }
    return BW_EINVAL;
}

int http_cidr_parse(const char *s, http_cidr_t *out)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof ip)
        return BW_EINVAL;
    memcpy(ip, s, n);
    ip[n] = '\0';
    if (parse_ip(ip, out->addr, &out->v6) < 0 || strchr(ip, '/'))
        return BW_EINVAL;
    unsigned max = out->v6 ? 128 : 32;
    out->bits = max;
    if (slash) {
        const char *d = slash + 1;
        unsigned v = 0;
        if (!*d || strlen(d) > 3)
            return BW_EINVAL;
        for (; *d; d++) {
            if (*d < '0' || *d > '9')
                return BW_EINVAL;
            v = v * 10 + (unsigned)(*d - '0');
        }
        if (v > max)
            return BW_EINVAL;
        out->bits = v;
    }
    return 0;
}

int http_cidr_match(const http_cidr_t *c, const char *ip)
{
    uint8_t a[16];
    int v6;
    if (!ip || parse_ip(ip, a, &v6) < 0 || v6 != c->v6)
        return 0;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(a, c->addr, full) != 0)
        return 0;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((a[full] & mask) != (c->addr[full] & mask))
            return 0;
    }
    return 1;
}

int http_ip_allowed(const http_cidr_t *allow, size_t n_allow, const http_cidr_t *deny,
                    size_t n_deny, const char *ip)
{
    for (size_t i = 0; i < n_deny; i++)
        if (http_cidr_match(&deny[i], ip))
            return 0;
    if (n_allow == 0)
        return 1;
    for (size_t i = 0; i < n_allow; i++)
        if (http_cidr_match(&allow[i], ip))
            return 1;
    return 0;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode standard base64 (padding optional) into out; returns the length or
 * -1 when malformed or too long. */
static long b64_decode(const char *in, size_t len, char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    while (len && in[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return -1;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    return (long)n;
}

int http_basic_auth_ok(const char *value, size_t len, char *const *creds, size_t n_creds)
{
    char dec[512];
    while (len && (*value == ' ' || *value == '\t'))
        value++, len--;
    if (len < 6 || strncasecmp(value, "basic ", 6) != 0)
        return 0;
    value += 6;
    len -= 6;
    while (len && *value == ' ')
        value++, len--;
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    long n = b64_decode(value, len, dec, sizeof dec);
    if (n < 0)
        return 0;
    for (size_t i = 0; i < n_creds; i++)
        if (strlen(creds[i]) == (size_t)n && memcmp(creds[i], dec, (size_t)n) == 0)
            return 1;
    return 0;
}
