/* TLS over a libuv TCP handle or over any byte transport, with an
 * in-memory OpenSSL BIO.
 *
 * A bw_tls_t made by bw_tls_new owns one uv_tcp_t. The caller initialises
 * the connection through it (uv_accept into bw_tls_tcp(), or
 * bw_tls_connect()), then bw_tls_start() runs the handshake and from then on
 * plaintext flows through on_read and bw_tls_write. One made by
 * bw_tls_new_over runs the same engine over a transport the caller drives
 * (a yamux stream, an upgraded connection): ciphertext leaves through the
 * bw_tls_lower_t operations and comes back through bw_tls_lower_input(). TLS 1.2 is the minimum;
 * clients verify the peer certificate and host name against the configured CA file (or the system
 * store).
 *
 * Lifetime: bw_tls_close() closes the handle; on_close runs exactly once,
 * after which the object is freed. Every error ends in on_error followed by
 * nothing else until the owner calls bw_tls_close().
 *
 * Callback order: on_handshake exactly once (unless closed first), then
 * on_read* and at most one on_eof, interleaved with on_drain; on_error (or a
 * failed on_handshake) ends all of that. After bw_tls_close() only on_close
 * runs. No function of this header calls back before returning; any callback
 * may call any function here, including bw_tls_close() on the same object.
 *
 * Backpressure: bw_tls_write always accepts (it copies); once bw_tls_queued()
 * exceeds BW_TLS_HIGH_WATER the owner should stop producing and wait for
 * on_drain, which fires once the queue is back at or below BW_TLS_LOW_WATER.
 * bw_tls_close() discards queued bytes: call bw_tls_shutdown() and wait for
 * on_eof (or a timeout) first when they matter.
 */
#ifndef BW_CORE_TLS_H
#define BW_CORE_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "bw_limits.h" /* BW_TLS_HIGH_WATER, BW_TLS_LOW_WATER */

typedef struct bw_tls bw_tls_t;

typedef struct bw_tls_cbs {
    /* Handshake finished: status 0, or < 0 (message in bw_tls_error()). */
    void (*on_handshake)(bw_tls_t *t, void *ud, int status);
    /* Decrypted application bytes; valid during the call only. */
    void (*on_read)(bw_tls_t *t, void *ud, const uint8_t *data, size_t len);
    /* Peer closed the connection (close_notify or TCP EOF). */
    void (*on_eof)(bw_tls_t *t, void *ud);
    /* The queued ciphertext fell to BW_TLS_LOW_WATER after exceeding
     * BW_TLS_HIGH_WATER. Optional. */
    void (*on_drain)(bw_tls_t *t, void *ud);
    /* Connection failed (reset, TLS alert, bad record, write error). */
    void (*on_error)(bw_tls_t *t, void *ud, int err);
    /* The handle is closed; the object is freed after this returns. Optional. */
    void (*on_close)(bw_tls_t *t, void *ud);
} bw_tls_cbs_t;

/* Client context: verifies the server against `ca_file` (PEM), or the system
 * trust store when ca_file is NULL. Returns a new SSL_CTX (SSL_CTX_free) or
 * NULL with a message in err[errlen]. */
SSL_CTX *bw_tls_client_ctx(const char *ca_file, char *err, size_t errlen);

/* Server context from PEM certificate chain and key files. Returns a new
 * SSL_CTX or NULL with a message in err[errlen]. */
SSL_CTX *bw_tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen);

/* Present the certificate chain and key of PEM files `cert_file` and
 * `key_file` (a client's certificate for mutual TLS). Returns 0, or < 0 with
 * a message in err[errlen]. */
int bw_tls_ctx_use_cert(SSL_CTX *ctx, const char *cert_file, const char *key_file, char *err,
                        size_t errlen);

/* Server side of mutual TLS: ask clients for a certificate issued by a CA
 * of `ca_file` (PEM) and verify it; `require`: refuse the handshake when
 * there is none (else bw_tls_peer_verified() tells). Returns 0, or < 0 with
 * a message in err[errlen]. */
