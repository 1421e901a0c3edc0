/* The agent API's HTTP server over real loopback TCP: the server runs on a
 * libuv loop in the test thread, a client thread talks to it with plain
 * blocking sockets and reports back through a uv_async. Covers olive's
 * framework answers (404/405/406/415, the DNS-rebinding 401), keep-alive,
 * pipelining with async handlers, limits, timeouts, the 4040 fallback, Go
 * duration formatting, and out-of-memory answers (built with
 * -Wl,--wrap=realloc so a test can make the core's next realloc fail).
 *
 * Over 600 lines: one test program per module, as tests/unit/meson.build
 * builds them; its cases share the fixtures above them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include <uv.h>

#include <burrow/error.h>

#include "fail_json_string.h"
#include "httpd.h"
#include "log.h"
#include "util.h"

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

static int fail_realloc; /* the next fail_realloc reallocs in the core return NULL */

void *__wrap_realloc(void *p, size_t n)
{
    if (fail_realloc > 0) {
        fail_realloc--;
        return NULL;
    }
    return __real_realloc(p, n);
}

static uv_loop_t loop;
static uv_async_t wake;
static int events; /* client jobs and async answers still expected */
static bw_httpd_t *srv;
static int port;

/* ---- the client side ---- */

typedef struct job {
    const char *req;
    size_t len;
    int nresp;        /* complete responses to read */
    int check_close;  /* then wait for the server to close */
    int hangup_ms;    /* >0: close this long after sending, read nothing */
    const char *req2; /* then sent on the same connection, for one more response */
    int sink;         /* skip the first response (any size) and keep the rest */
    size_t sunk;      /* body bytes of the skipped response */
    char buf[256 * 1024];
    size_t got;
    int closed;
    double close_after; /* seconds from send to EOF */
} job_t;

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

/* Count complete responses in buf (each has Content-Length or none = 0). */
static int count_responses(const char *buf, size_t len)
{
    int n = 0;
    size_t off = 0;
    for (;;) {
        const char *end = memmem(buf + off, len - off, "\r\n\r\n", 4);
        if (!end)
            return n;
        size_t head = (size_t)(end - (buf + off)) + 4;
        size_t clen = 0;
        const char *cl = memmem(buf + off, head, "Content-Length: ", 16);
        if (cl)
            clen = strtoul(cl + 16, NULL, 10);
        if (off + head + clen > len)
            return n;
        off += head + clen;
        n++;
    }
}

/* Read and drop one response with a Content-Length; 0, or -1 if the
 * connection ends first. Bytes after it stay in j->buf. */
static int sink_response(int fd, job_t *j)
{
    const char *end;
    while (!(end = memmem(j->buf, j->got, "\r\n\r\n", 4))) {
        ssize_t n = recv(fd, j->buf + j->got, sizeof j->buf - j->got - 1, 0);
        if (n <= 0)
            return -1;
        j->got += (size_t)n;
    }
    size_t head = (size_t)(end - j->buf) + 4;
    const char *cl = memmem(j->buf, head, "Content-Length: ", 16);
    size_t left = cl ? strtoul(cl + 16, NULL, 10) : 0;
    j->sunk = left;
    size_t have = j->got - head;
    size_t drop = have < left ? have : left;
    memmove(j->buf, j->buf + head + drop, have - drop);
    j->got = have - drop;
    left -= drop;
    char tmp[65536];
    while (left > 0) {
        ssize_t n = recv(fd, tmp, left < sizeof tmp ? left : sizeof tmp, 0);
        if (n <= 0)
            return -1;
        left -= (size_t)n;
    }
    return 0;
}

static void *client_main(void *arg)
{
    job_t *j = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        goto out;
    double t0 = now_s();
    if (j->len && send(fd, j->req, j->len, MSG_NOSIGNAL) != (ssize_t)j->len)
        goto out;
    if (j->hangup_ms) {
        usleep((useconds_t)j->hangup_ms * 1000);
        goto out;
    }
    if (j->sink && sink_response(fd, j) != 0) {
        j->closed = 1;
        goto out;
    }
    while (count_responses(j->buf, j->got) < j->nresp) {
        ssize_t n = recv(fd, j->buf + j->got, sizeof j->buf - j->got - 1, 0);
        if (n <= 0) {
            j->closed = 1;
            break;
        }
        j->got += (size_t)n;
    }
    if (j->req2 && !j->closed && send(fd, j->req2, strlen(j->req2), MSG_NOSIGNAL) > 0) {
        while (count_responses(j->buf, j->got) < j->nresp + 1) {
            ssize_t n = recv(fd, j->buf + j->got, sizeof j->buf - j->got - 1, 0);
            if (n <= 0) {
                j->closed = 1;
                break;
            }
            j->got += (size_t)n;
        }
    }
    if (j->check_close && !j->closed) {
        char c;
        ssize_t n = recv(fd, &c, 1, 0);
        j->closed = n == 0 || (n < 0 && errno == ECONNRESET);
    }
    j->close_after = now_s() - t0;
    j->buf[j->got] = '\0';
out:
    close(fd);
    uv_async_send(&wake);
    return NULL;
}

