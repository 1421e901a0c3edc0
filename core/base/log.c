/* Logging in ngrok's (log15) formats. See log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "bw_limits.h"
#include "json_build.h"

/* A pipe, socket or terminal target is written without blocking: what it
 * will not take now waits in `q` (at most BW_LOG_QUEUE_MAX bytes) and goes
 * out on the next record or when the loop sees the target writable; records
 * that do not fit are counted in `dropped` and reported once the queue has
 * drained. A regular file is written blocking, one write(2) per record. */
static struct {
    int fd; /* -1: discard */
    int own_fd;
    int nonblock;      /* fd is non-blocking: queue instead of waiting */
    int restore_flags; /* fcntl flags to put back on a shared fd, or -1 */
    bw_log_format_t format;
    bw_log_level_t level;
    char *q;
    size_t qlen;
    unsigned long long dropped;
    uv_loop_t *loop; /* attached: drain from the loop */
    uv_async_t async;
    uv_poll_t poll;
    int polling;
} g_log = {1, 0, 0, -1, BW_LOGFMT_LOGFMT, BW_LOG_INFO, NULL, 0, 0, NULL};

/* Records may come from worker threads (plugins' host work). */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"crit", "eror", "warn", "info", "dbug"};
static const char *const term_names[] = {"CRIT", "EROR", "WARN", "INFO", "DBUG"};

int bw_log_parse_level(const char *s)
{
    static const struct {
        const char *name;
        bw_log_level_t level;
    } names[] = {
        {"crit", BW_LOG_CRIT},  {"error", BW_LOG_ERROR}, {"eror", BW_LOG_ERROR},
        {"warn", BW_LOG_WARN},  {"info", BW_LOG_INFO},   {"debug", BW_LOG_DEBUG},
        {"dbug", BW_LOG_DEBUG},
    };
    for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0)
            return (int)names[i].level;
    return -1;
}

int bw_log_parse_format(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "logfmt") == 0)
        return BW_LOGFMT_LOGFMT;
    if (strcmp(s, "json") == 0)
        return BW_LOGFMT_JSON;
    if (strcmp(s, "term") == 0)
        return BW_LOGFMT_TERM;
    return -1;
}

/* A target that can block (pipe, socket, terminal) gets a non-blocking fd
 * of its own: a new open file description when /proc allows one, so the
 * process's stdout stays as it was for everyone sharing it; else the flag on
 * the shared one, put back on close. */
static int make_nonblocking(int fd, int owned)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISREG(st.st_mode))
        return fd;
    g_log.nonblock = 1;
    if (!owned) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        int nfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (nfd >= 0) {
            g_log.own_fd = 1;
            return nfd;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        g_log.nonblock = 0;
        return fd;
    }
    if (!owned && !(fl & O_NONBLOCK))
        g_log.restore_flags = fl;
    return fd;
}

int bw_log_open(const char *target, bw_log_format_t format, bw_log_level_t level)
{
    int fd;
    bw_log_close();
    if (!target || !*target || strcmp(target, "false") == 0)
        fd = -1;
    else if (strcmp(target, "stdout") == 0)
        fd = make_nonblocking(STDOUT_FILENO, 0);
    else if (strcmp(target, "stderr") == 0)
        fd = make_nonblocking(STDERR_FILENO, 0);
    else {
        fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        g_log.own_fd = 1;
        fd = make_nonblocking(fd, 1);
    }
    pthread_mutex_lock(&g_mu);
    g_log.fd = fd;
    g_log.format = format;
    g_log.level = level;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static void flush_locked(void);

/* At exit, give a slow reader a moment for what is queued; a reader that
 * has stopped must not hold the process, so the wait is bounded. */
static void final_flush(void)
{
    for (int i = 0; i < 10; i++) {
        flush_locked();
        if (g_log.qlen == 0 && g_log.dropped == 0)
            break;
        struct pollfd p = {.fd = g_log.fd, .events = POLLOUT};
        if (poll(&p, 1, 50) < 0 && errno != EINTR)
            break;
    }
}

void bw_log_close(void)
{
    pthread_mutex_lock(&g_mu);
    if (g_log.fd >= 0 && g_log.nonblock)
        final_flush();
    if (g_log.restore_flags >= 0)
        fcntl(g_log.fd, F_SETFL, g_log.restore_flags);
    if (g_log.own_fd)
        close(g_log.fd);
    g_log.own_fd = 0;
    g_log.nonblock = 0;
    g_log.restore_flags = -1;
    g_log.fd = -1;
    free(g_log.q);
    g_log.q = NULL;
    g_log.qlen = 0;
    g_log.dropped = 0;
    pthread_mutex_unlock(&g_mu);
}

int bw_log_enabled(bw_log_level_t level)
{
    return g_log.fd >= 0 && level <= g_log.level;
}

/* A bounded output buffer: appends truncate silently at the end. */
typedef struct outbuf {
    char *p;
    size_t len, cap;
} outbuf_t;

static void out_mem(outbuf_t *o, const char *s, size_t n)
{
    if (o->cap == 0)
        return;
    size_t room = o->cap - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void out_str(outbuf_t *o, const char *s)
{
    out_mem(o, s, strlen(s));
}

static void out_fmt(outbuf_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(outbuf_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->cap - o->len;
    int n = vsnprintf(o->p + o->len, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n < room ? (size_t)n : room - 1;
}

/* log15 quotes a value when it is empty or holds a space, '=', '"' or a
 * control character, escaping like Go's %q. */
static int needs_quoting(const char *s)
{
    if (!*s)
        return 1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c == '=' || c == '"' || c == 0x7f)
            return 1;
    }
    return 0;
}

static void out_value(outbuf_t *o, const char *v)
{
    if (!v)
        v = "nil";
    if (!needs_quoting(v)) {
        out_str(o, v);
        return;
    }
    out_mem(o, "\"", 1);
    for (const char *s = v; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"':
            out_mem(o, "\\\"", 2);
            break;
        case '\\':
            out_mem(o, "\\\\", 2);
            break;
        case '\n':
            out_mem(o, "\\n", 2);
            break;
        case '\r':
            out_mem(o, "\\r", 2);
            break;
        case '\t':
            out_mem(o, "\\t", 2);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                out_fmt(o, "\\x%02x", c);
            else
                out_mem(o, s, 1);
        }
    }
    out_mem(o, "\"", 1);
}

static void format_logfmt(outbuf_t *o, const struct tm *tm, bw_log_level_t level, const char *msg,
                          va_list ap)
{
    char ts[40];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S%z", tm);
    out_fmt(o, "t=%s lvl=%s msg=", ts, level_names[level]);
    out_value(o, msg);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        out_fmt(o, " %s=", k);
        out_value(o, v);
    }
}

