/* Feeds arbitrary bytes, as a public client's stream, through the edge's
 * request rewriter (edge/http_rewrite.c), split into reads as the first
 * byte says, and checks what it promises: heads start inside the output in
 * order, nothing is output after an error, and the same bytes fed in one
 * read give the same verdict. Every Upgrade is declined (each request gets
 * a 200), so the requests held behind it are parsed too. The rest of the
 * input is also checked as a hostname (edge/hostnames.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hostnames.h"
#include "http_rewrite.h"

/* Output of the last feed or response: heads in order, inside it. */
static size_t check_out(bw_hrw_t *r, int rc)
{
    size_t out_len, prev = 0;
    bw_hrw_out(r, &out_len);
    if (rc < 0 && (out_len != 0 || bw_hrw_status(r) < 400))
        abort();
    for (size_t i = 0; i < bw_hrw_heads(r); i++) {
        const bw_hrw_head_t *h = bw_hrw_head(r, i);
        if (h->off < prev || h->off > out_len || !h->host[0])
            abort();
        prev = h->off;
    }
    return out_len;
}

/* Answer every request in flight with 200 until an Upgrade the rewriter
 * waits on is declined, so what it held gets parsed too. */
static int decline(bw_hrw_t *r, size_t *total)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    int rc = 0;
    for (int i = 0; i < 100000 && rc >= 0 && bw_hrw_waiting(r); i++) {
        rc = bw_hrw_response(r, ok, sizeof ok - 1);
        *total += check_out(r, rc);
    }
    if (bw_hrw_waiting(r) && rc >= 0)
        abort();
    return rc < 0 ? rc : 0;
}

static int run(const uint8_t *data, size_t size, size_t step, int https, size_t *total)
{
    bw_hrw_t *r = bw_hrw_new("192.0.2.1", https);
    int rc = 0;
    *total = 0;
    if (!r)
        return 0;
    for (size_t off = 0; off < size && rc == 0;) {
        size_t n = size - off < step ? size - off : step;
        rc = bw_hrw_feed(r, (const char *)data + off, n);
        *total += check_out(r, rc);
        if (rc == 0)
            rc = decline(r, total);
        off += n;
    }
    bw_hrw_free(r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] ? data[0] : 1, whole, split;
    data++;
    size--;
    int a = run(data, size, size ? size : 1, step & 1, &whole);
    int b = run(data, size, step, step & 1, &split);
    /* Splitting may only move where an error is noticed, never hide one. */
    if ((a < 0) != (b < 0) || (a == 0 && whole != split))
        abort();
    char name[BW_HOSTNAME_MAX + 1], why[128], in[300];
    size_t n = size < sizeof in - 1 ? size : sizeof in - 1;
    memcpy(in, data, n);
    in[n] = '\0';
    bw_hostname_check(in, name, why, sizeof why);
    return 0;
}
