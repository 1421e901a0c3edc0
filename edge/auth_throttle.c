/* Failed-authentication throttle: see auth_throttle.h. A fixed table with
 * linear lookups: BW_AUTH_THROTTLE_SLOTS entries are scanned only on an
 * Auth, which is rare next to everything else a session does. */
#include "auth_throttle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IP_MAX 64 /* "[v6]" text, without the port */

typedef struct entry {
    char ip[IP_MAX]; /* "" when the slot is free */
    unsigned failures;
    unsigned window; /* attempts refused since the last report */
    uint64_t last_ms, locked_until;
} entry_t;

struct bw_auth_throttle {
    bw_auth_throttle_cfg_t cfg;
    entry_t slots[BW_AUTH_THROTTLE_SLOTS];
};

bw_auth_throttle_t *bw_auth_throttle_new(const bw_auth_throttle_cfg_t *cfg)
{
    bw_auth_throttle_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (cfg)
        t->cfg = *cfg;
    if (!t->cfg.free_failures)
        t->cfg.free_failures = 5;
    if (!t->cfg.base_ms)
        t->cfg.base_ms = 1000;
    if (!t->cfg.max_ms)
        t->cfg.max_ms = 300000;
    if (!t->cfg.forget_ms)
        t->cfg.forget_ms = 600000;
    return t;
}

void bw_auth_throttle_free(bw_auth_throttle_t *t)
{
    free(t);
}

static entry_t *find(bw_auth_throttle_t *t, const char *ip)
{
    for (size_t i = 0; i < BW_AUTH_THROTTLE_SLOTS; i++)
        if (t->slots[i].ip[0] && strcmp(t->slots[i].ip, ip) == 0)
            return &t->slots[i];
    return NULL;
}

/* A slot for `ip`: its own, a free one, or the one idle longest. */
static entry_t *take(bw_auth_throttle_t *t, const char *ip)
{
    entry_t *e = find(t, ip), *oldest = &t->slots[0];
    if (e)
        return e;
    for (size_t i = 0; i < BW_AUTH_THROTTLE_SLOTS; i++) {
        if (!t->slots[i].ip[0]) {
            oldest = &t->slots[i];
            break;
        }
        if (t->slots[i].last_ms < oldest->last_ms)
            oldest = &t->slots[i];
    }
    memset(oldest, 0, sizeof *oldest);
    snprintf(oldest->ip, sizeof oldest->ip, "%s", ip);
    return oldest;
}

uint64_t bw_auth_throttle_check(bw_auth_throttle_t *t, const char *ip, uint64_t now_ms)
{
    entry_t *e = find(t, ip);
    if (!e || now_ms >= e->locked_until)
        return 0;
    e->window++;
    return e->locked_until - now_ms;
}

int bw_auth_throttle_fail(bw_auth_throttle_t *t, const char *ip, uint64_t now_ms)
{
    entry_t *e = take(t, ip);
    if (e->failures && now_ms - e->last_ms > t->cfg.forget_ms)
        e->failures = 0;
    e->failures++;
    e->last_ms = now_ms;
    if (e->failures > t->cfg.free_failures) {
        unsigned shift = e->failures - t->cfg.free_failures - 1;
        uint64_t lock = t->cfg.max_ms;
        if (shift < 32 && (t->cfg.base_ms << shift) >> shift == t->cfg.base_ms &&
            (t->cfg.base_ms << shift) < t->cfg.max_ms)
            lock = t->cfg.base_ms << shift;
        e->locked_until = now_ms + lock;
    }
    return e->window++ == 0;
}

void bw_auth_throttle_ok(bw_auth_throttle_t *t, const char *ip)
{
    entry_t *e = find(t, ip);
    if (!e)
        return;
    e->failures = 0;
    e->locked_until = 0;
    if (!e->window) /* else its window is still reported, then it goes */
        memset(e, 0, sizeof *e);
}

size_t bw_auth_throttle_report(bw_auth_throttle_t *t,
                               void (*cb)(void *ud, const char *ip, unsigned count), void *ud)
{
    size_t left = 0;
    for (size_t i = 0; i < BW_AUTH_THROTTLE_SLOTS; i++) {
        entry_t *e = &t->slots[i];
        if (!e->ip[0])
            continue;
        if (e->window > 1)
            cb(ud, e->ip, e->window);
        e->window = 0;
        if (e->failures)
            left++;
        else
            memset(e, 0, sizeof *e);
    }
    return left;
}
