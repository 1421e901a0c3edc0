/*
 * httpd: the local HTTP service of the http benchmark. A small libuv server.
 *
 *   httpd [-p PORT] [-t THREADS]
 *
 * Listens on 127.0.0.1:PORT (0 = any free port, the default), prints
 * "port=N" on stdout once listening, and serves until killed.
 *
 *   GET /                 200 with a 1024-byte body
 *   GET /bulk?bytes=N     200 with an N-byte body, streamed: one chunk is
 *                         queued at a time, the next one when the kernel took it
 *   anything else         404
 *
 * HTTP/1.1 with Content-Length and keep-alive (unless the client asks for
 * close or speaks HTTP/1.0 without keep-alive). While a bulk response is being
 * sent the connection stops reading; requests that arrived meanwhile are
 * answered afterwards, in order.
 *
 * Each of THREADS threads (default 2) runs its own loop with its own
 * SO_REUSEPORT listening socket on the same port. Accepted sockets get
 * TCP_NODELAY.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define SMALL_BODY 1024
#define CHUNK      (256 * 1024)
#define READ_BUF   (64 * 1024)
#define MAX_URL    256

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct conn {
    uv_tcp_t tcp;
    http_parser parser;
    char url[MAX_URL];
    size_t url_len;
    int keep_alive; /* of the request being answered */
    int closing;
    int reading;
    /* bulk response in progress */
    uint64_t bulk_left;
    uv_write_t bulk_req;
    uv_buf_t bulk_buf;
    /* input not parsed yet because a bulk response paused the parser */
    char *pending;
    size_t pending_off, pending_len;
    char rbuf[READ_BUF];
};

struct write_req {
    uv_write_t req;
    struct conn *c;
    int close_after;
    char data[];
};

static char small_response[256 + SMALL_BODY];
static size_t small_response_len;
static const char not_found[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
static char payload[CHUNK];
static http_parser_settings settings;
static int listen_port;

static void die(const char *what, int err)
{
    fprintf(stderr, "httpd: %s: %s\n", what, err ? uv_strerror(err) : strerror(errno));
    exit(1);
}

static void on_close(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h; /* tcp is the first member */
    free(c->pending);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    if (status < 0 || w->close_after)
        conn_close(w->c);
    free(w);
}

/* Send bytes: synchronously when the socket takes them, else queued (copied). */
static void send_bytes(struct conn *c, const char *data, size_t len, int close_after)
{
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    if (n == (int)len) {
        if (close_after)
            conn_close(c);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    struct write_req *w = malloc(sizeof *w + len - done);
    if (!w) {
        conn_close(c);
        return;
    }
    w->c = c;
    w->close_after = close_after;
    memcpy(w->data, data + done, len - done);
    buf = uv_buf_init(w->data, (unsigned)(len - done));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) < 0) {
        free(w);
        conn_close(c);
    }
}

static void resume_input(struct conn *c);
static void start_reading(struct conn *c);

static void bulk_pump(struct conn *c);

static void on_bulk_write(uv_write_t *req, int status)
{
    struct conn *c = container_of(req, struct conn, bulk_req);
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->bulk_left -= c->bulk_buf.len;
    bulk_pump(c);
}

/* Stream the rest of a bulk body with at most one chunk queued at a time. */
static void bulk_pump(struct conn *c)
{
    while (c->bulk_left > 0 && !c->closing) {
        size_t len = c->bulk_left < CHUNK ? (size_t)c->bulk_left : CHUNK;
        c->bulk_buf = uv_buf_init(payload, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &c->bulk_buf, 1);
        if (n > 0) {
            c->bulk_left -= (uint64_t)n;
            continue;
        }
        if (n != UV_EAGAIN ||
            uv_write(&c->bulk_req, (uv_stream_t *)&c->tcp, &c->bulk_buf, 1, on_bulk_write) < 0)
            conn_close(c);
        return;
    }
    if (c->closing)
        return;
    if (!c->keep_alive) {
        conn_close(c);
        return;
    }
    resume_input(c);
}

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    c->url_len = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->url_len + len >= MAX_URL)
        len = MAX_URL - 1 - c->url_len;
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    if (c->closing)
        return -1;
    c->keep_alive = http_should_keep_alive(p);
    if (p->method == HTTP_GET && strcmp(c->url, "/") == 0) {
        send_bytes(c, small_response, small_response_len, !c->keep_alive);
        return 0;
    }
    const char *q = strstr(c->url, "bytes=");
    if (p->method == HTTP_GET && strncmp(c->url, "/bulk", 5) == 0 && q) {
        char head[128];
        c->bulk_left = strtoull(q + 6, NULL, 10);
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         "Content-Length: %llu\r\n\r\n",
                         (unsigned long long)c->bulk_left);
        send_bytes(c, head, (size_t)n, 0);
        if (c->closing)
            return 0;
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
        http_parser_pause(p, 1); /* the rest of the input waits for the body */
        return 0;
    }
    send_bytes(c, not_found, sizeof not_found - 1, !c->keep_alive);
    return 0;
}

