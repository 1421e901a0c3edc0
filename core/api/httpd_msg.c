/* HTTP messages of the agent API's server as text (built in bw_buf_t): Go
 * duration formatting and URL decoding, the request object with its
 * accessors, and the bytes of a response (reason phrases from the
 * shared table in core/base/http_text.c). Nothing here does I/O. */
#include "httpd.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <burrow/error.h>
#include <http_parser.h>

#include "http_text.h"
#include "httpd_int.h"
#include "util.h"

/* ---- Go duration formatting (time.Duration.String) ---- */

static size_t fmt_frac(char *buf, size_t w, uint64_t *v, int prec)
{
    int print = 0;
    for (int i = 0; i < prec; i++) {
        unsigned digit = (unsigned)(*v % 10);
        print = print || digit != 0;
        if (print)
            buf[--w] = (char)('0' + digit);
        *v /= 10;
    }
    if (print)
        buf[--w] = '.';
    return w;
}

static size_t fmt_int(char *buf, size_t w, uint64_t v)
{
    if (v == 0)
        buf[--w] = '0';
    while (v > 0) {
        buf[--w] = (char)('0' + v % 10);
        v /= 10;
    }
    return w;
}

static size_t fmt_small(char *buf, size_t w, uint64_t u)
{
    int prec;
    buf[--w] = 's';
    if (u == 0) {
        buf[--w] = '0';
        return w;
    }
    if (u < 1000) {
        prec = 0;
        buf[--w] = 'n';
    } else if (u < 1000000) {
        prec = 3;
        buf[--w] = '\xb5'; /* U+00B5 MICRO SIGN, as Go writes it */
        buf[--w] = '\xc2';
    } else {
        prec = 6;
        buf[--w] = 'm';
    }
    w = fmt_frac(buf, w, &u, prec);
    return fmt_int(buf, w, u);
}

const char *bw_httpd_fmt_duration(int64_t ns, char *buf, size_t len)
{
    char arr[32];
    size_t w = sizeof arr;
    uint64_t u = ns < 0 ? -(uint64_t)ns : (uint64_t)ns;
    if (u < 1000000000u) {
        w = fmt_small(arr, w, u);
    } else {
        arr[--w] = 's';
        w = fmt_frac(arr, w, &u, 9);
        w = fmt_int(arr, w, u % 60);
        u /= 60;
        if (u > 0) {
            arr[--w] = 'm';
            w = fmt_int(arr, w, u % 60);
            u /= 60;
            if (u > 0) {
                arr[--w] = 'h';
                w = fmt_int(arr, w, u);
            }
        }
    }
    if (ns < 0)
        arr[--w] = '-';
    bw_fmt(buf, len, "%.*s", (int)(sizeof arr - w), arr + w);
    return buf;
}

/* ---- URL decoding ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int bw_httpd_url_decode(const char *in, size_t len, int plus_space, char **out)
{
    char *o = malloc(len + 1);
    size_t n = 0;
    if (!o)
        return BW_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            int hi = i + 2 < len ? hexval(in[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(in[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi | lo) == 0) {
                free(o);
                return BW_EINVAL;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        } else if (c == '\0') {
            free(o);
            return BW_EINVAL;
        }
        o[n++] = c;
    }
    o[n] = '\0';
    *out = o;
    return 0;
}

/* ---- requests ---- */

bw_httpd_req_t *bw__httpd_req_new(sess_t *s)
{
    bw_httpd_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->sess = s;
    r->body.max = s->srv->max_body; /* past it: 413 */
    bw_fmt(r->remote, sizeof r->remote, "%s", s->remote);
    if (bw_random_hex(r->id, 8) != 0)
        bw_fmt(r->id, sizeof r->id, "%016llx", (unsigned long long)uv_hrtime());
    return r;
}

void bw__httpd_req_free(bw_httpd_req_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nhdrs; i++) {
        bw_buf_free(&r->hdrs[i].name);
        bw_buf_free(&r->hdrs[i].value);
    }
    free(r->hdrs);
    bw_buf_free(&r->url);
    bw_buf_free(&r->body);
    free(r->path);
    free(r->query);
    free(r->param);
    free(r->param_raw);
    free(r);
}

const char *bw_httpd_req_method(const bw_httpd_req_t *req)
{
    return req->method;
}

const char *bw_httpd_req_path(const bw_httpd_req_t *req)
{
    return req->path ? req->path : "";
}

const char *bw_httpd_req_query_string(const bw_httpd_req_t *req)
{
    return req->query ? req->query : "";
}

