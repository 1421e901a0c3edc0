/* burrowd: the reservations file. The addresses the edge holds for its
 * clients (live tunnels and lost sessions' reservations) are written to
 * <state-dir>/reservations.json on every change and read back at start, so
 * a crash or restart does not hand them to someone else before their
 * owner reconnects. Format and guarantees: docs/edge.md "Reservations
 * across restarts". Tokens never reach the disk: sessions only carry a
 * SHA-256 of their token (edge_session.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "burrow/error.h"
#include "edge_int.h"
#include "edge_state_parse.h"
#include "hostnames.h"
#include "json_build.h"
#include "log.h"
#include "util.h"

#define STATE_FILE "reservations.json"

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The snapshot being built. Once an entry cannot be added, `bad` keeps the
 * file as it was: writing it without that reservation would lose it. */
typedef struct {
    bw_edge_t *e;
    json_t *list;
    int bad;
} snap_t;

static void add_entry(snap_t *sn, const char *client, const char *token_sha256, const char *key,
                      json_t *value, json_t *expires)
{
    json_t *o = json_object();
    bw_json_put(o, "client_id", json_string(client), &sn->bad);
    bw_json_put(o, "token_sha256", json_string(token_sha256), &sn->bad);
    bw_json_put(o, key, value, &sn->bad);
    bw_json_put(o, "expires", expires, &sn->bad);
    bw_json_push(sn->list, o, &sn->bad);
}

/* Remaining grace of a reservation as a wall-clock time; null for a live
 * tunnel, whose grace only starts when the edge loses it. */
static json_t *expiry(bw_edge_t *e, uint64_t expires_loop_ms)
{
    uint64_t now = uv_now(e->loop);
    uint64_t left = expires_loop_ms > now ? expires_loop_ms - now : 0;
    return json_integer((json_int_t)(wall_ms() + left));
}

static void add_host(void *arg, const char *host, int scheme, const char *client, const char *token,
                     int live, uint64_t expires)
{
    snap_t *sn = arg;
    json_t *o = json_object();
    bw_json_put(o, "host", json_string(host), &sn->bad);
    bw_json_put(o, "scheme", json_string(bw_scheme_name(scheme)), &sn->bad);
    add_entry(sn, client, token, "name", o, live ? json_null() : expiry(sn->e, expires));
}

/* Returns a new reference, or NULL when out of memory (never a snapshot
 * with a reservation missing). */
static json_t *snapshot(bw_edge_t *e)
{
    snap_t sn = {e, json_array(), 0};
    json_t *root = json_object();
    bw_json_put(root, "version", json_integer(BW_EDGE_STATE_VERSION), &sn.bad);
    bw_json_put(root, "saved_at", json_integer((json_int_t)wall_ms()), &sn.bad);
    bw_json_put(root, "reservations", json_incref(sn.list), &sn.bad);
    uint64_t now = uv_now(e->loop);
    for (reservation_t *r = e->reservations; r; r = r->next)
        if (r->expires_ms > now)
            add_entry(&sn, r->client_id, r->token, "port", json_integer(r->port),
                      expiry(e, r->expires_ms));
    BW_LIST_FOREACH (s, &e->sessions, edge_session_t, node)
        for (edge_tunnel_t *t = s->tunnels; t; t = t->next)
            if (s->authed && t->scheme < 0)
                add_entry(&sn, s->client_id, s->token, "port", json_integer(t->port), json_null());
    bw_hosts_each(e->hosts, now, add_host, &sn);
    json_decref(sn.list);
    return bw_json_whole(root, sn.bad);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Write all of buf to a new temp file, fsync it, rename it over the file,
 * then fsync the directory so the rename itself survives a crash. */
static int write_atomic(const char *dir, const char *buf, size_t len)
{
    char path[1024], tmp[1040];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -errno;
    snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0;) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n > 0)
            off += (size_t)n;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    return fsync_dir(dir);
}

void bw__edge_state_save(bw_edge_t *e)
{
    if (!e->cfg.state_dir || e->stopping)
        return;
    json_t *root = snapshot(e);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    int rc = text ? write_atomic(e->cfg.state_dir, text, strlen(text)) : BW_ENOMEM;
    if (rc != 0)
        bw_log(BW_LOG_WARN, "cannot save reservations", "obj", "edge", "dir", e->cfg.state_dir,
               "err", bw_strerror(rc), NULL);
    free(text);
    json_decref(root);
}

/* bw_edge_hold_cb: one address from the file into the edge. */
static int load_hold(void *arg, const bw_edge_hold_t *h)
{
    bw_edge_t *e = arg;
    uint64_t expires = uv_now(e->loop) + h->left_ms;
    if (h->host)
        return bw_hosts_hold(e->hosts, h->host, h->scheme, h->client_id, h->token_sha256, expires);
    reservation_t *r = calloc(1, sizeof *r);
    if (!r || !(r->token = bw_strdup(h->token_sha256))) {
        free(r);
        return BW_ENOMEM;
    }
    snprintf(r->client_id, sizeof r->client_id, "%s", h->client_id);
    r->port = h->port;
    r->expires_ms = expires;
    r->next = e->reservations;
    e->reservations = r;
    return 0;
}

/* The whole file, or NULL with *rc set (BW_ENOENT when there is none). */
static char *read_state(const char *path, size_t *len, int *rc)
{
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    struct stat st;
    *rc = 0;
    if (!f || fstat(fileno(f), &st) != 0)
        *rc = -errno;
    else if (st.st_size > (off_t)BW_EDGE_STATE_MAX)
        *rc = BW_EMSGSIZE;
    else if (!(buf = malloc((size_t)st.st_size + 1)))
        *rc = BW_ENOMEM;
    else if ((*len = fread(buf, 1, (size_t)st.st_size, f)) != (size_t)st.st_size || ferror(f))
        *rc = -EIO;
    if (f)
        fclose(f);
    if (*rc != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

void bw__edge_state_load(bw_edge_t *e)
{
    char path[1024], why[256] = "";
    size_t len = 0, n = 0, bad = 0;
    int rc;
    if (!e->cfg.state_dir)
        return;
    snprintf(path, sizeof path, "%s/%s", e->cfg.state_dir, STATE_FILE);
    char *text = read_state(path, &len, &rc);
    if (!text && rc == BW_ENOENT)
        return;
    if (!text && rc == BW_EMSGSIZE)
        snprintf(why, sizeof why, "longer than %u bytes", BW_EDGE_STATE_MAX);
    else if (!text)
        snprintf(why, sizeof why, "%s", bw_strerror(rc));
    else if (bw_edge_state_parse(text, len, wall_ms(), e->cfg.grace_ms, load_hold, e, &n, &bad, why,
                                 sizeof why) != 0)
        rc = BW_EINVAL;
    free(text);
    if (rc != 0) {
        bw_log(BW_LOG_WARN, "ignoring unreadable reservations file", "obj", "edge", "file", path,
               "err", why, NULL);
        return;
    }
    char nbad[24], nok[24];
    snprintf(nbad, sizeof nbad, "%zu", bad);
    snprintf(nok, sizeof nok, "%zu", n);
    if (bad)
        bw_log(BW_LOG_WARN, "ignoring malformed reservations", "obj", "edge", "file", path, "count",
               nbad, NULL);
    bw_log(BW_LOG_INFO, "loaded reservations", "obj", "edge", "file", path, "count", nok, NULL);
}
