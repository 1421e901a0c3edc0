/* A strict check of chunked request bodies (RFC 9112 7.1), run beside
 * http_parser: the parser frames, this refuses what it lets through but
 * another parser could frame differently (bare LF, data not followed by
 * CRLF, long extensions, folded trailers). Sans-I/O, no allocation. */
#ifndef BW_EDGE_HTTP_CHUNKED_H
#define BW_EDGE_HTTP_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

typedef struct bw_chunked {
    int state;
    uint64_t left; /* data bytes left in the current chunk */
    size_t ext;    /* extension bytes on the current size line */
} bw_chunked_t;

/* Start checking a new chunked body. */
void bw_chunked_init(bw_chunked_t *c);

/* Check the next `len` bytes of the body as the client sent them. Returns
 * NULL, or a static text naming the fault (then the body must not be
 * forwarded). Bytes after the body's final CRLF are not looked at. */
const char *bw_chunked_check(bw_chunked_t *c, const char *data, size_t len);

#endif /* BW_EDGE_HTTP_CHUNKED_H */
