/* The JSON shapes of captured entries, as ngrok's agent API serves them
 * (/api/requests/http). */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <burrow/error.h>

#include "base64.h"
#include "capture_int.h"
#include "json_build.h"
#include "util.h"

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
        /* Canonical here, not when captured: most entries are never read. */
        char small[128], *key = nlen < sizeof small ? small : malloc(nlen + 1);
        int valid = key && (bw_capture_canonical_key(x->name, nlen, key), utf8_valid(key, nlen));
        char *fixed = !key || valid ? NULL : utf8_fix(key, nlen, &nlen);
        int rc = BW_ENOMEM;
        if (valid || fixed)
            rc = add_header(obj, fixed ? fixed : key, nlen, jstr(x->value, x->value_len));
        free(fixed);
        if (key != small)
            free(key);
        if (rc != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

static json_t *base64_json(const rawbuf_t *r)
{
    bw_base64_enc_t enc = {0};
    size_t o = 0;
    char *out = malloc(BW_BASE64_ENCODED_LEN((size_t)r->kept) + 1);
    json_t *j;
    if (!out)
        return NULL;
    for (const bw_chunk_t *c = r->q.head; c; c = c->next)
        o += bw_base64_encode_update(&enc, c->data + c->off, c->len, out + o);
    o += bw_base64_encode_final(&enc, out + o);
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
    int bad = 0;
    if (o && e->raw[d].seen > e->raw[d].kept) {
        bw_json_put(o, "raw_truncated", json_true(), &bad);
        bw_json_put(o, "raw_size", json_integer((json_int_t)e->raw[d].seen), &bad);
    }
    return bw_json_whole(o, bad);
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
    time_t t = (time_t)bw__capture_floor_div(unix_ns, NS_PER_SEC);
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
    char id[BW_CAPTURE_ID_LEN + 1];
    bw__capture_id_text(e, id);
    bw_fmt(uri, sizeof uri, "/api/requests/http/%s", id);
    if (bw_capture_rfc3339(e->start_ns, start, sizeof start) != 0)
        start[0] = '\0';
    return json_pack("{s:s, s:s, s:o, s:o, s:s, s:I, s:o, s:o}", "uri", uri, "id", id,
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
    /* The body is built whole on the loop thread: an unbounded limit over a
     * store of many small entries stalls every tunnel while it is built,
     * and the heap it grew stays with the process. */
    if (limit > BW_CAPTURE_MAX_LIMIT)
        limit = BW_CAPTURE_MAX_LIMIT;
    json_t *arr = json_array();
    for (size_t i = bw_capture_store_count(s); arr && i > 0 && n < limit; i--) {
        const bw_capture_t *e = bw__capture_ring_at(s, i - 1);
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
    const bw_capture_t *e = bw__capture_lookup(s, id);
    *out = NULL;
    if (!e)
        return BW_ENOENT;
    *out = entry_json(e);
    return *out ? 0 : BW_ENOMEM;
}

int bw_capture_store_info(const bw_capture_store_t *s, const char *id, bw_capture_info_t *out)
{
    const bw_capture_t *e = bw__capture_lookup(s, id);
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
