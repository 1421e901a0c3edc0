/* A FIFO of byte chunks: bytes queued for a transport that cannot take them
 * yet, or received before their reader wants them.
 *
 * Ownership: the queue owns every chunk in it and copies what it is given;
 * bw_chunkq_pop hands the first chunk to the caller, who frees it with
 * free(). Start from a zeroed queue ({0}); bw_chunkq_clear frees everything.
 *
 * Bounds: the queue itself never refuses bytes except on ENOMEM; the caller
 * bounds it by watching `bytes` (e.g. against BW_STREAM_HWM) and stops its
 * producer. A chunk holds at most max(len, min_cap) bytes, so an append
 * costs one allocation at most.
 *
 * Not thread-safe; nothing here calls back. */
#ifndef BW_CORE_CHUNKQ_H
#define BW_CORE_CHUNKQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct bw_chunk {
    struct bw_chunk *next;
    size_t off, len, cap; /* bytes [off, off+len) of data[cap] are queued */
    uint8_t data[];
} bw_chunk_t;

typedef struct bw_chunkq {
    bw_chunk_t *head, *tail;
    size_t bytes; /* sum of the chunks' len */
} bw_chunkq_t;

/* Append a copy of p[len]: into the last chunk's spare room first, the rest
 * into a new chunk of at least min_cap bytes (0: exactly what is left).
 * Returns 0, or BW_ENOMEM, in which case a prefix of p may have been
 * queued (`bytes` says how much). */
int bw_chunkq_push(bw_chunkq_t *q, const void *p, size_t len, size_t min_cap);

/* The two halves of bw_chunkq_push, for callers that allocate chunks
 * themselves: copy what fits of p[len] into the last chunk's spare room
 * (returns how much), and append a chunk the caller allocated and filled
 * (its `len` bytes count; off and cap as the caller set them). The queue
 * then owns the chunk only as far as the caller's allocator says: such
 * callers must not use bw_chunkq_pop, bw_chunkq_drop or bw_chunkq_clear. */
size_t bw_chunkq_fill(bw_chunkq_t *q, const void *p, size_t len);
void bw_chunkq_append(bw_chunkq_t *q, bw_chunk_t *c);

/* Put a copy of p[len] in front of everything queued (a reader giving bytes
 * back). Returns 0 or BW_ENOMEM (queue unchanged). */
int bw_chunkq_push_front(bw_chunkq_t *q, const void *p, size_t len);

/* Remove and return the first chunk (NULL when empty); the caller owns it
 * and frees it with free(). Its bytes are data + off, len. */
bw_chunk_t *bw_chunkq_pop(bw_chunkq_t *q);

/* Drop the first n bytes (n <= bytes), freeing chunks that empty. */
void bw_chunkq_drop(bw_chunkq_t *q, size_t n);

/* Point segs/lens at up to nseg pieces from the front, max bytes in all.
 * Returns the number of segments used; *total gets their byte count. The
 * pointers are valid until the queue changes. */
unsigned bw_chunkq_gather(const bw_chunkq_t *q, size_t max, const void **segs, size_t *lens,
                          unsigned nseg, size_t *total);

/* Free every chunk; the queue is empty (and reusable) afterwards. */
void bw_chunkq_clear(bw_chunkq_t *q);

static inline int bw_chunkq_empty(const bw_chunkq_t *q)
{
    return q->head == NULL;
}

#endif /* BW_CORE_CHUNKQ_H */