static void format_term(outbuf_t *o, const struct tm *tm, bw_log_level_t level, const char *msg,
                        va_list ap)
{
    char ts[32];
    strftime(ts, sizeof ts, "%m-%d|%H:%M:%S", tm);
    /* log15 pads the message to 40 columns so context lines up. */
    out_fmt(o, "%s[%s] %-40s", term_names[level], ts, msg);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        out_fmt(o, " %s=", k);
        out_value(o, v);
    }
}

static void format_json(outbuf_t *o, const struct tm *tm, long nsec, bw_log_level_t level,
                        const char *msg, va_list ap)
{
    char ts[64], off[8];
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", tm);
    snprintf(ts + n, sizeof ts - n, ".%09ld", nsec);
    strftime(off, sizeof off, "%z", tm);
    json_t *obj = json_object();
    if (!obj)
        return;
    char tz[8];
    if (strcmp(off, "+0000") == 0)
        snprintf(tz, sizeof tz, "Z");
    else
        snprintf(tz, sizeof tz, "%.3s:%.2s", off, off + 3);
    char t[80];
    snprintf(t, sizeof t, "%s%s", ts, tz);
    int bad = 0;
    bw_json_put(obj, "t", json_string(t), &bad);
    bw_json_put(obj, "lvl", json_string(level_names[level]), &bad);
    bw_json_put(obj, "msg", json_string(msg), &bad);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        bw_json_put(obj, k, json_string(v ? v : "<nil>"), &bad);
    }
    /* Out of memory: no record at all (the caller counts it as dropped),
     * never one with a field missing. */
    obj = bw_json_whole(obj, bad);
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(obj);
    if (!s)
        return;
    /* Go's encoder escapes HTML-significant characters; clients compare. */
    for (const char *p = s; *p; p++) {
        if (*p == '<')
            out_str(o, "\\u003c");
        else if (*p == '>')
            out_str(o, "\\u003e");
        else if (*p == '&')
            out_str(o, "\\u0026");
        else
            out_mem(o, p, 1);
    }
    free(s);
}

size_t bw_log_format_record(char *buf, size_t len, bw_log_format_t format, bw_log_level_t level,
                            long long t_sec, long t_nsec, const char *msg, va_list ap)
{
    outbuf_t o = {buf, 0, len};
    if (len)
        buf[0] = '\0';
    if ((unsigned)level > BW_LOG_DEBUG)
        level = BW_LOG_DEBUG;
    time_t t = (time_t)t_sec;
    struct tm tm;
    localtime_r(&t, &tm);
    va_list cp;
    va_copy(cp, ap);
    if (format == BW_LOGFMT_JSON)
        format_json(&o, &tm, t_nsec, level, msg, cp);
    else if (format == BW_LOGFMT_TERM)
        format_term(&o, &tm, level, msg, cp);
    else
        format_logfmt(&o, &tm, level, msg, cp);
    va_end(cp);
    return o.len;
}

/* Write what the target takes now from buf; returns the bytes written, or
 * n when the target failed for good (the record is lost either way). */
static size_t write_some(const char *buf, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(g_log.fd, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w <= 0)
            return n;
        off += (size_t)w;
    }
    return off;
}

/* Send buf, queueing the rest when the target is full. A record that does
 * not fit in the queue is dropped and counted, and so is every record after
 * it until the queue has drained and the count is out: the log has one gap,
 * marked where it is. */