static void on_wake(uv_async_t *a)
{
    /* uv_async coalesces; the jobs' own counters tell how many finished. */
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct runner {
    job_t *job;
    int done;
} runner_t;

static void *runner_main(void *arg)
{
    runner_t *r = arg;
    client_main(r->job);
    pthread_mutex_lock(&mu);
    r->done = 1;
    pthread_mutex_unlock(&mu);
    uv_async_send(&wake);
    return NULL;
}

static int runner_done(runner_t *r)
{
    pthread_mutex_lock(&mu);
    int d = r->done;
    pthread_mutex_unlock(&mu);
    return d;
}

static void on_tick(uv_timer_t *t)
{
    /* Only wakes uv_run so that loop_until checks its deadline. */
}

/* Turn the loop until done(arg) or `secs` pass; returns done(arg). A
 * repeating timer wakes uv_run: when the server refuses or closes a
 * connection it could not allocate for (the allocation-failure torture),
 * no other event may ever come. */
static int loop_until(int (*done)(void *), void *arg, double secs)
{
    uv_timer_t tick;
    double deadline = now_s() + secs;
    int ok;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 100, 100);
    while (!(ok = done(arg)) && now_s() < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT); /* frees the timer before it goes out of scope */
    return ok;
}

static int client_done(void *arg)
{
    return runner_done(arg);
}

static int no_events(void *arg)
{
    return events == 0;
}

/* Run the loop until the client thread is done and `events` reach 0, or
 * fail the test saying which is missing. Once the client is done, the
 * handlers' timers (80 ms at most) have a second: a server that refused the
 * connection never starts them, and the torture should not wait 10 s. */
static void run_job(job_t *j)
{
    runner_t r = {.job = j};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, runner_main, &r), 0);
    int done = loop_until(client_done, &r, 10);
    int quiet = done && loop_until(no_events, NULL, 1);
    pthread_join(th, NULL);
    if (!done)
        fail_msg("the client had no outcome within 10 s");
    if (!quiet)
        fail_msg("%d server events still expected a second after the client was done", events);
}

static job_t *job_new(const char *req, int nresp)
{
    job_t *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->req = req;
    j->len = strlen(req);
    j->nresp = nresp;
    return j;
}

/* ---- handlers ---- */

static void h_tunnels(bw_httpd_req_t *req, void *ud)
{
    bw_httpd_json(req, 200, json_pack("{s:[], s:s}", "tunnels", "uri", "/api/tunnels"));
}

static void h_echo(bw_httpd_req_t *req, void *ud)
{
    size_t len;
    const char *body = bw_httpd_req_body(req, &len);
    bw_httpd_respond(req, 201, "application/json", body, len, NULL);
}

static void h_name(bw_httpd_req_t *req, void *ud)
{
    char *limit = NULL;
    int rc = bw_httpd_req_query(req, "limit", &limit);
    bw_httpd_json(req, 200,
                  json_pack("{s:s?, s:s?, s:i}", "name", bw_httpd_req_param(req), "limit",
                            rc == 0 ? limit : NULL, "rc", rc));
    free(limit);
}

static void h_delete(bw_httpd_req_t *req, void *ud)
{
    bw_httpd_respond(req, 204, NULL, NULL, 0, NULL);
}

/* An answer of BIG_LEN bytes: far over the write queue's high-water mark. */
#define BIG_LEN (1024u * 1024u)

static void h_big(bw_httpd_req_t *req, void *ud)
{
    char *body = malloc(BIG_LEN);
    if (!body) { /* a check failing in a loop callback would leave the client thread */
        bw_httpd_error(req, 500, "Internal Server Error", NULL);
        return;
    }
    memset(body, 'x', BIG_LEN);
    bw_httpd_respond(req, 200, "application/octet-stream", body, BIG_LEN, NULL);
    free(body);
}

static void h_path(bw_httpd_req_t *req, void *ud)
{
    const char *p = bw_httpd_req_path(req);
    bw_httpd_respond(req, 200, "text/plain", p, strlen(p), NULL);
}

/* Answers as if its details builder had run out of memory. */
static void h_lost_details(bw_httpd_req_t *req, void *ud)
{
    bw_httpd_error(req, 404, "gone", NULL);
}

