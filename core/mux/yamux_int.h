/* The yamux engine's session and stream structs, private to the engine. See
 * yamux.c for the layout and the stream lifetime, yamux.h for the contract. */
#ifndef BW_MUX_YAMUX_INT_H
#define BW_MUX_YAMUX_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunkq.h"
#include "list.h"
#include "yamux.h"

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
    uint32_t ping_id;
    bool ping_out;
    uint64_t ping_sent_ns, last_pong_ns, rtt_ns;
    char err[160];
};

#endif
