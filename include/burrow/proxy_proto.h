/* burrow — PROXY protocol headers for plugins (ngrok's `proxy_proto`).
 *
 * A tunnel with `proxy_proto: 1` or `2` writes a PROXY protocol header
 * (HAProxy's "The PROXY protocol", versions 1 and 2) to every connection it
 * opens to the local service, before any payload, so the service learns the
 * public client's address. Header-only: every function is static inline,
 * allocates nothing and keeps no state, so any plugin may use it without
 * linking anything (docs/proxy-protocol.md).
 *
 * Typical use, in a plugin's connect callback:
 *
 *   uint8_t hdr[BW_PROXY_HEADER_MAX];
 *   size_t n = bw_proxy_header(version, info->client_addr, server_addr, hdr, sizeof hdr);
 *   if (n > 0)
 *       host->stream_write(local, hdr, n);
 */
#ifndef BURROW_PROXY_PROTO_H
#define BURROW_PROXY_PROTO_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <burrow/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The longest header bw_proxy_header() writes: a v1 line is at most 107
 * bytes (the spec's bound), a v2 header at most 16 + 36 = 52. */
#define BW_PROXY_HEADER_MAX 108

/* The option key plugins declare (BW_OPT_STRING; see bw_proxy_proto_parse). */
#define BW_PROXY_PROTO_KEY "proxy_proto"

/* An address as the header carries it. `family` is 4 or 6; an IPv4 address
 * uses ip[0..3]. */
typedef struct bw_proxy_addr {
    int family;
    uint8_t ip[16];
    uint16_t port;
} bw_proxy_addr_t;

/* The version the `proxy_proto` option asks for: 1 or 2 for "1" and "2",
 * 0 for NULL, "" and "0" (off), -1 for anything else (a config error: name
 * the value). YAML and JSON integers reach a BW_OPT_STRING option as text. */
static inline int bw_proxy_proto_parse(const char *value)
{
    if (!value || !value[0] || strcmp(value, "0") == 0)
        return 0;
    if (strcmp(value, "1") == 0)
        return 1;
    if (strcmp(value, "2") == 0)
        return 2;
    return -1;
}

/* The version a tunnel definition asks for with its `proxy_proto` option
 * (declared BW_OPT_STRING as BW_PROXY_PROTO_KEY): 0, 1 or 2; or BW_EINVAL
 * with "Tunnel <tunnel_name> specifies invalid 'proxy_proto': <value> (must
 * be 1 or 2)" in err. One text for every plugin's validate and start. */
static inline int bw_proxy_proto_conf(const bw_host_t *host, const bw_conf_t *conf,
                                      const char *tunnel_name, bw_error_t *err)
{
    const char *v = host->conf_str(conf, BW_PROXY_PROTO_KEY);
    int version = bw_proxy_proto_parse(v);
    if (version < 0) {
        host->error_set(err, "Tunnel %s specifies invalid 'proxy_proto': %s (must be 1 or 2)",
                        tunnel_name, v);
        return BW_EINVAL;
    }
    return version;
}

/* Parse "a.b.c.d:port" or "[v6]:port" (what the host gives as
 * bw_conn_info_t.client_addr) into *out. An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) becomes the IPv4 address. Returns 0, or -1 when `s` is
 * NULL or not of that form (a name, no port, a port over 65535). */
static inline int bw_proxy_addr_parse(const char *s, bw_proxy_addr_t *out)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char ip[48];
    const char *colon, *start = s, *end;
    if (!s)
        return -1;
    if (s[0] == '[') {
        start = s + 1;
        end = strchr(start, ']');
        if (!end || end[1] != ':')
            return -1;
        colon = end + 1;
    } else {
        colon = end = strrchr(s, ':');
        if (!colon)
            return -1;
    }
    size_t n = (size_t)(end - start), digits = 0;
    unsigned long port = 0;
    for (const char *p = colon + 1; *p; p++, digits++) {
        if (*p < '0' || *p > '9' || digits >= 5)
            return -1;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (n == 0 || n >= sizeof ip || digits == 0 || port > 65535)
        return -1;
    memcpy(ip, start, n);
    ip[n] = '\0';
    memset(out, 0, sizeof *out);
    out->port = (uint16_t)port;
    if (s[0] != '[' && inet_pton(AF_INET, ip, out->ip) == 1)
        out->family = 4;
    else if (s[0] == '[' && inet_pton(AF_INET6, ip, out->ip) == 1)
        out->family = 6;
    else
        return -1;
    if (out->family == 6 && memcmp(out->ip, mapped, sizeof mapped) == 0) {
        memmove(out->ip, out->ip + 12, 4);
        memset(out->ip + 4, 0, 12);
        out->family = 4;
    }
    return 0;
}

/* Turn an IPv4 address into its IPv4-mapped IPv6 form. */
static inline void bw_proxy_addr_map6(bw_proxy_addr_t *a)
{
    if (a->family != 4)
        return;
    memmove(a->ip + 12, a->ip, 4);
    memset(a->ip, 0, 10);
    a->ip[10] = a->ip[11] = 0xff;
    a->family = 6;
}

/* Append `s` to out[*len] if it fits in `cap`; returns -1 when it does not. */
static inline int bw__proxy_put(uint8_t *out, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + n > cap)
        return -1;
    memcpy(out + *len, s, n);
    *len += n;
    return 0;
}

