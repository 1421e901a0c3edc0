/* Byte streams as plugins see them (bw_stream_t of include/burrow/plugin.h),
 * over a libuv TCP handle or a yamux stream, TLS over any of them, and the join that forwards
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
#include <openssl/ssl.h>
#include <uv.h>

#include "bw_limits.h"
#include "util.h"
#include "yamux.h"

/* The stream layer's state for one loop: deferred deliveries, the write
 * coalescing handles and the shared read buffer. Every stream belongs to
 * one; nothing of it is global. */
typedef struct bw_io bw_io_t;

/* Create the context for `loop`. Returns a new context (bw_io_free) or
 * NULL on failure, also when `loop` is NULL (a failed uv_default_loop()).
 * Its handles never keep the loop alive by themselves. */
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

/* --- TLS over any stream (tls_stream.c) --- */

typedef struct bw_tls_filter_opts {
    /* The settings: trust (bw_tls_client_ctx), certificate and key
     * (bw_tls_server_ctx, bw_tls_ctx_use_cert), client certificates
     * (bw_tls_ctx_verify_clients). Referenced by the connection: the caller
     * may free its own reference once bw_stream_tls_over returned. */
    SSL_CTX *ctx;
    int is_server;
    /* Client, required: sent as SNI (not for IP literals) and what the
     * certificate must match when ctx verifies. Ignored by servers. */
    const char *server_name;
    /* ALPN, NULL-terminated, or NULL: a client offers these in order; a
     * server (ctx from bw_tls_server_ctx) picks the first of them the
     * client offered. */
    const char *const *alpn;
} bw_tls_filter_opts_t;

/* Completion of bw_stream_tls_over, called once: status 0 and the plaintext
 * stream `s`, now the receiver's (bw_stream_close); or s NULL, status < 0
 * (BW_EACCES: the peer's certificate was refused) and `why`, text valid
 * during the call. The stream below is gone either way. */
typedef void (*bw_tls_filter_cb)(void *ud, bw_stream_t *s, int status, const char *why);

/* Run TLS over `below` (client or server by o->is_server). Returns 0 and
 * takes `below` over (its callbacks are replaced; input it holds is the
 * first ciphertext), then calls cb once after the handshake, never before
 * returning. Returns < 0 (BW_EINVAL, BW_ENOMEM) without taking anything and
 * never calls cb. The plaintext stream shares the discipline above: held
 * input, BW_EAGAIN and on_drain when the stream below pushes back,
 * shutdown = close_notify then shutdown below, close(abort) = reset below. */
int bw_stream_tls_over(bw_io_t *io, bw_stream_t *below, const bw_tls_filter_opts_t *o,
                       bw_tls_filter_cb cb, void *ud);

/* The OpenSSL connection of a TLS filter stream (ALPN chosen, SNI received,
 * verification result), owned by it; NULL for other streams. */
SSL *bw_stream_tls_ssl(bw_stream_t *s);

/* Connect to host:port exactly as bw_stream_tcp_connect does (same address
 * choice), then run the TLS filter as a client over it: SNI = host unless
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
