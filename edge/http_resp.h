/* The edge's view of the responses on one public HTTP connection: just
 * enough framing (http_parser, response mode) to tell which response
 * answers which request, so that the connection turns raw only when the
 * service answered an Upgrade request with 101. Responses are observed,
 * never changed. Sans-I/O. */
#ifndef BW_EDGE_HTTP_RESP_H
#define BW_EDGE_HTTP_RESP_H

#include <stddef.h>

/* What a forwarded request means for framing its response (flags). */
enum { BW_HRESP_PLAIN = 0, BW_HRESP_HEAD = 1, BW_HRESP_UPGRADE = 2 };

/* What bw_hresp_feed() found out about the Upgrade request in flight. */
enum { BW_HRESP_NONE, BW_HRESP_SWITCHED, BW_HRESP_DECLINED };

#define BW_HRESP_MAX_PENDING 65536 /* requests awaiting a response; past it, tracking stops */

typedef struct bw_hresp bw_hresp_t;

/* Returns a new tracker, or NULL on allocation failure. */
bw_hresp_t *bw_hresp_new(void);
/* NULL-safe. */
void bw_hresp_free(bw_hresp_t *t);

/* A request of `kind` was forwarded. Only the last request in flight may
 * be an Upgrade one (later requests wait for its answer). */
void bw_hresp_push(bw_hresp_t *t, int kind);

/* Observe response bytes. Stops after `*used` bytes when the response to
 * the Upgrade request in flight shows its status: BW_HRESP_SWITCHED (101;
 * tracking ends, the rest is raw) or BW_HRESP_DECLINED (any other final
 * status; feed the rest again). Returns BW_HRESP_NONE when all was taken. */
int bw_hresp_feed(bw_hresp_t *t, const char *data, size_t len, size_t *used);

/* True once the responses cannot be followed (not HTTP, a response nobody
 * asked for, too many requests in flight): no 101 is believed any more. */
int bw_hresp_lost(const bw_hresp_t *t);

#endif /* BW_EDGE_HTTP_RESP_H */
