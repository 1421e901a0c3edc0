/* Internals shared by the parts of the agent API's HTTP server; the rest of
 * the API uses httpd.h only.
 *
 * Layers, bottom up:
 *  - httpd_msg.c: the message text (URL decoding, the request object,
 *    response bytes, all built in bw_buf_t). No I/O, no connection state.
 *  - httpd.c: sess_t, one connection's protocol core. It consumes bytes,
 *    runs http-parser, dispatches requests and emits response bytes through
 *    two hooks (write, finish). It knows nothing of libuv, so the fuzzer
 *    drives it directly. Also the server's lifecycle and listener.
 *  - httpd_conn.c: conn_t, a sess_t over a uv_tcp_t, with timers, read flow
 *    control and the close-callback lifetime rule.
 *  - httpd_router.c: the router and the olive-compatible responses.
 *
 * Everything runs on the loop thread.
 */
#ifndef BW_CORE_HTTPD_INT_H
#define BW_CORE_HTTPD_INT_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <jansson.h>
#include <uv.h>

#include "bw_limits.h"
#include "httpd.h"
#include "list.h"
#include "util.h"

/* Defaults for bw_httpd_cfg_t and the fixed limits; the flow-control
 * watermarks and the read buffer are in bw_limits.h. */
#define DEF_MAX_HEADER (16u * 1024u)
#define DEF_MAX_BODY   (1024u * 1024u)
#define DEF_IDLE_MS    60000u
#define DEF_HEADER_MS  15000u
#define DEF_MAX_CONNS  256u
#define MAX_HEADERS    100
#define DEFAULT_PORT   4040
#define FALLBACK_PORTS 9

typedef struct hdr {
    bw_buf_t name, value;
} hdr_t;

typedef struct route {
    char *method;
    char *pattern;
    unsigned flags;
    bw_httpd_handler_fn fn;
    void *ud;
} route_t;

typedef struct conn conn_t;

struct bw_httpd {
    uv_loop_t *loop; /* NULL for a detached server */
    uv_tcp_t listener;
    int listener_open;
    int closing;
    int local; /* listening on loopback: the DNS-rebinding guard applies */
    size_t max_header, max_body;
    unsigned idle_ms, header_ms, max_conns;
    char **allow_hosts;
    size_t nallow;
    route_t *routes;
    size_t nroutes;
    bw_list_t conns; /* open connections (conn_t) */
    size_t nconns;   /* open, counted against max_conns */
    size_t live;     /* allocated connections, open or closing */
    char addr[BW_ADDRSTRLEN];
    char rbuf[BW_READ_BUF_SIZE];
};

enum phase { PH_IDLE, PH_HEAD, PH_BODY, PH_WAIT };

typedef struct sess sess_t;
struct sess {
    bw_httpd_t *srv;
    void (*write)(sess_t *s, char *buf, size_t len); /* takes buf */
    void (*finish)(sess_t *s);                       /* flush, then close */
    void (*kick)(sess_t *s);                         /* an async answer came */
    http_parser parser;
    bw_httpd_req_t *cur;      /* being parsed */
    bw_httpd_req_t *inflight; /* at a handler */
    bw_buf_t in;
    size_t in_off;
    size_t hbytes;
    int phase;
    int fail_status;
    int in_process;
    int done;        /* no more requests: finish once the answer is out */
    int finished;    /* finish() called */
    int dead;        /* transport gone: drop output */
    int out_blocked; /* too much output queued: do not parse more */
    int last_was_value;
    char remote[BW_ADDRSTRLEN];
};

struct bw_httpd_req {
    sess_t *sess; /* NULL once the client has gone */
    const route_t *route;
    bw_buf_t url;
    char *path, *query, *param, *param_raw;
    hdr_t *hdrs;
    size_t nhdrs;
    bw_buf_t body;
    char method[24];
    char remote[BW_ADDRSTRLEN];
    char id[17];
    uint64_t t0;
    int keep_alive;
    int http_minor;
};

/* --- httpd_msg.c: requests and response text --- */

/* A new, empty request of session s with its id and remote address, or NULL
 * on ENOMEM. Release with bw__httpd_req_free (NULL-safe). */
bw_httpd_req_t *bw__httpd_req_new(sess_t *s);
void bw__httpd_req_free(bw_httpd_req_t *r);
/* Split the request target into r->path and r->query. Returns 0, BW_EINVAL
 * for a bad target or BW_ENOMEM. */
int bw__httpd_req_parse_target(bw_httpd_req_t *r, int is_connect);
/* Append a whole response to o: status line, Date, Content-Type when ctype
 * is not NULL, Content-Length and body as the status and HEAD allow,
 * Connection as keep and http10 need, the extra header lines. Returns 0 or
 * BW_ENOMEM. */
int bw__httpd_build_response(bw_buf_t *o, int status, const char *ctype, const void *body,
                             size_t len, const char *extra, int keep, int http10, int head);
/* v encoded as Go's json.Encoder writes it, as a new malloc()ed string of
 * *len bytes plus a NUL, or NULL on ENOMEM. */
char *bw__httpd_go_json(const json_t *v, size_t *len);

/* --- httpd.c: sessions and the server --- */

/* Set up s for server h; the caller then fills the write/finish/kick hooks
 * and the remote address. */
void bw__httpd_sess_init(sess_t *s, bw_httpd_t *h);
/* Append input and parse what can be parsed now. Returns 0 (also when the
 * session takes no more input) or BW_ENOMEM. */
int bw__httpd_sess_input(sess_t *s, const void *data, size_t len);
/* Parse held input while no request is at a handler, then call finish() if
 * the session is done. Reentrant calls return at once. */
void bw__httpd_sess_process(sess_t *s);
/* Hand the response bytes in o to the write hook (which takes them), or
 * drop them once the transport is gone; o is left empty. */
void bw__httpd_sess_emit(sess_t *s, bw_buf_t *o);
/* Answer outside any request (bad input) with olive's error shape and take
 * no more requests. */
void bw__httpd_sess_fail(sess_t *s, int status, const char *msg, const char *err);
/* The transport is gone: output is dropped and an in-flight request becomes
 * cancelled and stays with its handler. Safe inside parser callbacks. */
void bw__httpd_sess_detach(sess_t *s);
/* Free what the session holds (not s itself); never while the parser runs
 * on it. */
void bw__httpd_sess_cleanup(sess_t *s);
/* Free h once it is closing and neither its listener nor any connection is
 * left. */
void bw__httpd_srv_maybe_free(bw_httpd_t *h);

/* --- httpd_router.c --- */

/* Take the parsed request off s and route it: it ends at a handler or is
 * answered here (400, 401, 404, 405, 406, 415, 500). */
void bw__httpd_dispatch(sess_t *s);
/* True for "localhost", "localhost.localdomain" and loopback addresses. */
int bw__httpd_is_local_host(const char *host);

/* --- httpd_conn.c --- */

/* The listener's connection callback: accept, or reject over max_conns. */
void bw__httpd_on_connection(uv_stream_t *server, int status);
/* Close c (idempotent); its memory goes in the last close callback. */
void bw__httpd_conn_close(conn_t *c);
/* Close every open connection of h (bw__httpd_conn_close each). */
void bw__httpd_conn_close_all(bw_httpd_t *h);

#endif /* BW_CORE_HTTPD_INT_H */