typedef struct later {
    uv_timer_t t;
    bw_httpd_req_t *req;
    int cancelled;
    int rc;
} later_t;

static later_t *last_later;

static void later_closed(uv_handle_t *h)
{
    free(BW_CONTAINER_OF((uv_timer_t *)h, later_t, t));
}

static void later_fire(uv_timer_t *t)
{
    later_t *l = BW_CONTAINER_OF(t, later_t, t);
    const char *p = bw_httpd_req_path(l->req);
    l->cancelled = bw_httpd_req_cancelled(l->req);
    l->rc = bw_httpd_respond(l->req, 200, "text/plain", p, strlen(p), NULL);
    if (last_later == l) {
        /* Keep the outcome for the test; the timer memory goes on close. */
        static later_t copy;
        copy = *l;
        last_later = &copy;
    }
    uv_close((uv_handle_t *)t, later_closed);
    events--;
}

/* Answer from a timer, after `ud` milliseconds. */
static void h_later(bw_httpd_req_t *req, void *ud)
{
    later_t *l = calloc(1, sizeof *l);
    if (!l) { /* a check failing in a loop callback would longjmp out of uv_run */
        bw_httpd_error(req, 500, "Internal Server Error", NULL);
        events--; /* the answer it stood for is given */
        return;
    }
    l->req = req;
    uv_timer_init(&loop, &l->t);
    uv_timer_start(&l->t, later_fire, (uint64_t)(uintptr_t)ud, 0);
    last_later = l;
}

/* ---- fixture ---- */

static int start_server(const bw_httpd_cfg_t *cfg)
{
    if (bw_httpd_new(&loop, "127.0.0.1:0", cfg, &srv) != 0)
        return -1;
    const char *a = bw_httpd_addr(srv);
    port = (int)strtol(strrchr(a, ':') + 1, NULL, 10);
    assert_int_equal(bw_httpd_route(srv, "GET", "/api/tunnels", 0, h_tunnels, NULL), 0);
    assert_int_equal(bw_httpd_route(srv, "POST", "/api/tunnels", BW_HTTPD_BODY, h_echo, NULL), 0);
    assert_int_equal(bw_httpd_route(srv, "GET", "/api/tunnels/:name", 0, h_name, NULL), 0);
    assert_int_equal(bw_httpd_route(srv, "DELETE", "/api/tunnels/:name", 0, h_delete, NULL), 0);
    assert_int_equal(bw_httpd_route(srv, "GET", "/fast", 0, h_path, NULL), 0);
    assert_int_equal(bw_httpd_route(srv, "GET", "/slow", 0, h_later, (void *)(uintptr_t)80), 0);
    assert_int_equal(bw_httpd_route(srv, "GET", "/slow2", 0, h_later, (void *)(uintptr_t)20), 0);
    assert_int_equal(bw_httpd_route(srv, "GET", "/metrics", 0, h_path, NULL), 0);
    assert_int_equal(bw_httpd_route(srv, "GET", "/big", 0, h_big, NULL), 0);
    assert_int_equal(bw_httpd_route(srv, "GET", "/lostdetails", 0, h_lost_details, NULL), 0);
    return 0;
}

static int setup(void **state)
{
    static const char *const allow[] = {"tunnel.example.com", NULL};
    bw_httpd_cfg_t cfg = {.allow_hosts = allow,
                          .max_header_bytes = 4096,
                          .max_body_bytes = 65536,
                          .idle_timeout_ms = 300,
                          .header_timeout_ms = 300};
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_INFO);
    events = 0;
    last_later = NULL;
    if (uv_loop_init(&loop) != 0 || uv_async_init(&loop, &wake, on_wake) != 0)
        return -1;
    return start_server(&cfg);
}

static int teardown(void **state)
{
    bw_httpd_close(srv);
    srv = NULL;
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    bw_log_close();
    return uv_loop_close(&loop) == 0 ? 0 : -1;
}

/* The body of the i-th response in j->buf. */
static const char *body_of(job_t *j, int i)
{
    const char *p = j->buf;
    for (int k = 0; k <= i; k++) {
        p = strstr(p, "\r\n\r\n");
        if (!p)
            return "";
        p += 4;
        if (k < i)
            p = strstr(p, "HTTP/1.1 ");
        if (!p)
            return "";
    }
    return p;
}

#define HOST "Host: 127.0.0.1:4040\r\n"

/* ---- tests ---- */

static void test_basic_get(void **state)
{
    job_t *j = job_new("GET /api/tunnels HTTP/1.1\r\n" HOST "\r\n", 1);
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(j->buf, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(j->buf, "Content-Length: 36\r\n"));
    assert_string_equal(body_of(j, 0), "{\"tunnels\":[],\"uri\":\"/api/tunnels\"}\n");
    free(j);
}

