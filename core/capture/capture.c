/* The capture store behind /api/requests/http: ids, the ring of entries,
 * eviction, and the heads writers add. Raw bytes are in capture_raw.c, the
 * JSON shapes in capture_json.c. See capture.h. */
#include "capture.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <burrow/error.h>

#include "capture_int.h"
#include "http_text.h"
#include "util.h"

/* ----- ids ------------------------------------------------------------------ */

static void random_payload(bw_capture_store_t *s, unsigned char *out)
{
    if (bw_random_bytes(out, KSUID_PAYLOAD) == 0)
        return;
    /* Uniqueness comes from the counter, not the randomness, so splitmix64
     * is an acceptable stand-in when the kernel pool is unavailable. */
    for (size_t got = 0; got < KSUID_PAYLOAD; got++) {
        uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        out[got] = (unsigned char)(z ^ (z >> 31));
    }
}

/* Add one to a big-endian number; returns 1 on overflow. */
static int increment(unsigned char *p, size_t n)
{
    while (n--) {
        if (++p[n] != 0)
            return 0;
    }
    return 1;
}

static void base62(const unsigned char raw[4 + KSUID_PAYLOAD], char *out)
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uint32_t w[5];
    for (int i = 0; i < 5; i++)
        w[i] = (uint32_t)raw[4 * i] << 24 | (uint32_t)raw[4 * i + 1] << 16 |
               (uint32_t)raw[4 * i + 2] << 8 | raw[4 * i + 3];
    /* 62^27 > 2^160, so 27 divisions always consume the number. */
    for (int d = BASE62_LEN - 1; d >= 0; d--) {
        uint64_t rem = 0;
        for (int i = 0; i < 5; i++) {
            uint64_t v = rem << 32 | w[i];
            w[i] = (uint32_t)(v / 62);
            rem = v % 62;
        }
        out[d] = digits[rem];
    }
}

int64_t bw__capture_floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

/* The entry's KSUID: its text is made only when the entry is shown. */
static void next_id(bw_capture_store_t *s, int64_t start_ns, unsigned char raw[4 + KSUID_PAYLOAD])
{
    int64_t d = bw__capture_floor_div(start_ns, NS_PER_SEC) - KSUID_EPOCH;
    uint32_t ts = d < 0 ? 0 : d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;

    /* A clock that steps back reuses the last second so ids keep rising. */
    if (s->have_last && ts <= s->last_ts) {
        ts = s->last_ts;
        if (increment(s->last_payload, KSUID_PAYLOAD) && ts < UINT32_MAX)
            ts++;
    } else {
        random_payload(s, s->last_payload);
    }
    s->have_last = 1;
    s->last_ts = ts;
    raw[0] = (unsigned char)(ts >> 24);
    raw[1] = (unsigned char)(ts >> 16);
    raw[2] = (unsigned char)(ts >> 8);
    raw[3] = (unsigned char)ts;
    memcpy(raw + 4, s->last_payload, KSUID_PAYLOAD);
}

void bw__capture_id_text(const bw_capture_t *e, char out[BW_CAPTURE_ID_LEN + 1])
{
    memcpy(out, ID_PREFIX, strlen(ID_PREFIX));
    base62(e->ksuid, out + strlen(ID_PREFIX));
    out[BW_CAPTURE_ID_LEN] = '\0';
}

static int digit62(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 36;
    return -1;
}

/* The KSUID of an id's text; < 0 when it is not one (a bad digit, or a
 * number past 160 bits, which no id encodes). */
static int id_parse(const char *id, unsigned char raw[4 + KSUID_PAYLOAD])
{
    uint32_t w[5] = {0};
    if (!id || strlen(id) != BW_CAPTURE_ID_LEN || memcmp(id, ID_PREFIX, strlen(ID_PREFIX)) != 0)
        return -1;
    for (const char *p = id + strlen(ID_PREFIX); *p; p++) {
        int v = digit62(*p);
        if (v < 0)
            return -1;
        uint64_t carry = (uint64_t)v;
        for (int i = 4; i >= 0; i--) {
            uint64_t x = (uint64_t)w[i] * 62 + carry;
            w[i] = (uint32_t)x;
            carry = x >> 32;
        }
        if (carry)
            return -1;
    }
    for (int i = 0; i < 5; i++) {
        raw[4 * i] = (unsigned char)(w[i] >> 24);
        raw[4 * i + 1] = (unsigned char)(w[i] >> 16);
        raw[4 * i + 2] = (unsigned char)(w[i] >> 8);
        raw[4 * i + 3] = (unsigned char)w[i];
    }
    return 0;
}

