/* The router of the agent API's server and its olive-compatible answers:
 * the route table and pattern matching, the DNS-rebinding guard on Host,
 * the Accept and Content-Type checks, the 404/405/406/415 error shapes, and
 * bw_httpd_respond() with its helpers, which log each request's end. */
#include "httpd.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <burrow/error.h>
#include <http_parser.h>

#include "httpd_int.h"
#include "json_build.h"
#include "log.h"
#include "util.h"

/* ---- the route table ---- */

int bw_httpd_route(bw_httpd_t *h, const char *method, const char *pattern, unsigned flags,
                   bw_httpd_handler_fn fn, void *ud)
{
    if (!method || !pattern || pattern[0] != '/' || !fn)
        return BW_EINVAL;
    const char *c = strchr(pattern, ':');
    if (c && (c[-1] != '/' || c[1] == '\0' || c[1] == '/' || strchr(c + 1, ':')))
        return BW_EINVAL;
    route_t *r = realloc(h->routes, (h->nroutes + 1) * sizeof *r);
    if (!r)
        return BW_ENOMEM;
    h->routes = r;
    r = &h->routes[h->nroutes];
    r->method = strdup(method);
    r->pattern = strdup(pattern);
    r->flags = flags;
    r->fn = fn;
    r->ud = ud;
    if (!r->method || !r->pattern) {
        free(r->method);
        free(r->pattern);
        return BW_ENOMEM;
    }
    h->nroutes++;
    return 0;
}

/* ---- routing and olive behaviour ---- */

/* Match one pattern against a raw path; on a match with a ":param" segment
 * store the raw segment's bounds. */
static int pattern_match(const char *pat, const char *path, const char **pstart, size_t *plen)
{
    *pstart = NULL;
    *plen = 0; /* a pattern without a parameter sets neither */
    for (;;) {
        if (*pat == ':') {
            size_t n = strcspn(path, "/");
            if (n == 0)
                return 0;
            *pstart = path;
            *plen = n;
            pat += strcspn(pat, "/");
            path += n;
            continue;
        }
        if (*pat != *path)
            return 0;
        if (*pat == '\0')
            return 1;
        pat++;
        path++;
    }
}

static int method_is(const route_t *rt, const char *m)
{
    if (strcmp(rt->method, m) == 0 || strcmp(rt->method, "*") == 0)
        return 1;
    return strcmp(m, "HEAD") == 0 && strcmp(rt->method, "GET") == 0;
}

static void respond_405(bw_httpd_req_t *r, const char *allowed)
{
    bw_buf_t hdr = {0};
    size_t len = 0;
    json_t *j = json_pack("{s:i, s:s, s:{s:s, s:s}}", "status_code", 405, "msg",
                          "Method Not Allowed", "details", "method", r->method, "allowed", allowed);
    char *body = j ? bw__httpd_go_json(j, &len) : NULL;
    json_decref(j);
    bw_log(BW_LOG_WARN, "Method Not Allowed", "pg", r->path, "id", r->id, "method", r->method,
           "allowed", allowed, NULL);
    if (body && bw_buf_printf(&hdr, "Allow: %s\r\n", allowed) == 0)
        bw_httpd_respond(r, 405, "application/json", body, len, hdr.p);
    else
        bw_httpd_error(r, 500, "Internal Server Error", NULL);
    free(body);
    bw_buf_free(&hdr);
}

/* Find the route; answers 404/405 itself and returns NULL then. */
static const route_t *route_find(bw_httpd_t *h, bw_httpd_req_t *r)
{
    bw_buf_t allowed = {0};
    const route_t *found = NULL;
    const char *ps = NULL;
    size_t pl = 0;
    int nomem = 0;
    for (size_t i = 0; i < h->nroutes && !found; i++) {
        const char *s;
        size_t l;
        if (!pattern_match(h->routes[i].pattern, r->path, &s, &l))
            continue;
        if (method_is(&h->routes[i], r->method)) {
            found = &h->routes[i];
            ps = s;
            pl = l;
        } else if (!strstr(bw_buf_cstr(&allowed), h->routes[i].method)) {
            /* An Allow list missing a method would be a wrong answer. */
            if (bw_buf_puts(&allowed, allowed.len ? ", " : "") != 0 ||
                bw_buf_puts(&allowed, h->routes[i].method) != 0)
                nomem = 1;
        }
    }
    if (!found && nomem)
        bw_httpd_error(r, 500, "Internal Server Error", NULL);
    else if (!found && allowed.len)
        respond_405(r, bw_buf_cstr(&allowed));
    else if (!found)
        bw_httpd_error(r, 404, "Not Found", json_pack("{s:s}", "path", r->path));
    bw_buf_free(&allowed);
    if (found && ps) {
        r->param_raw = strndup(ps, pl);
        if (bw_httpd_url_decode(ps, pl, 0, &r->param) == BW_ENOMEM || !r->param_raw) {
            bw_httpd_error(r, 500, "Internal Server Error", NULL);
            return NULL;
        }
    }
    return found;
}