const char *bw_httpd_req_header(const bw_httpd_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nhdrs; i++)
        if (strcasecmp(bw_buf_cstr(&req->hdrs[i].name), name) == 0)
            return bw_buf_cstr(&req->hdrs[i].value);
    return NULL;
}

const char *bw_httpd_req_body(const bw_httpd_req_t *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return bw_buf_cstr(&req->body);
}

const char *bw_httpd_req_remote(const bw_httpd_req_t *req)
{
    return req->remote;
}

const char *bw_httpd_req_param(const bw_httpd_req_t *req)
{
    return req->param;
}

const char *bw_httpd_req_param_raw(const bw_httpd_req_t *req)
{
    return req->param_raw;
}

const char *bw_httpd_req_id(const bw_httpd_req_t *req)
{
    return req->id;
}

int bw_httpd_req_cancelled(const bw_httpd_req_t *req)
{
    return req->sess == NULL;
}

int bw_httpd_req_query(const bw_httpd_req_t *req, const char *key, char **out)
{
    const char *q = bw_httpd_req_query_string(req);
    size_t klen = strlen(key);
    while (*q) {
        size_t n = strcspn(q, "&");
        size_t kn = strcspn(q, "=");
        if (kn > n)
            kn = n;
        char *k = NULL;
        int rc = bw_httpd_url_decode(q, kn, 1, &k);
        if (rc == BW_ENOMEM)
            return rc;
        int match = rc == 0 && strlen(k) == klen && memcmp(k, key, klen) == 0;
        free(k);
        if (match) {
            const char *v = kn < n ? q + kn + 1 : q + n;
            return bw_httpd_url_decode(v, (size_t)(q + n - v), 1, out);
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return BW_ENOENT;
}

/* Split the request target into path and query. */
int bw__httpd_req_parse_target(bw_httpd_req_t *r, int is_connect)
{
    struct http_parser_url u;
    const char *url = bw_buf_cstr(&r->url);
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, r->url.len, is_connect, &u) != 0)
        return BW_EINVAL;
    if (u.field_set & (1 << UF_PATH))
        r->path = strndup(url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    else
        r->path = strdup(is_connect ? "" : "/");
    if (u.field_set & (1 << UF_QUERY))
        r->query = strndup(url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    else
        r->query = strdup("");
    return r->path && r->query ? 0 : BW_ENOMEM;
}

/* ---- response encoding ---- */

/* httpd's own text for a code the shared table does not know. */
static const char *reason(int status)
{
    const char *text = bw_http_reason(status);
    return text ? text : "Unknown";
}

/* RFC 7231 IMF-fixdate, built by hand so the locale cannot change it. */
static void http_date(char *buf, size_t len)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    bw_fmt(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
           mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Build the whole response. Returns 0 or BW_ENOMEM/BW_EMSGSIZE. */
int bw__httpd_build_response(bw_buf_t *o, int status, const char *ctype, const void *body,
                             size_t len, const char *extra, int keep, int http10, int head)
{
    char date[64];
    int no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    http_date(date, sizeof date);
    /* Errors are sticky in o: one check at the end covers every append. */
    bw_buf_printf(o, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason(status), date);
    if (ctype)
        bw_buf_printf(o, "Content-Type: %s\r\n", ctype);
    if (!no_body)
        bw_buf_printf(o, "Content-Length: %zu\r\n", len);
    if (!keep)
        bw_buf_puts(o, "Connection: close\r\n");
    else if (http10)
        bw_buf_puts(o, "Connection: keep-alive\r\n");
    if (extra)
        bw_buf_puts(o, extra);
    bw_buf_puts(o, "\r\n");
    if (!no_body && !head && len)
        bw_buf_put(o, body, len);
    return o->err ? BW_ENOMEM : 0;
}

/* json_dumps as Go's json.Encoder writes: HTML characters escaped and a
 * trailing newline. '<' '>' '&' can only occur inside JSON strings, so
 * replacing them everywhere is safe. Returns a new string or NULL. */
char *bw__httpd_go_json(const json_t *v, size_t *len)
{
    char *raw = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    bw_buf_t o = {0};
    int rc = 0;
    if (!raw)
        return NULL;
    for (const char *p = raw; *p && rc == 0; p++) {
        if (*p == '<')
            rc = bw_buf_puts(&o, "\\u003c");
        else if (*p == '>')
            rc = bw_buf_puts(&o, "\\u003e");
        else if (*p == '&')
            rc = bw_buf_puts(&o, "\\u0026");
        else
            rc = bw_buf_put(&o, p, 1);
    }
    free(raw);
    if (rc == 0)
        rc = bw_buf_puts(&o, "\n");
    if (rc != 0) {
        bw_buf_free(&o);
        return NULL;
    }
    return bw_buf_take(&o, len);
}