/* ----- store ring ------------------------------------------------------------- */

bw_capture_t *bw__capture_ring_at(const bw_capture_store_t *s, size_t i)
{
    return s->ring[(s->ring_head + i) % s->ring_cap];
}

static int ring_push(bw_capture_store_t *s, bw_capture_t *e)
{
    if (s->count == s->ring_cap) {
        size_t cap = s->ring_cap ? s->ring_cap * 2 : 64;
        bw_capture_t **r = malloc(cap * sizeof(*r));
        if (!r)
            return BW_ENOMEM;
        for (size_t i = 0; i < s->count; i++)
            r[i] = bw__capture_ring_at(s, i);
        free(s->ring);
        s->ring = r;
        s->ring_cap = cap;
        s->ring_head = 0;
    }
    s->ring[(s->ring_head + s->count) % s->ring_cap] = e;
    s->count++;
    return 0;
}

static bw_capture_t *ring_pop(bw_capture_store_t *s)
{
    bw_capture_t *e = s->ring[s->ring_head];
    s->ring_head = (s->ring_head + 1) % s->ring_cap;
    s->count--;
    return e;
}

/* Ids rise with insertion, so the ring is sorted by id; base62 digits of
 * one width sort as the numbers they spell, so comparing KSUIDs is
 * comparing ids. */
