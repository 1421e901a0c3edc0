/* Logging in ngrok's (log15) formats. See log.h. */
#include "log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

static struct {
    int fd; /* -1: discard */
    int own_fd;
    bw_log_format_t format;
    bw_log_level_t level;
} g_log = {1, 0, BW_LOGFMT_LOGFMT, BW_LOG_INFO};

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

int bw_log_open(const char *target, bw_log_format_t format, bw_log_level_t level)
{
    int fd;
    bw_log_close();
    if (!target || !*target || strcmp(target, "false") == 0)
        fd = -1;
    else if (strcmp(target, "stdout") == 0)
        fd = STDOUT_FILENO;
    else if (strcmp(target, "stderr") == 0)
        fd = STDERR_FILENO;
    else {
        fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        g_log.own_fd = 1;
    }
    g_log.fd = fd;
    g_log.format = format;
    g_log.level = level;
    return 0;
}

void bw_log_close(void)
{
    if (g_log.own_fd)
        close(g_log.fd);
    g_log.own_fd = 0;
    g_log.fd = -1;
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
    json_object_set_new(obj, "t", json_string(t));
    json_object_set_new(obj, "lvl", json_string(level_names[level]));
    json_object_set_new(obj, "msg", json_string(msg));
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        json_object_set_new(obj, k, json_string(v ? v : "<nil>"));
    }
    char *s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
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

void bw_logv(bw_log_level_t level, const char *msg, va_list ap)
{
    if (!bw_log_enabled(level))
        return;
    char buf[8192];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t n = bw_log_format_record(buf, sizeof buf - 1, g_log.format, level, ts.tv_sec, ts.tv_nsec,
                                    msg, ap);
    buf[n++] = '\n';
    /* One write per record; a short write on a pipe is retried. */
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(g_log.fd, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void bw_log(bw_log_level_t level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    bw_logv(level, msg, ap);
    va_end(ap);
}
