/* The ClientHello's server name (see sni.h). RFC 8446 §4.1.2 and RFC 6066
 * §3: records of type 22 carry the handshake message, which may be cut
 * across records; the parser first gathers the message, then walks it.
 *
 * The usual ClientHello fits one record and is read where it lies; only a
 * hello cut across records is gathered into a bounded scratch buffer. */
#include "sni.h"

#include <string.h>

#define REC_HDR         5
#define REC_HANDSHAKE   22
#define REC_MAX         (16384u + 256u) /* TLSPlaintext limit, with slack for padding */
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define NAME_HOST       0

typedef struct rd {
    const uint8_t *p;
    size_t n, off;
    int bad;
} rd_t;

static size_t u8(rd_t *r)
{
    if (r->bad || r->n - r->off < 1) {
        r->bad = 1;
        return 0;
    }
    return r->p[r->off++];
}

static size_t u16(rd_t *r)
{
    size_t hi = u8(r);
    return (hi << 8) | u8(r);
}

/* Skip `len` bytes; returns where they start. */
static const uint8_t *take(rd_t *r, size_t len)
{
    if (r->bad || r->n - r->off < len) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *at = r->p + r->off;
    r->off += len;
    return at;
}

/* The server_name extension's body: the first host_name entry. */
static bw_sni_result_t server_name(rd_t *ext, char *name, size_t namelen)
{
    size_t list = u16(ext);
    rd_t l = {.p = take(ext, list), .n = list};
    if (ext->bad || list == 0)
        return BW_SNI_BAD;
    while (l.off < l.n) {
        size_t type = u8(&l), len = u16(&l);
        const uint8_t *host = take(&l, len);
        if (l.bad)
            return BW_SNI_BAD;
        if (type != NAME_HOST)
            continue;
        if (len == 0 || len >= namelen || memchr(host, 0, len))
            return BW_SNI_BAD;
        memcpy(name, host, len);
        name[len] = '\0';
        return BW_SNI_FOUND;
    }
    return BW_SNI_NONE;
}

/* A complete ClientHello body (after the 4-byte handshake header). */
static bw_sni_result_t hello(const uint8_t *p, size_t n, char *name, size_t namelen)
{
    rd_t r = {.p = p, .n = n};
    take(&r, 2 + 32);  /* legacy_version, random */
    take(&r, u8(&r));  /* legacy_session_id */
    take(&r, u16(&r)); /* cipher_suites */
    take(&r, u8(&r));  /* legacy_compression_methods */
    if (r.bad)
        return BW_SNI_BAD;
    if (r.off == r.n)
        return BW_SNI_NONE; /* no extensions at all (an old client) */
    size_t total = u16(&r);
    rd_t exts = {.p = take(&r, total), .n = total};
    if (r.bad || r.off != r.n)
        return BW_SNI_BAD;
    while (exts.off < exts.n) {
        size_t type = u16(&exts), len = u16(&exts);
        rd_t ext = {.p = take(&exts, len), .n = len};
        if (exts.bad)
            return BW_SNI_BAD;
        if (type == EXT_SERVER_NAME)
            return server_name(&ext, name, namelen);
    }
    return BW_SNI_NONE;
}

/* Check one record header at p[0..5); returns its fragment length or 0. */
static size_t record_len(const uint8_t *p)
{
    size_t len = ((size_t)p[3] << 8) | p[4];
    if (p[0] != REC_HANDSHAKE || p[1] != 3 || len == 0 || len > REC_MAX)
        return 0;
    return len;
}

/* The handshake message is cut across records: gather the fragments of
 * the complete records into `scratch` and parse when the message is whole. */
static bw_sni_result_t gathered(const uint8_t *p, size_t n, char *name, size_t namelen)
{
    uint8_t scratch[4 + BW_SNI_MAX_HELLO];
    size_t have = 0, want = 0;
    for (size_t off = 0; off + REC_HDR <= n;) {
        size_t len = record_len(p + off);
        if (len == 0)
            return BW_SNI_BAD;
        if (n - off - REC_HDR < len)
            return BW_SNI_MORE;
        if (len > sizeof scratch - have || off + REC_HDR + len > BW_SNI_MAX_INPUT)
            return BW_SNI_TOO_LARGE;
        memcpy(scratch + have, p + off + REC_HDR, len);
        have += len;
        off += REC_HDR + len;
        if (have >= 4 && want == 0) {
            if (scratch[0] != HS_CLIENT_HELLO)
                return BW_SNI_BAD;
            want = 4 + (((size_t)scratch[1] << 16) | ((size_t)scratch[2] << 8) | scratch[3]);
            if (want - 4 > BW_SNI_MAX_HELLO)
                return BW_SNI_TOO_LARGE;
        }
        if (want && have >= want) /* bytes after it belong to later messages */
            return hello(scratch + 4, want - 4, name, namelen);
    }
    return n >= BW_SNI_MAX_INPUT ? BW_SNI_TOO_LARGE : BW_SNI_MORE;
}

bw_sni_result_t bw_sni_parse(const uint8_t *p, size_t n, char *name, size_t namelen)
{
    if (namelen == 0)
        return BW_SNI_BAD;
    name[0] = '\0';
    if (n == 0)
        return BW_SNI_MORE;
    if (p[0] != REC_HANDSHAKE)
        return BW_SNI_NOT_TLS;
    if (n >= 2 && p[1] != 3)
        return BW_SNI_NOT_TLS;
    if (n < REC_HDR)
        return BW_SNI_MORE;
    size_t len = record_len(p);
    if (len == 0)
        return BW_SNI_BAD;
    /* The message header is in the first record's first four bytes when
     * the record holds them; a sane client never cuts it smaller. */
    if (len >= 4 && n >= REC_HDR + 4) {
        const uint8_t *hs = p + REC_HDR;
        size_t body = ((size_t)hs[1] << 16) | ((size_t)hs[2] << 8) | hs[3];
        if (hs[0] != HS_CLIENT_HELLO)
            return BW_SNI_BAD;
        if (body > BW_SNI_MAX_HELLO)
            return BW_SNI_TOO_LARGE;
        if (4 + body <= len) { /* whole in the first record: read in place */
            if (n < REC_HDR + 4 + body)
                return BW_SNI_MORE;
            return hello(hs + 4, body, name, namelen);
        }
    }
    return gathered(p, n, name, namelen);
}

const char *bw_sni_result_name(bw_sni_result_t r)
{
    static const char *const names[] = {"need more",
                                        "found",
                                        "no server name",
                                        "not TLS",
                                        "ClientHello too large",
                                        "malformed ClientHello"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}
