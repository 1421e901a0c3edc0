/* The in-memory store of captured HTTP exchanges behind /api/requests/http
 * (spec §2.5-2.8).
 *
 * A store is bounded by a byte budget (`inspect_db_size`) that accounts the
 * memory each entry really holds: raw wire bytes (chunk capacity), copies of
 * the parsed heads, strings and struct overhead. When a write takes it over
 * budget the oldest entries are evicted, including one still being written;
 * later writes through that handle are then dropped.
 *
 * Entries are the bw_capture_t handles of the plugin ABI. Each is
 * refcounted: the store holds one reference while the entry is listed, the
 * writer one from bw_capture_begin() until bw_capture_end(). Eviction, clear
 * and bw_capture_store_free() only detach an entry the writer still holds,
 * so the writer's handle never dangles.
 *
 * Ids are "airt_" + a 27-character base62 KSUID (4-byte timestamp since
 * 1400000000 + 16 payload bytes). Within one second the payload counts up
 * from a random start, so ids are unique and sort in creation order; the list
 * order (newest first) is id order.
 *
 * Time is injected: callers pass wall-clock start times and durations. The
 * store is not thread-safe; it lives on the agent's loop thread.
 */
#ifndef BW_CORE_CAPTURE_H
#define BW_CORE_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <burrow/plugin.h>

#define BW_CAPTURE_DEFAULT_DB_SIZE 52428800 /* inspect_db_size 0 */
#define BW_CAPTURE_DEFAULT_MAX_RAW 10485760 /* per entry and direction */
#define BW_CAPTURE_DEFAULT_LIMIT   100      /* list limit 0 */
#define BW_CAPTURE_MAX_LIMIT       1000     /* a larger list limit means this */
#define BW_CAPTURE_ID_LEN          32       /* "airt_" + 27, without NUL */

typedef struct bw_capture_store bw_capture_store_t;

/* Why a captured request cannot be replayed; values are the API's
 * error_code (spec §2.7). */
typedef enum bw_capture_replay {
    BW_CAPTURE_REPLAY_OK = 0,
    BW_CAPTURE_REPLAY_PARTIAL = 109,   /* request truncated at the per-entry cap */
    BW_CAPTURE_REPLAY_READING = 110,   /* request body still being read */
    BW_CAPTURE_REPLAY_READ_ERROR = 111 /* reading the request failed */
} bw_capture_replay_t;

/* How far the request body has been read (bw_capture_req_state()). */
typedef enum bw_capture_req {
    BW_CAPTURE_REQ_READING = 0, /* the initial state */
    BW_CAPTURE_REQ_DONE = 1,
    BW_CAPTURE_REQ_ERROR = 2
} bw_capture_req_t;

/* List query (GET /api/requests/http). NULL strings do not filter. */
typedef struct bw_capture_filter {
    size_t limit;            /* 0 means BW_CAPTURE_DEFAULT_LIMIT; at most BW_CAPTURE_MAX_LIMIT */
    const char *tunnel_name; /* exact match */
    const char *remote_addr; /* exact match */
} bw_capture_filter_t;

/* Byte counts of one entry, for tests and the inspection UI. */
typedef struct bw_capture_info {
    uint64_t seen[2];     /* wire bytes passed to capture_raw: [0] request, [1] response */
    uint64_t captured[2]; /* of those, bytes kept */
    int truncated[2];     /* seen > captured */
    int in_progress;      /* bw_capture_end() not called yet */
    bw_capture_req_t req;
    size_t bytes; /* memory accounted to the entry */
} bw_capture_info_t;

/* Create a store. `db_size` is inspect_db_size: 0 for the default 50 MiB,
 * -1 for a disabled store (bw_capture_begin() returns NULL, lists are
 * empty), otherwise a positive budget in bytes. `max_raw` caps the raw bytes
 * kept per entry and direction (0 for the default 10 MiB). Returns a new
 * store owned by the caller (bw_capture_store_free()), or NULL on ENOMEM or
 * a db_size below -1. */
bw_capture_store_t *bw_capture_store_new(int64_t db_size, size_t max_raw);

/* Free the store and its entries. Entries still held by writers are
 * detached and freed by their bw_capture_end(). NULL-safe. */
void bw_capture_store_free(bw_capture_store_t *s);

/* 1 when the store was created with db_size -1. */
int bw_capture_store_disabled(const bw_capture_store_t *s);

/* Drop every entry (DELETE /api/requests/http). Entries being written are
 * detached; their writes are dropped from then on. */
void bw_capture_store_clear(bw_capture_store_t *s);

