/* Request stream rewriting for the edge's HTTP listeners. See http_rewrite.h.
 *
 * http_parser validates and frames; we pause it where a request begins and
 * where its head ends, so the head's exact bytes can be collected, checked
 * and re-emitted with the X-Forwarded-* headers, while everything between
 * heads (bodies, chunk framing) is copied through untouched.
 *
 * A little over 600 lines: the head framing and its pause points are one
 * state machine over http_parser's callbacks; Host and target checks
 * (http_host.c), chunk framing (http_chunked.c) and response following
 * (http_resp.c) are already their own files. */
#include "http_rewrite.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "burrow/error.h"
#include "http_chunked.h"
#include "http_host.h"
#include "http_resp.h"
#include "http_text.h"
#include "util.h"

/* S_UPWAIT: an Upgrade request was forwarded and what the client sent
 * after it is held until the response shows whether it was accepted. */
enum { S_IDLE, S_HEAD, S_BODY, S_UPWAIT, S_RAW, S_ERR };
/* The Upgrade request in flight: none, or answered before it ended. */
enum { UP_NONE, UP_PENDING, UP_SWITCHED, UP_DECLINED };
enum { EV_NONE, EV_BEGIN, EV_HEADERS, EV_COMPLETE };

struct bw_hrw {
    http_parser p;
    int state, event, go_raw, skip, any_head, status, https;
    size_t blank; /* CR/LF bytes seen since the last request ended (S_IDLE) */
    int chunked;  /* the current request's body is chunked: ck checks it */
    bw_chunked_t ck;
    int up;         /* UP_* */
    bw_hresp_t *rt; /* the responses, to learn the Upgrade's fate */
    bw_buf_t held;  /* S_UPWAIT: client bytes after the Upgrade request */
    char ip[64];
    char reason[128];
    /* The head being read, grown as it arrives up to BW_HRW_MAX_HEAD: an
     * idle keep-alive connection holds no more than its last head needed. */
    char *head;
    size_t head_len, head_cap;
    bw_buf_t out; /* what to forward, rebuilt on every feed */
    bw_hrw_head_t *heads;
    size_t n_heads, heads_cap;
};

#define HEAD_MIN 512  /* the first allocation of a head: most fit */
#define KEEP_MAX 2048 /* bw_hrw_trim frees buffers bigger than this */

/* One header line of a head: [start, end) (end after its line ending),
 * `eol` is where its CR/LF begins. */
typedef struct hdr {
    size_t start, end, eol, name_len, value, value_len;
} hdr_t;

static int on_begin(http_parser *p)
{
    bw_hrw_t *r = p->data;
    r->event = EV_BEGIN;
    http_parser_pause(p, 1);
    return 0;
}

static int on_headers(http_parser *p)
{
    bw_hrw_t *r = p->data;
    r->event = EV_HEADERS;
    http_parser_pause(p, 1);
    return 0;
}

/* Paused here too, so the request's last byte is known: what the parser
 * skips after it (empty lines) is not the request's to forward. */
static int on_complete(http_parser *p)
{
    bw_hrw_t *r = p->data;
    if (p->upgrade)
        r->go_raw = 1;
    r->event = EV_COMPLETE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_begin,
    .on_headers_complete = on_headers,
    .on_message_complete = on_complete,
};

bw_hrw_t *bw_hrw_new(const char *client_ip, int https)
{
    bw_hrw_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    http_parser_init(&r->p, HTTP_REQUEST);
    r->p.data = r;
    r->https = https;
    r->held.max = BW_HRW_MAX_HELD;
    r->rt = bw_hresp_new();
    if (!r->rt) {
        free(r);
        return NULL;
    }
    size_t n = strlen(client_ip);
    if (n >= sizeof r->ip)
        n = sizeof r->ip - 1;
    memcpy(r->ip, client_ip, n);
    return r;
}

void bw_hrw_free(bw_hrw_t *r)
{
    if (!r)
        return;
    free(r->out.p);
    free(r->head);
    bw_buf_free(&r->held);
    bw_hresp_free(r->rt);
    free(r->heads);
    free(r);
}

