/*
 * load: the client side of the benchmark; talks to bench/sink.c (`get`: to
 * bench/httpd.c), directly or through a proxy. Prints one JSON object on stdout.
 *
 *   load bulk HOST PORT STREAMS SECONDS WARMUP
 *       STREAMS connections each ask for a discharge ('D') and read as fast as
 *       they can. Bytes are counted over SECONDS after WARMUP seconds.
 *       -> {"bytes":..,"seconds":..,"mb_per_s":..,"streams":..,"errors":..}
 *
 *   load rate HOST PORT WORKERS SECONDS
 *       WORKERS threads each loop: connect, send 1 byte, read the echo, close.
 *       -> {"conns":..,"seconds":..,"conns_per_s":..,"errors":..,
 *           "p50_ms":..,"p99_ms":..}
 *
 *   load get HOST PORT HOSTHDR BYTES SECONDS
 *       One connection sends "GET /bulk?bytes=BYTES" with "Host: HOSTHDR" to
 *       bench/httpd.c and reads the response until all BYTES of the body
 *       arrived or SECONDS passed, whichever is first. MB/s counts body bytes
 *       over the time from sending the request to the last byte read.
 *       -> {"bytes":..,"seconds":..,"mb_per_s":..,"complete":..,"errors":..}
 *
 *   load repeat HOST PORT HOSTHDR PATH BYTES SECONDS
 *       One keep-alive connection sends "GET PATH" with "Host: HOSTHDR" again
 *       and again until SECONDS passed, reading each whole response; every
 *       response must be a 200 whose Content-Length and body are BYTES long
 *       (anything else fails the run). MB/s counts the body bytes of all the
 *       downloads over the time from the first request to the last byte.
 *       -> {"bytes":..,"seconds":..,"mb_per_s":..,"downloads":..,"errors":0}
 *
 *   load hold HOST PORT N
 *       Opens N connections and checks each with a 1-byte echo, prints
 *       {"held":..,"errors":..,"seconds":..} and keeps them open until stdin
 *       reaches EOF or a line is read, then closes them and exits.
 *
 *   load hold-http HOST PORT HOSTHDR N
 *       The same with HTTP: each connection sends one "GET /" with "Host:
 *       HOSTHDR" and reads the whole 200 response, then stays open (idle,
 *       keep-alive) until stdin reaches EOF or a line is read.
 *       -> {"held":..,"errors":..,"seconds":..}
 *
 *   load --tls SNI bulk|rate|get|repeat|hold-http ...
 *       The same over TLS (bench/tls_sink.c): each connection completes a
 *       full handshake with server name SNI first (no session resumption, no
 *       certificate check: the benchmark measures the hops, not the PKI).
 *
 * Every socket gets TCP_NODELAY; I/O has a 5 s timeout so nothing hangs.
 *
 * A little over 600 lines on purpose: one self-contained file is what the
 * benchmarks compile on the fly with a bare `cc`, and its modes share the
 * connection, TLS and timing code above each of them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 5
#define MAX_SAMPLES  (1 << 20)

static struct sockaddr_in target;
static atomic_int stop;
static atomic_ullong total_bytes;
static atomic_int total_errors;
static SSL_CTX *tls_ctx; /* --tls: connections speak TLS */
static int reported;     /* hold-http: the first failure's reason is enough */
static const char *tls_sni;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void resolve(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "load: %s:%s: %s\n", host, port, gai_strerror(r));
        exit(2);
    }
    memcpy(&target, res->ai_addr, sizeof target);
    freeaddrinfo(res);
}

