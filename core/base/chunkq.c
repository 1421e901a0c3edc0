/* The one chunk queue (see chunkq.h). */
#include "chunkq.h"

#include <stdlib.h>
#include <string.h>

#include "burrow/error.h"

static bw_chunk_t *chunk_new(const void *p, size_t len, size_t cap)
{
    bw_chunk_t *c = malloc(sizeof *c + cap);
    if (!c)
        return NULL;
    c->next = NULL;
    c->off = 0;
    c->len = len;
    c->cap = cap;
    memcpy(c->data, p, len);
    return c;
}

size_t bw_chunkq_fill(bw_chunkq_t *q, const void *p, size_t len)
{
    bw_chunk_t *t = q->tail;
    size_t room = t ? t->cap - t->off - t->len : 0, n = len < room ? len : room;
    if (n == 0)
        return 0;
    memcpy(t->data + t->off + t->len, p, n);
    t->len += n;
    q->bytes += n;
    return n;
}

void bw_chunkq_append(bw_chunkq_t *q, bw_chunk_t *c)
{
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->bytes += c->len;
}

int bw_chunkq_push(bw_chunkq_t *q, const void *p, size_t len, size_t min_cap)
{
    size_t n = bw_chunkq_fill(q, p, len);
    if (n == len)
        return 0;
    bw_chunk_t *c =
        chunk_new((const uint8_t *)p + n, len - n, len - n > min_cap ? len - n : min_cap);
    if (!c)
        return BW_ENOMEM;
    bw_chunkq_append(q, c);
    return 0;
}

int bw_chunkq_push_front(bw_chunkq_t *q, const void *p, size_t len)
{
    bw_chunk_t *c = chunk_new(p, len, len);
    if (!c)
        return BW_ENOMEM;
    c->next = q->head;
    q->head = c;
    if (!q->tail)
        q->tail = c;
    q->bytes += len;
    return 0;
}

bw_chunk_t *bw_chunkq_pop(bw_chunkq_t *q)
{
    bw_chunk_t *c = q->head;
    if (!c)
        return NULL;
    q->head = c->next;
    if (!q->head)
        q->tail = NULL;
    q->bytes -= c->len;
    c->next = NULL;
    return c;
}

void bw_chunkq_drop(bw_chunkq_t *q, size_t n)
{
    while (n > 0 && q->head) {
        bw_chunk_t *c = q->head;
        size_t k = n < c->len ? n : c->len;
        c->off += k;
        c->len -= k;
        q->bytes -= k;
        n -= k;
        if (c->len == 0)
            free(bw_chunkq_pop(q));
    }
}

unsigned bw_chunkq_gather(const bw_chunkq_t *q, size_t max, const void **segs, size_t *lens,
                          unsigned nseg, size_t *total)
{
    unsigned i = 0;
    size_t n = 0;
    for (const bw_chunk_t *c = q->head; c && n < max && i < nseg; c = c->next) {
        size_t k = max - n < c->len ? max - n : c->len;
        segs[i] = c->data + c->off;
        lens[i++] = k;
        n += k;
    }
    *total = n;
    return i;
}

void bw_chunkq_clear(bw_chunkq_t *q)
{
    bw_chunk_t *c;
    while ((c = bw_chunkq_pop(q)))
        free(c);
    q->bytes = 0;
}