static int fail(bw_hrw_t *r, int status, const char *reason)
{
    r->state = S_ERR;
    r->status = status;
    size_t n = strlen(reason);
    if (n >= sizeof r->reason)
        n = sizeof r->reason - 1;
    memcpy(r->reason, reason, n);
    r->reason[n] = '\0';
    return BW_EINVAL;
}

static int out_put(bw_hrw_t *r, const char *data, size_t len)
{
    bw_buf_put(&r->out, data, len);
    return r->out.err ? fail(r, 500, "out of memory") : 0;
}

static int out_str(bw_hrw_t *r, const char *s)
{
    return out_put(r, s, strlen(s));
}

static int head_put(bw_hrw_t *r, const char *data, size_t len)
{
    if (len > BW_HRW_MAX_HEAD - r->head_len)
        return fail(r, 431, "request header fields too large");
    if (len > r->head_cap - r->head_len) {
        size_t cap = r->head_cap ? r->head_cap : HEAD_MIN;
        while (cap < r->head_len + len)
            cap *= 2;
        cap = cap < BW_HRW_MAX_HEAD ? cap : BW_HRW_MAX_HEAD;
        char *h = realloc(r->head, cap);
        if (!h)
            return fail(r, 500, "out of memory");
        r->head = h;
        r->head_cap = cap;
    }
    memcpy(r->head + r->head_len, data, len);
    r->head_len += len;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Head rewriting
 * ------------------------------------------------------------------------- */

/* Next line of the head from *pos: [start, eol) is its text, *pos moves
 * past its LF. */
static size_t next_line(const bw_hrw_t *r, size_t *pos, size_t *eol)
{
    size_t start = *pos, i = start;
    while (i < r->head_len && r->head[i] != '\n')
        i++;
    *eol = i > start && r->head[i - 1] == '\r' ? i - 1 : i;
    *pos = i < r->head_len ? i + 1 : i;
    return start;
}

static int name_is(const bw_hrw_t *r, const hdr_t *h, const char *name)
{
    return h->name_len == strlen(name) && strncasecmp(r->head + h->start, name, h->name_len) == 0;
}

/* Split the header section into headers. Returns the count, -1 when there
 * are too many, or -2 on a continuation line (obsolete line folding). */
static int split_headers(const bw_hrw_t *r, size_t pos, hdr_t *hs, int max, size_t *final)
{
    int n = 0;
    size_t eol;
    while (pos < r->head_len) {
        size_t start = next_line(r, &pos, &eol);
        if (eol == start) { /* the empty line ending the head */
            *final = start;
            return n;
        }
        char c = r->head[start];
        /* RFC 9112 5.2 lets a server reject or unfold. Unfolding would
         * mean forwarding a head other than the one http_parser framed
         * (it reads "Transfer-Encoding:\r\n chunked" its own way), and
         * backends differ on folds, so a fold is refused. */
        if ((c == ' ' || c == '\t') && n > 0)
            return -2;
        if (n == max)
            return -1;
        const char *colon = memchr(r->head + start, ':', eol - start);
        size_t v = colon ? (size_t)(colon - r->head) + 1 : eol;
        hs[n] = (hdr_t){.start = start,
                        .end = pos,
                        .eol = eol,
                        .name_len = colon ? (size_t)(colon - r->head) - start : eol - start};
        while (v < eol && (r->head[v] == ' ' || r->head[v] == '\t'))
            v++;
        size_t ve = eol;
        while (ve > v && (r->head[ve - 1] == ' ' || r->head[ve - 1] == '\t'))
            ve--;
        hs[n].value = v;
        hs[n].value_len = ve - v;
        n++;
    }
    *final = r->head_len;
    return n;
}

/* The Host's name is in h; the request line ends at line_end. */
static int check_target(bw_hrw_t *r, const hdr_t *host, const bw_hrw_head_t *h, size_t line_end)
{
    const char *bad = bw__http_target_check(r->head, line_end, r->head + host->value,
                                            host->value_len, h->host, r->https);
    return bad ? fail(r, 400, bad) : 0;
}

static int emit_forwarded(bw_hrw_t *r, const hdr_t *host, int had_xff)
{
    int rc = 0;
    if (!had_xff) {
        rc |= out_str(r, "X-Forwarded-For: ");
        rc |= out_str(r, r->ip);
        rc |= out_str(r, "\r\n");
    }
    rc |= out_str(r, r->https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    rc |= out_str(r, "X-Forwarded-Host: ");
    rc |= out_put(r, r->head + host->value, host->value_len);
    rc |= out_str(r, "\r\n");
    return rc ? BW_ENOMEM : 0;
}

/* Copy the head with client-sent X-Forwarded-Proto/-Host dropped, our
 * client IP appended to the last X-Forwarded-For, and ours added. */
static int emit_head(bw_hrw_t *r, const hdr_t *hs, int n, const hdr_t *host, size_t final,
                     size_t first_end)
{
    int last_xff = -1;
    for (int i = 0; i < n; i++)
        if (name_is(r, &hs[i], "x-forwarded-for"))
            last_xff = i;
    if (out_put(r, r->head, first_end) != 0)
        return BW_ENOMEM;
    for (int i = 0; i < n; i++) {
        const hdr_t *h = &hs[i];
        if (name_is(r, h, "x-forwarded-proto") || name_is(r, h, "x-forwarded-host"))
            continue;
        if (i != last_xff) {
            if (out_put(r, r->head + h->start, h->end - h->start) != 0)
                return BW_ENOMEM;
            continue;
        }
        if (out_put(r, r->head + h->start, h->eol - h->start) != 0 || out_str(r, ", ") != 0 ||
            out_str(r, r->ip) != 0 || out_put(r, r->head + h->eol, h->end - h->eol) != 0)
            return BW_ENOMEM;
    }
    if (emit_forwarded(r, host, last_xff >= 0) != 0)
        return BW_ENOMEM;
    return out_put(r, r->head + final, r->head_len - final) ? BW_ENOMEM : 0;
}

/* http_parser, built lenient, lets a space into a field name; proxies
 * that disagree on such names are how requests get smuggled. */
static int valid_name(const bw_hrw_t *r, const hdr_t *h)
{
    if (h->name_len == 0 || h->start + h->name_len >= h->eol)
        return 0;
    return bw_http_is_token(r->head + h->start, h->name_len);
}

/* A whole head (request line to the final LF) is in r->head. */
/* What http_parser lets through but a backend may read otherwise. */
static int check_strict(bw_hrw_t *r)
{
    if (r->p.method == HTTP_CONNECT)
        return fail(r, 405, "CONNECT is not supported");
    /* http_parser takes any digit.digit (and no version as 0.9); a backend
     * may frame a version it does not speak differently from the edge. */
    if (r->p.http_major != 1 || r->p.http_minor > 1)
        return fail(r, 400, "invalid request line: unsupported HTTP version");
    /* http_parser, built lenient, ends lines at a bare LF too; a backend
     * that does not would read the head's lines differently. */
    for (size_t i = 0; i < r->head_len; i++)
        if (r->head[i] == '\n' && (i == 0 || r->head[i - 1] != '\r'))
            return fail(r, 400, "invalid line ending: LF without CR");
    return 0;
}

/* The head is going out: note what its response and body will be. */
static void track_request(bw_hrw_t *r)
{
    int upgrade = r->p.upgrade;
    bw_hresp_push(r->rt, (upgrade ? BW_HRESP_UPGRADE : BW_HRESP_PLAIN) |
                             (r->p.method == HTTP_HEAD ? BW_HRESP_HEAD : BW_HRESP_PLAIN));
    r->up = upgrade ? UP_PENDING : UP_NONE;
    r->chunked = (r->p.flags & F_CHUNKED) != 0;
    if (r->chunked)
        bw_chunked_init(&r->ck);
}

static int finish_head(bw_hrw_t *r)
{
    enum { MAX_HEADERS = 256 };
    hdr_t hs[MAX_HEADERS];
    const hdr_t *host = NULL;
    size_t pos = 0, eol, final;
    if (check_strict(r) != 0)
        return BW_EINVAL;
    next_line(r, &pos, &eol);
    int n = split_headers(r, pos, hs, MAX_HEADERS, &final);
    if (n == -2)
        return fail(r, 400, "invalid header: obsolete line folding");
    if (n < 0)
        return fail(r, 431, "too many header fields");
    for (int i = 0; i < n; i++)
        if (!valid_name(r, &hs[i]))
            return fail(r, 400, "invalid header");
    for (int i = 0; i < n; i++)
        if (name_is(r, &hs[i], "host")) {
            if (host)
                return fail(r, 400, "multiple Host headers");
            host = &hs[i];
        }
    if (!host)
        return fail(r, 400, "missing Host header");
    if (r->n_heads == r->heads_cap) {
        size_t cap = r->heads_cap ? r->heads_cap * 2 : 1;
        bw_hrw_head_t *nh = realloc(r->heads, cap * sizeof *nh);
        if (!nh)
            return fail(r, 500, "out of memory");
        r->heads = nh;
        r->heads_cap = cap;
    }
    bw_hrw_head_t *h = &r->heads[r->n_heads];
    if (bw__http_host_name(r->head + host->value, host->value_len, h->host) != 0)
        return fail(r, 400, "invalid Host header");
    if (check_target(r, host, h, eol) != 0)
        return BW_EINVAL;
    track_request(r);
    h->off = r->out.len;
    if (emit_head(r, hs, n, host, final, pos) != 0)
        return fail(r, 500, "out of memory");
    r->n_heads++;
    r->any_head = 1;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Feeding
 * ------------------------------------------------------------------------- */

/* http_parser failed after taking [data, data+n) of the head being read. */
static int parse_error(bw_hrw_t *r, const char *data, size_t n)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
    int in_line =
        r->state == S_HEAD && !memchr(r->head, '\n', r->head_len) && !memchr(data, '\n', n);
    switch (e) {
    case HPE_INVALID_METHOD:
        return fail(r, 400, "invalid request line: unknown method");
    case HPE_INVALID_URL:
        return fail(r, 400, "invalid request line: bad request target");
    case HPE_INVALID_VERSION:
        return fail(r, 400, "invalid request line: bad HTTP version");
    case HPE_HEADER_OVERFLOW:
        return fail(r, 431, "request header fields too large");
    case HPE_INVALID_HEADER_TOKEN:
        return fail(r, 400, "invalid header");
    case HPE_INVALID_CONTENT_LENGTH:
        /* http_parser reports a chunk size past 2^64 with this code too */
        if (r->state == S_BODY)
            return fail(r, 400, "invalid chunk size: too large");
        return fail(r, 400, "invalid Content-Length");
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        /* ... and a second Content-Length like one next to a Transfer-Encoding */
        if (!r->p.uses_transfer_encoding)
            return fail(r, 400, "duplicate Content-Length");
        return fail(r, 400, "Content-Length together with Transfer-Encoding");
    case HPE_INVALID_CHUNK_SIZE:
        return fail(r, 400, "invalid chunk size");
    default:
        break;
    }
    if (in_line)
        return fail(r, 400, "invalid request line");
    if (r->state == S_HEAD)
        return fail(r, 400, "invalid header");
    return fail(r, 400, http_errno_description(e));
}

/* Between requests the parser skips CR and LF only. RFC 9112 section 2.2
 * lets a server ignore empty lines before a request-line: up to
 * BW_HRW_MAX_BLANK of them, each a CRLF, are dropped, never forwarded (a
 * backend must not see bytes that belong to no request); more, or a CR or
 * LF alone, is a 400. */
static int skip_blank(bw_hrw_t *r, const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++, r->blank++) {
        if (r->blank >= 2 * BW_HRW_MAX_BLANK)
            return fail(r, 400, "too many empty lines before the request line");
        if (r->blank % 2 == 0 && data[i] != '\r')
            return fail(r, 400, "invalid line ending: LF without CR");
        if (r->blank % 2 == 1 && data[i] != '\n')
            return fail(r, 400, "invalid line ending: CR without LF");
    }
    return 0;
}

/* Where the bytes [data, data+n) just parsed go: into the head being
 * collected, dropped as empty lines between requests, or out (minus a
 * head's final LF already emitted). */
static int take(bw_hrw_t *r, const char *data, size_t n)
{
    size_t skip = r->skip && n > 0 ? 1 : 0;
    if (n > 0)
        r->skip = 0;
    if (r->state == S_HEAD)
        return head_put(r, data, n);
    if (r->state == S_IDLE)
        return skip_blank(r, data, n);
    if (r->chunked) {
        const char *bad = bw_chunked_check(&r->ck, data + skip, n - skip);
        if (bad)
            return fail(r, 400, bad);
    }
    return out_put(r, data + skip, n - skip);
}

static void restart(bw_hrw_t *r)
{
    http_parser_init(&r->p, HTTP_REQUEST);
    r->p.data = r;
    r->state = S_IDLE;
    r->up = UP_NONE;
    r->chunked = 0;
    r->blank = 0;
}

/* An Upgrade request ended at `rest`. Raw only after a 101 (a declined
 * upgrade leaves an HTTP/1.1 connection whose next requests must be
 * rewritten like any); until the answer is known, hold what follows. */
static int upgrade_ended(bw_hrw_t *r, const char *rest, size_t len, size_t *used)
{
    if (r->up == UP_DECLINED || (r->up == UP_PENDING && bw_hresp_lost(r->rt))) {
        restart(r); /* parse on from `rest` */
        return 0;
    }
    *used += len;
    if (r->up == UP_SWITCHED) {
        r->state = S_RAW;
        return out_put(r, rest, len);
    }
    r->state = S_UPWAIT;
    if (bw_buf_put(&r->held, rest, len) != 0)
        return fail(r, 400, "too much data before the Upgrade was answered");
    return 0;
}

static int step(bw_hrw_t *r, const char *data, size_t len, size_t *used)
{
    r->event = EV_NONE;
    size_t n = http_parser_execute(&r->p, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
    *used = n;
    if (e == HPE_PAUSED) {
        http_parser_pause(&r->p, 0);
        if (r->event == EV_BEGIN) { /* the request's first byte was consumed */
            if (take(r, data, n - 1) != 0)
                return BW_EINVAL;
            r->state = S_HEAD;
            r->head_len = 0;
            r->blank = 0;
            return head_put(r, data + n - 1, 1);
        }
        if (r->event == EV_COMPLETE) { /* the request's last byte was consumed */
            if (take(r, data, n) != 0)
                return BW_EINVAL;
            r->state = S_IDLE;
            if (!r->go_raw)
                return 0;
            r->go_raw = 0;
            return upgrade_ended(r, data + n, len - n, used);
        }
        /* Headers complete: the parser stopped on the final LF. */
        if (take(r, data, n) != 0 || head_put(r, data + n, 1) != 0)
            return BW_EINVAL;
        r->state = S_BODY;
        r->skip = 1;
        return finish_head(r);
    }
    if (e != HPE_OK) {
        if (r->state == S_HEAD && r->head_len + n > BW_HRW_MAX_HEAD)
            return fail(r, 431, "request header fields too large");
        return parse_error(r, data, n);
    }
    if (take(r, data, n) != 0)
        return BW_EINVAL;
    if (n != len)
        return fail(r, 400, "malformed request");
    return 0;
}

/* Parse client bytes, appending to the output. */
static int parse(bw_hrw_t *r, const char *data, size_t len)
{
    if (r->state == S_ERR)
        return BW_EINVAL;
    if (r->state == S_RAW)
        return out_put(r, data, len);
    if (r->state == S_UPWAIT) {
        if (bw_buf_put(&r->held, data, len) != 0)
            return fail(r, 400, "too much data before the Upgrade was answered");
        return 0;
    }
    size_t off = 0;
    while (off < len) {
        size_t used;
        if (step(r, data + off, len - off, &used) != 0)
            return BW_EINVAL;
        off += used;
    }
    return 0;
}

static int done(bw_hrw_t *r, int rc)
{
    if (rc != 0) {
        r->out.len = 0;
        r->n_heads = 0;
        return BW_EINVAL;
    }
    return 0;
}

int bw_hrw_feed(bw_hrw_t *r, const char *data, size_t len)
{
    r->out.len = 0;
    r->n_heads = 0;
    return done(r, parse(r, data, len));
}

/* The Upgrade request in flight was answered: switched (101) or not.
 * Returns 1 when held bytes were released into the output, 0 when the
 * request had not ended yet, < 0 when they did not parse. */
static int answered(bw_hrw_t *r, int switched)
{
    if (r->state != S_UPWAIT) {
        r->up = switched ? UP_SWITCHED : UP_DECLINED;
        return 0;
    }
    size_t len;
    char *held = bw_buf_take(&r->held, &len);
    int rc;
    if (switched) {
        r->state = S_RAW;
        rc = out_put(r, held ? held : "", len);
    } else {
        restart(r);
        rc = parse(r, held ? held : "", len);
    }
    free(held);
    return rc != 0 ? BW_EINVAL : 1;
}

int bw_hrw_response(bw_hrw_t *r, const char *data, size_t len)
{
    int released = 0;
    r->out.len = 0;
    r->n_heads = 0;
    if (r->state == S_ERR || r->state == S_RAW)
        return 0;
    for (;;) {
        size_t used;
        int ev = bw_hresp_feed(r->rt, data, len, &used);
        data += used;
        len -= used;
        if (ev == BW_HRESP_NONE)
            break;
        int rc = answered(r, ev == BW_HRESP_SWITCHED);
        if (rc < 0)
            return done(r, rc);
        released |= rc;
    }
    if (r->state == S_UPWAIT && bw_hresp_lost(r->rt)) {
        int rc = answered(r, 0); /* no 101 will be believed */
        if (rc < 0)
            return done(r, rc);
        released = 1;
    }
    return released;
}

void bw_hrw_trim(bw_hrw_t *r)
{
    if (r->out.cap > KEEP_MAX)
        bw_buf_free(&r->out);
    if (r->state != S_HEAD && r->head_cap > KEEP_MAX) {
        free(r->head);
        r->head = NULL;
        r->head_len = r->head_cap = 0;
    }
    if (r->heads_cap > 1) {
        free(r->heads);
        r->heads = NULL;
        r->n_heads = r->heads_cap = 0;
    }
}

const char *bw_hrw_out(const bw_hrw_t *r, size_t *len)
{
    *len = r->out.len;
    return r->out.p ? r->out.p : ""; /* never NULL: callers memcpy and offset it */
}

size_t bw_hrw_heads(const bw_hrw_t *r)
{
    return r->n_heads;
}

const bw_hrw_head_t *bw_hrw_head(const bw_hrw_t *r, size_t i)
{
    return i < r->n_heads ? &r->heads[i] : NULL;
}

int bw_hrw_status(const bw_hrw_t *r)
{
    return r->status;
}

const char *bw_hrw_reason(const bw_hrw_t *r)
{
    return r->reason;
}

int bw_hrw_in_head(const bw_hrw_t *r)
{
    return r->state == S_HEAD;
}

int bw_hrw_in_body(const bw_hrw_t *r)
{
    return r->state == S_BODY;
}

int bw_hrw_raw(const bw_hrw_t *r)
{
    return r->state == S_RAW;
}

int bw_hrw_waiting(const bw_hrw_t *r)
{
    return r->state == S_UPWAIT;
}
