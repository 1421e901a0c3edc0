/* The host a request is for (http_host.c), for the request rewriter. */
#ifndef BW_EDGE_HTTP_HOST_H
#define BW_EDGE_HTTP_HOST_H

#include <stddef.h>

/* Routing name of a Host value (or URL authority) of `len` bytes into
 * `out` (BW_HRW_HOSTLEN bytes): lowercased, without port and trailing dot,
 * IPv6 brackets kept. Returns 0, or -1 when it is not a plausible host. */
int bw__http_host_name(const char *v, size_t len, char *out);

/* Check the target of the request line [line, line+line_len) against the
 * Host value [host, host+host_len) whose routing name is `name`; `https`
 * is the listener's scheme. Returns NULL when the target is origin- or
 * asterisk-form or names that host and port, else a static 400 text. */
const char *bw__http_target_check(const char *line, size_t line_len, const char *host,
                                  size_t host_len, const char *name, int https);

#endif /* BW_EDGE_HTTP_HOST_H */