/* Append the decimal text of `v`. */
static inline int bw__proxy_put_uint(uint8_t *out, size_t cap, size_t *len, unsigned v)
{
    char buf[8];
    size_t i = sizeof buf;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    return bw__proxy_put(out, cap, len, buf + i, sizeof buf - i);
}

/* Append an address in the spec's canonical text: dotted quad, or hex
 * groups without leading zeros with the longest run (two or more) of zero
 * groups as "::". Never the dotted tail inet_ntop gives mapped addresses. */
static inline int bw__proxy_put_ip(uint8_t *out, size_t cap, size_t *len, const bw_proxy_addr_t *a)
{
    static const char hex[] = "0123456789abcdef";
    if (a->family == 4) {
        for (int i = 0; i < 4; i++)
            if ((i && bw__proxy_put(out, cap, len, ".", 1) != 0) ||
                bw__proxy_put_uint(out, cap, len, a->ip[i]) != 0)
                return -1;
        return 0;
    }
    int best = -1, best_n = 1;
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && a->ip[2 * j] == 0 && a->ip[2 * j + 1] == 0)
            j++;
        if (j - i > best_n) {
            best = i;
            best_n = j - i;
        }
        i = j > i ? j : i + 1;
    }
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            if (bw__proxy_put(out, cap, len, "::", 2) != 0)
                return -1;
            i += best_n - 1;
            continue;
        }
        unsigned g = (unsigned)a->ip[2 * i] << 8 | a->ip[2 * i + 1];
        char buf[4];
        size_t k = sizeof buf;
        do {
            buf[--k] = hex[g & 0xf];
            g >>= 4;
        } while (g && k > 0);
        if (bw__proxy_put(out, cap, len, buf + k, sizeof buf - k) != 0 ||
            (i < 7 && i + 1 != best && bw__proxy_put(out, cap, len, ":", 1) != 0))
            return -1;
    }
    return 0;
}

static inline size_t bw__proxy_v1(const bw_proxy_addr_t *src, const bw_proxy_addr_t *dst,
                                  uint8_t *out, size_t cap)
{
    size_t len = 0;
    if (!src)
        return bw__proxy_put(out, cap, &len, "PROXY UNKNOWN\r\n", 15) == 0 ? len : 0;
    if (bw__proxy_put(out, cap, &len, src->family == 4 ? "PROXY TCP4 " : "PROXY TCP6 ", 11) ||
        bw__proxy_put_ip(out, cap, &len, src) || bw__proxy_put(out, cap, &len, " ", 1) ||
        bw__proxy_put_ip(out, cap, &len, dst) || bw__proxy_put(out, cap, &len, " ", 1) ||
        bw__proxy_put_uint(out, cap, &len, src->port) || bw__proxy_put(out, cap, &len, " ", 1) ||
        bw__proxy_put_uint(out, cap, &len, dst->port) || bw__proxy_put(out, cap, &len, "\r\n", 2))
        return 0;
    return len;
}

static inline size_t bw__proxy_v2(const bw_proxy_addr_t *src, const bw_proxy_addr_t *dst,
                                  uint8_t *out, size_t cap)
{
    static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    size_t alen = !src ? 0 : src->family == 4 ? 12 : 36, ilen = alen == 12 ? 4 : 16;
    if (cap < 16 + alen)
        return 0;
    memcpy(out, sig, sizeof sig);
    out[12] = src ? 0x21 : 0x20;                            /* version 2, PROXY or LOCAL */
    out[13] = !src ? 0x00 : src->family == 4 ? 0x11 : 0x21; /* UNSPEC, TCP over IPv4/IPv6 */
    out[14] = (uint8_t)(alen >> 8);
    out[15] = (uint8_t)alen;
    if (src) {
        memcpy(out + 16, src->ip, ilen);
        memcpy(out + 16 + ilen, dst->ip, ilen);
        out[16 + 2 * ilen] = (uint8_t)(src->port >> 8);
        out[17 + 2 * ilen] = (uint8_t)src->port;
        out[18 + 2 * ilen] = (uint8_t)(dst->port >> 8);
        out[19 + 2 * ilen] = (uint8_t)dst->port;
    }
    return 16 + alen;
}