/* A connected blocking socket with TCP_NODELAY and I/O timeouts, or -1. */
static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send1(int fd, char b)
{
    for (;;) {
        ssize_t n = send(fd, &b, 1, MSG_NOSIGNAL);
        if (n == 1)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

static int recv1(int fd)
{
    char b;
    for (;;) {
        ssize_t n = recv(fd, &b, 1, 0);
        if (n == 1)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

/* A connection of bulk and rate: plain TCP, or TLS with --tls. */
struct peer {
    int fd;
    SSL *ssl;
};

/* Connect (and with --tls complete the handshake); 0 or -1. */
static int peer_open(struct peer *p)
{
    p->ssl = NULL;
    p->fd = dial();
    if (p->fd < 0)
        return -1;
    if (!tls_ctx)
        return 0;
    p->ssl = SSL_new(tls_ctx);
    if (p->ssl && SSL_set_fd(p->ssl, p->fd) && SSL_set_tlsext_host_name(p->ssl, tls_sni) &&
        SSL_connect(p->ssl) == 1)
        return 0;
    SSL_free(p->ssl);
    close(p->fd);
    return -1;
}

static void peer_close(struct peer *p)
{
    SSL_free(p->ssl);
    close(p->fd);
}

static ssize_t peer_recv(struct peer *p, void *buf, size_t len)
{
    if (!p->ssl)
        return recv(p->fd, buf, len, 0);
    int n = SSL_read(p->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    return n > 0 ? n : -1;
}

static int peer_send(struct peer *p, const char *buf, size_t len)
{
    if (p->ssl)
        return SSL_write(p->ssl, buf, (int)len) == (int)len ? 0 : -1;
    while (len > 0) {
        ssize_t n = send(p->fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int peer_send1(struct peer *p, char b)
{
    if (!p->ssl)
        return send1(p->fd, b);
    return SSL_write(p->ssl, &b, 1) == 1 ? 0 : -1;
}

static int peer_recv1(struct peer *p)
{
    if (!p->ssl)
        return recv1(p->fd);
    char b;
    return SSL_read(p->ssl, &b, 1) == 1 ? 0 : -1;
}

/* ---- bulk ---------------------------------------------------------------- */

static void *bulk_worker(void *arg)
{
    (void)arg;
    static __thread char buf[256 * 1024];
    struct peer p;
    if (peer_open(&p) < 0) {
        atomic_fetch_add(&total_errors, 1);
        return NULL;
    }
    if (peer_send1(&p, 'D') < 0) {
        atomic_fetch_add(&total_errors, 1);
        peer_close(&p);
        return NULL;
    }
    while (!atomic_load(&stop)) {
        ssize_t n = peer_recv(&p, buf, sizeof buf);
        if (n > 0) {
            atomic_fetch_add(&total_bytes, (unsigned long long)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            atomic_fetch_add(&total_errors, 1); /* EOF, reset or timeout */
            break;
        }
    }
    peer_close(&p);
    return NULL;
}

static int cmd_bulk(int streams, double seconds, double warmup)
{
    pthread_t *tids = calloc((size_t)streams, sizeof *tids);
    for (int i = 0; i < streams; i++)
        pthread_create(&tids[i], NULL, bulk_worker, NULL);
    sleep_s(warmup);
    unsigned long long b0 = atomic_load(&total_bytes);
    double t0 = now();
    sleep_s(seconds);
    unsigned long long b1 = atomic_load(&total_bytes);
    double t1 = now();
    atomic_store(&stop, 1);
    for (int i = 0; i < streams; i++)
        pthread_join(tids[i], NULL);
    double dt = t1 - t0;
    printf("{\"bytes\":%llu,\"seconds\":%.3f,\"mb_per_s\":%.1f,\"streams\":%d,\"errors\":%d}\n",
           b1 - b0, dt, (double)(b1 - b0) / dt / 1e6, streams, atomic_load(&total_errors));
    return 0;
}

/* ---- rate ---------------------------------------------------------------- */

struct rate_worker {
    pthread_t tid;
    unsigned long conns;
    float *samples; /* cycle durations in ms */
    size_t nsamples, cap;
};

static void *rate_worker(void *arg)
{
    struct rate_worker *w = arg;
    while (!atomic_load(&stop)) {
        double t0 = now();
        struct peer p;
        if (peer_open(&p) < 0) {
            atomic_fetch_add(&total_errors, 1);
            sleep_s(0.001);
            continue;
        }
        int bad = peer_send1(&p, 'E') < 0 || peer_recv1(&p) < 0;
        peer_close(&p);
        if (bad) {
            atomic_fetch_add(&total_errors, 1);
            continue;
        }
        w->conns++;
        if (w->nsamples < w->cap)
            w->samples[w->nsamples++] = (float)((now() - t0) * 1e3);
    }
    return NULL;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static int cmd_rate(int workers, double seconds)
{
    struct rate_worker *ws = calloc((size_t)workers, sizeof *ws);
    for (int i = 0; i < workers; i++) {
        ws[i].cap = MAX_SAMPLES / (size_t)workers;
        ws[i].samples = malloc(ws[i].cap * sizeof(float));
    }
    double t0 = now();
    for (int i = 0; i < workers; i++)
        pthread_create(&ws[i].tid, NULL, rate_worker, &ws[i]);
    sleep_s(seconds);
    atomic_store(&stop, 1);
    unsigned long conns = 0;
    size_t n = 0;
    for (int i = 0; i < workers; i++) {
        pthread_join(ws[i].tid, NULL);
        conns += ws[i].conns;
        n += ws[i].nsamples;
    }
    double dt = now() - t0;
    float *all = malloc((n ? n : 1) * sizeof(float));
    size_t k = 0;
    for (int i = 0; i < workers; i++) {
        memcpy(all + k, ws[i].samples, ws[i].nsamples * sizeof(float));
        k += ws[i].nsamples;
    }
    qsort(all, n, sizeof(float), cmp_float);
    double p50 = n ? all[n / 2] : 0, p99 = n ? all[(size_t)((double)n * 0.99)] : 0;
    printf("{\"conns\":%lu,\"seconds\":%.3f,\"conns_per_s\":%.1f,\"errors\":%d,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"workers\":%d}\n",
           conns, dt, (double)conns / dt, atomic_load(&total_errors), p50, p99, workers);
    return 0;
}

/* ---- get ----------------------------------------------------------------- */

/* Read the response head into buf; returns its length (through the blank
 * line), the number of bytes read in *got, or -1. */
static long read_head(struct peer *p, char *buf, size_t cap, size_t *got)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = peer_recv(p, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        n += (size_t)r;
        buf[n] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            *got = n;
            return end + 4 - buf;
        }
        if (n >= cap - 1)
            return -1;
    }
}

static int cmd_get(const char *hosthdr, unsigned long long want, double seconds)
{
    static char buf[256 * 1024];
    char req[512];
    int len = snprintf(req, sizeof req, "GET /bulk?bytes=%llu HTTP/1.1\r\nHost: %s\r\n\r\n", want,
                       hosthdr);
    struct peer p;
    int connected = peer_open(&p) == 0;
    double t0 = now();
    size_t got = 0;
    long head = -1;
    if (connected && peer_send(&p, req, (size_t)len) == 0)
        head = read_head(&p, buf, 64 * 1024, &got);
    if (head < 0 || strncmp(buf, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "load: no 200 response: %.60s\n", head < 0 ? "(none)" : buf);
        return 1;
    }
    unsigned long long body = got - (size_t)head;
    double deadline = t0 + seconds, t1 = now();
    int errors = 0;
    while (body < want && t1 < deadline) {
        ssize_t n = peer_recv(&p, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            errors++;
            break;
        }
        body += (unsigned long long)n;
        t1 = now();
    }
    peer_close(&p);
    double dt = t1 - t0;
    printf("{\"bytes\":%llu,\"seconds\":%.3f,\"mb_per_s\":%.1f,\"complete\":%s,\"errors\":%d}\n",
           body, dt, (double)body / dt / 1e6, body >= want ? "true" : "false", errors);
    return 0;
}

/* ---- repeat -------------------------------------------------------------- */

/* Send "GET path" with "Host: hosthdr" on p; 0 or -1. */
static int send_get(struct peer *p, const char *path, const char *hosthdr)
{
    char req[1024];
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, hosthdr);
    if (len < 0 || (size_t)len >= sizeof req)
        return -1;
    return peer_send(p, req, (size_t)len);
}

/* Why a response failed, on stderr; only once in hold-http (counted there). */
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (!reported)                                                                             \
            fprintf(stderr, __VA_ARGS__);                                                          \
        reported = quiet;                                                                          \
    } while (0)

/* Read one whole response (head and Content-Length body) from p, using buf
 * (at least 64 KiB) as scratch space; returns the body length, or -1 with the
 * reason on stderr (after the first one, only when !quiet). Nothing is
 * pipelined, so nothing may follow the body. */
static long long read_response(struct peer *p, char *buf, size_t cap, int quiet)
{
    size_t got = 0;
    long head = read_head(p, buf, 64 * 1024, &got);
    if (head < 0) {
        FAIL("load: no response head\n");
        return -1;
    }
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0) {
        FAIL("load: not a 200 response: %.60s\n", buf);
        return -1;
    }
    char saved = buf[head];
    buf[head] = '\0'; /* search the head only, not body bytes read with it */
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    long long want = cl ? strtoll(cl + 17, NULL, 10) : -1;
    buf[head] = saved;
    if (want < 0) {
        FAIL("load: response without Content-Length: %.60s\n", buf);
        return -1;
    }
    unsigned long long body = got - (size_t)head;
    while (body < (unsigned long long)want) {
        ssize_t n = peer_recv(p, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            FAIL("load: connection ended after %llu of %lld body bytes\n", body, want);
            return -1;
        }
        body += (unsigned long long)n;
    }
    if (body != (unsigned long long)want) {
        FAIL("load: %llu body bytes, Content-Length said %lld\n", body, want);
        return -1;
    }
    return want;
}

static int cmd_repeat(const char *hosthdr, const char *path, unsigned long long want,
                      double seconds)
{
    static char buf[256 * 1024];
    struct peer p;
    if (peer_open(&p) < 0) {
        fprintf(stderr, "load: cannot connect\n");
        return 1;
    }
    double t0 = now(), deadline = t0 + seconds, t1;
    unsigned long long bytes = 0;
    unsigned long downloads = 0;
    do {
        long long n = send_get(&p, path, hosthdr) == 0 ? read_response(&p, buf, sizeof buf, 0) : -1;
        if (n < 0 || (unsigned long long)n != want) {
            if (n >= 0)
                fprintf(stderr, "load: GET %s: %lld body bytes, expected %llu\n", path, n, want);
            else
                fprintf(stderr, "load: GET %s failed after %lu downloads\n", path, downloads);
            peer_close(&p);
            return 1;
        }
        bytes += (unsigned long long)n;
        downloads++;
        t1 = now();
    } while (t1 < deadline);
    peer_close(&p);
    double dt = t1 - t0;
    printf("{\"bytes\":%llu,\"seconds\":%.3f,\"mb_per_s\":%.1f,\"downloads\":%lu,\"errors\":0}\n",
           bytes, dt, (double)bytes / dt / 1e6, downloads);
    return 0;
}

/* ---- hold ---------------------------------------------------------------- */

/* Say how many connections are held, then wait until stdin says to let go. */
static void held_until_stdin(int held, int errors, double t0)
{
    printf("{\"held\":%d,\"errors\":%d,\"seconds\":%.3f}\n", held, errors, now() - t0);
    fflush(stdout);
    char line[64];
    (void)!fgets(line, sizeof line, stdin);
}

static int cmd_hold(int count)
{
    int *fds = malloc((size_t)count * sizeof *fds);
    int errors = 0, held = 0;
    double t0 = now();
    const int batch = 50;
    for (int i = 0; i < count; i += batch) {
        int end = i + batch < count ? i + batch : count;
        for (int j = i; j < end; j++) {
            fds[j] = dial();
            if (fds[j] >= 0 && send1(fds[j], 'E') < 0) {
                close(fds[j]);
                fds[j] = -1;
            }
        }
        for (int j = i; j < end; j++) {
            if (fds[j] >= 0 && recv1(fds[j]) < 0) {
                close(fds[j]);
                fds[j] = -1;
            }
            if (fds[j] < 0)
                errors++;
            else
                held++;
        }
    }
    held_until_stdin(held, errors, t0);
    for (int i = 0; i < count; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return 0;
}

/* Connections that did one GET / each and stay open, idle, until stdin says. */
static int cmd_hold_http(const char *hosthdr, int count)
{
    static char buf[64 * 1024];
    struct peer *ps = malloc((size_t)count * sizeof *ps);
    char *ok = calloc((size_t)count, 1);
    int errors = 0, held = 0;
    double t0 = now();
    const int batch = 50;
    for (int i = 0; i < count; i += batch) {
        int end = i + batch < count ? i + batch : count;
        for (int j = i; j < end; j++) {
            if (peer_open(&ps[j]) < 0)
                continue;
            ok[j] = 1;
            if (send_get(&ps[j], "/", hosthdr) < 0) {
                peer_close(&ps[j]);
                ok[j] = 0;
            }
        }
        for (int j = i; j < end; j++) {
            if (ok[j] && read_response(&ps[j], buf, sizeof buf, 1) < 0) {
                peer_close(&ps[j]);
                ok[j] = 0;
            }
            if (ok[j])
                held++;
            else
                errors++;
        }
    }
    held_until_stdin(held, errors, t0);
    for (int i = 0; i < count; i++)
        if (ok[i])
            peer_close(&ps[i]);
    free(ps);
    free(ok);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (argc >= 3 && strcmp(argv[1], "--tls") == 0) {
        tls_sni = argv[2];
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx)
            return 2;
        SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    if (argc >= 7 && strcmp(argv[1], "bulk") == 0) {
        resolve(argv[2], argv[3]);
        return cmd_bulk((int)strtol(argv[4], NULL, 10), strtod(argv[5], NULL),
                        strtod(argv[6], NULL));
    }
    if (argc >= 6 && strcmp(argv[1], "rate") == 0) {
        resolve(argv[2], argv[3]);
        return cmd_rate((int)strtol(argv[4], NULL, 10), strtod(argv[5], NULL));
    }
    if (argc >= 7 && strcmp(argv[1], "get") == 0) {
        resolve(argv[2], argv[3]);
        return cmd_get(argv[4], strtoull(argv[5], NULL, 10), strtod(argv[6], NULL));
    }
    if (argc >= 8 && strcmp(argv[1], "repeat") == 0) {
        resolve(argv[2], argv[3]);
        return cmd_repeat(argv[4], argv[5], strtoull(argv[6], NULL, 10), strtod(argv[7], NULL));
    }
    if (argc >= 6 && strcmp(argv[1], "hold-http") == 0) {
        resolve(argv[2], argv[3]);
        return cmd_hold_http(argv[4], (int)strtol(argv[5], NULL, 10));
    }
    if (argc >= 5 && strcmp(argv[1], "hold") == 0) {
        resolve(argv[2], argv[3]);
        return cmd_hold((int)strtol(argv[4], NULL, 10));
    }
    fprintf(stderr,
            "usage: %s bulk HOST PORT STREAMS SECONDS WARMUP\n"
            "       %s rate HOST PORT WORKERS SECONDS\n"
            "       %s get HOST PORT HOSTHDR BYTES SECONDS\n"
            "       %s repeat HOST PORT HOSTHDR PATH BYTES SECONDS\n"
            "       %s hold HOST PORT N\n"
            "       %s hold-http HOST PORT HOSTHDR N\n"
            "       %s --tls SNI bulk|rate|get|repeat|hold-http ...\n",
            argv[0], argv[0], argv[0], argv[0], argv[0], argv[0], argv[0]);
    return 2;
}
