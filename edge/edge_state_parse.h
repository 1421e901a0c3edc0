/* burrowd: parsing the reservations file (docs/edge.md "Reservations across
 * restarts"), without I/O: the text in, one callback per usable entry out,
 * so the loader (edge_state.c) and the fuzz target share it. */
#ifndef BW_EDGE_EDGE_STATE_PARSE_H
#define BW_EDGE_EDGE_STATE_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define BW_EDGE_STATE_VERSION 1
/* Longest file accepted: a longer one is not one burrowd wrote (each entry
 * takes under 400 bytes, so this is tens of thousands of addresses). */
#define BW_EDGE_STATE_MAX (16u << 20)

/* One address kept for a client, as read from the file. The strings are
 * borrowed from the parsed document and live only during the callback. */
typedef struct bw_edge_hold {
    const char *client_id;    /* 1..32 characters */
    const char *token_sha256; /* 64 lowercase hex digits */
    int port;                 /* 1..65535 for a tcp port, 0 for a name */
    const char *host;         /* lowercased, valid hostname; NULL for a port */
    int scheme;               /* BW_SCHEME_* for a name */
    uint64_t left_ms;         /* how long it stays held from now: 1..grace_ms */
} bw_edge_hold_t;

/* Called for each usable entry; non-zero counts the entry as malformed. */
typedef int (*bw_edge_hold_cb)(void *arg, const bw_edge_hold_t *h);

/* Parse the reservations file text buf[0..len) at wall-clock time now_ms
 * (ms since the epoch), calling cb for each entry still held. Entries that
 * expired are dropped silently, malformed ones (and a port listed again)
 * are skipped and counted in *n_bad; *n_ok counts the entries cb accepted.
 * Returns 0; BW_EINVAL with the reason in why when the text as a whole is
 * not a version 1 reservations file, or BW_ENOMEM (nothing is then
 * reported). */
int bw_edge_state_parse(const char *buf, size_t len, uint64_t now_ms, uint64_t grace_ms,
                        bw_edge_hold_cb cb, void *arg, size_t *n_ok, size_t *n_bad, char *why,
                        size_t whylen);

#endif /* BW_EDGE_EDGE_STATE_PARSE_H */
