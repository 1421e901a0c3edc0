/* What the parts of the TLS connection share: tls.c (creation, errors,
 * the peer), tls_bio.c (the BIO between SSL and libuv), tls_io.c (the
 * engine: the handshake, delivery, writes, shutdown and close, over either
 * transport), tls_lower.c (the transport: the connection's own TCP handle,
 * or a caller's byte stream). See tls.c for the design. */
#ifndef BW_TLS_TLS_INT_H
#define BW_TLS_TLS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "tls.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define PLAIN_BUF_SIZE (64u * 1024u)
#define RECORD_SIZE    16384u /* largest TLS plaintext record */

struct write_req {
    uv_write_t req;
    bw_tls_t *t;
    uint8_t data[];
};

struct bw_tls {
    uv_tcp_t tcp; /* the transport unless `lower` is set */
    const bw_tls_lower_t *lower;
    void *lower_ud;
    uv_idle_t kick; /* next-turn work: handshake start, resume, async errors */
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    SSL *ssl;
    const uint8_t *in; /* ciphertext SSL has not consumed yet */
    size_t in_len;
    uint8_t *held;         /* owns `in` when it outlived the read callback */
    struct write_req *out; /* ciphertext not yet given to the socket */
    size_t out_len, out_cap;
    uint8_t *stage; /* RECORD_SIZE bytes: plaintext of a partial record */
    size_t stage_len;
    bw_tls_cbs_t cbs;
    void *ud;
    int pending_err; /* error to report from the kick handle */
    int open_handles;
    unsigned is_server : 1;
    unsigned connecting : 1;
    unsigned started : 1; /* socket connected/accepted, handshake running */
    unsigned handshake_done : 1;
    unsigned paused : 1;  /* owner called read_stop */
    unsigned reading : 1; /* uv_read_start is active */
    unsigned tcp_eof : 1; /* FIN seen; buffered records may remain */
    unsigned rx_done : 1; /* on_eof delivered */
    unsigned failed : 1;  /* on_error / failed on_handshake delivered */
    unsigned shut : 1;    /* bw_tls_shutdown called */
    unsigned closing : 1;
    unsigned over_hwm : 1;
    unsigned want_pump : 1; /* the kick must also deliver buffered input */
    bw_tls_peek_cb peek;    /* until it answers GO: sees input before SSL does */
    void *peek_ud;
    unsigned char *alpn; /* ALPN list in wire format, or NULL */
    size_t alpn_len;
    char err[256];
    char peer[64];
};

/* tls.c */

/* Format t's error text. */
void bw__tls_set_err(bw_tls_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when t failed, is closing or has an error waiting to be reported. */
int bw__tls_dead(const bw_tls_t *t);
/* Report a fatal error once: on_handshake(err) before the handshake
 * completed, on_error(err) after. Nothing but on_close follows. */
void bw__tls_fail(bw_tls_t *t, int err);
/* Report `err` on the next loop turn: API calls never call back. */
void bw__tls_fail_later(bw_tls_t *t, int err);
/* Describe the failed OpenSSL call in t->err and map it to a BW_E* code.
 * Must run before anything else touches this thread's OpenSSL error queue. */
int bw__tls_ssl_failure(bw_tls_t *t, int ssl_err, const char *what);

/* tls_bio.c */

/* Make room for `extra` more bytes of output. Returns 0 or BW_ENOMEM. */
int bw__tls_reserve(bw_tls_t *t, size_t extra);
/* A new SSL over our BIO for t (the caller frees it with SSL_free), in
 * accept or connect state; clients verify server_name. NULL on failure. */
SSL *bw__tls_ssl_new(bw_tls_t *t, SSL_CTX *ctx, int is_server, const char *server_name);

/* tls_io.c */

/* The kick idle handle's callback: next-turn work. */
void bw__tls_kick_cb(uv_idle_t *h);
/* Ciphertext arrived: advance the handshake and deliver plaintext. `p` is
 * borrowed for the call; what SSL has not consumed is copied. */
void bw__tls_input(bw_tls_t *t, const uint8_t *p, size_t n);
/* The transport ended: deliver what is buffered, then on_eof. */
void bw__tls_eof(bw_tls_t *t);
/* The transport's queue fell after it pushed back: clear over_hwm and
 * call on_drain. */
void bw__tls_drained(bw_tls_t *t);

/* tls_lower.c: the transport of a connection */

/* Hand w->data[0..len) to the transport; w is consumed. Returns 0 or < 0
 * (t->err says why). Sets t->over_hwm when the transport pushes back. */
int bw__tls_send(bw_tls_t *t, struct write_req *w, size_t len);
/* Ciphertext accepted by the transport and not yet written. */
size_t bw__tls_lower_queued(const bw_tls_t *t);
/* Start (on) or stop reading the transport. Returns 0 or < 0. */
int bw__tls_lower_read(bw_tls_t *t, int on);
/* End the transport's write side after what is queued (best effort). */
void bw__tls_lower_shutdown(bw_tls_t *t);
/* Open the object's handles (loop: the idle handle, TCP when no lower). */
int bw__tls_lower_init(bw_tls_t *t, uv_loop_t *loop);
/* Close them; close_cb frees the object after the last one. */
void bw__tls_lower_close(bw_tls_t *t, uv_close_cb close_cb);

#endif /* BW_TLS_TLS_INT_H */
