/* Raw bytes of captured exchanges: kept in a chunk queue of growing chunks
 * up to the per-direction cap, and copied out for replay and downloads. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <burrow/error.h>

#include "capture_int.h"
#include "util.h"

/* ----- raw bytes -------------------------------------------------------------- */

/* The size of a new chunk once `kept` bytes are held and `room` more may
 * be: as big as what is kept so far (at least CHUNK_MIN, at most CHUNK_MAX)
 * so the number of chunks grows logarithmically, then linearly in 64 KiB
 * steps; never beyond what the cap still allows. The queue makes a chunk
 * bigger when the bytes it must hold need it. */
static size_t chunk_cap(uint64_t kept, size_t room)
{
    size_t cap = kept < CHUNK_MIN ? CHUNK_MIN : kept > CHUNK_MAX ? CHUNK_MAX : (size_t)kept;
    return cap > room ? room : cap;
}

/* Append p[n] to r: into the last chunk's spare room, then a new chunk from
 * the entry's memory sized by chunk_cap (`room`: what the cap still allows
 * after the spare room). Returns 0 or BW_ENOMEM (a prefix may be kept). */
static int raw_push(bw_capture_t *c, rawbuf_t *r, const unsigned char *p, size_t n, size_t room)
{
    size_t k = bw_chunkq_fill(&r->q, p, n);
    if (k == n)
        return 0;
    size_t cap = chunk_cap(r->q.bytes, room - k);
    cap = cap < n - k ? n - k : cap;
    bw_chunk_t *ch = bw__capture_alloc(c, sizeof(bw_chunk_t) + cap);
    if (!ch)
        return BW_ENOMEM;
    *ch = (bw_chunk_t){.len = n - k, .cap = cap};
    memcpy(ch->data, p + k, n - k);
    bw_chunkq_append(&r->q, ch);
    return 0;
}

int bw_capture_raw(bw_capture_t *c, bw_capture_dir_t dir, const void *data, size_t len)
{
    rawbuf_t *r;
    size_t room, take;
    int rc;

    if (bw__capture_check_dir(c, dir) != 0 || (!data && len))
        return BW_EINVAL;
    if (!c->store)
        return 0;
    r = &c->raw[dir - 1];
    r->seen += len;
    room = r->kept < c->store->max_raw ? c->store->max_raw - (size_t)r->kept : 0;
    take = len < room ? len : room;
    if (take == 0)
        return 0;
    rc = raw_push(c, r, data, take, room);
    r->kept = r->q.bytes;          /* on ENOMEM a prefix may have been kept */
    bw__capture_enforce(c->store); /* may evict c itself */
    return rc;
}

/* ----- replay ----------------------------------------------------------------- */

static void *raw_copy(const rawbuf_t *r)
{
    unsigned char *out = malloc(r->kept ? (size_t)r->kept : 1), *o = out;
    if (!out)
        return NULL;
    for (const bw_chunk_t *c = r->q.head; c; c = c->next) {
        memcpy(o, c->data + c->off, c->len);
        o += c->len;
    }
    return out;
}

int bw_capture_store_replay(const bw_capture_store_t *s, const char *id, bw_capture_replay_t *why,
                            void **raw, size_t *len, char **tunnel_name)
{
    const bw_capture_t *e = bw__capture_lookup(s, id);
    *raw = NULL;
    *len = 0;
    *tunnel_name = NULL;
    *why = BW_CAPTURE_REPLAY_OK;
    if (!e)
        return BW_ENOENT;
    if (e->raw[0].seen > e->raw[0].kept)
        *why = BW_CAPTURE_REPLAY_PARTIAL;
    else if (e->req == BW_CAPTURE_REQ_READING)
        *why = BW_CAPTURE_REPLAY_READING;
    else if (e->req == BW_CAPTURE_REQ_ERROR)
        *why = BW_CAPTURE_REPLAY_READ_ERROR;
    if (*why != BW_CAPTURE_REPLAY_OK)
        return 0;
    *raw = raw_copy(&e->raw[0]);
    *tunnel_name = bw_strdup(e->tunnel_name);
    if (!*raw || !*tunnel_name) {
        free(*raw);
        free(*tunnel_name);
        *raw = NULL;
        *tunnel_name = NULL;
        return BW_ENOMEM;
    }
    *len = (size_t)e->raw[0].kept;
    return 0;
}

/* ----- downloads ----------------------------------------------------------------- */

int bw_capture_store_raw(const bw_capture_store_t *s, const char *id, bw_capture_dir_t dir,
                         void **raw, size_t *len)
{
    const bw_capture_t *e = bw__capture_lookup(s, id);
    *raw = NULL;
    *len = 0;
    if (!e)
        return BW_ENOENT;
    if (dir != BW_CAPTURE_REQUEST && dir != BW_CAPTURE_RESPONSE)
        return BW_EINVAL;
    const rawbuf_t *r = &e->raw[dir == BW_CAPTURE_REQUEST ? 0 : 1];
    *raw = raw_copy(r);
    if (!*raw)
        return BW_ENOMEM;
    *len = (size_t)r->kept;
    return 0;
}

const char *bw_capture_store_remote_addr(const bw_capture_store_t *s, const char *id)
{
    const bw_capture_t *e = bw__capture_lookup(s, id);
    return e ? e->remote_addr : NULL;
}
