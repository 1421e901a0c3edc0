/* A small embedded HTTP/1.1 server for the agent's local API (web_addr,
 * default 127.0.0.1:4040), with a router that reproduces the framework
 * behaviour of ngrok's olive (spec §2.0): JSON 404/405/406/415 shapes, the
 * DNS-rebinding guard and the start/end request log lines.
 *
 * Connections: keep-alive (HTTP/1.1 by default, HTTP/1.0 with
 * "Connection: keep-alive"), pipelining, bounded head (431) and body (413),
 * malformed input gets 400 and a close, idle and head timeouts, a cap on
 * concurrent connections. Chunked request bodies are decoded; responses
 * always carry Content-Length.
 *
 * Requests and responses: a handler is called with a request and must answer
 * it exactly once with bw_httpd_respond() (or bw_httpd_json/bw_httpd_error),
 * either before returning or later (async). A connection has at most one
 * request at a handler at a time: the next pipelined request is parsed only
 * once the previous one is answered, so responses always leave in request
 * order. If the client goes away while a handler holds a request, the
 * request is marked cancelled; answering it then just frees it.
 *
 * Only JSON is offered (olive also speaks XML; no client of the agent API
 * asks for it, so Accept: text/xml gets 406 and Content-Type: text/xml 415).
 *
 * Everything runs on the loop thread; nothing here is thread-safe.
 */
#ifndef BW_CORE_HTTPD_H
#define BW_CORE_HTTPD_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

typedef struct bw_httpd bw_httpd_t;
typedef struct bw_httpd_req bw_httpd_req_t;

/* The agent's default web address; only this one falls back to 4041..4049. */
#define BW_HTTPD_DEFAULT_ADDR "127.0.0.1:4040"

typedef struct bw_httpd_cfg {
    /* Hosts accepted besides the localhost-like ones when listening on
     * loopback (web_allow_hosts). NULL-terminated; copied. May be NULL. */
    const char *const *allow_hosts;
    /* Limits; 0 picks the default in brackets. */
    size_t max_header_bytes;    /* request line + headers [16 KiB] -> 431 */
    size_t max_body_bytes;      /* decoded body [1 MiB] -> 413 */
    unsigned idle_timeout_ms;   /* between requests [60 s] */
    unsigned header_timeout_ms; /* first byte to end of head [15 s] */
    unsigned max_conns;         /* concurrent connections [256] */
} bw_httpd_cfg_t;

/* A route handler. It owns `req` until it calls bw_httpd_respond() (or a
 * helper) on it, which it must do exactly once, now or later. */
typedef void (*bw_httpd_handler_fn)(bw_httpd_req_t *req, void *ud);

/* Route flag: the route takes a JSON body. Requests need Content-Type
 * application/json (charset utf-8 if any) or get 415. */
#define BW_HTTPD_BODY 0x1u
/* Route flag: the route answers in its own media type (e.g. Prometheus
 * text), so the JSON-only Accept check does not apply. */
#define BW_HTTPD_ANY_ACCEPT 0x2u

/* --- server --- */

/* Bind and listen on `addr` ("ip:port", "[v6]:port", ":port"; a host name
 * is resolved synchronously). When addr is BW_HTTPD_DEFAULT_ADDR and that
 * port is taken, ports 4041..4049 are tried after logging ngrok's warning.
 * `cfg` may be NULL (defaults) and is copied. On success stores a new server
 * in *out (release with bw_httpd_close) and returns 0; otherwise returns a
 * negative libuv/BW_E* code (UV_EADDRINUSE when every port was taken). */
int bw_httpd_new(uv_loop_t *loop, const char *addr, const bw_httpd_cfg_t *cfg, bw_httpd_t **out);

/* The bound numeric address, "IP:PORT" (e.g. "127.0.0.1:4041"). Borrowed;
 * valid until bw_httpd_close. */
const char *bw_httpd_addr(const bw_httpd_t *h);

/* Register `fn` for `method` ("GET", ...; "*" for any method, the handler
 * then checks it) on `pattern` ("/api/tunnels",
 * "/api/tunnels/:name"; at most one ":param" segment, matched against one
 * non-empty path segment). Routes match in registration order; HEAD falls
 * back to GET. Strings are copied. Returns 0, BW_EINVAL for a bad pattern
 * or BW_ENOMEM. */
int bw_httpd_route(bw_httpd_t *h, const char *method, const char *pattern, unsigned flags,
                   bw_httpd_handler_fn fn, void *ud);

/* Stop listening and close every connection; requests still held by
 * handlers become cancelled. The memory goes once libuv has closed the
 * handles (run the loop). NULL-safe. */
void bw_httpd_close(bw_httpd_t *h);

/* --- requests (borrowed strings, valid until the request is answered) --- */

