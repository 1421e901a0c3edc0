/* HTTP/1.x framing without I/O (see h1.h).
 *
 * The head is found by our own scan for the first empty line and then handed
 * to http_parser in one piece, so header names and values point into one
 * buffer and a head can be rebuilt from it. Body bytes go through
 * http_parser as they come; it pauses at the end of each message so the
 * caller learns exactly where the next one starts. */
#include "h1.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Exported by libhttp_parser 2.x but missing from its header. */
int http_message_needs_eof(const http_parser *parser);

/* ---- buffers ------------------------------------------------------------- */

int h1_buf_add(h1_buf_t *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return BW_ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int h1_buf_adds(h1_buf_t *b, const char *s)
{
    return h1_buf_add(b, s, strlen(s));
}

int h1_buf_addf(h1_buf_t *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return BW_EINVAL;
    if ((size_t)n < sizeof small)
        return h1_buf_add(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return BW_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = h1_buf_add(b, big, (size_t)n);
    free(big);
    return rc;
}

void h1_buf_consume(h1_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void h1_buf_free(h1_buf_t *b)
{
    free(b->data);
    *b = (h1_buf_t){0};
}

/* ---- http_parser callbacks ------------------------------------------------ */

static int fail(h1_t *h, int status, const char *why)
{
    if (!h->err[0]) {
        snprintf(h->err, sizeof h->err, "%s", why);
        h->err_status = status;
    }
    return 1;
}

static char *copy(const char *at, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, at, len);
        s[len] = '\0';
    }
    return s;
}

/* Span of the URL or reason while the head is parsed. */
static const char *g_span_at;
static size_t g_span_len;

static int on_span(http_parser *p, const char *at, size_t len)
{
    if (!g_span_at)
        g_span_at = at;
    g_span_len = (size_t)(at + len - g_span_at);
    return 0;
}

/* Room for the headers of most heads at first; an idle connection keeps
 * what its largest head needed. */
static int grow_headers(h1_head_t *hd)
{
    size_t cap = hd->cap_headers ? hd->cap_headers * 2 : 16;
    cap = cap < H1_MAX_HEADERS ? cap : H1_MAX_HEADERS;
    bw_http_header_t *x = realloc(hd->headers, cap * sizeof *x);
    if (!x)
        return -1;
    hd->headers = x;
    hd->cap_headers = cap;
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    h1_t *h = p->data;
    h1_head_t *hd = &h->head;
    if (h->hdr_state != 1) {
        if (hd->n_headers == H1_MAX_HEADERS)
            return fail(h, 431, "too many header fields");
        if (hd->n_headers == hd->cap_headers && grow_headers(hd) != 0)
            return fail(h, 500, "out of memory");
        bw_http_header_t *x = &hd->headers[hd->n_headers++];
        *x = (bw_http_header_t){.name = at, .name_len = len, .value = at + len};
    } else {
        bw_http_header_t *x = &hd->headers[hd->n_headers - 1];
        x->name_len = (size_t)(at + len - x->name);
    }
    h->hdr_state = 1;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    h1_t *h = p->data;
    if (h->head.n_headers == 0)
        return 0;
    bw_http_header_t *x = &h->head.headers[h->head.n_headers - 1];
    if (h->hdr_state != 2) {
        x->value = at;
        x->value_len = len;
    } else {
        x->value_len = (size_t)(at + len - x->value);
    }
    h->hdr_state = 2;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    h1_t *h = p->data;
    h->keep_alive = http_should_keep_alive(p);
    return h->kind == H1_RESPONSE && h->skip_body ? 1 : 0;
}

static int on_message_complete(http_parser *p)
{
    h1_t *h = p->data;
    h->keep_alive = http_should_keep_alive(p);
    h->upgrade = p->upgrade;
    h->done_pending = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings req_settings = {
    .on_url = on_span,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

static const http_parser_settings res_settings = {
    .on_status = on_span,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

static const http_parser_settings *settings(const h1_t *h)
{
    return h->kind == H1_REQUEST ? &req_settings : &res_settings;
}

/* ---- the framer ------------------------------------------------------------ */

static void head_clear(h1_head_t *hd)
{
    free(hd->method);
    free(hd->uri);
    free(hd->reason);
    hd->method = hd->uri = hd->reason = NULL;
    hd->raw.len = 0;
    hd->n_headers = 0;
    hd->status = 0;
    hd->line_len = 0;
    hd->proto[0] = '\0';
}

static void next_message(h1_t *h)
{
    head_clear(&h->head);
    h->in_head = 1;
    h->started = h->nl = h->hdr_state = 0;
    h->done_pending = 0;
    h->upgrade = 0;
}

void h1_init(h1_t *h, h1_kind_t kind)
{
    memset(h, 0, sizeof *h);
    h->kind = kind;
    http_parser_init(&h->p, kind == H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
    h->p.data = h;
    h->in_head = 1;
}

void h1_free(h1_t *h)
{
    head_clear(&h->head);
    h1_buf_free(&h->head.raw);
    free(h->head.headers);
    h->head.headers = NULL;
    h->head.cap_headers = 0;
}

int h1_busy(const h1_t *h)
{
    return !h->in_head || h->started;
}

int h1_body_until_eof(const h1_t *h)
{
    return !h->in_head && !h->done_pending && http_message_needs_eof(&h->p);
}

/* Scan for the head's end; returns bytes that belong to the head and sets
 * *end when the empty line was reached. Leading empty lines are skipped. */
static size_t scan_head(h1_t *h, const char *data, size_t len, int *end, size_t *skipped)
{
    size_t i = 0;
    *end = 0;
    *skipped = 0;
    for (; i < len && !h->started; i++) {
        if (data[i] != '\r' && data[i] != '\n') {
            h->started = 1;
            break;
        }
        (*skipped)++;
    }
    /* Line by line: the head ends at an LF whose line is empty or a lone CR
     * (nl: 1 after an LF, 2 after LF CR, 0 otherwise). */
    while (i < len) {
        const char *lf = memchr(data + i, '\n', len - i);
        size_t run = lf ? (size_t)(lf - (data + i)) : len - i;
        if (run > 0)
            h->nl = run == 1 && data[i] == '\r' && h->nl == 1 ? 2 : 0;
        if (!lf)
            return len;
        i += run + 1;
        if (h->nl) {
            *end = 1;
            return i;
        }
        h->nl = 1;
    }
    return len;
}

static int finish_head(h1_t *h)
{
    h1_head_t *hd = &h->head;
    const char *nl = memchr(hd->raw.data, '\n', hd->raw.len);
    hd->line_len = (size_t)(nl - hd->raw.data);
    if (hd->line_len && hd->raw.data[hd->line_len - 1] == '\r')
        hd->line_len--;
    memcpy(hd->proto, "HTTP/x.y", sizeof "HTTP/x.y");
    hd->proto[5] = (char)('0' + h->p.http_major % 10u);
    hd->proto[7] = (char)('0' + h->p.http_minor % 10u);
    hd->major = h->p.http_major;
    hd->minor = h->p.http_minor;
    if (h->kind == H1_REQUEST) {
        hd->method = copy(http_method_str((enum http_method)h->p.method),
                          strlen(http_method_str((enum http_method)h->p.method)));
        hd->uri = copy(g_span_at ? g_span_at : "", g_span_at ? g_span_len : 0);
        if (!hd->method || !hd->uri)
            return BW_ENOMEM;
    } else {
        hd->status = h->p.status_code;
        hd->reason = copy(g_span_at ? g_span_at : "", g_span_at ? g_span_len : 0);
        if (!hd->reason)
            return BW_ENOMEM;
    }
    return 0;
}

static void parse_head(h1_t *h, h1_ev_t *ev)
{
    h1_head_t *hd = &h->head;
    g_span_at = NULL;
    g_span_len = 0;
    size_t n = http_parser_execute(&h->p, settings(h), hd->raw.data, hd->raw.len);
    enum http_errno e = HTTP_PARSER_ERRNO(&h->p);
    if (e != HPE_OK && e != HPE_PAUSED) {
        if (!h->err[0])
            fail(h, h->kind == H1_REQUEST ? 400 : 502, http_errno_description(e));
        *ev = H1_EV_ERROR;
        return;
    }
    if (n != hd->raw.len && !h->upgrade) {
        fail(h, h->kind == H1_REQUEST ? 400 : 502, "malformed message head");
        *ev = H1_EV_ERROR;
        return;
    }
    if (e == HPE_PAUSED)
        http_parser_pause(&h->p, 0);
    if (finish_head(h) < 0) {
        fail(h, 500, "out of memory");
        *ev = H1_EV_ERROR;
        return;
    }
    h->in_head = 0;
    *ev = H1_EV_HEAD;
}

static size_t feed_head(h1_t *h, const char *data, size_t len, h1_ev_t *ev)
{
    int end;
    size_t skipped;
    size_t n = scan_head(h, data, len, &end, &skipped);
    size_t take = n - skipped;
    *ev = H1_EV_NONE;
    if (h->head.raw.len + take > H1_HEAD_MAX) {
        fail(h, h->kind == H1_REQUEST ? 431 : 502, "message head larger than 16 KiB");
        *ev = H1_EV_ERROR;
        return n;
    }
    if (h1_buf_add(&h->head.raw, data + skipped, take) < 0) {
        fail(h, 500, "out of memory");
        *ev = H1_EV_ERROR;
        return n;
    }
    if (end)
        parse_head(h, ev);
    return n;
}

static size_t feed_body(h1_t *h, const char *data, size_t len, h1_ev_t *ev)
{
    *ev = H1_EV_NONE;
    if (len == 0)
        return 0; /* http_parser reads an empty call as EOF (h1_eof's business) */
    size_t n = http_parser_execute(&h->p, settings(h), data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&h->p);
    *ev = H1_EV_NONE;
    if (h->done_pending) {
        if (e == HPE_PAUSED)
            http_parser_pause(&h->p, 0);
        *ev = H1_EV_DONE;
        return n;
    }
    if (e != HPE_OK) {
        fail(h, h->kind == H1_REQUEST ? 400 : 502, http_errno_description(e));
        *ev = H1_EV_ERROR;
    }
    return n;
}

size_t h1_feed(h1_t *h, const char *data, size_t len, h1_ev_t *ev)
{
    if (h->err[0]) {
        *ev = H1_EV_ERROR;
        return 0;
    }
    if (h->done_pending && !h->in_head) {
        /* The message ended inside its head (no body): report it now. */
        *ev = H1_EV_DONE;
        int up = h->upgrade;
        next_message(h);
        if (up)
            http_parser_init(&h->p, h->kind == H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
        h->upgrade = up;
        return 0;
    }
    if (h->in_head)
        return len ? feed_head(h, data, len, ev) : (*ev = H1_EV_NONE, 0);
    size_t n = feed_body(h, data, len, ev);
    if (*ev == H1_EV_DONE) {
        int up = h->upgrade;
        next_message(h);
        if (up)
            http_parser_init(&h->p, h->kind == H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
        h->upgrade = up;
    }
    return n;
}

h1_ev_t h1_eof(h1_t *h)
{
    if (h->err[0])
        return H1_EV_ERROR;
    if (!h1_busy(h))
        return H1_EV_NONE;
    if (h->in_head || h->done_pending) {
        if (h->done_pending)
            return H1_EV_DONE;
        fail(h, h->kind == H1_REQUEST ? 400 : 502, "connection closed inside a message head");
        return H1_EV_ERROR;
    }
    http_parser_execute(&h->p, settings(h), NULL, 0);
    if (h->done_pending) {
        http_parser_pause(&h->p, 0);
        next_message(h);
        return H1_EV_DONE;
    }
    fail(h, h->kind == H1_REQUEST ? 400 : 502, "connection closed inside a message body");
    return H1_EV_ERROR;
}

/* ---- heads ---------------------------------------------------------------- */

int h1_find(const h1_head_t *head, const char *name, size_t from)
{
    size_t n = strlen(name);
    for (size_t i = from; i < head->n_headers; i++)
        if (head->headers[i].name_len == n && strncasecmp(head->headers[i].name, name, n) == 0)
            return (int)i;
    return -1;
}

void h1_capture_view(const h1_head_t *head, bw_http_head_t *out)
{
    *out = (bw_http_head_t){
        .struct_size = sizeof *out,
        .method = head->method,
        .uri = head->uri,
        .proto = head->proto,
        .status = head->status,
        .reason = head->reason,
        .headers = head->headers,
        .n_headers = head->n_headers,
    };
}

static int name_is(const bw_http_header_t *x, const char *name)
{
    return name && strlen(name) == x->name_len && strncasecmp(x->name, name, x->name_len) == 0;
}

static int removed(const h1_edit_t *e, const bw_http_header_t *x)
{
    for (size_t i = 0; i < e->n_remove; i++)
        if (name_is(x, e->remove[i]))
            return 1;
    return 0;
}

static int put_header(h1_buf_t *out, const char *name, size_t nlen, const char *val, size_t vlen)
{
    int rc = h1_buf_add(out, name, nlen);
    if (rc == 0)
        rc = h1_buf_add(out, ": ", 2);
    if (rc == 0)
        rc = h1_buf_add(out, val, vlen);
    if (rc == 0)
        rc = h1_buf_add(out, "\r\n", 2);
    return rc;
}

int h1_head_rebuild(const h1_head_t *head, const h1_edit_t *e, h1_buf_t *out)
{
    int rc = h1_buf_add(out, head->raw.data, head->line_len);
    int set1 = 0, set2 = 0;
    rc = rc ? rc : h1_buf_add(out, "\r\n", 2);
    for (size_t i = 0; rc == 0 && i < head->n_headers; i++) {
        const bw_http_header_t *x = &head->headers[i];
        if (removed(e, x))
            continue;
        if (name_is(x, e->set_name) || name_is(x, e->set2_name)) {
            int first = name_is(x, e->set_name);
            const char *v = first ? e->set_value : e->set2_value;
            if (!(first ? set1 : set2))
                rc = put_header(out, x->name, x->name_len, v, strlen(v));
            *(first ? &set1 : &set2) = 1;
            continue;
        }
        rc = put_header(out, x->name, x->name_len, x->value, x->value_len);
    }
    if (rc == 0 && e->set_name && !set1)
        rc = put_header(out, e->set_name, strlen(e->set_name), e->set_value, strlen(e->set_value));
    if (rc == 0 && e->set2_name && !set2)
        rc = put_header(out, e->set2_name, strlen(e->set2_name), e->set2_value,
                        strlen(e->set2_value));
    for (size_t i = 0; rc == 0 && i < e->n_add; i++) {
        rc = h1_buf_adds(out, e->add[i]);
        rc = rc ? rc : h1_buf_add(out, "\r\n", 2);
    }
    return rc ? rc : h1_buf_add(out, "\r\n", 2);
}

/* ---- local responses ------------------------------------------------------ */

const char *h1_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 301:
        return "Moved Permanently";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    default:
        return "Unknown";
    }
}

int h1_response(h1_buf_t *out, int status, const char *reason, const char *ctype, const char *extra,
                const void *body, size_t body_len, int close)
{
    int rc =
        h1_buf_addf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                    status, reason ? reason : h1_reason(status), ctype, body_len,
                    extra ? extra : "", close ? "Connection: close\r\n" : "");
    return rc ? rc : h1_buf_add(out, body, body_len);
}

int h1_html_escape(h1_buf_t *out, const char *s)
{
    int rc = 0;
    for (; rc == 0 && *s; s++) {
        switch (*s) {
        case '<':
            rc = h1_buf_adds(out, "&lt;");
            break;
        case '>':
            rc = h1_buf_adds(out, "&gt;");
            break;
        case '&':
            rc = h1_buf_adds(out, "&amp;");
            break;
        case '"':
            rc = h1_buf_adds(out, "&#34;");
            break;
        case '\'':
            rc = h1_buf_adds(out, "&#39;");
            break;
        default:
            rc = h1_buf_add(out, s, 1);
        }
    }
    return rc;
}
