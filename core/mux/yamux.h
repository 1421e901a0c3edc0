/* yamux stream multiplexing, exactly per hashicorp/yamux spec.md.
 *
 * A sans-I/O protocol engine: the session feeds it the bytes read from the
 * transport (bw_mux_input) and it hands encoded frames to the transport through
 * the `send` callback. It owns no sockets and no timers, so the same code runs
 * over TLS on libuv, in unit tests over a memory pipe, and in the fuzzer.
 *
 * Flow control: every stream starts with the spec's 256 KiB receive window.
 * Data received is handed to the application at once (on_data) and is credited
 * back to the peer only when the application calls bw_mux_stream_consumed(),
 * so an application that stops consuming stops the peer after at most one
 * window. Receive windows grow (doubling, up to config.max_window) when the
 * application consumes a whole window in less than a few round trips, which
 * is what keeps one stream fast on a link with a large bandwidth-delay product.
 *
 * Sending: bw_mux_stream_write() frames as much as the peer's window and the
 * transport's high-water mark allow and copies the rest into the stream's
 * pending buffer. It returns BW_EAGAIN once the pending buffer passes
 * config.stream_hwm: the caller must stop producing until on_drain.
 *
 * Reentrancy: the application may call any function of this header from any
 * callback, including bw_mux_stream_close/reset of the stream being called
 * back. Objects are freed only once the engine has unwound.
 */
#ifndef BW_CORE_YAMUX_H
#define BW_CORE_YAMUX_H

#include <stddef.h>
#include <stdint.h>

#define BW_MUX_VERSION        0
#define BW_MUX_HEADER_SIZE    12
#define BW_MUX_INITIAL_WINDOW (256u * 1024u)

/* Frame types and flags (spec.md). */
enum {
    BW_MUX_TYPE_DATA = 0x0,
    BW_MUX_TYPE_WINDOW_UPDATE = 0x1,
    BW_MUX_TYPE_PING = 0x2,
    BW_MUX_TYPE_GO_AWAY = 0x3
};
enum { BW_MUX_FLAG_SYN = 0x1, BW_MUX_FLAG_ACK = 0x2, BW_MUX_FLAG_FIN = 0x4, BW_MUX_FLAG_RST = 0x8 };
/* Go-away codes. */
enum {
    BW_MUX_GOAWAY_NORMAL = 0x0,
    BW_MUX_GOAWAY_PROTO_ERROR = 0x1,
    BW_MUX_GOAWAY_INTERNAL_ERROR = 0x2
};

/* A decoded 12-byte frame header. */
typedef struct bw_mux_header {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint32_t stream_id;
    uint32_t length;
} bw_mux_header_t;

/* Decode 12 bytes at `p`. Returns 0, or BW_EPROTO for a bad version or type. */
int bw_mux_header_decode(const uint8_t *p, bw_mux_header_t *h);
/* Encode `h` into 12 bytes at `p`. */
void bw_mux_header_encode(uint8_t *p, const bw_mux_header_t *h);

typedef struct bw_mux bw_mux_t;
typedef struct bw_mux_stream bw_mux_stream_t;

typedef struct bw_mux_config {
    int is_client;        /* client uses odd stream ids, server even */
    uint32_t max_window;  /* receive window ceiling for auto-tuning (>= 256 KiB) */
    uint32_t max_streams; /* concurrent streams; a SYN beyond it is answered with RST */
    size_t stream_hwm;    /* pending send bytes per stream before write says BW_EAGAIN */
    size_t transport_hwm; /* stop framing while the transport holds more than this */
    uint32_t max_frame;   /* largest data frame we send */
} bw_mux_config_t;

/* Fill `c` with defaults: max_window 16 MiB, max_streams 65536, stream_hwm
 * 256 KiB, transport_hwm 1 MiB, max_frame 64 KiB. */
void bw_mux_config_default(bw_mux_config_t *c, int is_client);

typedef struct bw_mux_callbacks {
    /* Hand encoded bytes to the transport. The transport must take (copy or
     * consume) all `n` buffers before returning. Returns 0 or < 0 on a dead
     * transport. Mandatory. */
    int (*send)(void *ud, const void *const *bufs, const size_t *lens, unsigned n);
    /* Bytes the transport still holds unwritten. Mandatory. */
    size_t (*send_queued)(void *ud);
    /* The peer opened `s` (SYN). The application must install callbacks
     * (bw_mux_stream_set_callbacks) or close/reset it before returning. */
    void (*on_stream)(void *ud, bw_mux_stream_t *s);
    /* A ping we sent came back; `rtt_ns` is its round trip. Optional. */
    void (*on_pong)(void *ud, uint64_t rtt_ns);
    /* The peer sent go-away with `code`. No new streams will be accepted by
     * it; existing ones continue. Optional. */
    void (*on_go_away)(void *ud, uint32_t code);
    /* Monotonic clock in nanoseconds. Optional (defaults to uv_hrtime). */
    uint64_t (*now_ns)(void *ud);
} bw_mux_callbacks_t;