static void test_404_405(void **state)
{
    job_t *j = job_new("GET /api/xyz HTTP/1.1\r\n" HOST "\r\n"
                       "PUT /api/tunnels/foo HTTP/1.1\r\n" HOST "Content-Length: 0\r\n\r\n",
                       2);
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 404 Not Found\r\n"));
    assert_non_null(strstr(
        j->buf,
        "{\"status_code\":404,\"msg\":\"Not Found\",\"details\":{\"path\":\"/api/xyz\"}}\n"));
    assert_non_null(strstr(j->buf, "HTTP/1.1 405 Method Not Allowed\r\n"));
    assert_non_null(strstr(j->buf, "Allow: GET, DELETE\r\n"));
    assert_string_equal(body_of(j, 1), "{\"status_code\":405,\"msg\":\"Method Not Allowed\","
                                       "\"details\":{\"method\":\"PUT\",\"allowed\":\"GET, "
                                       "DELETE\"}}\n");
    free(j);
}

/* A 4xx whose details could not be built is a 500, not a 404 without them. */
static void test_error_without_details_is_500(void **state)
{
    job_t *j = job_new("GET /lostdetails HTTP/1.1\r\n" HOST "\r\n", 1);
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 500 Internal Server Error\r\n"));
    assert_string_equal(body_of(j, 0), "{\"status_code\":500,\"msg\":\"Internal Server Error\"}\n");
    free(j);
}

/* An error answer that cannot be built whole is a 500, never a 404 without
 * its "msg". */
static void test_error_without_memory_is_500(void **state)
{
    job_t *j = job_new("GET /api/xyz HTTP/1.1\r\n" HOST "\r\n", 1);
    fail_json_string = 1;
    run_job(j);
    fail_json_string = 0;
    assert_non_null(strstr(j->buf, "HTTP/1.1 500 Internal Server Error\r\n"));
    assert_null(strstr(j->buf, "404"));
    free(j);
}

static void test_param_and_query(void **state)
{
    job_t *j = job_new("GET /api/tunnels/my%20tun?x=1&limit=a+b%21 HTTP/1.1\r\n" HOST "\r\n"
                       "DELETE /api/tunnels/x HTTP/1.1\r\n" HOST "\r\n"
                       "GET /metrics HTTP/1.1\r\n" HOST "\r\n",
                       3);
    run_job(j);
    assert_non_null(strstr(j->buf, "{\"name\":\"my tun\",\"limit\":\"a b!\",\"rc\":0}\n"));
    assert_non_null(strstr(j->buf, "HTTP/1.1 204 No Content\r\n"));
    assert_string_equal(body_of(j, 2), "/metrics");
    free(j);
}

static void test_415_form_post(void **state)
{
    job_t *j = job_new(
        "POST /api/tunnels HTTP/1.1\r\n" HOST "Content-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 7\r\n\r\nname=aa"
        "POST /api/tunnels HTTP/1.1\r\n" HOST "Content-Type: application/json; charset=latin1\r\n"
        "Content-Length: 2\r\n\r\n{}"
        "POST /api/tunnels HTTP/1.1\r\n" HOST "Content-Type: application/json; charset=UTF-8\r\n"
        "Content-Length: 2\r\n\r\n{}",
        3);
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 415 Unsupported Media Type\r\n"));
    assert_non_null(strstr(j->buf, "{\"status_code\":415,\"msg\":\"unsupported request "
                                   "Content-Type\",\"details\":{\"content-type\":\"application/"
                                   "x-www-form-urlencoded\",\"available\":[\"application/"
                                   "json\"]}}\n"));
    assert_non_null(strstr(j->buf, "\"msg\":\"unsupported request content encoding charset\""));
    assert_string_equal(body_of(j, 2), "{}");
    free(j);
}

static void test_406(void **state)
{
    job_t *j = job_new("GET /api/tunnels HTTP/1.1\r\n" HOST "Accept: text/xml\r\n\r\n"
                       "GET /api/tunnels HTTP/1.1\r\n" HOST
                       "Accept: text/html, application/json;q=0.9\r\n\r\n",
                       2);
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 406 Not Acceptable\r\n"));
    assert_non_null(strstr(j->buf, "{\"status_code\":406,\"msg\":\"unsupported request Accept "
                                   "header\",\"details\":{\"accept-header\":\"text/xml\","
                                   "\"supported\":[\"application/json\"]}}\n"));
    assert_non_null(strstr(j->buf, "HTTP/1.1 200 OK\r\n"));
    free(j);
}

