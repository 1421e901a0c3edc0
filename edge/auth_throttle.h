/* Failed-authentication throttle of the edge: per source IP, a few free
 * failures, then a lockout that doubles with every further failure, and
 * the counts behind the aggregated log lines. Pure data: the caller passes
 * the time and does the logging (docs/edge.md, "Authentication"). */
#ifndef BW_EDGE_AUTH_THROTTLE_H
#define BW_EDGE_AUTH_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

/* How many addresses are tracked; past that the one idle longest is
 * forgotten, so memory stays bounded whatever the number of sources. */
#define BW_AUTH_THROTTLE_SLOTS 1024

typedef struct bw_auth_throttle_cfg {
    unsigned free_failures; /* failures before the first lockout (0: 5) */
    uint64_t base_ms;       /* first lockout (0: 1 s), doubled per failure */
    uint64_t max_ms;        /* longest lockout (0: 5 min) */
    uint64_t forget_ms;     /* failures this old no longer count (0: 10 min) */
} bw_auth_throttle_cfg_t;

typedef struct bw_auth_throttle bw_auth_throttle_t;

/* Returns a new throttle (free with bw_auth_throttle_free), NULL when out
 * of memory. `cfg` may be NULL: all defaults. */
bw_auth_throttle_t *bw_auth_throttle_new(const bw_auth_throttle_cfg_t *cfg);
void bw_auth_throttle_free(bw_auth_throttle_t *t);

/* Before checking a token from `ip` at `now_ms`: returns 0 when it may be
 * checked, else the milliseconds left of its lockout (the attempt is then
 * counted as a failure of the current report window, without lengthening
 * the lockout). */
uint64_t bw_auth_throttle_check(bw_auth_throttle_t *t, const char *ip, uint64_t now_ms);

/* A wrong token from `ip`. Returns 1 when it is the first failure of `ip`
 * since the last bw_auth_throttle_report (log it on its own), else 0 (it
 * is in the next report). */
int bw_auth_throttle_fail(bw_auth_throttle_t *t, const char *ip, uint64_t now_ms);

/* A good token from `ip`: its failures are forgotten. */
void bw_auth_throttle_ok(bw_auth_throttle_t *t, const char *ip);

/* Calls `cb` for every address with more than one failed attempt since the
 * last report, with that count, then starts a new window. Returns how many
 * addresses still have failures on record (0: no report is pending). */
size_t bw_auth_throttle_report(bw_auth_throttle_t *t,
                               void (*cb)(void *ud, const char *ip, unsigned count), void *ud);

#endif /* BW_EDGE_AUTH_THROTTLE_H */
