/* Replay over a synthetic connection. See replay.h. */
#include "replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "host.h"
#include "log.h"
#include "stream.h"

struct bw_replay {
    bw_tunnel_t *t;    /* NULL once finished or cancelled */
    bw_replay_t *next; /* the tunnel's list */
    uv_pipe_t pipe;    /* the client's end */
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    char *raw;
    size_t len;
    uint64_t response_bytes;
    int open_handles;
    int done;
    char rbuf[16384];
};

static void unlink_replay(bw_replay_t *r)
{
    if (!r->t)
        return;
    for (bw_replay_t **p = &r->t->replays; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
    r->t = NULL;
}

static void handle_closed(uv_handle_t *h)
{
    bw_replay_t *r = h->data;
    if (--r->open_handles > 0)
        return;
    free(r->raw);
    free(r);
}

/* Close the client's end (the plugin sees EOF or a reset) and free. */
static void finish(bw_replay_t *r, const char *why)
{
    if (r->done)
        return;
    r->done = 1;
    char bytes[24];
    snprintf(bytes, sizeof bytes, "%llu", (unsigned long long)r->response_bytes);
    bw_log(BW_LOG_DEBUG, "replay finished", "obj", "web", "tunnel", r->t ? r->t->name : "",
           "response_bytes", bytes, "end", why, NULL);
    unlink_replay(r);
    uv_close((uv_handle_t *)&r->timer, handle_closed);
    uv_close((uv_handle_t *)&r->pipe, handle_closed);
}

static void timed_out(uv_timer_t *h)
{
    bw_replay_t *r = h->data;
    bw_log(BW_LOG_WARN, "replay timed out", "obj", "web", "tunnel", r->t ? r->t->name : "", NULL);
    finish(r, "timeout");
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    bw_replay_t *r = h->data;
    buf->base = r->rbuf;
    buf->len = sizeof r->rbuf;
}

/* The response is read and discarded, like ngrok's replayConn does. */
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    bw_replay_t *r = s->data;
    if (n > 0)
        r->response_bytes += (uint64_t)n;
    else if (n == UV_EOF)
        finish(r, "eof");
    else if (n < 0)
        finish(r, uv_strerror((int)n));
}

static void written(uv_write_t *req, int status)
{
    bw_replay_t *r = req->data;
    if (status < 0 && status != UV_ECANCELED)
        finish(r, uv_strerror(status));
}

static void shut(uv_shutdown_t *req, int status)
{
    /* Failures show up on the read side. */
}

/* Write the request, then EOF, and read until the plugin closes. */
static int client_start(bw_replay_t *r)
{
    uv_buf_t b = uv_buf_init(r->raw, (unsigned)r->len);
    r->wreq.data = r;
    int rc = uv_write(&r->wreq, (uv_stream_t *)&r->pipe, &b, 1, written);
    if (rc == 0)
        rc = uv_shutdown(&r->sreq, (uv_stream_t *)&r->pipe, shut);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&r->pipe, alloc_cb, read_cb);
    return rc;
}

/* A replay of `len` bytes of `raw` over socket `fd`, which it owns from
 * here: on failure (NULL) the socket is closed too. */
static bw_replay_t *replay_new(const void *raw, size_t len, uint64_t timeout_ms, int fd)
{
    bw_replay_t *r = calloc(1, sizeof *r);
    if (!r)
        goto err_fd;
    r->raw = malloc(len ? len : 1);
    if (!r->raw || uv_pipe_init(bw_io_loop(bw_host_io()), &r->pipe, 0) != 0)
        goto err_r;
    if (len) /* an empty request may come as NULL */
        memcpy(r->raw, raw, len);
    r->len = len;
    uv_timer_init(bw_io_loop(bw_host_io()), &r->timer);
    r->pipe.data = r->timer.data = r;
    r->open_handles = 2;
    if (uv_pipe_open(&r->pipe, fd) != 0) {
        close(fd); /* not adopted by the handle */
        finish(r, "setup");
        return NULL;
    }
    uv_timer_start(&r->timer, timed_out, timeout_ms ? timeout_ms : BW_REPLAY_TIMEOUT_MS, 0);
    return r;

err_r:
    free(r->raw);
    free(r);
err_fd:
    close(fd);
    return NULL;
}

static int replay_slot(bw_tunnel_t *t, const void *raw, size_t len, char *err, size_t errlen)
{
    bw_error_t e = {{0}};
    int rc = t->plugin->desc.replay(t->tstate, raw, len, &e);
    if (rc < 0)
        snprintf(err, errlen, "%s", e.msg[0] ? e.msg : bw_strerror(rc));
    return rc;
}

int bw_replay_start(bw_tunnel_t *t, const void *raw, size_t len, const char *client_ip,
                    uint64_t timeout_ms, char *err, size_t errlen)
{
    int fds[2];
    char peer[BW_ADDRSTRLEN];
    const char *ip = client_ip && *client_ip ? client_ip : "127.0.0.1";
    if (t->stopping || !t->tstate) {
        snprintf(err, errlen, "tunnel is stopping");
        return BW_ECANCELED;
    }
    if (t->plugin->desc.replay)
        return replay_slot(t, raw, len, err, errlen);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        int e = errno;
        snprintf(err, errlen, "socketpair: %s", strerror(e));
        return -e;
    }
    bw_replay_t *r = replay_new(raw, len, timeout_ms, fds[1]);
    snprintf(peer, sizeof peer, strchr(ip, ':') ? "[%s]:0" : "%s:0", ip);
    bw_stream_t *s = r ? bw_stream_pipe_open(bw_host_io(), fds[0], peer) : NULL;
    if (!s) {
        close(fds[0]);
        if (r)
            finish(r, "setup");
        snprintf(err, errlen, "out of memory");
        return BW_ENOMEM;
    }
    int rc = client_start(r);
    r->t = t;
    r->next = t->replays;
    t->replays = r;
    if (rc < 0)
        finish(r, uv_strerror(rc)); /* the plugin then sees an empty connection */
    bw_conn_info_t info = {
        .struct_size = sizeof info,
        .client_addr = peer,
        .client_ip = ip,
        .edge_type = t->plugin->desc.edge_type,
        .server_name = "",
    };
    bw_tunnel_conn(t, s, &info);
    return 0;
}

void bw_replay_cancel_all(bw_tunnel_t *t)
{
    while (t->replays) {
        bw_replay_t *r = t->replays;
        finish(r, "tunnel stopped");
    }
}

size_t bw_replay_count(const bw_tunnel_t *t)
{
    size_t n = 0;
    for (const bw_replay_t *r = t->replays; r; r = r->next)
        n++;
    return n;
}
