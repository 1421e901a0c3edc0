/* Small helpers shared by the agent and the edge: ids, addresses, durations. */
#ifndef BW_CORE_UTIL_H
#define BW_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define BW_ADDRSTRLEN 64 /* "[ipv6]:port" plus NUL */

#define BW_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define BW_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Around a function gcc's -fanalyzer misreads (the `analyzer` suite of
 * scripts/test fails on every report): BW_ANALYZER_IGNORE("-Wanalyzer-…")
 * before it, BW_ANALYZER_END after it, and a comment naming the false
 * positive. Other compilers see nothing. */
#if defined(__GNUC__) && !defined(__clang__)
#define BW__PRAGMA(x)         _Pragma(#x)
#define BW_ANALYZER_IGNORE(w) _Pragma("GCC diagnostic push") BW__PRAGMA(GCC diagnostic ignored w)
#define BW_ANALYZER_END       _Pragma("GCC diagnostic pop")
#else
#define BW_ANALYZER_IGNORE(w)
#define BW_ANALYZER_END
#endif

/* Fill out[n] with bytes from the kernel CSPRNG. Returns 0 or a negative
 * errno (then out holds whatever was read so far). */
int bw_random_bytes(void *out, size_t n);

/* Fill out[2*nbytes+1] with random lowercase hex from the kernel CSPRNG.
 * Returns 0 or a negative errno. */
int bw_random_hex(char *out, size_t nbytes);

/* Split "host:port", "[v6]:port", ":port" or "port" into host (possibly
 * "") and port. Returns 0, or BW_EINVAL for a malformed address or a port
 * outside 0..65535. */
int bw_split_hostport(const char *in, char *host, size_t hostlen, int *port);

/* Resolve host (NULL/"" means 127.0.0.1) and port into *out, synchronously
 * (startup use only). Returns 0 or BW_ENOENT/BW_EINVAL. */
int bw_resolve(const char *host, int port, struct sockaddr_storage *out);

/* Format an address as "ip:port" ("[ip]:port" for IPv6) into buf[len]. */
const char *bw_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len);
/* Just the IP of an address. */
const char *bw_sockaddr_ip(const struct sockaddr *sa, char *buf, size_t len);
int bw_sockaddr_port(const struct sockaddr *sa);

/* True for "localhost", "localhost.localdomain", "*.localhost" and loopback IPs. */
int bw_is_loopback_host(const char *host);

/* Parse a Go-style duration ("250ms", "10s", "1m30s", "2h"; a bare number is
 * seconds) into milliseconds. Returns 0 or BW_EINVAL. */
int bw_parse_duration_ms(const char *s, uint64_t *ms);

/* Parse a decimal integer in [min, max] with nothing after it. Returns 0 or
 * BW_EINVAL. */
int bw_parse_int(const char *s, long long min, long long max, long long *out);

/* Duplicate a string; returns a new malloc()ed copy or NULL. NULL-safe. */
char *bw_strdup(const char *s);

/* snprintf that reports truncation: returns 0, or BW_EMSGSIZE when the
 * output did not fit (buf is still NUL-terminated). */
int bw_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The one growable byte buffer (text or bytes), after curl's dynbuf.
 *
 * Start from {0} (or set `max` first); `p` is NULL until the first append
 * and always NUL-terminated after one, so text can be read with
 * bw_buf_cstr(). The caller owns `p`: free it with bw_buf_free(), or take it
 * with bw_buf_take().
 *
 * Errors are sticky: the first failed append (BW_ENOMEM, or BW_EMSGSIZE when
 * `len` would pass a non-zero `max`, curl's "too big") is stored in `err`,
 * leaves the contents as they were, and makes every later append fail with
 * the same code. Callers may check each return or only `err` at the end. */
typedef struct bw_buf {
    char *p;
    size_t len, cap;
    size_t max; /* 0: no bound; else len never exceeds it */
    int err;    /* 0, or the first failed append's code */
} bw_buf_t;

/* Append n bytes of data / the string s / printf output. Return 0 or `err`
 * (BW_ENOMEM, BW_EMSGSIZE; BW_EINVAL for a format printf cannot render). */
int bw_buf_put(bw_buf_t *b, const void *data, size_t n);
int bw_buf_puts(bw_buf_t *b, const char *s);
int bw_buf_printf(bw_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The contents as a C string: "" before the first append. Borrowed. */
const char *bw_buf_cstr(const bw_buf_t *b);

/* Hand the contents to the caller (a malloc()ed, NUL-terminated string of
 * *len bytes, or NULL when nothing was appended) and leave the buffer
 * empty with `max` kept and `err` cleared. len may be NULL. */
char *bw_buf_take(bw_buf_t *b, size_t *len);

/* Free the contents; the buffer is empty and usable again (`max` kept,
 * `err` cleared). NULL-safe. */
void bw_buf_free(bw_buf_t *b);

#endif /* BW_CORE_UTIL_H */
