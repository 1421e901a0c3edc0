/* The capture store behind /api/requests/http. See capture.h. */
#include "capture.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <burrow/error.h>

#include "util.h"

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
    char *name; /* canonical */
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

typedef struct chunk {
    struct chunk *next;
    size_t len, cap;
    unsigned char data[];
} chunk_t;

typedef struct rawbuf {
    chunk_t *first, *last;
    uint64_t seen, kept;
} rawbuf_t;

struct bw_capture {
    bw_capture_store_t *store; /* NULL once evicted, cleared or the store freed */
    unsigned refs;             /* the store's listing + the writer's handle */
    int ended;
    bw_capture_req_t req;
    char id[BW_CAPTURE_ID_LEN + 1];
    char *tunnel_name, *remote_addr;
    int64_t start_ns;
    uint64_t duration_ns;
    head_t *head[2];
    rawbuf_t raw[2];
    size_t bytes; /* accounted to the store while listed */
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
    uint64_t rng; /* fallback when getrandom() fails */
};

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

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

static void next_id(bw_capture_store_t *s, int64_t start_ns, char *out)
{
    int64_t d = floor_div(start_ns, NS_PER_SEC) - KSUID_EPOCH;
    uint32_t ts = d < 0 ? 0 : d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    unsigned char raw[4 + KSUID_PAYLOAD];

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
    memcpy(out, ID_PREFIX, strlen(ID_PREFIX));
    base62(raw, out + strlen(ID_PREFIX));
    out[BW_CAPTURE_ID_LEN] = '\0';
}

/* ----- store ring ------------------------------------------------------------- */

static bw_capture_t *ring_at(const bw_capture_store_t *s, size_t i)
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
            r[i] = ring_at(s, i);
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

/* Ids rise with insertion, so the ring is sorted by id. */
static bw_capture_t *lookup(const bw_capture_store_t *s, const char *id)
{
    size_t lo = 0, hi = s ? s->count : 0;
    if (!id || strlen(id) != BW_CAPTURE_ID_LEN)
        return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        bw_capture_t *e = ring_at(s, mid);
        int c = memcmp(e->id, id, BW_CAPTURE_ID_LEN);
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

static void account(bw_capture_t *e, size_t add, size_t sub)
{
    e->bytes = e->bytes + add - sub;
    e->store->bytes = e->store->bytes + add - sub;
}

static void raw_free(rawbuf_t *r)
{
    chunk_t *c = r->first;
    while (c) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
    r->first = r->last = NULL;
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
        free(e->head[d]);
        e->head[d] = NULL;
        raw_free(&e->raw[d]);
    }
    free(e->tunnel_name);
    free(e->remote_addr);
    e->tunnel_name = e->remote_addr = NULL;
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

static void enforce(bw_capture_store_t *s)
{
    while (s->bytes > s->budget && s->count > 0)
        evict_oldest(s);
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
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->tunnel_name = bw_strdup(tunnel_name ? tunnel_name : "");
    e->remote_addr = bw_strdup(remote_ip ? remote_ip : "");
    if (!e->tunnel_name || !e->remote_addr || ring_push(s, e) != 0)
        goto err;
    e->store = s;
    e->refs = 2;
    e->start_ns = start_unix_ns;
    next_id(s, start_unix_ns, e->id);
    account(e, sizeof(*e) + sizeof(e) + strlen(e->tunnel_name) + strlen(e->remote_addr) + 2, 0);
    enforce(s);
    return e;
err:
    free(e->tunnel_name);
    free(e->remote_addr);
    free(e);
    return NULL;
}

/* ----- heads ------------------------------------------------------------------ */

/* RFC 7230 tchar, as a table: this runs for every byte of every captured
 * header name. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static int is_token(unsigned char ch)
{
    return tchar[ch];
}

char *bw_capture_canonical_key(const char *name, size_t len, char *out)
{
    int upper = 1;
    memcpy(out, name, len);
    out[len] = '\0';
    for (size_t i = 0; i < len; i++) {
        if (!is_token((unsigned char)name[i]))
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

static head_t *head_copy(const bw_http_head_t *h, size_t size)
{
    head_t *c = malloc(size);
    char *cur;
    if (!c)
        return NULL;
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
        c->h[i].name = bw_capture_canonical_key(x->name ? x->name : "", x->name_len, cur);
        c->h[i].name_len = x->name_len;
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

static int check_dir(const bw_capture_t *c, bw_capture_dir_t dir)
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

    if (check_dir(c, dir) != 0 || !head || head->struct_size < HEAD_V1_SIZE ||
        (head->n_headers && !head->headers))
        return BW_EINVAL;
    if ((rc = head_size(head, &size)) != 0)
        return rc;
    if (!c->store)
        return 0; /* evicted: the exchange goes on, uncaptured */
    copy = head_copy(head, size);
    if (!copy)
        return BW_ENOMEM;
    account(c, size, c->head[d] ? c->head[d]->size : 0);
    free(c->head[d]);
    c->head[d] = copy;
    enforce(c->store);
    return 0;
}

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

    if (check_dir(c, dir) != 0 || (!data && len))
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
    account(c, sizeof(*ch) + ch->cap, 0);
    enforce(c->store);
