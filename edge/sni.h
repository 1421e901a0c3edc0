/* The server name of a TLS ClientHello, read from the bytes a public
 * client sent so far, without I/O and without OpenSSL (docs/tls.md, "Why
 * the edge parses the ClientHello itself"). The HTTPS listener routes on
 * it: a name held by a tls tunnel gets the raw bytes, anything else is
 * terminated at the edge. */
#ifndef BW_EDGE_SNI_H
#define BW_EDGE_SNI_H

#include <stddef.h>
#include <stdint.h>

/* The largest ClientHello the edge buffers: a handshake message of at most
 * this many bytes, and at most this many bytes of records around it. */
#define BW_SNI_MAX_HELLO (16u * 1024u)
/* ... and at most this many bytes in all, record headers included (a
 * hello cut into tiny records is refused, not gathered for ever). */
#define BW_SNI_MAX_INPUT (BW_SNI_MAX_HELLO + 4u + 64u * 5u)

typedef enum bw_sni_result {
    BW_SNI_MORE = 0,      /* a prefix of a ClientHello: read more */
    BW_SNI_FOUND = 1,     /* a complete ClientHello naming a host (in `name`) */
    BW_SNI_NONE = 2,      /* a complete ClientHello without a host_name */
    BW_SNI_NOT_TLS = 3,   /* the first bytes are not a TLS handshake record */
    BW_SNI_TOO_LARGE = 4, /* the ClientHello exceeds BW_SNI_MAX_HELLO */
    BW_SNI_BAD = 5        /* a malformed record or ClientHello */
} bw_sni_result_t;

/* Look at p[0..n), everything the client sent so far, from its first
 * byte. A ClientHello may span several handshake records and any number of
 * reads; the answer is MORE until it is complete. On FOUND the host name
 * is copied NUL-terminated into name[namelen] (a name that does not fit,
 * or that holds a NUL, is BAD); it is not checked as a DNS name. Pure: the
 * same bytes give the same answer, and more bytes never turn a verdict
 * other than MORE into another. */
bw_sni_result_t bw_sni_parse(const uint8_t *p, size_t n, char *name, size_t namelen);

/* A short word for logs: "need more", "found", ... */
const char *bw_sni_result_name(bw_sni_result_t r);

#endif /* BW_EDGE_SNI_H */
