/* burrow — error codes shared by the core and plugins.
 *
 * Every function of the plugin ABI returns 0 on success or a negative BW_E*
 * code. Where an errno exists for the condition the code equals -errno, so a
 * libuv or libc error can be passed through unchanged. The one positive
 * code, BW_PAUSE, is a success: `rc < 0` always means failure.
 */
#ifndef BURROW_ERROR_H
#define BURROW_ERROR_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BW_OK 0
/* ABI 1.2: stream_write took the bytes, but the queue passed its high-water
 * mark: stop reading the source until on_drain. A success, not an error. */
#define BW_PAUSE 1
/* What stream_write says instead of BW_PAUSE to plugins built for ABI 1.0
 * and 1.1 (the bytes were accepted all the same). */
#define BW_EAGAIN       (-EAGAIN)
#define BW_ENOMEM       (-ENOMEM)       /* out of memory */
#define BW_EINVAL       (-EINVAL)       /* invalid argument or configuration */
#define BW_ENOENT       (-ENOENT)       /* no such object */
#define BW_EEXIST       (-EEXIST)       /* already exists (name or address taken) */
#define BW_EPIPE        (-EPIPE)        /* stream is closed for writing */
#define BW_ECONNREFUSED (-ECONNREFUSED) /* local service refused the connection */
#define BW_ECONNRESET   (-ECONNRESET)   /* peer reset the stream */
#define BW_ECONNABORTED (-ECONNABORTED) /* session ended under the stream */
#define BW_ETIMEDOUT    (-ETIMEDOUT)    /* timed out */
#define BW_ENOTSUP      (-ENOTSUP)      /* operation not supported by this host or plugin */
#define BW_EMSGSIZE     (-EMSGSIZE)     /* message larger than the protocol allows */
#define BW_EPROTO       (-EPROTO)       /* peer broke the protocol */
#define BW_EACCES       (-EACCES)       /* authentication or permission refused */
#define BW_ECANCELED    (-ECANCELED)    /* operation cancelled because its object closed */
/* Codes with no errno equivalent live below -4000, away from every errno. */
#define BW_EABI (-4001) /* plugin ABI mismatch */

/* bw_strerror: a static, human-readable name for any BW_E* code (or -errno).
 * Returns a pointer to static storage; never NULL. Implemented by the agent;
 * plugins reach it as host->strerror. */
const char *bw_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* BURROW_ERROR_H */