static void test_keepalive(void **state)
{
    /* Several requests, one at a time, on one connection. */
    job_t *j = job_new("GET /fast HTTP/1.1\r\n" HOST "\r\n", 1);
    j->check_close = 1; /* idle timeout (300 ms) closes it afterwards */
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 200 OK\r\n"));
    assert_null(strstr(j->buf, "Connection: close"));
    assert_true(j->closed);
    assert_true(j->close_after > 0.2);
    free(j);

    /* Request, answer, then another request on the same connection. */
    j = job_new("GET /fast HTTP/1.1\r\n" HOST "\r\n", 1);
    j->req2 = "GET /api/tunnels HTTP/1.1\r\n" HOST "\r\n";
    run_job(j);
    assert_false(j->closed);
    assert_int_equal(count_responses(j->buf, j->got), 2);
    assert_non_null(strstr(j->buf, "\r\n\r\n/fastHTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(j->buf, "{\"tunnels\":[],\"uri\":\"/api/tunnels\"}\n"));
    free(j);
}

static void test_keepalive_after_large_answer(void **state)
{
    /* An answer over the write queue's high-water mark stops reading until
     * it drains; once it has, the next request on the connection must be
     * read and answered, not left to the idle timer. */
    job_t *j = job_new("GET /big HTTP/1.1\r\n" HOST "\r\n", 0);
    j->sink = 1;
    j->req2 = "GET /fast HTTP/1.1\r\n" HOST "\r\n";
    run_job(j);
    assert_int_equal(j->sunk, BIG_LEN);
    assert_false(j->closed);
    assert_int_equal(count_responses(j->buf, j->got), 1);
    assert_non_null(strstr(j->buf, "\r\n\r\n/fast"));
    free(j);

    /* The same with the second request pipelined behind the first. */
    j = job_new("GET /big HTTP/1.1\r\n" HOST "\r\nGET /fast HTTP/1.1\r\n" HOST "\r\n", 1);
    j->sink = 1;
    run_job(j);
    assert_int_equal(j->sunk, BIG_LEN);
    assert_false(j->closed);
    assert_non_null(strstr(j->buf, "\r\n\r\n/fast"));
    free(j);
}

static void test_pipeline_async_order(void **state)
{
    /* /slow answers after 80 ms, /slow2 after 20 ms, /fast at once. */
    events = 2;
    job_t *j = job_new("GET /slow HTTP/1.1\r\n" HOST "\r\nGET /fast HTTP/1.1\r\n" HOST
                       "\r\nGET /slow2 HTTP/1.1\r\n" HOST "\r\n",
                       3);
    run_job(j);
    assert_int_equal(count_responses(j->buf, j->got), 3);
    const char *a = strstr(j->buf, "\r\n\r\n/slow");
    const char *b = strstr(j->buf, "\r\n\r\n/fast");
    const char *c = strstr(j->buf, "\r\n\r\n/slow2");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    free(j);
}

static void test_header_too_large(void **state)
{
    static char req[8192];
    int n = snprintf(req, sizeof req, "GET /fast HTTP/1.1\r\n" HOST "X-Big: ");
    memset(req + n, 'a', 5000);
    memcpy(req + n + 5000, "\r\n\r\n", 5);
    job_t *j = job_new(req, 1);
    j->check_close = 1;
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    assert_non_null(strstr(j->buf, "Connection: close\r\n"));
    assert_non_null(strstr(j->buf, "\"status_code\":431"));
    assert_true(j->closed);
    free(j);
}

static void test_body_too_large(void **state)
{
    job_t *j = job_new("POST /api/tunnels HTTP/1.1\r\n" HOST
                       "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
                       1);
    j->check_close = 1;
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 413 Request Entity Too Large\r\n"));
    assert_true(j->closed);
    free(j);

    /* Chunked: the limit applies to the decoded body as it arrives. */
    static char req[100000];
    int n = snprintf(req, sizeof req,
                     "POST /api/tunnels HTTP/1.1\r\n" HOST
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 20; i++) {
        n += snprintf(req + n, sizeof req - (size_t)n, "1000\r\n");
        memset(req + n, ' ', 4096);
        n += 4096;
        n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    }
    req[n] = '\0';
    j = job_new(req, 1);
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 413 "));
    free(j);
}

static void test_chunked_ok(void **state)
{
    job_t *j = job_new("POST /api/tunnels HTTP/1.1\r\n" HOST
                       "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
                       1);
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 201 Created\r\n"));
    assert_string_equal(body_of(j, 0), "{\"a\":1}");
    free(j);
}

static void test_malformed(void **state)
{
    job_t *j = job_new("GET /fast HTTP/1.1\r\nHost\r\n\r\n", 1);
    j->check_close = 1;
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 400 Bad Request\r\n"));
    assert_non_null(strstr(j->buf, "Connection: close\r\n"));
    assert_true(j->closed);
    free(j);
}

static void test_rebinding_guard(void **state)
{
    job_t *j = job_new("GET /api/tunnels HTTP/1.1\r\nHost: evil.example:4040\r\n\r\n"
                       "GET /fast HTTP/1.1\r\nHost: tunnel.example.com\r\n\r\n"
                       "GET /fast HTTP/1.1\r\nHost: localhost.localdomain\r\n\r\n"
                       "GET /fast HTTP/1.1\r\nHost: [::1]:4040\r\n\r\n",
                       4);
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 401 Unauthorized\r\n"
                                   "Date: "));
    assert_non_null(strstr(j->buf, "Content-Type: text/plain; charset=utf-8\r\n"));
    assert_non_null(strstr(j->buf, "\r\n\r\nRejected host \"evil.example\".\n\nIf this request "
                                   "should be permitted, please add \"evil.example\" to the "
                                   "\"web_allow_hosts\" option in your configuration file.\n"
                                   "HTTP/1.1 200 OK"));
    assert_int_equal(count_responses(j->buf, j->got), 4);
    const char *p = j->buf;
    int ok = 0;
    while ((p = strstr(p, "HTTP/1.1 200 OK")) != NULL)
        ok++, p++;
    assert_int_equal(ok, 3);
    free(j);
}