static void put_locked(const char *buf, size_t n)
{
    if (g_log.dropped > 0) {
        g_log.dropped++;
        return;
    }
    size_t off = g_log.qlen == 0 ? write_some(buf, n) : 0;
    if (off == n)
        return;
    if (!g_log.q && !(g_log.q = malloc(BW_LOG_QUEUE_MAX))) {
        g_log.dropped++;
        return;
    }
    if (g_log.qlen + (n - off) > BW_LOG_QUEUE_MAX) {
        g_log.dropped++;
        return;
    }
    memcpy(g_log.q + g_log.qlen, buf + off, n - off);
    g_log.qlen += n - off;
}

static size_t format_dropped(char *buf, size_t len, ...)
{
    char msg[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(msg, sizeof msg, "dropped %llu log lines", g_log.dropped);
    va_list ap;
    va_start(ap, len);
    size_t n =
        bw_log_format_record(buf, len, g_log.format, BW_LOG_WARN, ts.tv_sec, ts.tv_nsec, msg, ap);
    va_end(ap);
    return n;
}

/* Send what is queued; once it is all out, report the records dropped. */
static void flush_locked(void)
{
    if (g_log.qlen > 0) {
        size_t w = write_some(g_log.q, g_log.qlen);
        memmove(g_log.q, g_log.q + w, g_log.qlen - w);
        g_log.qlen -= w;
    }
    if (g_log.qlen == 0 && g_log.dropped > 0) {
        char buf[256];
        size_t n = format_dropped(buf, sizeof buf - 1, "obj", "log", NULL);
        if (n == 0)
            return; /* no memory for the report: the next record retries */
        buf[n++] = '\n';
        g_log.dropped = 0;
        put_locked(buf, n);
    }
}

void bw_logv(bw_log_level_t level, const char *msg, va_list ap)
{
    if (!bw_log_enabled(level))
        return;
    char buf[8192];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t n = bw_log_format_record(buf, sizeof buf - 1, g_log.format, level, ts.tv_sec, ts.tv_nsec,
                                    msg, ap);
    pthread_mutex_lock(&g_mu);
    if (g_log.fd < 0) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    /* A record that could not be formatted (a json one without memory) is
     * dropped and counted like one the queue has no room for; the report
     * of the gap comes before the next record. A blocking target takes
     * each record whole, so nothing is queued for it. */
    flush_locked();
    if (n == 0) {
        g_log.dropped++;
    } else {
        buf[n++] = '\n';
        put_locked(buf, n);
    }
    if (g_log.nonblock && (g_log.qlen > 0 || g_log.dropped > 0) && g_log.loop)
        uv_async_send(&g_log.async); /* thread-safe: the loop drains */
    pthread_mutex_unlock(&g_mu);
}

/* ---- draining from the loop ---- */

static void on_writable(uv_poll_t *p, int status, int events)
{
    pthread_mutex_lock(&g_mu);
    if (status < 0) {
        g_log.qlen = 0; /* the target is gone: what waits is lost */
        g_log.dropped = 0;
    } else {
        flush_locked();
    }
    /* Still dropped with nothing queued: the report could not be formatted;
     * polling a writable target would spin, the next record retries. */
    if (g_log.qlen == 0 && g_log.polling) {
        uv_poll_stop(p);
        g_log.polling = 0;
    }
    pthread_mutex_unlock(&g_mu);
}

static void on_queued(uv_async_t *a)
{
    pthread_mutex_lock(&g_mu);
    int start = (g_log.qlen > 0 || g_log.dropped > 0) && !g_log.polling;
    pthread_mutex_unlock(&g_mu);
    if (start && uv_poll_start(&g_log.poll, UV_WRITABLE, on_writable) == 0)
        g_log.polling = 1;
}

int bw_log_attach_loop(uv_loop_t *loop)
{
    if (g_log.loop || !g_log.nonblock)
        return 0;
    int rc = uv_async_init(loop, &g_log.async, on_queued);
    if (rc < 0)
        return rc;
    rc = uv_poll_init(loop, &g_log.poll, g_log.fd);
    if (rc < 0) {
        uv_close((uv_handle_t *)&g_log.async, NULL);
        return rc;
    }
    /* Neither keeps the process up: at exit bw_log_close has the last try. */
    uv_unref((uv_handle_t *)&g_log.async);
    uv_unref((uv_handle_t *)&g_log.poll);
    pthread_mutex_lock(&g_mu);
    g_log.loop = loop;
    pthread_mutex_unlock(&g_mu);
    uv_async_send(&g_log.async); /* records queued before now */
    return 0;
}

void bw_log_detach_loop(void)
{
    if (!g_log.loop)
        return;
    pthread_mutex_lock(&g_mu);
    g_log.loop = NULL;
    g_log.polling = 0;
    pthread_mutex_unlock(&g_mu);
    uv_close((uv_handle_t *)&g_log.async, NULL);
    uv_close((uv_handle_t *)&g_log.poll, NULL);
}

void bw_log(bw_log_level_t level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    bw_logv(level, msg, ap);
    va_end(ap);
}