/* Memory accounted to the listed entries, and their number. */
size_t bw_capture_store_bytes(const bw_capture_store_t *s);
size_t bw_capture_store_count(const bw_capture_store_t *s);

/* Begin an exchange: a new entry listed at once (newest), with an id
 * derived from `start_unix_ns` (wall clock, ns since 1970). `remote_ip` is
 * the client IP without port. Strings are copied. Returns a handle owned by
 * the caller until bw_capture_end(), or NULL when the store is disabled or
 * on ENOMEM. */
bw_capture_t *bw_capture_begin(bw_capture_store_t *s, const char *tunnel_name,
                               const char *remote_ip, int64_t start_unix_ns);

/* Record the parsed head of one direction (copied; a second call replaces
 * the first, e.g. after a provisional 1xx). Returns 0, BW_EINVAL for a bad
 * argument or a head struct older than v1, BW_ENOMEM. Writes to an evicted
 * entry return 0 and are dropped. */
int bw_capture_head(bw_capture_t *c, bw_capture_dir_t dir, const bw_http_head_t *head);

/* Append exact wire bytes of one direction; amortised O(1) per byte range.
 * Bytes beyond the per-direction cap are counted but not kept. Returns 0,
 * BW_EINVAL or BW_ENOMEM (the bytes are then counted as not kept). */
int bw_capture_raw(bw_capture_t *c, bw_capture_dir_t dir, const void *data, size_t len);

/* Say whether the request body has been read completely or failed; this
 * decides replayability (110/111). bw_capture_end() implies DONE unless
 * ERROR was set. NULL-safe. */
void bw_capture_req_state(bw_capture_t *c, bw_capture_req_t state);

/* Finish the exchange with its duration and release the caller's handle;
 * `c` must not be used again. NULL-safe. */
void bw_capture_end(bw_capture_t *c, uint64_t duration_ns);

/* The id of a handle ("airt_..."), valid until bw_capture_end(). */
const char *bw_capture_id(bw_capture_t *c);

/* The list resource {"uri":"/api/requests/http","requests":[...]}, newest
 * first. Returns a new reference, or NULL on ENOMEM. */
json_t *bw_capture_store_list_json(const bw_capture_store_t *s, const bw_capture_filter_t *f);

/* One request resource by id into *out (a new reference). Returns 0,
 * BW_ENOENT for an unknown id, BW_ENOMEM. */
int bw_capture_store_get_json(const bw_capture_store_t *s, const char *id, json_t **out);

/* Byte counts of one entry. Returns 0 or BW_ENOENT. */
int bw_capture_store_info(const bw_capture_store_t *s, const char *id, bw_capture_info_t *out);

/* For replay: whether entry `id` can be replayed (`why`; checked in the order
 * 109, 110, 111) and, when it can, a malloc()ed copy of its raw request in
 * `raw` (length in `len`) and of its tunnel name in `tunnel_name`, owned by
 * the caller. Outputs are NULL/0 unless *why is OK. Returns 0, BW_ENOENT, BW_ENOMEM. */
int bw_capture_store_replay(const bw_capture_store_t *s, const char *id, bw_capture_replay_t *why,
                            void **raw, size_t *len, char **tunnel_name);

/* The captured wire bytes of one direction of entry `id` (as kept: a
 * truncated capture gives the kept prefix), for /inspect/http/<id>/request
 * and .../response, as a malloc()ed copy in *raw (length *len; not
 * NUL-terminated) owned by the caller. Returns 0, BW_ENOENT for an unknown
 * id, BW_EINVAL for a bad `dir`, BW_ENOMEM; *raw is NULL unless 0. */
int bw_capture_store_raw(const bw_capture_store_t *s, const char *id, bw_capture_dir_t dir,
                         void **raw, size_t *len);

/* The client IP entry `id` was captured from, borrowed until the entry is
 * evicted or the store cleared; NULL for an unknown id. */
const char *bw_capture_store_remote_addr(const bw_capture_store_t *s, const char *id);

/* Go's http.CanonicalHeaderKey of name[len] into out[len+1]: the first
 * letter and letters after '-' upper case, the rest lower; a name with a
 * byte that is not a token character is copied as-is. `name` may be NULL
 * when len is 0. Returns out. */
char *bw_capture_canonical_key(const char *name, size_t len, char *out);

/* `unix_ns` as Go's RFC3339 in the local zone ("2006-01-02T15:04:05Z07:00")
 * into out[outlen]. Returns 0 or BW_EMSGSIZE. */
int bw_capture_rfc3339(int64_t unix_ns, char *out, size_t outlen);

#endif /* BW_CORE_CAPTURE_H */
