/* Connect-and-resolve: the one way the core opens a connection to a local
 * service (see bw_stream_tcp_connect in stream.h). */
#include "stream.h"
#include "stream_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct connect_req {
    uv_connect_t req;
    uv_getaddrinfo_t gai;
    bw_io_t *io;
    bw_stream_t *s;
    bw_connect_cb cb;
    void *ud;
    int port;
    int try_v6; /* "localhost": fall back to ::1 after 127.0.0.1 */
} connect_req_t;

static void connect_done(uv_connect_t *req, int status);

static int connect_start(connect_req_t *c, const struct sockaddr *sa)
{
    c->s = bw_stream_tcp_new(c->io);
    if (!c->s)
        return BW_ENOMEM;
    int rc = uv_tcp_connect(&c->req, bw_stream_tcp_handle(c->s), sa, connect_done);
    if (rc < 0) {
        bw__tcp_discard(c->s);
        c->s = NULL;
    }
    return rc;
}

static void connect_finish(connect_req_t *c, int status)
{
    bw_stream_t *s = c->s;
    if (status < 0 && s) {
        bw__tcp_discard(s);
        s = NULL;
    }
    if (s)
        bw_stream_tcp_ready(s);
    c->cb(c->ud, s, status);
    free(c);
}

static void connect_done(uv_connect_t *req, int status)
{
    connect_req_t *c = BW_CONTAINER_OF(req, connect_req_t, req);
    if (status < 0 && c->try_v6 && status != UV_ECANCELED) {
        struct sockaddr_in6 a6;
        c->try_v6 = 0;
        bw__tcp_discard(c->s);
        c->s = NULL;
        uv_ip6_addr("::1", c->port, &a6);
        if (connect_start(c, (const struct sockaddr *)&a6) == 0)
            return;
    }
    connect_finish(c, status);
}

static void resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    connect_req_t *c = BW_CONTAINER_OF(gai, connect_req_t, gai);
    int rc = status;
    if (rc == 0) {
        struct addrinfo *pick = res;
        for (struct addrinfo *a = res; a; a = a->ai_next)
            if (a->ai_family == AF_INET) {
                pick = a;
                break;
            }
        rc = connect_start(c, pick->ai_addr);
    }
    uv_freeaddrinfo(res);
    if (rc < 0)
        connect_finish(c, rc);
}

int bw_stream_tcp_connect(bw_io_t *io, const char *host, int port, bw_connect_cb cb, void *ud)
{
    struct sockaddr_storage ss;
    connect_req_t *c = calloc(1, sizeof *c);
    if (!c)
        return BW_ENOMEM;
    c->io = io;
    c->cb = cb;
    c->ud = ud;
    c->port = port;
    int rc;
    if (!host || !*host || strcmp(host, "localhost") == 0) {
        c->try_v6 = host && *host;
        uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&ss);
        rc = connect_start(c, (struct sockaddr *)&ss);
    } else if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
               uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        rc = connect_start(c, (struct sockaddr *)&ss);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        char sport[8];
        snprintf(sport, sizeof sport, "%d", port);
        rc = uv_getaddrinfo(io->loop, &c->gai, resolved, host, sport, &hints);
    }
    if (rc < 0)
        free(c);
    return rc;
}
