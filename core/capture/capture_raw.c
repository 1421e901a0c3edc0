/* Raw bytes of captured exchanges: kept in growing chunks up to the
 * per-direction cap, and copied out for replay and downloads. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <burrow/error.h>

#include "capture_int.h"
#include "util.h"

/* ----- raw bytes -------------------------------------------------------------- */

static size_t fill_last(rawbuf_t *r, const unsigned char *p, size_t n)
{
    chunk_t *c = r->last;
    size_t take;
    if (!c || c->len == c->cap)
        return 0;
    take = c->cap - c->len < n ? c->cap - c->len : n;
    memcpy(c->data + c->len, p, take);
    c->len += take;
    return take;
}

/* Append a chunk holding p[n]: at least as big as what is kept so far (up to
 * CHUNK_MAX) so the number of chunks grows logarithmically, then linearly in
 * 64 KiB steps; never beyond what the cap still allows. */
static chunk_t *new_chunk(rawbuf_t *r, size_t n, size_t room)
{
    size_t cap = r->kept < CHUNK_MIN ? CHUNK_MIN : r->kept > CHUNK_MAX ? CHUNK_MAX : r->kept;
    chunk_t *c;
    if (cap > room)
        cap = room;
    if (cap < n)
        cap = n;
    c = malloc(sizeof(*c) + cap);
    if (!c)
        return NULL;
    c->next = NULL;
    c->len = 0;
    c->cap = cap;
    if (r->last)
        r->last->next = c;
    else
        r->first = c;
    r->last = c;
    return c;
}

int bw_capture_raw(bw_capture_t *c, bw_capture_dir_t dir, const void *data, size_t len)
{
    const unsigned char *p = data;
    rawbuf_t *r;
    size_t room, take, done;
    chunk_t *ch;

    if (bw__capture_check_dir(c, dir) != 0 || (!data && len))
        return BW_EINVAL;
    if (!c->store)
        return 0;
    r = &c->raw[dir - 1];
    r->seen += len;
    room = r->kept < c->store->max_raw ? c->store->max_raw - (size_t)r->kept : 0;
    take = len < room ? len : room;
    done = fill_last(r, p, take);
    r->kept += done;
    if (done == take)
        goto out;
    ch = new_chunk(r, take - done, room - done);
    if (!ch)
        return BW_ENOMEM;
    memcpy(ch->data, p + done, take - done);
    ch->len = take - done;
    r->kept += ch->len;
    bw__capture_account(c, sizeof(*ch) + ch->cap, 0);
    bw__capture_enforce(c->store);
out:
    return 0;
}

/* ----- replay ----------------------------------------------------------------- */

static void *raw_copy(const rawbuf_t *r)
{
    unsigned char *out = malloc(r->kept ? (size_t)r->kept : 1), *o = out;
    if (!out)
        return NULL;
    for (const chunk_t *c = r->first; c; c = c->next) {
        memcpy(o, c->data, c->len);
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
