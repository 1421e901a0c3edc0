/* Rebuilding a captured request with the replay API's modifications. Pure:
 * no I/O, no loop. See replay.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "http_text.h"
#include "replay.h"
#include "util.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return BW_EINVAL;
}

/* ---- the captured request ---- */

typedef struct line {
    const char *p;
    size_t len; /* without the line end */
} line_t;

typedef struct parsed {
    line_t method, uri, proto;
    line_t *lines; /* header lines, continuation lines included */
    size_t n;
    const char *body;
    size_t body_len;
} parsed_t;

/* The next line of p[0..end) from *pos, without "\n" or "\r\n". Returns 0
 * when there is no complete line. */
static int next_line(const char *p, size_t end, size_t *pos, line_t *out)
{
    const char *nl = memchr(p + *pos, '\n', end - *pos);
    if (!nl)
        return 0;
    out->p = p + *pos;
    out->len = (size_t)(nl - out->p);
    if (out->len && out->p[out->len - 1] == '\r')
        out->len--;
    *pos = (size_t)(nl - p) + 1;
    return 1;
}

static int split_request_line(line_t l, parsed_t *pr)
{
    const char *sp1 = memchr(l.p, ' ', l.len);
    const char *end = l.p + l.len;
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == l.p || sp2 == sp1 + 1 || sp2 + 1 == end)
        return -1;
    pr->method = (line_t){l.p, (size_t)(sp1 - l.p)};
    pr->uri = (line_t){sp1 + 1, (size_t)(sp2 - sp1 - 1)};
    pr->proto = (line_t){sp2 + 1, (size_t)(end - sp2 - 1)};
    return 0;
}

static int parse_request(const char *p, size_t len, parsed_t *pr, char *err, size_t errlen)
{
    size_t pos = 0, cap = 0;
    line_t l;
    memset(pr, 0, sizeof *pr);
    if (!next_line(p, len, &pos, &l) || split_request_line(l, pr) != 0)
        return fail(err, errlen, "captured request has no valid request line");
    for (;;) {
        if (!next_line(p, len, &pos, &l))
            return fail(err, errlen, "captured request has no complete head");
        if (l.len == 0)
            break;
        if (pr->n == cap) {
            cap = cap ? cap * 2 : 16;
            line_t *nl = realloc(pr->lines, cap * sizeof *nl);
            if (!nl)
                return BW_ENOMEM;
            pr->lines = nl;
        }
        pr->lines[pr->n++] = l;
    }
    pr->body = p + pos;
    pr->body_len = len - pos;
    return 0;
}

/* ---- validation ---- */

static int is_token(const char *s)
{
    return bw_http_is_token(s, strlen(s));
}

static int is_uri(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static int is_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return 0;
    return 1;
}

static int check_headers(const json_t *h, char *err, size_t errlen)
{
    const char *k;
    json_t *v, *item;
    size_t i;
    if (!json_is_object(h))
        return fail(err, errlen, "modifications.headers must be an object");
    json_object_foreach((json_t *)h, k, v)
    {
        if (!is_token(k))
            return fail(err, errlen, "modifications.headers: invalid header name '%s'", k);
        if (json_is_null(v))
            continue;
        if (json_is_string(v)) {
            if (!is_value(json_string_value(v), json_string_length(v)))
                return fail(err, errlen, "modifications.headers.%s: value contains CR, LF or NUL",
                            k);
            continue;
        }
        if (!json_is_array(v))
            return fail(err, errlen,
                        "modifications.headers.%s must be a string, an array of strings or null",
                        k);
        json_array_foreach(v, i, item)
        {
            if (!json_is_string(item))
                return fail(err, errlen, "modifications.headers.%s[%zu] must be a string", k, i);
            if (!is_value(json_string_value(item), json_string_length(item)))
                return fail(err, errlen,
                            "modifications.headers.%s[%zu]: value contains CR, LF or NUL", k, i);
        }
    }
    return 0;
}

static int check_mods(const json_t *m, char *err, size_t errlen)
{
    static const char *const known[] = {"method", "uri", "headers", "body", "body_base64"};
    const char *k;
    json_t *v;
    if (!json_is_object(m))
        return fail(err, errlen, "modifications must be an object");
    json_object_foreach((json_t *)m, k, v)
    {
        size_t i = 0;
        while (i < sizeof known / sizeof *known && strcmp(known[i], k) != 0)
            i++;
        if (i == sizeof known / sizeof *known)
            return fail(err, errlen,
                        "unknown modification '%s' (expected method, uri, headers, body or "
                        "body_base64)",
                        k);
        if (strcmp(k, "headers") != 0 && !json_is_string(v))
            return fail(err, errlen, "modifications.%s must be a string", k);
    }
    const char *method = json_string_value(json_object_get(m, "method"));
    const char *uri = json_string_value(json_object_get(m, "uri"));
    if (method && !is_token(method))
        return fail(err, errlen, "modifications.method '%s' is not a valid HTTP method", method);
    if (uri && !is_uri(uri))
        return fail(err, errlen, "modifications.uri must be non-empty without spaces or controls");
    if (json_object_get(m, "body") && json_object_get(m, "body_base64"))
        return fail(err, errlen, "give modifications.body or modifications.body_base64, not both");
    json_t *h = json_object_get(m, "headers");
    return h ? check_headers(h, err, errlen) : 0;
}

