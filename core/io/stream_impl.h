/* Internals shared by the stream backends (tcp.c: TCP and pipes;
 * mux_stream.c: yamux; tls_stream.c: TLS over another stream), the shared
 * discipline in stream.c, and connect.c. Not part of the plugin ABI: the
 * plugin only ever sees bw_stream_t as an opaque pointer.
 *
 * A backend embeds struct bw_stream first in its own struct, fills `ops`
 * and `io`, and reports transport events through the bw__stream_* calls
 * below with s->depth held, then calls bw__stream_maybe_free(s). Once its transport is
 * gone it calls bw__stream_released(). The shared code frees the whole
 * allocation (free(s)) once the stream is both released and closed by its
 * owner, and no callback is running: a transport that ends on its own (a
 * yamux stream reset by the peer) never frees memory the owner still holds. */
#ifndef BW_CORE_STREAM_IMPL_H
#define BW_CORE_STREAM_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <burrow/plugin.h>
#include <uv.h>

#include "bw_limits.h"
#include "chunkq.h"
#include "list.h"
#include "stream.h"
#include "util.h"

/* The context of bw_io_new (stream.h), shared by the backends. */
struct bw_io {
    uv_loop_t *loop;
    uv_idle_t idle;     /* delivers held input on a later turn (stream.c) */
    bw_list_t deferred; /* streams waiting for it, via defer_node */
    /* tcp.c: corked streams, sent after the turn's I/O callbacks (check)
     * or before the loop blocks (prepare). */
    uv_check_t cork_check;
    uv_prepare_t cork_prepare;
    bw_list_t corked; /* tcp_stream_t, via cork_node */
    /* Cork buffers of streams that flushed, for the next turn's writes:
     * without it a busy loop mallocs and frees 16 KiB per stream per turn,
     * and glibc trims and regrows the heap (a brk each way) every turn. */
    void *cork_pool; /* a list linked through each buffer's first bytes */
    unsigned cork_pooled;
    int handles; /* initialised handles; freed when the last has closed */
    /* One read buffer for every TCP stream: on_read consumes it before the
     * next read is issued, so idle connections cost no buffer at all. */
    int rbuf_busy;
    char rbuf[BW_READ_BUF_SIZE];
};

typedef struct bw__stream_ops {
    int (*write)(bw_stream_t *s, const void *data, size_t len);
    size_t (*queued)(bw_stream_t *s);
    int (*shutdown)(bw_stream_t *s);
    /* Start/stop the transport's own reading (only called on changes). */
    void (*read_ctl)(bw_stream_t *s, int on);
    /* `len` bytes reached the owner (credit flow-control windows). */
    void (*consumed)(bw_stream_t *s, size_t len);
    /* Owner closed: release the transport; call bw__stream_released when
     * it is gone (at once or later). Not called if it was released before. */
    void (*close)(bw_stream_t *s, int abort);
} bw__stream_ops_t;

struct bw_stream {
    const bw__stream_ops_t *ops;
    bw_io_t *io;
    bw_stream_cbs_t cbs;
    void *ud;
    char peer[BW_ADDRSTRLEN];
    bw_chunkq_t in; /* held input, delivered when reading */
    unsigned depth; /* our callbacks in progress */
    unsigned has_cbs : 1;
    unsigned reading : 1;  /* the owner wants on_read */
    unsigned closed : 1;   /* the owner called close: no more callbacks */
    unsigned released : 1; /* the transport is gone: free once closed too */
    unsigned eof_held : 1; /* EOF arrived behind held input */
    unsigned failed : 1;   /* on_error delivered or pending */
    unsigned need_drain : 1;
    int err_held;
    bw_list_node_t defer_node; /* linked: on io->deferred */
};

/* Transport events, delivered to the owner (or held until it reads). */
void bw__stream_input(bw_stream_t *s, const uint8_t *data, size_t len);
void bw__stream_eof(bw_stream_t *s);
void bw__stream_error(bw_stream_t *s, int err);
void bw__stream_drain(bw_stream_t *s);
/* The transport is gone: free once closed and no callback of ours runs. */
void bw__stream_released(bw_stream_t *s);
/* Free if closed, released and idle; call after dropping s->depth. */
void bw__stream_maybe_free(bw_stream_t *s);

/* tcp.c: drop a TCP stream never handed to an owner (a failed connect):
 * its handle closes and the memory goes from the close callback. */
void bw__tcp_discard(bw_stream_t *s);
/* tcp.c: free the pooled cork buffers (when the io goes). */
void bw__io_cork_pool_clear(bw_io_t *io);

#endif /* BW_CORE_STREAM_IMPL_H */
