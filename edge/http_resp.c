/* Following the responses of one public connection. See http_resp.h.
 *
 * A queue holds the kind of every request forwarded and not yet answered;
 * each response's head pops it. HEAD matters because its response has no
 * body whatever its headers say; 1xx other than 101 are interim and answer
 * nothing. Anything unexpected makes the tracker give up: from then on the
 * connection can never turn raw, which keeps every request rewritten. */
#include "http_resp.h"

#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

struct bw_hresp {
    http_parser p;
    unsigned char *kinds; /* requests in flight, oldest at kinds[head] */
    size_t head, len, cap;
    int event, lost, done, interim;
};

static int on_headers(http_parser *p)
{
    bw_hresp_t *t = p->data;
    unsigned status = p->status_code;
    t->interim = status / 100 == 1 && status != 101;
    if (t->interim)
        return 0;
    if (t->len == 0) { /* a response nobody asked for */
        t->lost = 1;
        return -1;
    }
    int kind = t->kinds[t->head];
    if (kind & BW_HRESP_UPGRADE) {
        t->event = status == 101 ? BW_HRESP_SWITCHED : BW_HRESP_DECLINED;
        http_parser_pause(p, 1);
    } else if (status == 101) { /* switching without having been asked */
        t->lost = 1;
        return -1;
    }
    return kind & BW_HRESP_HEAD ? 1 : 0; /* 1: no body follows */
}

static int on_complete(http_parser *p)
{
    bw_hresp_t *t = p->data;
    if (t->interim)
        return 0;
    if (t->len > 0) {
        t->head++;
        t->len--;
    }
    return 0;
}

static const http_parser_settings settings = {
    .on_headers_complete = on_headers,
    .on_message_complete = on_complete,
};

bw_hresp_t *bw_hresp_new(void)
{
    bw_hresp_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    http_parser_init(&t->p, HTTP_RESPONSE);
    t->p.data = t;
    return t;
}

void bw_hresp_free(bw_hresp_t *t)
{
    if (!t)
        return;
    free(t->kinds);
    free(t);
}

void bw_hresp_push(bw_hresp_t *t, int kind)
{
    if (t->lost || t->done)
        return;
    if (t->head > 0 && t->head + t->len == t->cap) {
        memmove(t->kinds, t->kinds + t->head, t->len);
        t->head = 0;
    }
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        unsigned char *k = cap <= BW_HRESP_MAX_PENDING ? realloc(t->kinds, cap) : NULL;
        if (!k) {
            t->lost = 1;
            return;
        }
        t->kinds = k;
        t->cap = cap;
    }
    t->kinds[t->head + t->len++] = (unsigned char)kind;
}

int bw_hresp_feed(bw_hresp_t *t, const char *data, size_t len, size_t *used)
{
    *used = len;
    if (t->lost || t->done || len == 0)
        return BW_HRESP_NONE;
    t->event = BW_HRESP_NONE;
    size_t n = http_parser_execute(&t->p, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&t->p);
    if (e == HPE_PAUSED) {
        http_parser_pause(&t->p, 0);
        *used = n;
        if (t->event == BW_HRESP_SWITCHED)
            t->done = 1;
        return t->event;
    }
    if (e != HPE_OK || (n != len && !t->p.upgrade))
        t->lost = 1;
    return BW_HRESP_NONE;
}

int bw_hresp_lost(const bw_hresp_t *t)
{
    return t->lost;
}