bw_capture_t *bw__capture_lookup(const bw_capture_store_t *s, const char *id)
{
    size_t lo = 0, hi = s ? s->count : 0;
    unsigned char want[4 + KSUID_PAYLOAD];
    if (id_parse(id, want) != 0)
        return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        bw_capture_t *e = bw__capture_ring_at(s, mid);
        int c = memcmp(e->ksuid, want, sizeof want);
        if (c == 0)
            return e;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ----- entries ---------------------------------------------------------------- */

void bw__capture_account(bw_capture_t *e, size_t add, size_t sub)
{
    e->bytes = e->bytes + add - sub;
    e->store->bytes = e->store->bytes + add - sub;
}

/* Free what the entry holds and unlist it from the accounting; the shell
 * (id, flags) stays for a writer that still holds it. */
static void detach(bw_capture_t *e)
{
    if (!e->store)
        return;
    e->store->bytes -= e->bytes;
    e->bytes = 0;
    e->store = NULL;
    for (int d = 0; d < 2; d++) {
        e->head[d] = NULL;
        e->raw[d].q = (bw_chunkq_t){0}; /* the chunks go with the blocks */
    }
    while (e->blocks) {
        block_t *b = e->blocks;
        e->blocks = b->next;
        free(b);
    }
    e->arena = NULL;
    e->arena_left = 0;
}

#define ALIGN(n)     (((n) + 15u) & ~(size_t)15u)
#define ARENA_MIN    1024u /* the smallest arena a new entry gets, and a block */
#define ARENA_MAX    8192u /* the largest arena a new entry gets up front */
#define BLOCK_HEADER ALIGN(sizeof(block_t))

void *bw__capture_alloc(bw_capture_t *e, size_t n)
{
    n = ALIGN(n);
    e->used += n;
    if (n <= e->arena_left) {
        void *p = e->arena;
        e->arena += n;
        e->arena_left -= n;
        return p;
    }
    size_t cap = n < ARENA_MIN ? ARENA_MIN : n;
    block_t *b = malloc(BLOCK_HEADER + cap);
    if (!b)
        return NULL;
    b->size = BLOCK_HEADER + cap;
    b->next = e->blocks;
    e->blocks = b;
    bw__capture_account(e, b->size, 0);
    unsigned char *p = (unsigned char *)b + BLOCK_HEADER;
    if (cap - n > e->arena_left) { /* the new block has more room left */
        e->arena = p + n;
        e->arena_left = cap - n;
    }
    return p;
}

static void unref(bw_capture_t *e)
{
    if (--e->refs > 0)
        return;
    detach(e);
    free(e);
}

static void evict_oldest(bw_capture_store_t *s)
{
    bw_capture_t *e = ring_pop(s);
    detach(e);
    unref(e);
}

/* The oldest entries are long out of the cache when a full store evicts
 * them, one per new exchange: fetch what the next evictions will touch ahead
 * of them rather than wait on it. That is the entry after next (its fields),
 * and for the next one, whose fields the previous call fetched, what free()
 * reads: the header of the allocation after its own, and its extra blocks. */
static void prefetch_oldest(const bw_capture_store_t *s)
{
    if (s->count > 1) {
        const char *next = (const char *)bw__capture_ring_at(s, 1);
        for (size_t off = 0; off < sizeof(bw_capture_t); off += 64)
            __builtin_prefetch(next + off);
    }
    if (s->count == 0)
        return;
    const bw_capture_t *e = bw__capture_ring_at(s, 0);
    __builtin_prefetch((const char *)e + e->alloc);
    for (const block_t *b = e->blocks; b; b = b->next)
        __builtin_prefetch((const char *)b + b->size);
}

void bw__capture_enforce(bw_capture_store_t *s)
{
    int evicted = 0;
    while (s->bytes > s->budget && s->count > 0) {
        evict_oldest(s);
        evicted = 1;
    }
    if (evicted)
        prefetch_oldest(s);
}

bw_capture_store_t *bw_capture_store_new(int64_t db_size, size_t max_raw)
{
    bw_capture_store_t *s;
    if (db_size < -1)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->disabled = db_size == -1;
    s->budget = db_size <= 0 ? BW_CAPTURE_DEFAULT_DB_SIZE : (size_t)db_size;
    s->max_raw = max_raw ? max_raw : BW_CAPTURE_DEFAULT_MAX_RAW;
    /* One entry can never keep more than the whole budget. */
    if (s->max_raw > s->budget)
        s->max_raw = s->budget;
    s->rng = (uint64_t)(uintptr_t)s ^ (uint64_t)time(NULL);
    return s;
}

void bw_capture_store_clear(bw_capture_store_t *s)
{
    if (!s)
        return;
    while (s->count > 0)
        evict_oldest(s);
}

void bw_capture_store_free(bw_capture_store_t *s)
{
    if (!s)
        return;
    bw_capture_store_clear(s);
    free(s->ring);
    free(s);
}

int bw_capture_store_disabled(const bw_capture_store_t *s)
{
    return !s || s->disabled;
}

size_t bw_capture_store_bytes(const bw_capture_store_t *s)
{
    return s ? s->bytes : 0;
}

size_t bw_capture_store_count(const bw_capture_store_t *s)
{
    return s ? s->count : 0;
}

bw_capture_t *bw_capture_begin(bw_capture_store_t *s, const char *tunnel_name,
                               const char *remote_ip, int64_t start_unix_ns)
{
    bw_capture_t *e;
    if (!s || s->disabled)
        return NULL;
    tunnel_name = tunnel_name ? tunnel_name : "";
    remote_ip = remote_ip ? remote_ip : "";
    /* The entry, its two strings and its arena in one allocation (see
     * capture_int.h), the arena as big as recent exchanges needed. */
    size_t tn = strlen(tunnel_name) + 1, rn = strlen(remote_ip) + 1;
    size_t head = ALIGN(sizeof(*e) + tn + rn), arena = s->arena_hint ? s->arena_hint : ARENA_MIN;
    e = malloc(head + arena);
    if (!e)
        return NULL;
    /* The memory is an evicted entry's, cold: fetch it all now, in parallel,
     * rather than line by line as the heads and bytes arrive. */
    for (size_t off = 0; off < head + arena; off += 64)
        __builtin_prefetch((char *)e + off, 1);
    memset(e, 0, sizeof(*e));
    e->tunnel_name = memcpy(e->strings, tunnel_name, tn);
    e->remote_addr = memcpy(e->strings + tn, remote_ip, rn);
    e->arena = (unsigned char *)e + head;
    e->arena_left = arena;
    e->alloc = head + arena;
    if (ring_push(s, e) != 0) {
        free(e);
        return NULL;
    }
    e->store = s;
    e->refs = 2;
    e->start_ns = start_unix_ns;
    next_id(s, start_unix_ns, e->ksuid);
    bw__capture_account(e, head + arena + sizeof(e), 0);
    bw__capture_enforce(s);
    return e;
}

/* ----- heads ------------------------------------------------------------------ */

char *bw_capture_canonical_key(const char *name, size_t len, char *out)
{
    int upper = 1;
    if (len) /* a header without a name may come as (NULL, 0) */
        memcpy(out, name, len);
    out[len] = '\0';
    for (size_t i = 0; i < len; i++) {
        if (!bw_http_is_tchar((unsigned char)name[i]))
            return out;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = out[i];
        if (upper && ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        else if (!upper && ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        out[i] = ch;
        upper = ch == '-';
    }
    return out;
}

static size_t slen(const char *p)
{
    return p ? strlen(p) + 1 : 1;
}

/* Copy a C string (NULL as "") to *cur and advance it. */
static const char *put_str(char **cur, const char *src)
{
    char *dst = *cur;
    size_t n = src ? strlen(src) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
    *cur += n + 1;
    return dst;
}

static int head_size(const bw_http_head_t *h, size_t *out)
{
    size_t n = sizeof(head_t) + h->n_headers * sizeof(hdr_t);
    n += slen(h->method) + slen(h->uri) + slen(h->proto) + slen(h->reason);
    for (size_t i = 0; i < h->n_headers; i++) {
        const bw_http_header_t *x = &h->headers[i];
        if ((!x->name && x->name_len) || (!x->value && x->value_len))
            return BW_EINVAL;
        n += x->name_len + x->value_len + 2;
    }
    *out = n;
    return 0;
}

static head_t *head_copy(const bw_http_head_t *h, size_t size, head_t *c)
{
    char *cur;
    c->size = size;
    c->n = h->n_headers;
    c->h = (hdr_t *)(c + 1);
    cur = (char *)(c->h + c->n);
    c->method = put_str(&cur, h->method);
    c->uri = put_str(&cur, h->uri);
    c->proto = put_str(&cur, h->proto);
    c->reason = put_str(&cur, h->reason);
    c->status = h->status;
    for (size_t i = 0; i < c->n; i++) {
        const bw_http_header_t *x = &h->headers[i];
        c->h[i].name = cur; /* as sent; made canonical when shown */
        c->h[i].name_len = x->name_len;
        if (x->name_len)
            memcpy(cur, x->name, x->name_len);
        cur[x->name_len] = '\0';
        cur += x->name_len + 1;
        c->h[i].value = cur;
        c->h[i].value_len = x->value_len;
        if (x->value_len)
            memcpy(cur, x->value, x->value_len);
        cur[x->value_len] = '\0';
        cur += x->value_len + 1;
    }
    return c;
}

int bw__capture_check_dir(const bw_capture_t *c, bw_capture_dir_t dir)
{
    if (!c || (dir != BW_CAPTURE_REQUEST && dir != BW_CAPTURE_RESPONSE))
        return BW_EINVAL;
    return 0;
}

int bw_capture_head(bw_capture_t *c, bw_capture_dir_t dir, const bw_http_head_t *head)
{
    int d = dir - 1, rc;
    size_t size;
    head_t *copy;

    if (bw__capture_check_dir(c, dir) != 0 || !head || head->struct_size < HEAD_V1_SIZE ||
        (head->n_headers && !head->headers))
        return BW_EINVAL;
    if ((rc = head_size(head, &size)) != 0)
        return rc;
    if (!c->store)
        return 0; /* evicted: the exchange goes on, uncaptured */
    /* A replaced head's room stays with the entry until it goes. */
    copy = bw__capture_alloc(c, size);
    if (!copy)
        return BW_ENOMEM;
    c->head[d] = head_copy(head, size, copy);
    bw__capture_enforce(c->store);
    return 0;
}

void bw_capture_req_state(bw_capture_t *c, bw_capture_req_t state)
{
    if (c && c->req != BW_CAPTURE_REQ_ERROR)
        c->req = state;
}

void bw_capture_end(bw_capture_t *c, uint64_t duration_ns)
{
    if (!c || c->ended)
        return;
    c->ended = 1;
    c->duration_ns = duration_ns;
    if (c->store) { /* the next entries' arena: about what recent ones used */
        size_t want = c->used < ARENA_MIN ? ARENA_MIN : c->used > ARENA_MAX ? ARENA_MAX : c->used;
        size_t hint = c->store->arena_hint ? c->store->arena_hint : want;
        c->store->arena_hint = ALIGN((3 * hint + want) / 4);
    }
    if (c->req == BW_CAPTURE_REQ_READING)
        c->req = BW_CAPTURE_REQ_DONE;
    unref(c);
}

const char *bw_capture_id(bw_capture_t *c)
{
    if (!c)
        return NULL;
    if (!c->id[0])
        bw__capture_id_text(c, c->id);
    return c->id;
}
