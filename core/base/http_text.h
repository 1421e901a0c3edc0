/* The text tables of HTTP/1.1 that more than one layer needs: reason
 * phrases by status code, and the token characters of RFC 9110 (5.6.2),
 * which method names and header field names are made of. Pure data: no
 * allocation, no state. */
#ifndef BW_CORE_HTTP_TEXT_H
#define BW_CORE_HTTP_TEXT_H

#include <stddef.h>

/* The reason phrase for `status` ("Not Found"), or NULL for a code this
 * table does not know; the caller picks its own fallback. Returns static
 * storage. */
const char *bw_http_reason(int status);

/* 1 for RFC 9110 tchar: ALPHA, DIGIT and "!#$%&'*+-.^_`|~"; else 0. */
extern const unsigned char bw_http_tchar[256];

static inline int bw_http_is_tchar(unsigned char c)
{
    return bw_http_tchar[c];
}

/* True when s[len] is a non-empty token (every byte a tchar). */
int bw_http_is_token(const char *s, size_t len);

#endif /* BW_CORE_HTTP_TEXT_H */