out:
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
    if (c->req == BW_CAPTURE_REQ_READING)
        c->req = BW_CAPTURE_REQ_DONE;
    unref(c);
}

const char *bw_capture_id(const bw_capture_t *c)
{
    return c ? c->id : NULL;
}

/* ----- JSON ------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p[n], or 0 (as Go's decoder sees it:
 * no overlongs, surrogates or code points above U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    size_t len = p[0] < 0x80                    ? 1
                 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2
                 : (p[0] & 0xf0) == 0xe0        ? 3
                 : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
                                                : 0;
    uint32_t cp;
    if (len <= 1 || len > n)
        return len > n ? 0 : len;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    }
    if (len == 2)
        return 2;
    cp = len == 3
             ? (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu)
             : (p[0] & 0x07u) << 18 | (p[1] & 0x3fu) << 12 | (p[2] & 0x3fu) << 6 | (p[3] & 0x3fu);
    if ((len == 3 && cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff)) ||
        (len == 4 && cp >= 0x10000 && cp <= 0x10ffff))
        return len;
    return 0;
}

/* p[n] with each invalid byte replaced by U+FFFD, as encoding/json does.
 * Returns a new malloc()ed buffer (length in *out_len) or NULL. */
static char *utf8_fix(const char *p, size_t n, size_t *out_len)
{
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)p + i, n - i);
        if (k == 0) {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(o, p + i, k);
            o += k;
            i += k;
        }
    }
    *o = '\0';
    *out_len = (size_t)(o - out);
    return out;
}

static int utf8_valid(const char *p, size_t n)
{
    for (size_t i = 0, k; i < n; i += k) {
        if ((k = utf8_seq((const unsigned char *)p + i, n - i)) == 0)
            return 0;
    }
    return 1;
}

static json_t *jstr(const char *p, size_t n)
{
    size_t len;
    char *fixed;
    json_t *j;
    if (utf8_valid(p, n))
        return json_stringn_nocheck(p, n);
    if (!(fixed = utf8_fix(p, n, &len)))
        return NULL;
    j = json_stringn_nocheck(fixed, len);
    free(fixed);
    return j;
}

/* Add `value` under `name`, creating the array on first sight. */
static int add_header(json_t *obj, const char *name, size_t nlen, json_t *value)
{
    json_t *arr = json_object_getn(obj, name, nlen);
    if (!arr) {
        arr = json_array();
        if (!arr || json_object_setn_new_nocheck(obj, name, nlen, arr) != 0) {
            json_decref(value);
            return BW_ENOMEM;
        }
    }
    return json_array_append_new(arr, value) == 0 ? 0 : BW_ENOMEM;
}

