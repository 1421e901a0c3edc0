/*
 * sink: the local service of the benchmark. A small epoll TCP server.
 *
 *   sink [-p PORT] [-t THREADS]
 *
 * Listens on 127.0.0.1:PORT (0 = any free port, the default), prints
 * "port=N" on stdout once listening, and serves until killed.
 *
 * The first byte a client sends picks what the connection does:
 *   'D'       discharge: the server sends data as fast as it can until the
 *             client closes the connection (further input is discarded);
 *   anything  echo: every byte received (the first one included) is sent back.
 *
 * Each of THREADS threads (default 2) runs its own epoll loop; they share the
 * listening socket (EPOLLEXCLUSIVE wakes one of them per connection).
 * Accepted sockets get TCP_NODELAY.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK    (256 * 1024)
#define ECHO_BUF (16 * 1024)

enum mode { MODE_NEW, MODE_DISCHARGE, MODE_ECHO };

struct conn {
    int fd;
    enum mode mode;
    size_t off, len; /* pending echo bytes in buf[off, len) */
    char buf[ECHO_BUF];
};

static int listen_fd;
static char payload[CHUNK];
static char scratch[CHUNK]; /* discarded input; contents never read */

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void set_events(int ep, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Send pending echo bytes. Returns -1 when the connection is dead. */
static int echo_flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -1;
        }
        c->off += (size_t)n;
    }
    c->off = c->len = 0;
    return 0;
}

/* Fill the socket buffer. Returns -1 when the connection is dead. */
static int discharge(struct conn *c)
{
    for (;;) {
        ssize_t n = send(c->fd, payload, sizeof payload, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -1;
        }
    }
}

/* Returns -1 when the connection is finished. */
static int on_readable(int ep, struct conn *c)
{
    if (c->mode == MODE_DISCHARGE) {
        for (;;) {
            ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
            if (n == 0)
                return -1;
            if (n < 0)
                return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
        }
    }
    if (c->len > 0) /* still flushing; EPOLLIN should be off */
        return 0;
    ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
    if (n == 0)
        return -1;
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    if (c->mode == MODE_NEW) {
        if (c->buf[0] == 'D') {
            c->mode = MODE_DISCHARGE;
            set_events(ep, c, EPOLLIN | EPOLLOUT);
            return discharge(c);
        }
        c->mode = MODE_ECHO;
    }
    c->off = 0;
    c->len = (size_t)n;
    if (echo_flush(c) < 0)
        return -1;
    if (c->len > 0)
        set_events(ep, c, EPOLLOUT);
    return 0;
}

static int on_writable(int ep, struct conn *c)
{
    if (c->mode == MODE_DISCHARGE)
        return discharge(c);
    if (echo_flush(c) < 0)
        return -1;
    if (c->len == 0)
        set_events(ep, c, EPOLLIN);
    return 0;
}

static void accept_all(int ep)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or EMFILE: try again on the next wake-up */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->mode = MODE_NEW;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

static void *loop(void *arg)
{
    (void)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
        die("epoll_ctl listen");
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            uint32_t e = events[i].events;
            if (!c) {
                accept_all(ep);
                continue;
            }
            int r = 0;
            if (e & (EPOLLERR | EPOLLHUP))
                r = -1;
            if (r == 0 && (e & EPOLLIN))
                r = on_readable(ep, c);
            if (r == 0 && (e & EPOLLOUT))
                r = on_writable(ep, c);
            if (r < 0)
                conn_close(ep, c);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int port = 0, threads = 2, opt;
    while ((opt = getopt(argc, argv, "p:t:")) != -1) {
        switch (opt) {
        case 'p':
            port = (int)strtol(optarg, NULL, 10);
            break;
        case 't':
            threads = (int)strtol(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: %s [-p PORT] [-t THREADS]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1)
        threads = 1;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char)('a' + i % 26);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0)
        die("socket");
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(listen_fd, 4096) < 0)
        die("listen");
    socklen_t len = sizeof sa;
    getsockname(listen_fd, (struct sockaddr *)&sa, &len);
    printf("port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);

    pthread_t tid;
    for (int i = 1; i < threads; i++)
        if (pthread_create(&tid, NULL, loop, NULL) != 0)
            die("pthread_create");
    loop(NULL);
    return 0;
}
