/*
 * tls_sink: the TLS local service of the tls benchmark; bench/sink.c over TLS.
 *
 *   tls_sink CERT KEY
 *
 * Listens on a free port of 127.0.0.1, prints "port=N" on stdout once
 * listening, and serves until killed. Every
 * connection gets a thread of its own and completes a TLS handshake with
 * CERT/KEY (PEM). Then the first byte the client sends picks what it does:
 *   'D'       discharge: the server writes data as fast as it can until the
 *             client goes away;
 *   anything  echo: every byte received (the first one included) is sent back.
 *
 * Blocking I/O on purpose: the benchmark compares proxies in front of this
 * server, and the server is the same for all of them.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static SSL_CTX *ctx;
static char payload[CHUNK];

static void die(const char *what)
{
    fprintf(stderr, "tls_sink: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    SSL *ssl = SSL_new(ctx);
    char buf[16 * 1024];
    if (!ssl || !SSL_set_fd(ssl, fd) || SSL_accept(ssl) != 1)
        goto done;
    int n = SSL_read(ssl, buf, sizeof buf);
    if (n <= 0)
        goto done;
    if (buf[0] == 'D') {
        while (SSL_write(ssl, payload, sizeof payload) > 0)
            ;
        goto done;
    }
    do {
        if (SSL_write(ssl, buf, n) != n)
            break;
    } while ((n = SSL_read(ssl, buf, sizeof buf)) > 0);
    SSL_shutdown(ssl);
done:
    SSL_free(ssl);
    ERR_clear_error();
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CERT KEY\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char)('a' + i % 26);

    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1)
        die("cannot load the certificate and key");
    /* Every connection pays a full handshake, as a new client would. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0)
        die("bind/listen");
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    printf("port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t tid;
        if (pthread_create(&tid, &attr, serve, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
}
