/* base64 (see base64.h). */
#include "base64.h"

#include "burrow/error.h"

static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t bw_base64_encode_update(bw_base64_enc_t *e, const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        e->acc[e->n++] = p[i];
        if (e->n < 3)
            continue;
        out[o++] = tbl[e->acc[0] >> 2];
        out[o++] = tbl[(e->acc[0] & 3) << 4 | e->acc[1] >> 4];
        out[o++] = tbl[(e->acc[1] & 15) << 2 | e->acc[2] >> 6];
        out[o++] = tbl[e->acc[2] & 63];
        e->n = 0;
    }
    return o;
}

size_t bw_base64_encode_final(bw_base64_enc_t *e, char *out)
{
    if (e->n == 0)
        return 0;
    const unsigned char *a = e->acc;
    out[0] = tbl[a[0] >> 2];
    out[1] = tbl[(a[0] & 3) << 4 | (e->n > 1 ? a[1] >> 4 : 0)];
    out[2] = e->n > 1 ? tbl[(a[1] & 15) << 2] : '=';
    out[3] = '=';
    e->n = 0;
    return 4;
}

size_t bw_base64_encode(const void *in, size_t n, char *out)
{
    bw_base64_enc_t e = {0};
    size_t o = bw_base64_encode_update(&e, in, n, out);
    return o + bw_base64_encode_final(&e, out + o);
}

static int val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

long bw_base64_decode(const char *in, size_t n, unsigned char *out)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    while (n && in[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return BW_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int v = val((unsigned char)in[i]);
        if (v < 0)
            return BW_EINVAL;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}