int bw_tls_ctx_verify_clients(SSL_CTX *ctx, const char *ca_file, int require, char *err,
                              size_t errlen);

/* 1 when the peer presented a certificate and it verified, else 0. */
int bw_tls_peer_verified(bw_tls_t *t);

/* Create a connection bound to `loop`. `ctx` is referenced (up-ref'd) for the
 * object's life. `server_name` (client only) is sent as SNI and verified
 * against the certificate; may be NULL for servers. Returns NULL on failure. */
bw_tls_t *bw_tls_new(uv_loop_t *loop, SSL_CTX *ctx, int is_server, const char *server_name,
                     const bw_tls_cbs_t *cbs, void *ud);

/* The transport under a connection made by bw_tls_new_over. The engine
 * calls these from inside its own calls; none may call back into it
 * synchronously. */
typedef struct bw_tls_lower {
    /* Take ciphertext (copied, or sent at once). Returns 0, BW_EAGAIN when
     * accepted but past the transport's high-water mark (bw_tls_lower_drain
     * must follow once it drains), or another < 0 on failure. */
    int (*write)(void *ud, const uint8_t *data, size_t len);
    /* Bytes accepted by write and not yet sent. */
    size_t (*queued)(void *ud);
    /* Start (on != 0) or stop delivering input; called on changes only. */
    void (*read_ctl)(void *ud, int on);
    /* End the write side after what is queued (the TCP FIN). */
    void (*shutdown)(void *ud);
} bw_tls_lower_t;

/* Like bw_tls_new, over `lower` instead of a TCP handle of its own. The
 * connection never closes or frees the transport: its owner does that
 * after bw_tls_close. `lower` (static) and lower_ud must outlive t. Start
 * it with bw_tls_start. Returns NULL on failure. */
bw_tls_t *bw_tls_new_over(uv_loop_t *loop, SSL_CTX *ctx, int is_server, const char *server_name,
                          const bw_tls_lower_t *lower, void *lower_ud, const bw_tls_cbs_t *cbs,
                          void *ud);

/* Transport events of a bw_tls_new_over connection. They may call back
 * (on_handshake, on_read, ...) before returning. `data` is borrowed. */
void bw_tls_lower_input(bw_tls_t *t, const void *data, size_t len);
/* The transport ended (the peer's FIN): records already in are delivered. */
void bw_tls_lower_eof(bw_tls_t *t);
/* The transport failed with `err` (< 0): reported as on_handshake(err) or
 * on_error(err); `why` (may be NULL) becomes the error text. */
void bw_tls_lower_error(bw_tls_t *t, int err, const char *why);
/* The transport's queue fell after its write returned BW_EAGAIN. */
void bw_tls_lower_drain(bw_tls_t *t);

/* What a peek callback decides about the first bytes of a connection. */
enum {
    BW_TLS_PEEK_WAIT = 0, /* keep reading: the callback kept a copy of the bytes */
    BW_TLS_PEEK_GO = 1,   /* hand *feed (these bytes or all kept so far) to TLS */
    BW_TLS_PEEK_STOP = 2  /* stop reading: the owner took the connection or closes it */
};
/* Called with each read of the transport until it answers GO or STOP;
 * `data` is valid during the call only. On GO, *feed and *feed_len (preset to
 * data/len) name the ciphertext the handshake starts with; it must stay
 * valid until the call that invoked the callback returns. The callback may
 * call bw_tls_close(t). */
typedef int (*bw_tls_peek_cb)(bw_tls_t *t, void *ud, const uint8_t *data, size_t len,
                              const uint8_t **feed, size_t *feed_len);
/* Look at the bytes a server connection reads before OpenSSL does (SNI
 * routing at the edge). Call before bw_tls_start. The common case, a
 * decision on the first read, costs no copy. */
void bw_tls_set_peek(bw_tls_t *t, bw_tls_peek_cb cb, void *ud);

/* Application protocols (ALPN), `protos` NULL-terminated, each 1..255
 * bytes: a client offers them in order; a server picks the first of its
 * list the client offered (none: no ALPN in the answer). Call before
 * bw_tls_start. Returns 0, BW_EINVAL or BW_ENOMEM. */
