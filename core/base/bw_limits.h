/* Every watermark and buffer limit of the byte path, in one table, so the
 * layers agree on what "too much queued" means and a benchmark can find
 * them all. Values are tuned by bench/; change them only with numbers.
 *
 * (Named bw_limits.h, not limits.h: with core/base on the include path, a
 * "limits.h" here would shadow the C library's <limits.h>.) */
#ifndef BW_CORE_LIMITS_H
#define BW_CORE_LIMITS_H

/* One socket read (the stream layer's shared read buffer, the TLS layer's
 * ciphertext read buffer). */
#define BW_READ_BUF_SIZE (64u * 1024u)

/* A byte stream's write queue: a write answers BW_EAGAIN once this much is
 * queued (a bw_stream_t, a yamux stream's pending bytes) ... */
#define BW_STREAM_HWM (256u * 1024u)
/* ... and on_drain fires once it is back at or below this. */
#define BW_STREAM_LWM (64u * 1024u)

/* The agent API's HTTP server (core/api/httpd_conn.c) stops reading a
 * connection once this much input waits unparsed (pipelined requests held
 * while one is at a handler). Its queued responses use BW_STREAM_HWM and
 * BW_STREAM_LWM like a stream's writes. */
#define BW_API_IN_HWM (64u * 1024u)

/* TCP writes below this wait for the end of the loop turn so that one
 * turn's small writes leave in one system call (io/tcp.c). */
#define BW_CORK_MAX (16u * 1024u)

/* A TLS connection's queued ciphertext: above the high-water mark the owner
 * stops producing (also the yamux engine's transport_hwm, whose transport is
 * a TLS link); on_drain fires at or below the low-water mark. */
#define BW_TLS_HIGH_WATER (1024u * 1024u)
#define BW_TLS_LOW_WATER  (256u * 1024u)
/* Inside one large TLS write, hand ciphertext to the socket at least this
 * often, so the kernel starts sending while the rest is encrypted. */
#define BW_TLS_FLUSH_EVERY (256u * 1024u)

/* Log records waiting for a pipe, socket or terminal that does not take them
 * now (base/log.c); records beyond it are dropped and counted. */
#define BW_LOG_QUEUE_MAX (256u * 1024u)

#endif /* BW_CORE_LIMITS_H */
