/* What the parts of the capture store share: capture.c (ids, the ring,
 * entries and their heads), capture_raw.c (raw bytes, replay, downloads) and
 * capture_json.c (the JSON shapes of entries). */
#ifndef BW_CAPTURE_CAPTURE_INT_H
#define BW_CAPTURE_CAPTURE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "capture.h"
#include "chunkq.h"

#define KSUID_EPOCH   1400000000LL
#define KSUID_PAYLOAD 16
#define ID_PREFIX     "airt_"
#define BASE62_LEN    27
#define CHUNK_MIN     512
#define CHUNK_MAX     65536 /* growth stops here: chunks stay cheap to allocate */
#define NS_PER_SEC    1000000000LL

/* The first bw_http_head_t: every field up to n_headers. */
#define HEAD_V1_SIZE (offsetof(bw_http_head_t, n_headers) + sizeof(size_t))

typedef struct hdr {
    char *name; /* as sent: capture_json.c shows it canonical */
    size_t name_len;
    char *value;
    size_t value_len;
} hdr_t;

/* A parsed head and all its strings in one allocation. */
typedef struct head {
    size_t size; /* bytes of the allocation, for accounting */
    const char *method, *uri, *proto, *reason;
    int status;
    size_t n;
    hdr_t *h;
} head_t;

/* One direction's raw bytes: the first `kept` of the `seen` wire bytes, in
 * chunks that grow with what is kept (capture_raw.c), carved from the
 * entry's memory (bw__capture_alloc). `kept` outlives the chunks when an
 * entry is evicted. */
typedef struct rawbuf {
    bw_chunkq_t q;
    uint64_t seen, kept;
} rawbuf_t;

/* An allocation an entry made beyond its own, freed with its parts. */
typedef struct block {
    struct block *next;
    size_t size; /* of the whole allocation, for accounting */
} block_t;

/* An entry's memory. The entry starts its own allocation, followed by its
 * two strings and an arena from which its heads and raw chunks are carved;
 * what does not fit goes to more blocks. A typical exchange therefore costs
 * one malloc and one free, and its parts lie together: a full store evicts
 * an entry for every new one, and the entries it evicts are cold. */
struct bw_capture {
    bw_capture_store_t *store; /* NULL once evicted, cleared or the store freed */
    unsigned refs;             /* the store's listing + the writer's handle */
    int ended;
    bw_capture_req_t req;
    /* The KSUID (4-byte time, payload) big-endian: ids compare as these
     * bytes. Its text is made when shown; `id` caches it for bw_capture_id. */
    unsigned char ksuid[4 + KSUID_PAYLOAD];
    char id[BW_CAPTURE_ID_LEN + 1];
    const char *tunnel_name, *remote_addr; /* in strings[] */
    int64_t start_ns;
    uint64_t duration_ns;
    head_t *head[2];
    rawbuf_t raw[2];
    size_t bytes;         /* accounted to the store while listed */
    size_t used;          /* bytes its heads and chunks asked for: sizes the next entry */
    size_t alloc;         /* bytes of its own allocation */
    unsigned char *arena; /* free room for heads and chunks */
    size_t arena_left;
    block_t *blocks; /* further allocations, freed when the entry is detached */
    char strings[];
};

struct bw_capture_store {
    int disabled;
    size_t budget, max_raw;
    size_t bytes;
    /* Listed entries oldest first, which is id order: a ring so eviction
     * pops the front in O(1) and lookups binary-search by id. */
    bw_capture_t **ring;
    size_t ring_cap, ring_head, count;
    /* KSUID state: ids within one second count up from a random payload. */
    int have_last;
    uint32_t last_ts;
    unsigned char last_payload[KSUID_PAYLOAD];
    uint64_t rng;      /* fallback when getrandom() fails */
    size_t arena_hint; /* arena size for a new entry: what recent ones used */
};

/* capture.c */

/* a / b rounded towards minus infinity. */
int64_t bw__capture_floor_div(int64_t a, int64_t b);
/* The entry's id as text ("airt_" and 27 base62 digits). */
void bw__capture_id_text(const bw_capture_t *e, char out[BW_CAPTURE_ID_LEN + 1]);
/* The i-th listed entry, oldest first (i < s->count). */
bw_capture_t *bw__capture_ring_at(const bw_capture_store_t *s, size_t i);
/* The listed entry with this id, or NULL. */
bw_capture_t *bw__capture_lookup(const bw_capture_store_t *s, const char *id);
/* Add `add` and remove `sub` bytes from the entry's share of the store. */
void bw__capture_account(bw_capture_t *e, size_t add, size_t sub);
/* Evict the oldest entries until the store is within its budget. */
void bw__capture_enforce(bw_capture_store_t *s);
/* `n` bytes (16-aligned) from the entry's memory, valid until it is
 * detached; NULL when out of memory. Accounts any new block to the store
 * without enforcing the budget (the caller does, once it is done). */
void *bw__capture_alloc(bw_capture_t *e, size_t n);
/* 0 when c may still record `dir`, < 0 otherwise. */
int bw__capture_check_dir(const bw_capture_t *c, bw_capture_dir_t dir);

#endif /* BW_CAPTURE_CAPTURE_INT_H */