/* Parse input; keeps what a bulk response left unparsed. Returns -1 on error. */
static int feed(struct conn *c, const char *data, size_t len)
{
    size_t n = http_parser_execute(&c->parser, &settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (err == HPE_PAUSED) {
        if (c->closing)
            return 0;
        size_t rest = len - n;
        if (rest > 0) {
            char *copy = malloc(rest);
            if (!copy)
                return -1;
            memcpy(copy, data + n, rest);
            free(c->pending);
            c->pending = copy;
            c->pending_off = 0;
            c->pending_len = rest;
        }
        bulk_pump(c);
        return 0;
    }
    if (err != HPE_OK || (n != len && !c->closing))
        return -1;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct conn *c = (struct conn *)h;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)s;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n > 0 && feed(c, buf->base, (size_t)n) < 0)
        conn_close(c);
}

static void resume_input(struct conn *c)
{
    http_parser_pause(&c->parser, 0);
    if (c->pending) {
        char *data = c->pending;
        size_t len = c->pending_len;
        c->pending = NULL;
        int r = feed(c, data, len);
        free(data);
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (c->closing || HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED)
            return;
    }
    start_reading(c);
}

static void start_reading(struct conn *c)
{
    if (c->reading || c->closing)
        return;
    c->reading = 1;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    start_reading(c);
}

/* A listening socket on 127.0.0.1:port with SO_REUSEPORT; returns the fd. */
static int listen_socket(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("socket", 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
        die("bind/listen", 0);
    listen_port = ntohs(sa.sin_port);
    return fd;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uv_loop_t loop;
    uv_tcp_t server;
    int r = uv_loop_init(&loop);
    if (r == 0)
        r = uv_tcp_init(&loop, &server);
    if (r == 0)
        r = uv_tcp_open(&server, fd);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&server, 1024, on_connection);
    if (r < 0)
        die("listen", r);
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

/* A decimal in [lo, hi], or -1. */
static long parse_num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno == 0 && end != s && *end == '\0' && v >= lo && v <= hi ? v : -1;
}

int main(int argc, char **argv)
{
    int port = 0, threads = 2, opt;
    while ((opt = getopt(argc, argv, "p:t:")) != -1) {
        long v = optarg ? parse_num(optarg, opt == 'p' ? 0 : 1, opt == 'p' ? 65535 : 64) : -1;
        if ((opt == 'p' || opt == 't') && v < 0) {
            fprintf(stderr, "%s: -%c wants a number, got '%s'\n", argv[0], opt, optarg);
            return 2;
        }
        if (opt == 'p')
            port = (int)v;
        else if (opt == 't')
            threads = (int)v;
        else {
            fprintf(stderr, "usage: %s [-p PORT] [-t THREADS]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1)
        threads = 1;
    signal(SIGPIPE, SIG_IGN);
    memset(payload, 'x', sizeof payload);
    small_response_len = (size_t)snprintf(small_response, sizeof small_response,
                                          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                          "Content-Length: %d\r\n\r\n",
                                          SMALL_BODY);
    memset(small_response + small_response_len, 'a', SMALL_BODY);
    small_response_len += SMALL_BODY;
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_message_complete = on_message_complete;

    int fds[64];
    if (threads > 64)
        threads = 64;
    fds[0] = listen_socket(port);
    for (int i = 1; i < threads; i++)
        fds[i] = listen_socket(listen_port);
    printf("port=%d\n", listen_port);
    fflush(stdout);
    pthread_t tid;
    for (int i = 1; i < threads; i++)
        if (pthread_create(&tid, NULL, serve, (void *)(intptr_t)fds[i]) != 0)
            die("pthread_create", 0);
    serve((void *)(intptr_t)fds[0]);
    return 0;
}
