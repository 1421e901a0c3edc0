/* Logging in ngrok's formats (log15): logfmt, json and term.
 *
 *   t=2020-10-08T22:36:59-0700 lvl=info msg="starting web service" obj=web addr=127.0.0.1:4040
 *
 * Context is passed as NULL-terminated key/value string pairs, in call order:
 *   bw_log(BW_LOG_INFO, "started tunnel", "obj", "tunnels", "name", name, NULL);
 * Each record is written with a single write(2), so lines from concurrent
 * processes sharing a file never interleave.
 *
 * Logging never blocks the caller on a pipe, socket or terminal whose reader
 * has stopped: those are written without blocking, what they do not take
 * waits in a queue of at most BW_LOG_QUEUE_MAX bytes, records that do not
 * fit are dropped, and once the queue has drained one record says
 * `msg="dropped N log lines" obj=log`. A regular file is written blocking.
 * A json record that cannot be built (out of memory) is dropped and counted
 * the same way, on every target: never written with a field missing.
 */
#ifndef BW_CORE_LOG_H
#define BW_CORE_LOG_H

#include <stdarg.h>

#include <burrow/plugin.h>

typedef enum bw_log_format {
    BW_LOGFMT_LOGFMT = 0,
    BW_LOGFMT_JSON = 1,
    BW_LOGFMT_TERM = 2
} bw_log_format_t;

/* Parse "crit|error|eror|warn|info|debug|dbug". Returns the level or -1. */
int bw_log_parse_level(const char *s);
/* Parse "logfmt|json|term". Returns the format or -1. */
int bw_log_parse_format(const char *s);

/* Send records to `target`: "stdout", "stderr", "false"/"" (discard) or a
 * file path (appended, created 0644). Returns 0 or a negative errno. */
int bw_log_open(const char *target, bw_log_format_t format, bw_log_level_t level);
/* Close a file target; records are discarded afterwards. */
void bw_log_close(void);

struct uv_loop_s;

/* Drain the queue of a pipe, socket or terminal target from `loop` when it
 * becomes writable (without it the queue drains on the next record and at
 * bw_log_close). No-op for other targets. Returns 0 or a negative libuv
 * error. Call on the loop thread, after bw_log_open; detach before the
 * target is closed or reopened. */
int bw_log_attach_loop(struct uv_loop_s *loop);
/* Close the handles bw_log_attach_loop made (the loop must run once more to
 * finish closing them); records queue again until the next one or
 * bw_log_close. */
void bw_log_detach_loop(void);

/* Is a record at `level` written? Use it to skip building costly context. */
int bw_log_enabled(bw_log_level_t level);

/* Write one record. Pairs of const char* key/value follow `msg`, ending with
 * NULL. A NULL value prints as `nil`. */
void bw_log(bw_log_level_t level, const char *msg, ...);
void bw_logv(bw_log_level_t level, const char *msg, va_list ap);

/* Format one record into buf[len] without writing it (for tests). `t_sec`
 * and `t_nsec` give the wall-clock time. Returns the record length
 * (excluding the NUL), truncated to len-1; 0 when the record could not be
 * formatted (json out of memory). */
size_t bw_log_format_record(char *buf, size_t len, bw_log_format_t format, bw_log_level_t level,
                            long long t_sec, long t_nsec, const char *msg, va_list ap);

#endif /* BW_CORE_LOG_H */