static void test_http10(void **state)
{
    job_t *j = job_new("GET /fast HTTP/1.0\r\n" HOST "\r\n", 1);
    j->check_close = 1;
    run_job(j);
    assert_non_null(strstr(j->buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(j->buf, "Connection: close\r\n"));
    assert_true(j->closed);
    assert_true(j->close_after < 0.25); /* closed at once, not by the idle timer */
    free(j);

    j = job_new("GET /fast HTTP/1.0\r\n" HOST "Connection: keep-alive\r\n\r\n"
                "GET /fast HTTP/1.0\r\n" HOST "\r\n",
                2);
    j->check_close = 1;
    run_job(j);
    assert_non_null(strstr(j->buf, "Connection: keep-alive\r\n"));
    assert_non_null(strstr(j->buf, "Connection: close\r\n"));
    assert_true(j->closed);
    free(j);
}

static void test_idle_and_header_timeout(void **state)
{
    job_t *j = job_new("", 0);
    j->check_close = 1;
    run_job(j);
    assert_true(j->closed);
    assert_true(j->close_after > 0.2 && j->close_after < 3);
    free(j);

    /* A head that never ends is cut after header_timeout_ms. */
    j = job_new("GET /fast HTTP/1.1\r\nX-Slow: 1\r\n", 1);
    run_job(j);
    assert_true(j->closed);
    assert_int_equal(j->got, 0);
    free(j);
}

static void test_disconnect_during_async(void **state)
{
    events = 1;
    job_t *j = job_new("GET /slow HTTP/1.1\r\n" HOST "\r\n", 0);
    j->hangup_ms = 10;
    run_job(j);
    assert_non_null(last_later);
    assert_true(last_later->cancelled);
    assert_int_equal(last_later->rc, BW_ECANCELED);
    free(j);
}

static int later_started(void *arg)
{
    return last_later != NULL;
}

static int held_or_client_done(void *arg)
{
    return last_later || runner_done(arg);
}

static void test_close_with_request_held(void **state)
{
    /* The server closes while a handler holds a request: answering later
     * just frees it. */
    events = 1;
    job_t *j = job_new("GET /slow HTTP/1.1\r\n" HOST "\r\n", 0);
    j->hangup_ms = 30;
    runner_t r = {.job = j};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, runner_main, &r), 0);
    /* A server that refused the connection never holds it: stop waiting
     * soon after the client hung up. */
    int held = loop_until(held_or_client_done, &r, 10) && loop_until(later_started, NULL, 0.5);
    bw_httpd_close(srv);
    srv = NULL;
    int ok = loop_until(client_done, &r, 10) && loop_until(no_events, NULL, 1);
    pthread_join(th, NULL);
    if (!held || !ok)
        fail_msg("no outcome within 10 s: the request was %s, %d server events still expected",
                 held ? "held" : "never held", events);
    assert_true(last_later->cancelled);
    assert_int_equal(last_later->rc, BW_ECANCELED);
    free(j);
}

