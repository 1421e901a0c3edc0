/* Feeds arbitrary bytes through the http plugin's framer (plugins/http/h1.c)
 * as a request stream and as a response stream, split into reads as the
 * first byte says, and rebuilds every head it parses. Checks the framer's
 * promises: it never consumes more than it was given, and a message's events
 * come in order (HEAD before DONE). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h1.h"
#include "upstream.h"

static void run(h1_kind_t kind, const char *data, size_t len, size_t step, int skip)
{
    h1_t h;
    h1_init(&h, kind);
    h.skip_body = skip;
    size_t pos = 0;
    int in_msg = 0, spins = 0;
    while (pos <= len && spins < 100000) {
        size_t give = len - pos < step ? len - pos : step;
        h1_ev_t ev;
        size_t n = h1_feed(&h, data + pos, give, &ev);
        if (n > give)
            abort();
        pos += n;
        spins++;
        if (ev == H1_EV_ERROR)
            break;
        if (ev == H1_EV_HEAD) {
            if (in_msg)
                abort();
            in_msg = 1;
            const char *rm[] = {"Host"}, *add[] = {"X-A: 1"};
            h1_edit_t e = {.remove = rm,
                           .n_remove = 1,
                           .add = add,
                           .n_add = 1,
                           .set_name = "Host",
                           .set_value = "h"};
            h1_buf_t out = {0};
            h1_head_rebuild(&h.head, &e, &out);
            h1_buf_free(&out);
            continue;
        }
        if (ev == H1_EV_DONE) {
            if (!in_msg)
                abort();
            in_msg = 0;
            continue;
        }
        if (pos == len)
            break;
    }
    h1_eof(&h);
    h1_free(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] & 0x3f) + 1;
    const char *in = (const char *)data + 1;
    run(H1_REQUEST, in, size - 1, step, 0);
    run(H1_RESPONSE, in, size - 1, step, data[0] & 0x40);
    /* The same bytes as an http tunnel's local address (upstream.c). */
    if (size - 1 < 512) {
        char addr[512], out[600], err[600];
        memcpy(addr, in, size - 1);
        addr[size - 1] = '\0';
        int rc = http_addr_normalize(addr, out, sizeof out, "t", err, sizeof err);
        if (rc != 0 && rc != BW_EINVAL && rc != BW_EMSGSIZE)
            abort();
    }
    return 0;
}
