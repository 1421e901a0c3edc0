/* Feeds arbitrary bytes, as the first bytes of a public client on the
 * HTTPS listener, to the ClientHello parser (edge/sni.c) and checks what
 * it promises: every prefix answers "need more" or the final verdict (more
 * bytes never change a verdict), the name found is NUL-terminated within
 * its buffer, and the same handshake bytes cut into other records (the
 * first input byte picks the size) give the same verdict and name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sni.h"

#define NAME_LEN 256

/* The handshake bytes of p's complete handshake records, re-cut into
 * records of `size` bytes (at least 1) in out. Returns the new length, or
 * 0 when p is not a run of handshake records. */
static size_t recut(const uint8_t *p, size_t n, size_t size, uint8_t *out, size_t cap)
{
    static uint8_t frag[BW_SNI_MAX_INPUT];
    size_t have = 0, len = 0;
    for (size_t off = 0; off + 5 <= n;) {
        size_t rl = ((size_t)p[off + 3] << 8) | p[off + 4];
        if (p[off] != 22 || p[off + 1] != 3 || rl == 0 || n - off - 5 < rl ||
            have + rl > sizeof frag)
            break;
        memcpy(frag + have, p + off + 5, rl);
        have += rl;
        off += 5 + rl;
    }
    for (size_t i = 0; i < have; i += size) {
        size_t k = have - i < size ? have - i : size;
        if (len + 5 + k > cap)
            return 0;
        const uint8_t hdr[5] = {22, 3, 1, (uint8_t)(k >> 8), (uint8_t)k};
        memcpy(out + len, hdr, 5);
        memcpy(out + len + 5, frag + i, k);
        len += 5 + k;
    }
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t other[BW_SNI_MAX_INPUT * 6];
    char name[NAME_LEN], prefix_name[NAME_LEN];
    bw_sni_result_t full = bw_sni_parse(data, size, name, sizeof name);
    if (strnlen(name, sizeof name) == sizeof name || (full != BW_SNI_FOUND && name[0]))
        abort();
    /* Prefixes, at a stride that keeps long inputs cheap. */
    size_t step = size / 64 + 1;
    for (size_t k = 0; k < size; k += step) {
        bw_sni_result_t r = bw_sni_parse(data, k, prefix_name, sizeof prefix_name);
        if (r != BW_SNI_MORE && (r != full || strcmp(prefix_name, name) != 0))
            abort();
    }
    if ((full == BW_SNI_FOUND || full == BW_SNI_NONE) && size > 0) {
        size_t cut = (size_t)data[0] % 64 + 1;
        size_t n = recut(data, size, cut, other, sizeof other);
        if (n) {
            bw_sni_result_t r = bw_sni_parse(other, n, prefix_name, sizeof prefix_name);
            /* Tiny records may push a large hello over the input bound. */
            if (r != BW_SNI_TOO_LARGE && (r != full || strcmp(prefix_name, name) != 0))
                abort();
        }
    }
    return 0;
}