static void test_request_log(void **state)
{
    char path[] = "/tmp/test_httpd_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    bw_log_open(path, BW_LOGFMT_LOGFMT, BW_LOG_INFO);
    job_t *j =
        job_new("GET /api/tunnels HTTP/1.1\r\n" HOST "\r\nGET /nope HTTP/1.1\r\n" HOST "\r\n", 2);
    run_job(j);
    free(j);
    bw_log_close();
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char log[8192];
    size_t n = fread(log, 1, sizeof log - 1, f);
    fclose(f);
    unlink(path);
    log[n] = '\0';
    const char *s = strstr(log, "lvl=info msg=start pg=/api/tunnels id=");
    assert_non_null(s);
    char id[17];
    memcpy(id, s + strlen("lvl=info msg=start pg=/api/tunnels id="), 16);
    id[16] = '\0';
    assert_int_equal(strspn(id, "0123456789abcdef"), 16);
    char want[128];
    snprintf(want, sizeof want, "lvl=info msg=end pg=/api/tunnels id=%s status=200 dur=", id);
    assert_non_null(strstr(log, want));
    assert_non_null(strstr(log, "lvl=warn msg=\"Not Found\" pg=/nope id="));
    assert_non_null(strstr(log, "path=/nope"));
    assert_non_null(strstr(log, "msg=end pg=/nope id="));
    assert_non_null(strstr(log, "status=404 dur="));
}

static void test_port_fallback(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(4040)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EADDRINUSE) {
        close(fd);
        skip();
    }
    listen(fd, 1); /* if 4040 was taken by someone else, it stays taken */
    bw_httpd_t *h = NULL;
    int rc = bw_httpd_new(&loop, BW_HTTPD_DEFAULT_ADDR, NULL, &h);
    close(fd);
    if (rc == UV_EADDRINUSE) {
        uv_run(&loop, UV_RUN_NOWAIT);
        skip();
    }
    assert_int_equal(rc, 0);
    const char *a = bw_httpd_addr(h);
    int p = (int)strtol(strrchr(a, ':') + 1, NULL, 10);
    assert_true(strncmp(a, "127.0.0.1:", 10) == 0);
    assert_true(p >= 4041 && p <= 4049);
    bw_httpd_close(h);

    /* A non-default address does not fall back. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_port = 0;
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    listen(fd, 1);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    assert_int_equal(bw_httpd_new(&loop, addr, NULL, &h), UV_EADDRINUSE);
    close(fd);
}

static void test_go_duration(void **state)
{
    static const struct {
        int64_t ns;
        const char *s;
    } t[] = {
        {0, "0s"},
        {1, "1ns"},
        {999, "999ns"},
        {1000, "1µs"},
        {1500, "1.5µs"},
        {295273, "295.273µs"},
        {1000000, "1ms"},
        {217126877, "217.126877ms"},
        {999999999, "999.999999ms"},
        {1000000000, "1s"},
        {2000000000, "2s"},
        {1500000000, "1.5s"},
        {90000000000LL, "1m30s"},
        {3600000000000LL, "1h0m0s"},
        {3723000000001LL, "1h2m3.000000001s"},
        {-1500, "-1.5µs"},
    };
    char buf[40];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_string_equal(bw_httpd_fmt_duration(t[i].ns, buf, sizeof buf), t[i].s);
}

static void test_url_decode(void **state)
{
    char *o = NULL;
    assert_int_equal(bw_httpd_url_decode("a%20b+c", 7, 1, &o), 0);
    assert_string_equal(o, "a b c");
    free(o);
    assert_int_equal(bw_httpd_url_decode("a+b", 3, 0, &o), 0);
    assert_string_equal(o, "a+b");
    free(o);
    assert_int_equal(bw_httpd_url_decode("%zz", 3, 0, &o), BW_EINVAL);
    assert_int_equal(bw_httpd_url_decode("%2", 2, 0, &o), BW_EINVAL);
    assert_int_equal(bw_httpd_url_decode("%00", 3, 0, &o), BW_EINVAL);
}

/* ---- the loop-free core ---- */

#define OUT_CAP 8192

static void collect(void *ud, const char *data, size_t len)
{
    char *out = ud;
    size_t have = strlen(out);
    if (have + len >= OUT_CAP)
        len = OUT_CAP - 1 - have;
    memcpy(out + have, data, len);
    out[have + len] = '\0';
}

