/* The edge's HTTP/1.x request stream rewriter: parses what a public client
 * sends (http_parser, request mode), validates every request head, adds the
 * X-Forwarded-* headers to it and passes everything else through byte-exact
 * (request lines, other headers in order, bodies with their chunked framing).
 * After an Upgrade request the rest of the stream becomes raw only once the
 * service answered it with 101 (bw_hrw_response() watches the responses);
 * until then what the client sent after it is held.
 *
 * No sockets here: the caller feeds each read and gets back the bytes to
 * forward plus where each request head starts in them, so a read that fails
 * to parse can be dropped whole (docs/edge.md, "HTTP and HTTPS"). */
#ifndef BW_EDGE_HTTP_REWRITE_H
#define BW_EDGE_HTTP_REWRITE_H

#include <stddef.h>

#define BW_HRW_MAX_HEAD      (16u * 1024u) /* a longer request head gets 431 */
#define BW_HRW_HOSTLEN       256
#define BW_HRW_MAX_CHUNK_EXT 128             /* bytes of extensions on one chunk-size line */
#define BW_HRW_MAX_BLANK     4               /* empty lines (CRLF) skipped before a request-line */
#define BW_HRW_MAX_HELD      (1024u * 1024u) /* held while an Upgrade awaits its answer */

typedef struct bw_hrw bw_hrw_t;

/* One request head that began in the last feed. */
typedef struct bw_hrw_head {
    size_t off;                /* where its rewritten head starts in the output */
    char host[BW_HRW_HOSTLEN]; /* Host, lowercased, without port */
} bw_hrw_head_t;

/* A rewriter for one connection from `client_ip`; `https` picks the
 * X-Forwarded-Proto value. Returns NULL on allocation failure. */
bw_hrw_t *bw_hrw_new(const char *client_ip, int https);
/* NULL-safe. */
void bw_hrw_free(bw_hrw_t *r);

/* Parse one read. Returns 0 when all of it parsed (the bytes to forward are
 * in bw_hrw_out(), the heads that completed in it in bw_hrw_head()), or < 0
 * when it did not: then nothing of this read may be forwarded, and
 * bw_hrw_status()/bw_hrw_reason() say what to answer. After an error the
 * rewriter refuses further input. */
int bw_hrw_feed(bw_hrw_t *r, const char *data, size_t len);

/* Release what the last feed grew beyond an idle connection's needs (a
 * large output, a large head, several heads); call once its output was
 * used: bw_hrw_out() and bw_hrw_head() are invalid afterwards. */
void bw_hrw_trim(bw_hrw_t *r);

/* Output of the last successful feed; valid until the next feed. */
const char *bw_hrw_out(const bw_hrw_t *r, size_t *len);
size_t bw_hrw_heads(const bw_hrw_t *r);
const bw_hrw_head_t *bw_hrw_head(const bw_hrw_t *r, size_t i);

/* Observe `len` bytes of the service's responses (they are forwarded
 * unchanged by the caller). Returns 0, or 1 when an Upgrade request the
 * rewriter was waiting on got its answer: reading the client may resume,
 * and what was held is in bw_hrw_out() and bw_hrw_head() as after a feed
 * (raw after a 101, parsed and rewritten otherwise). Returns < 0 when those
 * bytes did not parse, as a feed would. */
int bw_hrw_response(bw_hrw_t *r, const char *data, size_t len);

/* The HTTP status (400, 405, 431) and a short reason for the last error. */
int bw_hrw_status(const bw_hrw_t *r);
const char *bw_hrw_reason(const bw_hrw_t *r);

/* True while a request head has begun and not yet completed. */
int bw_hrw_in_head(const bw_hrw_t *r);
/* True while a request's head is complete and its body is not (a body
 * still to come, by Content-Length or chunks). */
int bw_hrw_in_body(const bw_hrw_t *r);
/* True once the stream became raw bytes (after an accepted Upgrade). */
int bw_hrw_raw(const bw_hrw_t *r);
/* True while client bytes are held for an Upgrade's answer: the caller
 * should stop reading the client. */
int bw_hrw_waiting(const bw_hrw_t *r);

#endif /* BW_EDGE_HTTP_REWRITE_H */
