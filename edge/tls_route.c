/* SNI routing on the HTTPS listener (docs/tls.md). Before OpenSSL sees a
 * byte, the ClientHello is read (edge/sni.c): a name a tls tunnel holds
 * gets the connection untouched — the hello's bytes go to the agent first,
 * then the two streams are joined — and everything else is terminated here
 * as an https connection, exactly as without tls tunnels.
 *
 * The https path pays one parse of the first read, no copy: only a hello
 * that arrives in several reads is gathered (at most BW_SNI_MAX_INPUT
 * bytes), and the header timeout that bounds a slow handshake bounds a
 * slow hello too. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostnames.h"
#include "http_conn.h"
#include "log.h"
#include "sni.h"

/* TLS alert descriptions (RFC 8446 §6). */
#define ALERT_HANDSHAKE_FAILURE 40
#define ALERT_DECODE_ERROR      50
#define ALERT_UNRECOGNIZED_NAME 112

/* Tell the client why in a fatal alert, written raw (no TLS state exists
 * yet), and close. The alert is best effort: a full socket buffer drops it. */
static void refuse(hconn_t *c, uint8_t alert, const char *why, const char *name)
{
    const uint8_t rec[7] = {21, 3, 1, 0, 2, 2, alert};
    uv_buf_t b = uv_buf_init((char *)rec, sizeof rec);
    (void)uv_try_write((uv_stream_t *)bw_tls_tcp(c->tls), &b, 1);
    bw_log(BW_LOG_DEBUG, "refused TLS connection", "obj", "tls", "r", c->client, "host", name,
           "err", why, NULL);
    bw__hconn_close(c, 1);
}

/* The public socket as a plain stream of its own: a duplicate of the
 * descriptor, so the TLS object can close its handle (libuv handles cannot
 * change owners). Closing one of two descriptors sends nothing. */
static bw_stream_t *raw_stream(hconn_t *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)bw_tls_tcp(c->tls), &fd) != 0)
        return NULL;
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        return NULL;
    bw_stream_t *s = bw_stream_tcp_new(c->he->io);
    if (!s) {
        close(dup_fd);
        return NULL;
    }
    if (uv_tcp_open(bw_stream_tcp_handle(s), dup_fd) != 0) {
        close(dup_fd);
        bw_stream_close(s, 1);
        return NULL;
    }
    bw_stream_tcp_ready(s);
    return s;
}

/* Hand the connection to the tls tunnel whose stream `agent` is: the hello
 * first, then everything both ways. */
static void pass_through(hconn_t *c, bw_stream_t *agent, const uint8_t *hello, size_t len,
                         const char *host)
{
    bw_stream_t *pub = raw_stream(c);
    if (!pub || bw_stream_write(agent, hello, len) < 0) {
        if (pub)
            bw_stream_close(pub, 1);
        bw_stream_close(agent, 1);
        refuse(c, ALERT_HANDSHAKE_FAILURE, "cannot pass the connection on", host);
        return;
    }
    bw_log(BW_LOG_DEBUG, "passing TLS through", "obj", "tls", "r", c->client, "host", host,
           "tunnel", c->tunnel_id, NULL);
    /* The join takes over the connection's place in the caps. */
    char ip[BW_ADDRSTRLEN];
    snprintf(ip, sizeof ip, "%s", c->ip);
    c->counted = 0;
    bw__hconn_close(c, 1);
    bw__edge_public_join(c->he->edge, ip, pub, agent);
}

/* A complete hello named `sni`: pass it through, refuse it, or (0) let the
 * edge terminate it. Returns BW_TLS_PEEK_*. */
static int route(hconn_t *c, const char *sni, const uint8_t *hello, size_t len)
{
    char host[BW_HOSTNAME_MAX + 1], why[96];
    bw_stream_t *agent = NULL;
    if (bw_hostname_check(sni, host, why, sizeof why) != 0)
        return BW_TLS_PEEK_GO; /* no tunnel has such a name: as https */
    int rc = bw__edge_http_open(c->he->edge, BW_SCHEME_TLS, host, c->client, host, c->self,
                                c->tunnel_id, &agent);
    if (rc == BW_ENOENT)
        return BW_TLS_PEEK_GO;
    if (rc < 0) {
        refuse(c, ALERT_UNRECOGNIZED_NAME, "the agent of this tls tunnel is not connected", host);
        return BW_TLS_PEEK_STOP;
    }
    pass_through(c, agent, hello, len, host);
    return BW_TLS_PEEK_STOP;
}

/* Keep what was read so far: the hello is still incomplete. */
static int keep(hconn_t *c, const uint8_t *data, size_t len)
{
    uint8_t *nb = realloc(c->hello, c->hello_len + len);
    if (!nb)
        return BW_ENOMEM;
    memcpy(nb + c->hello_len, data, len);
    c->hello = nb;
    c->hello_len += len;
    return 0;
}

int bw__hconn_peek(bw_tls_t *t, void *ud, const uint8_t *data, size_t len, const uint8_t **feed,
                   size_t *feed_len)
{
    hconn_t *c = ud;
    char sni[BW_HOSTNAME_MAX + 2];
    if (c->hello_len) {
        if (keep(c, data, len) != 0) {
            bw__hconn_close(c, 1);
            return BW_TLS_PEEK_STOP;
        }
        data = c->hello;
        len = c->hello_len;
    }
    bw_sni_result_t r = bw_sni_parse(data, len, sni, sizeof sni);
    switch (r) {
    case BW_SNI_MORE:
        if (!c->hello_len && keep(c, data, len) != 0) {
            bw__hconn_close(c, 1);
            return BW_TLS_PEEK_STOP;
        }
        return BW_TLS_PEEK_WAIT;
    case BW_SNI_FOUND:
        if (route(c, sni, data, len) == BW_TLS_PEEK_STOP)
            return BW_TLS_PEEK_STOP;
        break;
    case BW_SNI_NONE:
    case BW_SNI_NOT_TLS: /* OpenSSL refuses it, as it always did */
        break;
    case BW_SNI_TOO_LARGE:
        refuse(c, ALERT_HANDSHAKE_FAILURE, bw_sni_result_name(r), "");
        return BW_TLS_PEEK_STOP;
    default:
        refuse(c, ALERT_DECODE_ERROR, bw_sni_result_name(r), "");
        return BW_TLS_PEEK_STOP;
    }
    *feed = data;
    *feed_len = len;
    return BW_TLS_PEEK_GO;
}
