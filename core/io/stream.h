/* Byte streams as plugins see them (bw_stream_t of include/burrow/plugin.h),
 * over a libuv TCP handle or a yamux stream, and the join that forwards
 * between two of them with backpressure.
 *
 * Every stream shares one discipline, implemented once (stream.c):
 *  - callbacks run with a depth counter held, so the owner may close the
 *    stream from inside any of them; the memory goes once the stack unwinds;
 *  - the owner's pointer stays valid until it calls bw_stream_close, even
 *    when the transport ended first (a yamux stream reset by the peer, or
 *    finished by our FIN after the peer's): writes then fail with BW_EPIPE;
 *  - bytes that arrive while the owner paused reading (read_stop) or before
 *    it installed callbacks are held and delivered, in order, on a later loop
 *    turn once reading resumes; a yamux stream credits its window only when
 *    bytes reach the owner, so a paused owner stops the far end;
 *  - writes copy what the transport cannot take at once, and return
 *    BW_EAGAIN once BW_STREAM_HWM bytes are queued; on_drain follows when the
 *    queue falls to BW_STREAM_LWM.
 */
#ifndef BW_CORE_STREAM_H
#define BW_CORE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <burrow/plugin.h>
#include <uv.h>

#include "bw_limits.h"
#include "util.h"
#include "yamux.h"

/* The stream layer's state for one loop: deferred deliveries, the write
 * coalescing handles and the shared read buffer. Every stream belongs to
 * one; nothing of it is global. */
typedef struct bw_io bw_io_t;

/* Create the context for `loop`. Returns a new context (bw_io_free) or
 * NULL on failure. Its handles never keep the loop alive by themselves. */
bw_io_t *bw_io_new(uv_loop_t *loop);
/* Close the context's handles; the memory goes from their close callbacks,
 * so run the loop once more before uv_loop_close. Every stream of it must
 * be closed first. NULL-safe. */
void bw_io_free(bw_io_t *io);
/* The loop the context runs on. */
uv_loop_t *bw_io_loop(const bw_io_t *io);

/* Operations (the bw_host_t stream slots forward to these). */
void bw_stream_set_callbacks(bw_stream_t *s, const bw_stream_cbs_t *cbs, void *ud);
int bw_stream_write(bw_stream_t *s, const void *data, size_t len);
size_t bw_stream_queued(bw_stream_t *s);
int bw_stream_shutdown(bw_stream_t *s);
void bw_stream_read_stop(bw_stream_t *s);
void bw_stream_read_start(bw_stream_t *s);
void bw_stream_close(bw_stream_t *s, int abort);
const char *bw_stream_peer(bw_stream_t *s);

/* Forward both ways between a and b until both directions end; see
 * bw_host_t.stream_join. `cb` gets bytes a->b as bytes_in and b->a as
 * bytes_out. Takes ownership of both streams. Returns 0 or BW_ENOMEM (in
 * which case both streams have been closed and cb is not called). */
int bw_stream_join(bw_stream_t *a, bw_stream_t *b, bw_join_cb cb, void *ud);

/* Put bytes back in front of the stream's input: they are delivered before
 * anything read later. Returns 0 or BW_ENOMEM. */
int bw_stream_unread(bw_stream_t *s, const void *data, size_t len);

/* --- TCP --- */

/* Wrap an accepted or connected TCP handle. Allocates a stream of `io` that
 * owns a new uv_tcp_t; call bw_stream_tcp_handle() to uv_accept() into it.
 * Returns NULL on allocation failure. */
bw_stream_t *bw_stream_tcp_new(bw_io_t *io);
uv_tcp_t *bw_stream_tcp_handle(bw_stream_t *s);
/* After uv_accept()/connect: record the peer, set TCP_NODELAY. */
void bw_stream_tcp_ready(bw_stream_t *s);

/* Connect to host:port ("localhost" tries 127.0.0.1 then ::1; names are
 * resolved asynchronously). Returns 0 and calls cb exactly once, or returns
 * < 0 and never calls it. */
int bw_stream_tcp_connect(bw_io_t *io, const char *host, int port, bw_connect_cb cb, void *ud);

/* --- pipes --- */

/* Wrap a connected AF_UNIX stream socket `fd` (e.g. one end of a
 * socketpair). `peer` labels it. Returns the stream, which owns the fd from
 * then on, or NULL on failure (the caller still owns and closes `fd`). */
bw_stream_t *bw_stream_pipe_open(bw_io_t *io, int fd, const char *peer);

/* --- TLS to a local service (tls_stream.c) --- */

/* Connect to host:port exactly as bw_stream_tcp_connect does (same address
 * choice), then run a TLS client handshake over it: SNI = host unless
 * it is an IP literal, ALPN http/1.1, the certificate verified against the
 * system store and host name only when `verify`. `cb` runs once, after the
 * handshake (a failed handshake is a failed connect: the reason is logged
 * and status < 0). Returns 0, or < 0 and never calls cb. */
int bw_stream_tls_connect(bw_io_t *io, const char *host, int port, int verify, bw_connect_cb cb,
                          void *ud);
/* Free the process-wide TLS client contexts (at exit). */
void bw_stream_tls_done(void);

/* --- yamux --- */

/* Wrap a yamux stream; takes over its callbacks. `peer` labels it (the
 * public client's address). Returns NULL on allocation failure (the yamux
 * stream is then reset). */
bw_stream_t *bw_stream_mux_new(bw_io_t *io, bw_mux_stream_t *ms, const char *peer);

#endif /* BW_CORE_STREAM_H */
