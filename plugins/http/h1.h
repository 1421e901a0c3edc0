/* HTTP/1.x framing without I/O: where each message's head and body end, the
 * parsed head, head rewriting and locally generated responses.
 *
 * The caller feeds the bytes of one direction as they arrive; h1_feed
 * consumes a prefix and reports at most one event. Bytes consumed while no
 * head is pending are body bytes in their wire form (chunk framing kept):
 * the caller forwards or discards exactly those, so nothing is buffered
 * beyond one head (H1_HEAD_MAX). */
#ifndef BW_HTTP_H1_H
#define BW_HTTP_H1_H

#include <stddef.h>
#include <stdint.h>

#include <burrow/plugin.h>
#include <http_parser.h>

#define H1_HEAD_MAX    (16u * 1024u)
#define H1_MAX_HEADERS 128

typedef enum h1_kind { H1_REQUEST = 0, H1_RESPONSE = 1 } h1_kind_t;

typedef enum h1_ev {
    H1_EV_NONE = 0, /* everything given was consumed; feed more */
    H1_EV_HEAD,     /* a head is complete: h1_t.head */
    H1_EV_DONE,     /* the message ended at the end of the consumed bytes */
    H1_EV_ERROR     /* malformed: h1_t.err says why, h1_t.err_status the answer */
} h1_ev_t;

/* A growable byte buffer. */
typedef struct h1_buf {
    char *data;
    size_t len, cap;
} h1_buf_t;

int h1_buf_add(h1_buf_t *b, const void *data, size_t len);
int h1_buf_addf(h1_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int h1_buf_adds(h1_buf_t *b, const char *s);
/* Drop the first n bytes. */
void h1_buf_consume(h1_buf_t *b, size_t n);
void h1_buf_free(h1_buf_t *b);

/* One parsed head. Header names and values point into `raw`. */
typedef struct h1_head {
    h1_buf_t raw;    /* the head exactly as received (start line .. blank line) */
    size_t line_len; /* length of the start line without its line ending */
    char *method;    /* request: "GET" (NUL-terminated copy) */
    char *uri;       /* request: "/path?q" */
    int status;      /* response: 200 */
    char *reason;    /* response: "OK" */
    char proto[16];  /* "HTTP/1.1" */
    int major, minor;
    bw_http_header_t *headers; /* grown as needed, up to H1_MAX_HEADERS */
    size_t n_headers, cap_headers;
} h1_head_t;

typedef struct h1 {
    http_parser p;
    h1_kind_t kind;
    int in_head;      /* collecting a head */
    int started;      /* the head's first non-CRLF byte was seen */
    int nl;           /* head-end scanner: 1 after LF, 2 after LF CR */
    int done_pending; /* the message ended inside its head */
    int skip_body;    /* response to HEAD: no body whatever the headers say */
    int keep_alive;   /* http_should_keep_alive() of the finished head */
    int upgrade;      /* request asked for Upgrade/CONNECT; response: 101 */
    int hdr_state;    /* 0 none, 1 in field, 2 in value */
    h1_head_t head;
    int err_status; /* 400, 431, 502 ... for H1_EV_ERROR */
    char err[160];
} h1_t;

void h1_init(h1_t *h, h1_kind_t kind);
void h1_free(h1_t *h);
/* Consume a prefix of data[len] and report one event through *ev. Returns
 * the number of bytes consumed. Call again with the rest (even len 0 after
 * H1_EV_HEAD: a message without body reports H1_EV_DONE next). After
 * H1_EV_DONE the next call starts a new message. */
size_t h1_feed(h1_t *h, const char *data, size_t len, h1_ev_t *ev);
/* The peer closed: H1_EV_DONE when this ends a read-until-close body,
 * H1_EV_NONE when no message was in progress, else H1_EV_ERROR. */
h1_ev_t h1_eof(h1_t *h);
/* Is a message in progress (some of its bytes consumed)? */
int h1_busy(const h1_t *h);
/* Does the current response body run until the connection closes? */
int h1_body_until_eof(const h1_t *h);

/* Find a header (case-insensitive); returns its index or -1. */
int h1_find(const h1_head_t *head, const char *name, size_t from);
/* Fill a bw_http_head_t view of head for capture_head. */
void h1_capture_view(const h1_head_t *head, bw_http_head_t *out);

/* A rewrite of a head: headers removed by name, one header replaced
 * (`set_name: set_value`, appended when absent), headers added. */
typedef struct h1_edit {
    const char *const *remove; /* names */
    size_t n_remove;
    const char *const *add; /* "Name: value" */
    size_t n_add;
    const char *set_name, *set_value;
    const char *set2_name, *set2_value;
} h1_edit_t;

/* Append the rewritten head (start line as received, CRLF line endings).
 * Returns 0 or BW_ENOMEM. */
int h1_head_rebuild(const h1_head_t *head, const h1_edit_t *edit, h1_buf_t *out);

/* Append a complete response: status line, Content-Type, Content-Length,
 * `extra` header lines (each ending in CRLF, may be NULL), Connection: close
 * when `close`, then the body. */
int h1_response(h1_buf_t *out, int status, const char *reason, const char *ctype, const char *extra,
                const void *body, size_t body_len, int close);
/* Append s HTML-escaped. */
int h1_html_escape(h1_buf_t *out, const char *s);
/* Standard reason phrase for a status code ("Unknown" when unknown). */
const char *h1_reason(int status);

#endif