/* ---- rebuilding ---- */

static int name_is(line_t l, const char *name)
{
    size_t n = strlen(name);
    return l.len > n && l.p[n] == ':' && strncasecmp(l.p, name, n) == 0;
}

/* Is the header line `l` replaced or dropped? */
static int dropped(line_t l, const json_t *headers, int new_body)
{
    const char *k;
    json_t *v;
    if (new_body && (name_is(l, "Content-Length") || name_is(l, "Transfer-Encoding")))
        return 1;
    json_object_foreach((json_t *)headers, k, v)
    {
        if (name_is(l, k))
            return 1;
    }
    return 0;
}

static void put_header(bw_buf_t *b, const char *name, const json_t *v)
{
    bw_buf_puts(b, name);
    bw_buf_puts(b, ": ");
    bw_buf_put(b, json_string_value(v), json_string_length(v));
    bw_buf_puts(b, "\r\n");
}

static void put_new_headers(bw_buf_t *b, const json_t *headers, int new_body)
{
    const char *k;
    json_t *v, *item;
    size_t i;
    json_object_foreach((json_t *)headers, k, v)
    {
        if (new_body &&
            (strcasecmp(k, "Content-Length") == 0 || strcasecmp(k, "Transfer-Encoding") == 0))
            continue; /* set from the new body */
        if (json_is_string(v))
            put_header(b, k, v);
        json_array_foreach(v, i, item) put_header(b, k, item);
    }
}

static void put_line(bw_buf_t *b, line_t l)
{
    bw_buf_put(b, l.p, l.len);
}

static int rebuild(const parsed_t *pr, const json_t *mods, const char *body, size_t body_len,
                   int new_body, bw_buf_t *b)
{
    const json_t *m = json_object_get(mods, "method"), *u = json_object_get(mods, "uri");
    const json_t *headers = json_object_get(mods, "headers");
    char cl[48];
    int skipping = 0;
    m ? bw_buf_puts(b, json_string_value(m)) : put_line(b, pr->method);
    bw_buf_puts(b, " ");
    u ? bw_buf_puts(b, json_string_value(u)) : put_line(b, pr->uri);
    bw_buf_puts(b, " ");
    put_line(b, pr->proto);
    bw_buf_puts(b, "\r\n");
    for (size_t i = 0; i < pr->n; i++) {
        line_t l = pr->lines[i];
        /* A continuation line (obs-fold) belongs to the header above it. */
        if (!(l.len && (l.p[0] == ' ' || l.p[0] == '\t')))
            skipping = dropped(l, headers, new_body);
        if (skipping)
            continue;
        put_line(b, l);
        bw_buf_puts(b, "\r\n");
    }
    put_new_headers(b, headers, new_body);
    if (new_body) {
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", body_len);
        bw_buf_puts(b, cl);
    }
    bw_buf_puts(b, "\r\n");
    bw_buf_put(b, body, body_len);
    return b->err; /* BW_ENOMEM: no bound is set */
}

int bw_replay_modify(const void *raw, size_t len, const json_t *mods, void **out, size_t *outlen,
                     char *err, size_t errlen)
{
    parsed_t pr;
    bw_buf_t b = {0};
    unsigned char *decoded = NULL;
    *out = NULL;
    *outlen = 0;
    int rc = check_mods(mods, err, errlen);
    if (rc < 0)
        return rc;
    rc = parse_request(raw, len, &pr, err, errlen);
    if (rc < 0)
        goto out;
    const char *body = pr.body;
    size_t body_len = pr.body_len;
    const json_t *jb = json_object_get(mods, "body"), *j64 = json_object_get(mods, "body_base64");
    if (jb) {
        body = json_string_value(jb);
        body_len = json_string_length(jb);
    } else if (j64) {
        size_t n = json_string_length(j64);
        long d;
        decoded = malloc(BW_BASE64_DECODED_MAX(n));
        if (!decoded) {
            rc = BW_ENOMEM;
            goto out;
        }
        if ((d = bw_base64_decode(json_string_value(j64), n, decoded)) < 0) {
            rc = fail(err, errlen, "modifications.body_base64 is not valid base64");
            goto out;
        }
        body = (const char *)decoded;
        body_len = (size_t)d;
    }
    rc = rebuild(&pr, mods, body, body_len, jb || j64, &b);
    if (rc == 0) {
        *out = b.p;
        *outlen = b.len;
        b.p = NULL;
    }
out:
    free(pr.lines);
    free(decoded);
    free(b.p);
    return rc;
}
