/* Drives the capture store (core/capture/capture.c) with operations decoded from
 * the input: begin/head/raw/req_state/end on up to eight live handles,
 * list/get/info/replay by live, ended and made-up ids, clear, all under a
 * small budget and per-entry cap so eviction of entries still being written
 * happens constantly. Handles outlive the store in half the runs. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "capture.h"

#define SLOTS 8
/* Inputs are capped: an operation takes 2 to ~100 bytes and filler lets a
 * handful of them overflow the largest budget (8.5 KiB), so 2 KiB (longer
 * than any seed) reaches every state of the store. Rendering JSON (a
 * listing of up to 100 entries, or one entry with its base64 body) is
 * hundreds to thousands of allocations: scripts that rendered after every
 * step spent most of each run there, so only the first MAX_RENDERS
 * listings and gets of an input render; the rest of a lookup still runs. */
#define MAX_INPUT   2048
#define MAX_RENDERS 4

static const char filler[255 * 7];

typedef struct input {
    const uint8_t *p;
    size_t n;
    unsigned renders; /* JSON renderings left (MAX_RENDERS) */
} input_t;

static uint8_t byte(input_t *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

/* Up to `max` bytes of the input, as a (not NUL-terminated) slice. */
static const char *take(input_t *in, size_t max, size_t *len)
{
    const char *p = (const char *)in->p;
    size_t n = byte(in) % (max + 1);
    if (n > in->n)
        n = in->n;
    in->p += n;
    in->n -= n;
    *len = n;
    return p;
}

static char *take_str(input_t *in, size_t max)
{
    size_t n;
    const char *p = take(in, max, &n);
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void do_head(bw_capture_t *c, input_t *in)
{
    bw_http_header_t h[6];
    size_t n = byte(in) % 7;
    char *method = take_str(in, 8), *uri = take_str(in, 16), *reason = take_str(in, 8);
    bw_http_head_t head = {.struct_size = sizeof(head),
                           .method = method,
                           .uri = uri,
                           .proto = "HTTP/1.1",
                           .status = byte(in) * 3,
                           .reason = reason,
                           .headers = h,
                           .n_headers = n};

    for (size_t i = 0; i < n; i++) {
        h[i].name = take(in, 12, &h[i].name_len);
        h[i].value = take(in, 24, &h[i].value_len);
    }
    bw_capture_head(c, 1 + byte(in) % 2, &head);
    free(method);
    free(uri);
    free(reason);
}

static void do_list(bw_capture_store_t *s, input_t *in)
{
    uint8_t b = byte(in);
    if (!in->renders)
        return;
    in->renders--;
    bw_capture_filter_t f = {.limit = b % 5,
                             .tunnel_name = b & 8 ? "a" : NULL,
                             .remote_addr = b & 16 ? "1.2.3.4" : NULL};
    json_decref(bw_capture_store_list_json(s, &f));
}

static void do_lookup(bw_capture_store_t *s, const char *id, input_t *in)
{
    json_t *j = NULL;
    bw_capture_info_t info;
    bw_capture_replay_t why;
    void *raw;
    size_t len;
    char *tn;

    if (in->renders) {
        in->renders--;
        bw_capture_store_get_json(s, id, &j);
        json_decref(j);
    }
    bw_capture_store_info(s, id, &info);
    if (bw_capture_store_replay(s, id, &why, &raw, &len, &tn) == 0) {
        free(raw);
        free(tn);
    }
}

static void step(bw_capture_store_t *s, bw_capture_t **live, char (*ids)[BW_CAPTURE_ID_LEN + 1],
                 input_t *in)
{
    uint8_t op = byte(in), k = byte(in) % SLOTS;
    size_t len;
    const char *p;

    switch (op % 9) {
    case 0:
        if (!live[k] &&
            (live[k] = bw_capture_begin(s, op & 16 ? "a" : "b", op & 32 ? "1.2.3.4" : "::1",
                                        (int64_t)byte(in) * 400000000)))
            memcpy(ids[k], bw_capture_id(live[k]), sizeof ids[k]);
        break;
    case 1:
        if (live[k])
            do_head(live[k], in);
        break;
    case 2:
        /* Large writes come from a filler so a short input can still
         * overflow the budget. */
        p = take(in, 255, &len);
        if (op >> 5)
            bw_capture_raw(live[k], 1 + (op >> 4) % 2, filler, len * (op >> 5));
        else
            bw_capture_raw(live[k], 1 + (op >> 4) % 2, p, len);
        break;
    case 3:
        bw_capture_req_state(live[k], (bw_capture_req_t)((op >> 4) % 3));
        break;
    case 4:
        bw_capture_end(live[k], op);
        live[k] = NULL;
        break;
    case 5:
        do_list(s, in);
        break;
    case 6:
        do_lookup(s, ids[k], in);
        break;
    case 7:
        if (op & 16)
            bw_capture_store_clear(s);
        else
            do_lookup(s, "airt_0000000000000000000000000", in);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input_t in = {data, size, MAX_RENDERS};
    if (size > MAX_INPUT)
        return 0;
    uint8_t cfg = byte(&in);
    bw_capture_store_t *s = bw_capture_store_new(1024 + (int64_t)(cfg & 15) * 512, 64 + cfg * 4);
    bw_capture_t *live[SLOTS] = {0};
    char ids[SLOTS][BW_CAPTURE_ID_LEN + 1] = {{0}};

    if (!s)
        return 0;
    while (in.n)
        step(s, live, ids, &in);
    if (cfg & 128)
        bw_capture_store_free(s);
    for (int i = 0; i < SLOTS; i++)
        bw_capture_end(live[i], 0);
    if (!(cfg & 128))
        bw_capture_store_free(s);
    return 0;
}
