/* Per-source and total caps on public connections: a chained hash of the
 * addresses with connections open, an entry freed when its count drops to
 * zero, so memory follows the connections. See conn_limit.h. */
#include "conn_limit.h"

#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024

typedef struct entry {
    struct entry *next;
    unsigned n;
    char ip[]; /* NUL-terminated */
} entry_t;

struct bw_conn_limit {
    unsigned per_ip, total, open;
    entry_t *b[BUCKETS];
    unsigned long refused[BW_CONN_REASONS];
    uint64_t reported_ms[BW_CONN_REASONS];
    int reported[BW_CONN_REASONS]; /* reported_ms is set */
};

bw_conn_limit_t *bw_conn_limit_new(unsigned per_ip, unsigned total)
{
    bw_conn_limit_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->per_ip = per_ip;
    l->total = total;
    return l;
}

void bw_conn_limit_free(bw_conn_limit_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < BUCKETS; i++)
        while (l->b[i]) {
            entry_t *e = l->b[i];
            l->b[i] = e->next;
            free(e);
        }
    free(l);
}

/* FNV-1a */
static entry_t **slot(const bw_conn_limit_t *l, const char *ip)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)ip; *p; p++)
        h = (h ^ *p) * 16777619u;
    entry_t *const *pp = &l->b[h % BUCKETS];
    while (*pp && strcmp((*pp)->ip, ip) != 0)
        pp = &(*pp)->next;
    return (entry_t **)pp;
}

int bw_conn_limit_take(bw_conn_limit_t *l, const char *ip)
{
    int why = BW_CONN_OK;
    entry_t **pp = slot(l, ip), *e = *pp;
    if (l->total && l->open >= l->total)
        why = BW_CONN_TOTAL;
    else if (l->per_ip && e && e->n >= l->per_ip)
        why = BW_CONN_PER_IP;
    else if (!e) {
        size_t n = strlen(ip) + 1;
        /* Out of memory: let it in uncounted rather than refuse everyone;
         * release finds no entry and leaves the counts alone. */
        if (!(e = malloc(sizeof *e + n)))
            return BW_CONN_OK;
        memcpy(e->ip, ip, n);
        e->n = 0;
        e->next = NULL;
        *pp = e;
    }
    if (why != BW_CONN_OK) {
        l->refused[why]++;
        return why;
    }
    e->n++;
    l->open++;
    return BW_CONN_OK;
}

void bw_conn_limit_release(bw_conn_limit_t *l, const char *ip)
{
    entry_t **pp = slot(l, ip), *e = *pp;
    if (!e)
        return;
    l->open--;
    if (--e->n == 0) {
        *pp = e->next;
        free(e);
    }
}

unsigned bw_conn_limit_open(const bw_conn_limit_t *l, const char *ip)
{
    if (!ip)
        return l->open;
    entry_t *e = *slot(l, ip);
    return e ? e->n : 0;
}

void bw_conn_limit_refused(bw_conn_limit_t *l, int reason)
{
    l->refused[reason]++;
}

unsigned long bw_conn_limit_report(bw_conn_limit_t *l, int reason, uint64_t now_ms,
                                   uint64_t every_ms)
{
    unsigned long n = l->refused[reason];
    if (n == 0 || (l->reported[reason] && now_ms - l->reported_ms[reason] < every_ms))
        return 0;
    l->refused[reason] = 0;
    l->reported[reason] = 1;
    l->reported_ms[reason] = now_ms;
    return n;
}
