/* Shared state of the http plugin: the tunnel's parsed options and one
 * public connection. */
#ifndef BW_HTTP_INT_H
#define BW_HTTP_INT_H

#include <stddef.h>
#include <stdint.h>

#include <burrow/plugin.h>
#include <burrow/proxy_proto.h>

#include "h1.h"
#include "policy.h"
#include "upstream.h"

extern const bw_host_t *bw__http_host;
#define H bw__http_host

typedef enum http_upstream { UP_HTTP, UP_HTTPS, UP_FILE } http_upstream_t;

typedef struct http_list {
    char **items;
    size_t n;
} http_list_t;

typedef struct http_tunnel {
    bw_tunnel_t *t; /* NULL once the tunnel stopped */
    unsigned live;  /* connections still open */
    http_upstream_t kind;
    int proxy_proto;      /* PROXY protocol version each local connection starts with, 0: none */
    char host_port[512];  /* Host for host_header: rewrite (default port omitted) */
    char addr[520];       /* "host:port" to connect to */
    char shown_addr[600]; /* the local address as the 502 page names it */
    char *root;           /* file:// directory */
    char *host_header;    /* NULL: preserve */
    http_list_t creds;    /* "user:pass" */
    http_list_t req_add, req_remove, res_add, res_remove;
    http_cidr_t *allow, *deny;
    size_t n_allow, n_deny;
} http_tunnel_t;

/* The current request, as read from the public side. */
typedef enum http_req_state {
    R_HEAD, /* waiting for a request head (between exchanges, too) */
    R_BODY, /* head seen; its body is being read */
    R_WAIT  /* read completely; waiting for the response to end */
} http_req_state_t;

/* The response to it, as written to the public side. */
typedef enum http_res_state {
    S_HEAD,    /* no final head yet */
    S_INTERIM, /* a 1xx head was passed on; after its end, S_HEAD again */
    S_BODY,    /* final head sent; the body follows */
    S_DONE     /* complete: the exchange ends once the request has too */
} http_res_state_t;

/* Who answers the current request. */
typedef enum http_answer {
    X_NONE, /* nobody yet (no head, or a refusal pending) */
    X_UP,   /* the local service, over `up` */
    X_LOCAL /* the plugin itself: an error page or the file server */
} http_answer_t;

/* The local connection (`up`). */
typedef enum http_local_state {
    L_NONE,       /* none: connect for the next request that needs one */
    L_CONNECTING, /* host->connect in flight; the request head waits in `pending` */
    L_OPEN,       /* connected and readable */
    L_EOF         /* the service ended (EOF or error); closed between exchanges */
} http_local_state_t;

/* The public connection as a whole. */
typedef enum http_conn_phase {
    C_HTTP,     /* exchanging requests and responses */
    C_UPGRADED, /* 101 Switching Protocols: both streams handed to stream_join */
    C_CLOSED    /* bw__http_conn_close ran; freed with the last reference */
} http_conn_phase_t;

typedef struct http_conn {
    http_tunnel_t *tt;
    bw_stream_t *pub, *up;
    char client_addr[80], client_ip[64], server_name[256];
    char server_addr[80]; /* the edge's address the client reached, or "" */
    bw_edge_type_t edge_type;
    uint64_t conn_start, x_start;
    h1_t req, res;
    h1_buf_t pin, uin; /* bytes read and not yet consumed */
    /* A read from the local service being parsed where it lies (uin was
     * empty): what it leaves unconsumed is copied to uin afterwards. */
    const char *uext;
    size_t uext_len;
    http_req_state_t rstate;
    http_res_state_t sstate;
    http_answer_t mode;
    http_local_state_t lstate;
    http_conn_phase_t phase;
    int refs;
    /* Independent bits, not phases: backpressure and read state per side. */
    int up_full, pub_full, pub_eof;
    int pub_reading, up_reading;
    int in_pub, pub_again, in_up, up_again;
    int close_after, is_head, req_upgrade, sent_any;
    int forbidden, req_reported;
    bw_capture_t *cap;
    h1_buf_t pending; /* request head waiting for the local connection */
    int file_fd;      /* file being served, or -1 */
} http_conn_t;

/* conn.c */
void bw__http_conn_open(http_tunnel_t *tt, bw_stream_t *pub, const bw_conn_info_t *info);
void bw__http_tunnel_unref(http_tunnel_t *tt);
/* Keep `c` allocated across an asynchronous call; unref may free it. */
void bw__http_conn_ref(http_conn_t *c);
void bw__http_conn_unref(http_conn_t *c);
/* Finish the current exchange when both its request and response ended. */
void bw__http_finish_exchange(http_conn_t *c);
/* Close the connection; abort resets the public side instead of flushing. */
void bw__http_conn_close(http_conn_t *c, int abort);
/* Publish the capture; req_err != 0 first reports the request as failed. */
void bw__http_end_capture(http_conn_t *c, int req_err);

/* Write to the public side (not captured). */
void bw__http_pub_write(http_conn_t *c, const void *data, size_t len);
/* Answer the current request locally with a complete response. */
void bw__http_local_reply(http_conn_t *c, int status, const char *extra, const char *ctype,
                          const void *body, size_t len, int close_now);
/* The locally served response ended. */
void bw__http_local_done(http_conn_t *c);
/* Report the response head of a locally built response to the capture. */
void bw__http_capture_local_head(http_conn_t *c, const char *head, size_t len);

/* reply.c: an HTML page with a title and one paragraph (both escaped). */
void bw__http_reply_page(http_conn_t *c, int status, const char *title, const char *text,
                         const char *extra, int close_now);
/* The §4.4 page for an unreachable local service; closes after the exchange. */
void bw__http_reply_502(http_conn_t *c, const char *error);

/* files.c */
void bw__http_files_serve(http_conn_t *c);
void bw__http_files_pump(http_conn_t *c);

#endif
