/* What the parts of the yamux engine share: the session and stream structs,
 * and the helpers one file calls in another. yamux.c holds frames, the stream
 * table, lifetime and the session API; yamux_send.c the sending half;
 * yamux_input.c the receiving half. See yamux.c for the stream lifetime,
 * yamux.h for the contract. */
#ifndef BW_MUX_YAMUX_INT_H
#define BW_MUX_YAMUX_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunkq.h"
#include "list.h"
#include "yamux.h"

/* Pings remembered while their pongs are outstanding (a slow link answers
 * late, not never). */
#define BW_MUX_PINGS 8

enum stream_state {
    ST_INIT,
    ST_SYN_SENT,
    ST_SYN_RECEIVED,
    ST_ESTABLISHED,
    ST_LOCAL_CLOSE,
    ST_REMOTE_CLOSE,
    ST_CLOSED,
    ST_RESET
};

struct bw_mux_stream {
    bw_mux_t *m;
    uint32_t id;
    uint8_t state;
    bool released; /* application closed/reset it or got on_close */
    bool finished; /* out of the table; freed when the engine unwinds */
    bool shut_wr;  /* application asked for FIN */
    bool fin_sent;
    bool want_drain; /* write said BW_EAGAIN: on_drain at pending == 0 */
    bw_mux_stream_cbs_t cbs;
    void *ud;
    bw_mux_stream_t *hnext; /* hash chain, then graveyard link */
    bw_list_node_t qnode;   /* linked: in the send queue */
    /* send side */
    uint32_t send_window;
    bw_chunkq_t pending; /* bytes written, not yet framed */
    /* receive side; invariant: recv_window + owed + unconsumed <= recv_max */
    uint32_t recv_window; /* credit the peer still has */
    uint32_t recv_max;    /* window we advertise */
    uint32_t owed;        /* consumed, not yet credited back */
    size_t unconsumed;    /* handed to on_data, not yet consumed */
    uint64_t epoch_ns;    /* start of the auto-tune measurement, 0 = none yet */
    uint64_t epoch_bytes; /* credited since epoch_ns */
};

struct bw_mux {
    bw_mux_config_t cfg;
    bw_mux_callbacks_t cbs;
    void *ud;
    bw_mux_stream_t **buckets;
    size_t nbuckets, count;
    uint32_t next_id;
    bool ids_exhausted, failed, local_go_away, remote_go_away, send_dead, freeing;
    /* input parser: a partial header, or the rest of a data payload */
    uint8_t hbuf[BW_MUX_HEADER_SIZE];
    size_t hlen;
    uint32_t payload_left, cur_id;
    uint16_t cur_flags;
    /* streams with pending bytes and send window, waiting for the transport */
    bw_list_t queue; /* bw_mux_stream_t via qnode, oldest first */
    unsigned depth;
    bw_mux_stream_t *graveyard;
    /* Pings in flight: ids ping_first .. ping_first + ping_out - 1, each
     * sent at ping_sent_ns[id % BW_MUX_PINGS]. A pong answers the one it
     * names and every older one; past BW_MUX_PINGS the oldest is dropped. */
    uint32_t ping_first, ping_out;
    uint64_t ping_sent_ns[BW_MUX_PINGS];
    uint64_t last_pong_ns, rtt_ns;
    char err[160];
};

/* yamux.c */

/* The engine's clock: cbs.now_ns if set, else uv_hrtime(). */
uint64_t bw__mux_now_ns(const bw_mux_t *m);
/* The stream with `id` in the table, or NULL. */
bw_mux_stream_t *bw__mux_lookup(const bw_mux_t *m, uint32_t id);
/* A new stream in `state`, in the table; NULL when out of memory. The engine
 * owns it until it is finished. */
bw_mux_stream_t *bw__mux_stream_new(bw_mux_t *m, uint32_t id, uint8_t state);
/* Nest an engine call; finished streams are freed when the outermost leaves. */
void bw__mux_enter(bw_mux_t *m);
void bw__mux_leave(bw_mux_t *m);
/* Take s out of the protocol and onto the graveyard; tells the application
 * on_close(err) unless it already released s. Caller holds a depth. */
void bw__mux_stream_finish(bw_mux_stream_t *s, int err);

/* yamux_send.c */

/* Send a frame without payload; a dead or failed transport swallows it. */
void bw__mux_send_ctrl(bw_mux_t *m, uint8_t type, uint16_t flags, uint32_t id, uint32_t value);
/* The flags owed by the next frame of s: the ACK of a peer-opened stream. */
uint16_t bw__mux_take_flags(bw_mux_stream_t *s);
/* Frame pending bytes round robin while the transport has room. */
void bw__mux_flush(bw_mux_t *m);
/* Queue s for bw__mux_flush if it has pending bytes and send window. */
void bw__mux_schedule(bw_mux_stream_t *s);
/* Take s off the send queue, if it is on it. */
void bw__mux_queue_remove(bw_mux_t *m, bw_mux_stream_t *s);

/* yamux_input.c */

/* Credit n consumed bytes back to the peer, batched to half a window. */
void bw__mux_credit_window(bw_mux_stream_t *s, size_t n);

#endif