const char *bw_httpd_req_method(const bw_httpd_req_t *req);
/* The raw (still percent-encoded) path, e.g. "/api/tunnels/a%20b". */
const char *bw_httpd_req_path(const bw_httpd_req_t *req);
/* The raw query string without '?', "" when there is none. */
const char *bw_httpd_req_query_string(const bw_httpd_req_t *req);
/* First value of query parameter `key`, URL-decoded ('+' is a space), in
 * *out as a new malloc()ed string. Returns 0, BW_ENOENT when absent,
 * BW_EINVAL for a bad escape, BW_ENOMEM. */
int bw_httpd_req_query(const bw_httpd_req_t *req, const char *key, char **out);
/* Header value by case-insensitive name (the first one), or NULL. */
const char *bw_httpd_req_header(const bw_httpd_req_t *req, const char *name);
/* The decoded body and its length (*len may be NULL); never NULL, "" if empty. */
const char *bw_httpd_req_body(const bw_httpd_req_t *req, size_t *len);
/* The client's "ip:port". */
const char *bw_httpd_req_remote(const bw_httpd_req_t *req);
/* The route's ":param" segment, URL-decoded; NULL when the route has none or
 * the segment has a bad escape (or %00): see bw_httpd_req_param_raw. */
const char *bw_httpd_req_param(const bw_httpd_req_t *req);
/* The route's ":param" segment as it came, or NULL when the route has none. */
const char *bw_httpd_req_param_raw(const bw_httpd_req_t *req);
/* The 16-hex request id used in the log lines. */
const char *bw_httpd_req_id(const bw_httpd_req_t *req);
/* True once the client has gone: the answer will be dropped. */
int bw_httpd_req_cancelled(const bw_httpd_req_t *req);

/* --- responses (each consumes `req`: it is freed before returning) --- */

/* Answer with `status`, `content_type` (NULL: no Content-Type header) and
 * body[len] (copied; omitted on the wire for HEAD and 204/304).
 * `extra_headers` is NULL or complete "Name: value\r\n" lines. Logs the
 * request's end line. Returns 0, BW_ECANCELED when the client had gone (the
 * request is freed all the same) or BW_ENOMEM (the connection is closed). */
int bw_httpd_respond(bw_httpd_req_t *req, int status, const char *content_type, const void *body,
                     size_t len, const char *extra_headers);

/* Answer with `body` encoded as Go's json.Encoder does: compact, "<>&"
 * escaped, trailing "\n". Steals the reference to `body`; a NULL body (a
 * failed json_pack) answers 500. Returns as bw_httpd_respond. */
int bw_httpd_json(bw_httpd_req_t *req, int status, json_t *body);

/* Answer with olive's error shape
 * {"error_code":N,"status_code":S,"msg":M,"details":{...}} (error_code left
 * out when 0) and log `msg` with the details as k=v at warn (4xx) or eror
 * (5xx). Steals `details`, which only a 500 may leave NULL: a NULL from a
 * failed details builder answers 500 "Internal Server Error" instead. A
 * document that cannot be built whole is an empty 500. Returns as
 * bw_httpd_respond. */
int bw_httpd_error_code(bw_httpd_req_t *req, int status, int error_code, const char *msg,
                        json_t *details);
/* bw_httpd_error_code without an error_code. */
int bw_httpd_error(bw_httpd_req_t *req, int status, const char *msg, json_t *details);

/* --- helpers --- */

/* Format a duration as Go's time.Duration.String() ("295.273µs",
 * "217.126877ms", "1m30s") into buf[len]. Returns buf. */
const char *bw_httpd_fmt_duration(int64_t ns, char *buf, size_t len);

/* Percent-decode in[len] (with plus_space, '+' becomes ' ') into a new
 * malloc()ed NUL-terminated string in *out. Returns 0, BW_EINVAL for a bad
 * escape or a decoded NUL, BW_ENOMEM. */
int bw_httpd_url_decode(const char *in, size_t len, int plus_space, char **out);

/* --- loop-free core, for the fuzzer and tests --- */

/* A server with routes but no loop or socket; it behaves as if listening on
 * loopback. Release with bw_httpd_close (immediate: free its sessions
 * first). Returns NULL on ENOMEM. */
bw_httpd_t *bw__httpd_new_detached(const bw_httpd_cfg_t *cfg);

typedef struct bw__httpd_sess bw__httpd_sess_t;
/* Response bytes (borrowed for the call). */
typedef void (*bw__httpd_out_fn)(void *ud, const char *data, size_t len);

/* A connection of a detached server whose output goes to `out`. Returns NULL
 * on ENOMEM. */
bw__httpd_sess_t *bw__httpd_sess_new(bw_httpd_t *h, bw__httpd_out_fn out, void *ud);
/* Feed request bytes. Returns 1 once the connection would be closed (the
 * rest of the input is ignored), else 0. */
int bw__httpd_sess_feed(bw__httpd_sess_t *s, const void *data, size_t len);
/* Drop the connection; a request still held by a handler becomes cancelled. */
void bw__httpd_sess_free(bw__httpd_sess_t *s);

#endif /* BW_CORE_HTTPD_H */
