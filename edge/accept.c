/* Accepting on a public listener, paused while descriptors run out. See
 * accept.h. */
#include "accept.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Connections accepted (or refused) per wakeup: a full backlog (511) in
 * one go, then other handles get their turn. */
#define BATCH 512

struct bw_acceptor {
    uv_poll_t poll; /* readable: connections wait in the backlog */
    uv_timer_t timer;
    int fd, pending;
    unsigned fd_max;
    uint64_t pause_ms;     /* the last pause; 0: accepting normally */
    unsigned long refused; /* since the last log line */
    int handles, closing;
    bw_accept_cb cb;
    void *ud;
    char name[64];
};

static void handle_closed(uv_handle_t *h)
{
    bw_acceptor_t *a = h->data;
    if (--a->handles > 0)
        return;
    close(a->fd);
    free(a);
}

static void on_readable(uv_poll_t *p, int status, int events);

static void resume(uv_timer_t *t)
{
    bw_acceptor_t *a = t->data;
    if (!a->closing)
        uv_poll_start(&a->poll, UV_READABLE, on_readable);
}

/* Stop polling for the next pause (50 ms, doubling to 1 s) and say how many
 * were refused since the last line. `err`: the accept error, 0 when the
 * descriptors left are the agents' reserve. */
static void pause_accepting(bw_acceptor_t *a, int err)
{
    char n[24], ms[24];
    uint64_t next = a->pause_ms ? a->pause_ms * 2 : BW_ACCEPT_PAUSE_MIN_MS;
    a->pause_ms = next < BW_ACCEPT_PAUSE_MAX_MS ? next : BW_ACCEPT_PAUSE_MAX_MS;
    uv_poll_stop(&a->poll);
    uv_timer_start(&a->timer, resume, a->pause_ms, 0);
    snprintf(n, sizeof n, "%lu", a->refused);
    snprintf(ms, sizeof ms, "%llums", (unsigned long long)a->pause_ms);
    bw_log(BW_LOG_WARN, "public listener out of file descriptors", "obj", "edge", "listener",
           a->name, "refused", n, "pause", ms, "err", err ? strerror(err) : "descriptor reserve",
           NULL);
    a->refused = 0;
}

/* A connection was kept: the backoff starts over. */
static void recovered(bw_acceptor_t *a)
{
    char n[24];
    if (!a->pause_ms)
        return;
    snprintf(n, sizeof n, "%lu", a->refused);
    bw_log(BW_LOG_INFO, "public listener accepting again", "obj", "edge", "listener", a->name,
           "refused", n, NULL);
    a->pause_ms = 0;
    a->refused = 0;
}

/* What says the process (or system) has no descriptor or memory to spare:
 * retrying at once would fail the same way. */
static int exhausted(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

/* One connection: its descriptor, or -errno. */
static int accept_one(int fd)
{
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0)
            return c;
        if (errno != EINTR && errno != ECONNABORTED)
            return -errno;
    }
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    bw_acceptor_t *a = p->data;
    int refusing = 0;
    for (int i = 0; i < BATCH && !a->closing && status == 0; i++) {
        int c = accept_one(a->fd);
        if (c == -EAGAIN || c == -EWOULDBLOCK)
            break;
        if (c < 0 && exhausted(-c)) {
            a->refused++;
            pause_accepting(a, -c);
            return;
        }
        if (c < 0)
            continue; /* that connection failed (EPROTO, EPERM...); the next may not */
        /* Descriptors come lowest first: this one reaching into the
         * reserve means every one below it is taken. */
        if (a->fd_max && (unsigned)c >= a->fd_max) {
            close(c);
            a->refused++;
            refusing = 1;
            continue; /* refuse what waits, then pause */
        }
        refusing = 0;
        recovered(a);
        a->pending = c;
        a->cb(a, a->ud);
        if (a->pending >= 0) {
            close(a->pending);
            a->pending = -1;
        }
    }
    if (refusing && !a->closing)
        pause_accepting(a, 0);
}

bw_acceptor_t *bw_acceptor_new(uv_loop_t *loop, int fd, const char *name, unsigned fd_max,
                               bw_accept_cb cb, void *ud)
{
    bw_acceptor_t *a = calloc(1, sizeof *a);
    if (!a || uv_poll_init_socket(loop, &a->poll, fd) != 0) {
        free(a);
        close(fd);
        return NULL;
    }
    a->fd = fd;
    a->pending = -1;
    a->fd_max = fd_max;
    a->cb = cb;
    a->ud = ud;
    snprintf(a->name, sizeof a->name, "%s", name);
    a->poll.data = a;
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    a->handles = 2;
    if (uv_poll_start(&a->poll, UV_READABLE, on_readable) != 0) {
        bw_acceptor_close(a);
        return NULL;
    }
    return a;
}

int bw_acceptor_take(bw_acceptor_t *a, uv_tcp_t *h)
{
    int fd = a->pending, rc;
    if (fd < 0)
        return UV_EINVAL;
    a->pending = -1;
    rc = uv_tcp_open(h, fd);
    if (rc != 0)
        close(fd);
    return rc;
}

uint64_t bw_acceptor_pause_ms(const bw_acceptor_t *a)
{
    return a->pause_ms;
}

void bw_acceptor_close(bw_acceptor_t *a)
{
    if (!a || a->closing)
        return;
    a->closing = 1;
    uv_close((uv_handle_t *)&a->poll, handle_closed);
    uv_close((uv_handle_t *)&a->timer, handle_closed);
}