int bw_tls_set_alpn(bw_tls_t *t, const char *const *protos);

/* 1 while the transport pushes back: on_drain follows when it stops. */
int bw_tls_write_blocked(const bw_tls_t *t);

/* The embedded TCP handle, for uv_accept() (bw_tls_new connections only). */
uv_tcp_t *bw_tls_tcp(bw_tls_t *t);

/* The OpenSSL connection, owned by t (e.g. for SSL_get_servername). */
SSL *bw_tls_ssl(bw_tls_t *t);

/* Connect the embedded handle to `addr`; the handshake starts once
 * connected. Connection failures arrive as on_handshake(status < 0). */
int bw_tls_connect(bw_tls_t *t, const struct sockaddr *addr);

/* Start the handshake on an accepted handle, or on one already connected
 * (uv_tcp_open of a connected socket, as a client), and begin reading. */
int bw_tls_start(bw_tls_t *t);

/* Encrypt and queue `n` buffers. The bytes are copied; small buffers share
 * records. Returns 0; BW_EINVAL before on_handshake(0); BW_EPIPE after
 * shutdown, close or an error; another < 0 on a socket/TLS failure, which
 * on_error also reports on the next loop turn. */
int bw_tls_write(bw_tls_t *t, const void *const *bufs, const size_t *lens, unsigned n);

/* Bytes accepted by bw_tls_write and not yet written to the socket: the
 * ciphertext queued in libuv plus a partial record waiting for the end of
 * the loop turn (small writes are sealed together then, before the loop
 * polls again, so they cost no latency). */
size_t bw_tls_queued(const bw_tls_t *t);

void bw_tls_read_stop(bw_tls_t *t);
void bw_tls_read_start(bw_tls_t *t);

/* Send close_notify after queued bytes, then the TCP FIN (best effort).
 * Reading goes on; later writes return BW_EPIPE. */
void bw_tls_shutdown(bw_tls_t *t);

/* Close the handle (idempotent; NULL is ignored). Queued bytes are dropped.
 * on_close follows on a later loop turn. */
void bw_tls_close(bw_tls_t *t);

/* Last error text, or "" when none. */
const char *bw_tls_error(const bw_tls_t *t);

/* Peer address "ip:port" of the TCP handle, or "" when unknown (always over
 * a caller's transport: its owner knows the peer). */
const char *bw_tls_peer(bw_tls_t *t);

/* Dev-mode certificates: make sure `dir` holds ca.pem/ca.key and a server
 * certificate (server.pem/server.key) signed by that CA for `names`
 * (NULL-terminated list of DNS names; "*.domain" allowed; IP literals become
 * IP SANs). Existing files are reused when they still cover `names`. Returns
 * 0, or < 0 with a message in err[errlen]. *created is set to 1 when the CA
 * was generated now. */
int bw_tls_dev_certs(const char *dir, const char *const *names, int *created, char *err,
                     size_t errlen);
/* The same for another certificate of that CA, kept as <base>.pem and
 * <base>.key in dir (base: a short file name without directory). */
int bw_tls_dev_cert(const char *dir, const char *base, const char *const *names, int *created,
                    char *err, size_t errlen);
/* The dev CA of `dir` (ca.pem/ca.key, made when missing). Returns 0 with new
 * references in *ca and *key (X509_free, EVP_PKEY_free), or < 0 with a
 * message in err[errlen]. */
int bw_tls_dev_ca(const char *dir, X509 **ca, EVP_PKEY **key, char *err, size_t errlen);
/* Issue a certificate for `names` (as above) signed by ca/ca_key, with the
 * profile of the dev server certificate (EC P-256 key, random serial, same
 * validity), kept in memory only. Returns 0 with new references in *cert and
 * *key, or BW_ENOMEM (the OpenSSL error queue says why). */
int bw_tls_dev_issue(X509 *ca, EVP_PKEY *ca_key, const char *const *names, X509 **cert,
                     EVP_PKEY **key);

#endif /* BW_CORE_TLS_H */