static json_t *headers_json(const head_t *h)
{
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < h->n; i++) {
        const hdr_t *x = &h->h[i];
        size_t nlen = x->name_len;
        int valid = utf8_valid(x->name, nlen);
        char *fixed = valid ? NULL : utf8_fix(x->name, nlen, &nlen);
        int rc = BW_ENOMEM;
        if (valid || fixed)
            rc = add_header(obj, fixed ? fixed : x->name, nlen, jstr(x->value, x->value_len));
        free(fixed);
        if (rc != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

static json_t *base64_json(const rawbuf_t *r)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t outlen = (size_t)(r->kept + 2) / 3 * 4, o = 0, nacc = 0;
    unsigned char acc[3];
    char *out = malloc(outlen + 1);
    json_t *j;
    if (!out)
        return NULL;
    for (const chunk_t *c = r->first; c; c = c->next) {
        for (size_t i = 0; i < c->len; i++) {
            acc[nacc++] = c->data[i];
            if (nacc < 3)
                continue;
            out[o++] = tbl[acc[0] >> 2];
            out[o++] = tbl[(acc[0] & 3) << 4 | acc[1] >> 4];
            out[o++] = tbl[(acc[1] & 15) << 2 | acc[2] >> 6];
            out[o++] = tbl[acc[2] & 63];
            nacc = 0;
        }
    }
    if (nacc) {
        acc[nacc] = 0;
        out[o++] = tbl[acc[0] >> 2];
        out[o++] = tbl[(acc[0] & 3) << 4 | (nacc > 1 ? acc[1] >> 4 : 0)];
        out[o++] = nacc > 1 ? tbl[(acc[1] & 15) << 2] : '=';
        out[o++] = '=';
    }
    j = json_stringn_nocheck(out, o);
    free(out);
    return j;
}

/* raw and headers are null until the direction has been seen, as Go
 * encodes a nil []byte and a nil http.Header. */
static json_t *raw_json(const bw_capture_t *e, int d)
{
    if (!e->head[d] && e->raw[d].kept == 0)
        return json_null();
    return base64_json(&e->raw[d]);
}

static json_t *cstr(const char *s)
{
    return jstr(s, strlen(s));
}

/* burrow's additive fields: only on a direction whose raw bytes were cut at
 * the per-entry cap, so every other entry keeps ngrok's exact shape.
 * "raw_size" is how many wire bytes passed, "raw" holds the first ones. */
static json_t *mark_truncated(json_t *o, const bw_capture_t *e, int d)
{
    if (o && e->raw[d].seen > e->raw[d].kept) {
        json_object_set_new(o, "raw_truncated", json_true());
        json_object_set_new(o, "raw_size", json_integer((json_int_t)e->raw[d].seen));
    }
    return o;
}

static json_t *request_json(const bw_capture_t *e)
{
    const head_t *h = e->head[0];
    return mark_truncated(json_pack("{s:o, s:o, s:o, s:o, s:o}", "method", cstr(h ? h->method : ""),
                                    "proto", cstr(h ? h->proto : ""), "headers",
                                    h ? headers_json(h) : json_null(), "uri", cstr(h ? h->uri : ""),
                                    "raw", raw_json(e, 0)),
                          e, 0);
}

static json_t *status_json(const head_t *h)
{
    char buf[32];
    json_t *j;
    if (!h)
        return json_string("");
    if (!*h->reason) {
        bw_fmt(buf, sizeof buf, "%d", h->status);
        return json_string(buf);
    }
    /* "200 " then the reason, which may be long or invalid UTF-8. */
    bw_fmt(buf, sizeof buf, "%d ", h->status);
    size_t n = strlen(buf), rlen = strlen(h->reason);
    char *s = malloc(n + rlen + 1);
    if (!s)
        return NULL;
    memcpy(s, buf, n);
    memcpy(s + n, h->reason, rlen + 1);
    j = cstr(s);
    free(s);
    return j;
}

static json_t *response_json(const bw_capture_t *e)
{
    const head_t *h = e->head[1];
    return mark_truncated(json_pack("{s:o, s:I, s:o, s:o, s:o}", "status", status_json(h),
                                    "status_code", (json_int_t)(h ? h->status : 0), "proto",
                                    cstr(h ? h->proto : ""), "headers",
                                    h ? headers_json(h) : json_null(), "raw", raw_json(e, 1)),
                          e, 1);
}

int bw_capture_rfc3339(int64_t unix_ns, char *out, size_t outlen)
{
    time_t t = (time_t)floor_div(unix_ns, NS_PER_SEC);
    struct tm tm;
    long off;
    char zone[8] = "Z";
    if (!localtime_r(&t, &tm))
        return BW_EINVAL;
    off = tm.tm_gmtoff / 60;
    if (off != 0)
        bw_fmt(zone, sizeof zone, "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 60,
               labs(off) % 60);
    return bw_fmt(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d%s", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
}

static json_t *entry_json(const bw_capture_t *e)
{
    char uri[64], start[64];
    bw_fmt(uri, sizeof uri, "/api/requests/http/%s", e->id);
    if (bw_capture_rfc3339(e->start_ns, start, sizeof start) != 0)
        start[0] = '\0';
    return json_pack("{s:s, s:s, s:o, s:o, s:s, s:I, s:o, s:o}", "uri", uri, "id", e->id,
                     "tunnel_name", cstr(e->tunnel_name), "remote_addr", cstr(e->remote_addr),
                     "start", start, "duration", (json_int_t)e->duration_ns, "request",
                     request_json(e), "response", response_json(e));
}

static int matches(const bw_capture_t *e, const bw_capture_filter_t *f)
{
    if (!f)
        return 1;
    if (f->tunnel_name && strcmp(f->tunnel_name, e->tunnel_name) != 0)
        return 0;
    return !f->remote_addr || strcmp(f->remote_addr, e->remote_addr) == 0;
}

json_t *bw_capture_store_list_json(const bw_capture_store_t *s, const bw_capture_filter_t *f)
{
    size_t limit = f && f->limit ? f->limit : BW_CAPTURE_DEFAULT_LIMIT, n = 0;
    json_t *arr = json_array();
    for (size_t i = bw_capture_store_count(s); arr && i > 0 && n < limit; i--) {
        const bw_capture_t *e = ring_at(s, i - 1);
        if (!matches(e, f))
            continue;
        if (json_array_append_new(arr, entry_json(e)) != 0) {
            json_decref(arr);
            return NULL;
        }
        n++;
    }
    return json_pack("{s:s, s:o}", "uri", "/api/requests/http", "requests", arr);
}

int bw_capture_store_get_json(const bw_capture_store_t *s, const char *id, json_t **out)
{
    const bw_capture_t *e = lookup(s, id);
    *out = NULL;
    if (!e)
        return BW_ENOENT;
    *out = entry_json(e);
    return *out ? 0 : BW_ENOMEM;
}

int bw_capture_store_info(const bw_capture_store_t *s, const char *id, bw_capture_info_t *out)
{
    const bw_capture_t *e = lookup(s, id);
    if (!e)
        return BW_ENOENT;
    memset(out, 0, sizeof(*out));
    for (int d = 0; d < 2; d++) {
        out->seen[d] = e->raw[d].seen;
        out->captured[d] = e->raw[d].kept;
        out->truncated[d] = e->raw[d].seen > e->raw[d].kept;
    }
    out->in_progress = !e->ended;
    out->req = e->req;
    out->bytes = e->bytes;
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
    const bw_capture_t *e = lookup(s, id);
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
    const bw_capture_t *e = lookup(s, id);
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
    const bw_capture_t *e = lookup(s, id);
    return e ? e->remote_addr : NULL;
}