typedef struct bw_mux_stream_cbs {
    /* Stream data; valid during the call only. Credit it back with
     * bw_mux_stream_consumed() once it has been used up. */
    void (*on_data)(bw_mux_stream_t *s, void *ud, const uint8_t *data, size_t len);
    /* The peer half-closed (FIN). */
    void (*on_eof)(bw_mux_stream_t *s, void *ud);
    /* Pending send bytes fell to zero after a write returned BW_EAGAIN. */
    void (*on_drain)(bw_mux_stream_t *s, void *ud);
    /* The stream ended without the application closing it: reset by the
     * peer (BW_ECONNRESET), or the session failed/was freed
     * (BW_ECONNABORTED), or both sides sent FIN (0). The stream is freed
     * right after this returns; do not use it again. With FIN both ways it
     * comes when our FIN goes out, which can be inside
     * bw_mux_stream_shutdown() or bw_mux_transport_drained(). */
    void (*on_close)(bw_mux_stream_t *s, void *ud, int err);
} bw_mux_stream_cbs_t;

/* Create an engine. `cbs` is copied. Returns a new engine (free with
 * bw_mux_free) or NULL on allocation failure. */
bw_mux_t *bw_mux_new(const bw_mux_config_t *cfg, const bw_mux_callbacks_t *cbs, void *ud);

/* Free the engine: every stream the application still holds gets
 * on_close(BW_ECONNABORTED) first. Safe with NULL. Must not be called from
 * inside one of the engine's own callbacks. */
void bw_mux_free(bw_mux_t *m);

/* Feed bytes read from the transport. Returns 0, or a negative code after a
 * protocol violation, in which case a go-away (protocol error) has been sent,
 * every stream has been closed (on_close(BW_ECONNABORTED)) and the engine
 * accepts no more input; bw_mux_error() describes the violation. */
int bw_mux_input(bw_mux_t *m, const uint8_t *data, size_t len);

/* The transport's queue fell: frame pending stream data. */
void bw_mux_transport_drained(bw_mux_t *m);

/* Human-readable reason of the last protocol failure, or NULL. */
const char *bw_mux_error(const bw_mux_t *m);

/* Send a ping; its pong is reported through on_pong. Returns 0 or < 0. */
int bw_mux_ping(bw_mux_t *m);
/* Nanoseconds since the last pong (or since creation if none). */
uint64_t bw_mux_since_pong(const bw_mux_t *m);
/* Last measured round-trip time in ns (0 before the first pong). */
uint64_t bw_mux_rtt(const bw_mux_t *m);

/* Send go-away with `code`; no new streams are opened or accepted after it. */
int bw_mux_go_away(bw_mux_t *m, uint32_t code);

/* Number of live streams. */
size_t bw_mux_stream_count(const bw_mux_t *m);

/* Open a stream (sends SYN with a window update). Returns the new stream, or
 * NULL when the engine is failed/going away or out of stream ids/memory. */
bw_mux_stream_t *bw_mux_stream_open(bw_mux_t *m);

void bw_mux_stream_set_callbacks(bw_mux_stream_t *s, const bw_mux_stream_cbs_t *cbs, void *ud);
uint32_t bw_mux_stream_id(const bw_mux_stream_t *s);

/* Send bytes; see the header comment. Returns 0, BW_EAGAIN (accepted, pause),
 * or BW_EPIPE when the stream can no longer send. */
int bw_mux_stream_write(bw_mux_stream_t *s, const void *data, size_t len);
/* Bytes accepted by write and not yet framed. */
size_t bw_mux_stream_pending(const bw_mux_stream_t *s);
/* The application used up `len` received bytes: credit the peer's window
 * (batched; a window update goes out once half a window is owed). */
void bw_mux_stream_consumed(bw_mux_stream_t *s, size_t len);
/* Half-close: FIN after pending bytes. Returns 0 or BW_EPIPE. */
int bw_mux_stream_shutdown(bw_mux_stream_t *s);
/* Application is done: FIN after pending bytes (if not sent), no more
 * callbacks; the engine frees the stream when the peer's FIN/RST arrives. */
void bw_mux_stream_close(bw_mux_stream_t *s);
/* Abort: send RST, discard pending bytes, free. No more callbacks. */
void bw_mux_stream_reset(bw_mux_stream_t *s);
/* Current receive window size we advertise (for tests and stats). */
uint32_t bw_mux_stream_recv_window_max(const bw_mux_stream_t *s);

#endif /* BW_CORE_YAMUX_H */