/* Write a PROXY protocol header of `version` (1 or 2) for a connection from
 * `src_ipport` to `dst_ipport` ("ip:port" or "[v6]:port", as in
 * bw_conn_info_t) into out[cap]. Returns its length, or 0 when `version` is
 * neither 1 nor 2 or the header does not fit in `cap` (BW_PROXY_HEADER_MAX
 * always fits); nothing useful is in `out` then.
 *
 * Addresses: IPv4-mapped IPv6 counts as IPv4; when one side is IPv4 and the
 * other IPv6, both are sent as IPv6 (the IPv4 one mapped). A destination
 * that is NULL or unusable becomes the unspecified address of the source's
 * family with port 0, so the client's address still reaches the service.
 * A source that is NULL or unusable gives v1 "PROXY UNKNOWN\r\n" and v2's
 * LOCAL command with family UNSPEC and no addresses, as the spec says:
 * the service then uses the connection's own endpoints. */
static inline size_t bw_proxy_header(int version, const char *src_ipport, const char *dst_ipport,
                                     uint8_t *out, size_t cap)
{
    bw_proxy_addr_t src, dst;
    memset(&dst, 0, sizeof dst);
    int have_src = bw_proxy_addr_parse(src_ipport, &src) == 0;
    if (!out || (version != 1 && version != 2))
        return 0;
    if (have_src && bw_proxy_addr_parse(dst_ipport, &dst) != 0) {
        memset(&dst, 0, sizeof dst);
        dst.family = src.family;
    }
    if (have_src && src.family != dst.family) {
        bw_proxy_addr_map6(&src);
        bw_proxy_addr_map6(&dst);
    }
    return version == 1 ? bw__proxy_v1(have_src ? &src : NULL, &dst, out, cap)
                        : bw__proxy_v2(have_src ? &src : NULL, &dst, out, cap);
}

/* Room a v2 header needs at most with bw_proxy_v2_add_ssl(): the TLV's
 * 3 + 5 bytes, a version sub-TLV and a CN sub-TLV of up to 255 bytes each. */
#define BW_PROXY_HEADER_SSL_MAX (BW_PROXY_HEADER_MAX + 8 + 2 * (3 + 255))

/* Append the PP2_TYPE_SSL TLV (spec section 2.2.5) to the v2 header
 * out[0..len) that bw_proxy_header() wrote, for a connection whose TLS the
 * plugin ended: `verified` says whether the client showed a certificate that
 * verified, `tls_version` (e.g. "TLSv1.3") and `cn` (the client certificate's
 * Common Name) are sent as sub-TLVs when not NULL or empty, cut at 255 bytes.
 * Updates the header's length field. Returns the new length, or 0 when the
 * header is not a v2 PROXY header or the TLV does not fit in `cap`. */
static inline size_t bw_proxy_v2_add_ssl(uint8_t *out, size_t len, size_t cap, int verified,
                                         const char *tls_version, const char *cn)
{
    if (!out || len < 16 || out[12] != 0x21)
        return 0;
    size_t vlen = tls_version ? strlen(tls_version) : 0, clen = cn ? strlen(cn) : 0;
    vlen = vlen > 255 ? 255 : vlen;
    clen = clen > 255 ? 255 : clen;
    size_t body = 5 + (vlen ? 3 + vlen : 0) + (clen ? 3 + clen : 0);
    size_t total = ((size_t)out[14] << 8 | out[15]) + 3 + body;
    if (len + 3 + body > cap || total > 0xffff)
        return 0;
    uint8_t *p = out + len;
    *p++ = 0x20; /* PP2_TYPE_SSL */
    *p++ = (uint8_t)(body >> 8);
    *p++ = (uint8_t)body;
    /* client: PP2_CLIENT_SSL, and PP2_CLIENT_CERT_CONN with a certificate */
    *p++ = (uint8_t)(0x01 | (verified ? 0x02 : 0));
    memset(p, 0, 4); /* verify: 0 = the certificate verified (or none asked) */
    p += 4;
    if (vlen) {
        *p++ = 0x21; /* PP2_SUBTYPE_SSL_VERSION */
        *p++ = 0;
        *p++ = (uint8_t)vlen;
        memcpy(p, tls_version, vlen);
        p += vlen;
    }
    if (clen) {
        *p++ = 0x22; /* PP2_SUBTYPE_SSL_CN */
        *p++ = 0;
        *p++ = (uint8_t)clen;
        memcpy(p, cn, clen);
        p += clen;
    }
    out[14] = (uint8_t)(total >> 8);
    out[15] = (uint8_t)total;
    return (size_t)(p - out);
}

#ifdef __cplusplus
}
#endif

#endif /* BURROW_PROXY_PROTO_H */
