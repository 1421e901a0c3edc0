/* Caps on the edge's public connections: at most `per_ip` open at once
 * from one source address and `total` in all, and the counts behind the
 * aggregated log line of refusals. Pure data: the caller accepts, closes,
 * passes the time and logs (docs/edge.md, "Descriptors and public
 * connections"). */
#ifndef BW_EDGE_CONN_LIMIT_H
#define BW_EDGE_CONN_LIMIT_H

#include <stddef.h>
#include <stdint.h>

/* Why a connection was refused (bw_conn_limit_take), or not accepted at all
 * (the descriptor reserve, an accept error: bw_conn_limit_refused). */
enum {
    BW_CONN_OK = 0,
    BW_CONN_PER_IP = 1,
    BW_CONN_TOTAL = 2,
    BW_CONN_RESERVE = 3,
    BW_CONN_ACCEPT = 4,
    BW_CONN_REASONS = 5
};

typedef struct bw_conn_limit bw_conn_limit_t;

/* Returns a new limiter (free with bw_conn_limit_free), NULL when out of
 * memory. A cap of 0 means no cap. */
bw_conn_limit_t *bw_conn_limit_new(unsigned per_ip, unsigned total);
void bw_conn_limit_free(bw_conn_limit_t *l);

/* A connection from `ip` wants in: returns BW_CONN_OK and counts it (the
 * caller must bw_conn_limit_release it once), or BW_CONN_PER_IP /
 * BW_CONN_TOTAL when a cap is reached (nothing counted; the refusal goes
 * into the next report). */
int bw_conn_limit_take(bw_conn_limit_t *l, const char *ip);
/* A connection counted by bw_conn_limit_take closed. */
void bw_conn_limit_release(bw_conn_limit_t *l, const char *ip);
/* Open connections counted: from `ip`, or in all when ip is NULL. */
unsigned bw_conn_limit_open(const bw_conn_limit_t *l, const char *ip);

/* Count a refusal of `reason` decided by the caller, for the report. */
void bw_conn_limit_refused(bw_conn_limit_t *l, int reason);

/* Refusals of `reason` since the last report, if it is due: returns their
 * count and starts a new window when some were refused and none was
 * reported in the last `every_ms` before now_ms, else 0 (keep counting).
 * One log line per reason and window, whatever the number refused. */
unsigned long bw_conn_limit_report(bw_conn_limit_t *l, int reason, uint64_t now_ms,
                                   uint64_t every_ms);

#endif /* BW_EDGE_CONN_LIMIT_H */