static int str_ieq_n(const char *a, size_t n, const char *b)
{
    return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

/* Does one Accept list element name something we can produce? */
static int accept_ok(const char *accept)
{
    if (!accept)
        return 1;
    const char *p = accept;
    int empty = 1;
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t m = strcspn(p, ";,");
        const char *t = p;
        while (m && (*t == ' ' || *t == '\t'))
            t++, m--;
        while (m && (t[m - 1] == ' ' || t[m - 1] == '\t'))
            m--;
        if (m) {
            empty = 0;
            if (str_ieq_n(t, m, "*/*") || str_ieq_n(t, m, "application/*") ||
                str_ieq_n(t, m, "application/json"))
                return 1;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return empty;
}

/* Check Content-Type for a route that takes a JSON body. Answers 415 and
 * returns -1 when it will not do. */
static int content_type_ok(bw_httpd_req_t *r)
{
    const char *ct = bw_httpd_req_header(r, "Content-Type");
    const char *given = ct ? ct : "";
    size_t m = strcspn(given, ";");
    while (m && (given[m - 1] == ' ' || given[m - 1] == '\t'))
        m--;
    if (!str_ieq_n(given, m, "application/json")) {
        json_t *d =
            json_pack("{s:s, s:[s]}", "content-type", given, "available", "application/json");
        bw_httpd_error(r, 415, "unsupported request Content-Type", d);
        return -1;
    }
    const char *cs = strcasestr(given + m, "charset=");
    if (cs) {
        cs += strlen("charset=");
        size_t n = strcspn(cs, "; \t");
        if (n && *cs == '"' && cs[n - 1] == '"' && n >= 2)
            cs++, n -= 2;
        if (!str_ieq_n(cs, n, "utf-8") && !str_ieq_n(cs, n, "utf8")) {
            json_t *d = json_pack("{s:s}", "content-type", given);
            bw_httpd_error(r, 415, "unsupported request content encoding charset", d);
            return -1;
        }
    }
    return 0;
}

int bw__httpd_is_local_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.localdomain") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* The Host header without its port ("[::1]:4040" -> "::1"). */
static void host_only(const char *hosthdr, char *out, size_t len)
{
    const char *h = hosthdr ? hosthdr : "";
    size_t n;
    if (*h == '[') {
        n = strcspn(h + 1, "]");
        bw_fmt(out, len, "%.*s", (int)n, h + 1);
        return;
    }
    n = strlen(h);
    const char *colon = strchr(h, ':');
    if (colon && !strchr(colon + 1, ':'))
        n = (size_t)(colon - h);
    bw_fmt(out, len, "%.*s", (int)n, h);
}

/* The DNS-rebinding guard: answers 401 and returns -1 for a foreign Host.
 * A request without Host (HTTP/1.0) is foreign too, as in Go, where
 * r.Host is then "". */
static int host_ok(bw_httpd_t *h, bw_httpd_req_t *r)
{
    char host[256];
    if (!h->local)
        return 0;
    host_only(bw_httpd_req_header(r, "Host"), host, sizeof host);
    if (bw__httpd_is_local_host(host))
        return 0;
    for (size_t i = 0; i < h->nallow; i++)
        if (strcasecmp(h->allow_hosts[i], host) == 0)
            return 0;
    bw_buf_t o = {0};
    bw_buf_printf(&o, "Rejected host \"%s\".\n\nIf this request should be permitted, please add ",
                  host);
    bw_buf_printf(&o, "\"%s\" to the \"web_allow_hosts\" option in your configuration file.\n",
                  host);
    bw_httpd_respond(r, 401, "text/plain; charset=utf-8", bw_buf_cstr(&o), o.len,
                     "X-Content-Type-Options: nosniff\r\n");
    bw_buf_free(&o);
    return -1;
}

static void route_request(sess_t *s, bw_httpd_req_t *r)
{
    bw_httpd_t *h = s->srv;
    if (host_ok(h, r) != 0)
        return;
    const route_t *rt = route_find(h, r);
    if (!rt)
        return;
    r->route = rt;
    if (!(rt->flags & BW_HTTPD_ANY_ACCEPT) && !accept_ok(bw_httpd_req_header(r, "Accept"))) {
        json_t *d = json_pack("{s:s, s:[s]}", "accept-header", bw_httpd_req_header(r, "Accept"),
                              "supported", "application/json");
        bw_httpd_error(r, 406, "unsupported request Accept header", d);
        return;
    }
    if ((rt->flags & BW_HTTPD_BODY) && content_type_ok(r) != 0)
        return;
    rt->fn(r, rt->ud);
}

void bw__httpd_dispatch(sess_t *s)
{
    bw_httpd_req_t *r = s->cur;
    s->cur = NULL;
    if (!r)
        return;
    int is_connect = s->parser.method == HTTP_CONNECT;
    if (s->parser.upgrade || is_connect || s->srv->closing)
        r->keep_alive = 0; /* we never switch protocols */
    if (bw__httpd_req_parse_target(r, is_connect) != 0) {
        bw__httpd_req_free(r);
        bw__httpd_sess_fail(s, 400, "Bad Request", "invalid request target");
        return;
    }
    s->inflight = r;
    s->phase = PH_WAIT;
    r->t0 = uv_hrtime();
    bw_log(BW_LOG_INFO, "start", "pg", r->path, "id", r->id, NULL);
    route_request(s, r);
}

/* ---- responses ---- */

static void log_end(const bw_httpd_req_t *r, int status)
{
    char st[16], dur[40];
    bw_fmt(st, sizeof st, "%d", status);
    bw_httpd_fmt_duration((int64_t)(uv_hrtime() - r->t0), dur, sizeof dur);
    bw_log(BW_LOG_INFO, "end", "pg", r->path, "id", r->id, "status", st, "dur", dur, NULL);
}

int bw_httpd_respond(bw_httpd_req_t *req, int status, const char *content_type, const void *body,
                     size_t len, const char *extra_headers)
{
    sess_t *s = req->sess;
    int rc = 0;
    bw_buf_t o = {0};
    log_end(req, status);
    if (!s || s->dead) {
        rc = BW_ECANCELED;
        goto out;
    }
    int keep = req->keep_alive && !s->srv->closing;
    int head = strcmp(req->method, "HEAD") == 0;
    s->inflight = NULL;
    s->phase = PH_IDLE;
    rc = bw__httpd_build_response(&o, status, content_type, body, len, extra_headers, keep,
                                  req->http_minor == 0, head);
    if (rc == 0)
        bw__httpd_sess_emit(s, &o);
    if (rc != 0 || !keep)
        s->done = 1;
    if (!s->in_process)
        s->kick(s);
out:
    bw_buf_free(&o);
    bw__httpd_req_free(req);
    return rc;
}

int bw_httpd_json(bw_httpd_req_t *req, int status, json_t *body)
{
    size_t len = 0;
    char *txt = body ? bw__httpd_go_json(body, &len) : NULL;
    json_decref(body);
    if (!txt)
        return bw_httpd_error(req, 500, "Internal Server Error", NULL);
    int rc = bw_httpd_respond(req, status, "application/json", txt, len, NULL);
    free(txt);
    return rc;
}

/* Log an API error with up to four details as k=v, in key order. */
static void log_error(const bw_httpd_req_t *r, int status, const char *msg, json_t *details)
{
    const char *kv[8] = {0};
    char *dumped[4] = {0};
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(details, key, v)
    {
        if (n == 4)
            break;
        kv[2 * n] = key;
        if (json_is_string(v))
            kv[2 * n + 1] = json_string_value(v);
        else
            kv[2 * n + 1] = dumped[n] = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        n++;
    }
    bw_log(status >= 500 ? BW_LOG_ERROR : BW_LOG_WARN, msg, "pg", r->path, "id", r->id, kv[0],
           kv[1], kv[2], kv[3], kv[4], kv[5], kv[6], kv[7], NULL);
    for (size_t i = 0; i < n; i++)
        free(dumped[i]);
}

int bw_httpd_error_code(bw_httpd_req_t *req, int status, int error_code, const char *msg,
                        json_t *details)
{
    /* NULL details are a builder that ran out of memory, but on the bare
     * 500 (without details) such failures answer with: never a 4xx missing
     * its details. */
    if (!details && status != 500) {
        status = 500;
        error_code = 0;
        msg = "Internal Server Error";
    }
    json_t *j = json_object();
    int bad = 0;
    if (error_code)
        bw_json_put(j, "error_code", json_integer(error_code), &bad);
    bw_json_put(j, "status_code", json_integer(status), &bad);
    bw_json_put(j, "msg", json_string(msg ? msg : ""), &bad);
    if (details)
        bw_json_put(j, "details", json_incref(details), &bad);
    if (status >= 400)
        log_error(req, status, msg ? msg : "", details);
    json_decref(details);
    /* Never an error answer with a member missing: an empty 500. Rendered
     * here, not through bw_httpd_json, whose own failure answers with an
     * error: out of memory must not recurse. */
    j = bw_json_whole(j, bad);
    size_t len = 0;
    char *txt = j ? bw__httpd_go_json(j, &len) : NULL;
    json_decref(j);
    if (!txt)
        return bw_httpd_respond(req, 500, NULL, NULL, 0, NULL);
    int rc = bw_httpd_respond(req, status, "application/json", txt, len, NULL);
    free(txt);
    return rc;
}

int bw_httpd_error(bw_httpd_req_t *req, int status, const char *msg, json_t *details)
{
    return bw_httpd_error_code(req, status, 0, msg, details);
}