static void test_detached_head_and_route_errors(void **state)
{
    bw_httpd_t *h = bw__httpd_new_detached(NULL);
    assert_non_null(h);
    assert_int_equal(bw_httpd_route(h, "GET", "/api/tunnels", 0, h_tunnels, NULL), 0);
    assert_int_equal(bw_httpd_route(h, "GET", "/a/:x/:y", 0, h_tunnels, NULL), BW_EINVAL);
    assert_int_equal(bw_httpd_route(h, "GET", "nope", 0, h_tunnels, NULL), BW_EINVAL);
    static char out[OUT_CAP];
    out[0] = '\0';
    bw__httpd_sess_t *s = bw__httpd_sess_new(h, collect, out);
    assert_non_null(s);
    const char *req = "HEAD /api/tunnels HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_int_equal(bw__httpd_sess_feed(s, req, strlen(req)), 0);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "Content-Length: 36\r\n"));
    assert_null(strstr(out, "tunnels\""));
    out[0] = '\0';
    /* Byte by byte, the same answer. */
    req = "GET /api/tunnels HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    int closed = 0;
    for (size_t i = 0; req[i]; i++)
        closed = bw__httpd_sess_feed(s, req + i, 1);
    assert_true(closed);
    assert_non_null(strstr(out, "Connection: close\r\n"));
    assert_non_null(strstr(out, "{\"tunnels\":[],\"uri\":\"/api/tunnels\"}\n"));
    bw__httpd_sess_free(s);
    bw_httpd_close(h);
}

/* A buffer that cannot grow mid-request is a 500 with olive's error shape,
 * and the session takes no more requests. */
static void test_detached_out_of_memory(void **state)
{
    bw_httpd_t *h = bw__httpd_new_detached(NULL);
    assert_non_null(h);
    assert_int_equal(bw_httpd_route(h, "GET", "/api/tunnels", 0, h_tunnels, NULL), 0);
    static char out[OUT_CAP];
    out[0] = '\0';
    bw__httpd_sess_t *s = bw__httpd_sess_new(h, collect, out);
    assert_non_null(s);
    /* The first byte sizes the input buffer for the rest of this request, so
     * the next realloc is the request target's. */
    assert_int_equal(bw__httpd_sess_feed(s, "G", 1), 0);
    const char *rest = "ET /api/tunnels HTTP/1.1\r\nHost: localhost\r\n\r\n";
    fail_realloc = 1;
    assert_int_equal(bw__httpd_sess_feed(s, rest, strlen(rest)), 1);
    assert_int_equal(fail_realloc, 0);
    assert_non_null(strstr(out, "HTTP/1.1 500 Internal Server Error\r\n"));
    assert_non_null(strstr(out, "\"status_code\":500"));
    assert_null(strstr(out, "tunnels\""));
    bw__httpd_sess_free(s);

    /* Input that cannot be held fails the feed and answers nothing. */
    out[0] = '\0';
    s = bw__httpd_sess_new(h, collect, out);
    assert_non_null(s);
    fail_realloc = 1;
    assert_int_equal(bw__httpd_sess_feed(s, rest, strlen(rest)), 1);
    assert_string_equal(out, "");
    bw__httpd_sess_free(s);
    bw_httpd_close(h);
}

/* Every realloc fails from here on (as good as): the answer cannot be
 * rendered, nor can the 500 that says so. */
static void h_json_no_memory(bw_httpd_req_t *req, void *ud)
{
    (void)ud;
    fail_realloc = 100;
    bw_httpd_json(req, 200, json_pack("{s:s}", "a", "b"));
}

/* Out of memory while rendering an answer gives up after the error answer
 * fails too: it never recurses from the answer to its error and back. */
static void test_json_out_of_memory_does_not_recurse(void **state)
{
    (void)state;
    bw_httpd_t *h = bw__httpd_new_detached(NULL);
    assert_non_null(h);
    assert_int_equal(bw_httpd_route(h, "GET", "/api/x", 0, h_json_no_memory, NULL), 0);
    static char out[OUT_CAP];
    out[0] = '\0';
    bw__httpd_sess_t *s = bw__httpd_sess_new(h, collect, out);
    assert_non_null(s);
    const char *req = "GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n";
    bw__httpd_sess_feed(s, req, strlen(req));
    int failed = 100 - fail_realloc;
    fail_realloc = 0;
    assert_in_range(failed, 1, 4); /* the answer, its error, the bare 500 */
    assert_null(strstr(out, "200 OK"));
    bw__httpd_sess_free(s);
    bw_httpd_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_405, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_without_memory_is_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_without_details_is_500, setup, teardown),
        cmocka_unit_test(test_json_out_of_memory_does_not_recurse),
        cmocka_unit_test_setup_teardown(test_param_and_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_415_form_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_406, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_after_large_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_async_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebinding_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_and_header_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_during_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_request_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_fallback, setup, teardown),
        cmocka_unit_test(test_go_duration),
        cmocka_unit_test(test_url_decode),
        cmocka_unit_test(test_detached_head_and_route_errors),
        cmocka_unit_test(test_detached_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
