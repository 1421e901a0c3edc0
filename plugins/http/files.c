/* The file:// upstream: a small static file server in the spirit of Go's
 * http.FileServer. GET and HEAD only; files are streamed in chunks as the
 * public side drains; directories serve index.html or a listing.
 *
 * Looking a request up (stat, open, reading and listing a directory) runs on
 * the host's thread pool (host->work_queue, ABI 1.2) so a slow disk stalls
 * one request, not the loop; the answer is written back on the loop. Reads
 * of the file being sent still run on the loop, one 64 KiB chunk at a time
 * as the client drains. Without the slot (an older host) or once the tunnel
 * stopped, the lookup runs inline as before. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_int.h"

#define CHUNK (64u * 1024u)

static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".htm", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
    {".xml", "text/xml; charset=utf-8"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".gif", "image/gif"},
    {".svg", "image/svg+xml"},
    {".ico", "image/x-icon"},
    {".webp", "image/webp"},
    {".pdf", "application/pdf"},
    {".wasm", "application/wasm"},
    {".mp4", "video/mp4"},
    {".zip", "application/zip"},
};

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode the path of `uri` into out; refuse NUL bytes and any ".."
 * segment. Returns 0, or the status to answer. */
static int decode_path(const char *uri, char *out, size_t cap)
{
    size_t n = 0;
    if (uri[0] != '/')
        return 400;
    for (const char *p = uri; *p && *p != '?' && *p != '#'; p++) {
        char ch = *p;
        if (ch == '%') {
            int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
            if (lo < 0)
                return 400;
            ch = (char)(hi * 16 + lo);
            p += 2;
        }
        if (ch == '\0' || n + 1 >= cap)
            return 400;
        out[n++] = ch;
    }
    out[n] = '\0';
    for (const char *seg = out; seg; seg = strchr(seg + 1, '/')) {
        const char *s = seg + 1;
        if (strncmp(s, "..", 2) == 0 && (s[2] == '/' || s[2] == '\0'))
            return 400;
    }
    return 0;
}

static void reply_text(http_conn_t *c, int status, const char *extra)
{
    char body[128];
    int n = snprintf(body, sizeof body, "%d %s\n", status, h1_reason(status));
    bw__http_local_reply(c, status, extra, "text/plain; charset=utf-8", body, (size_t)n, 0);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void url_escape(h1_buf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~/", ch))
            h1_buf_add(b, s, 1);
        else
            h1_buf_addf(b, "%%%02X", ch);
    }
}

/* One file:// request between the loop and the pool thread. The pool thread
 * fills in `what` and its fields; everything else is the loop thread's. */
typedef struct files_job {
    http_conn_t *c; /* holds a reference until files_done */
    char rel[4096]; /* the decoded URL path */
    char full[8192];
    enum {
        FJ_STATUS,   /* answer `status` with a short text body */
        FJ_REDIRECT, /* a directory without its slash: 301 to rel + "/" */
        FJ_FILE,     /* send `fd` (`size` bytes), typed by `path` */
        FJ_LISTING   /* send `body`, an HTML listing */
    } what;
    int status;
    int fd;
    long long size;
    char path[8300];
    h1_buf_t body;
} files_job_t;

/* gcc 12 -fanalyzer false positive (scripts/test's analyzer suite): when
 * realloc moves `names` it does not carry the stored strdup()s over, and
 * reports them as leaked. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
/* Pool thread: the listing page of `dir`, or 403. */
static void build_listing(files_job_t *j, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        j->what = FJ_STATUS;
        j->status = 403;
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn)
            break;
        names = nn;
        struct stat st;
        char full[8192 + 256 + 2], label[1024];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        int isdir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
        snprintf(label, sizeof label, "%s%s", e->d_name, isdir ? "/" : "");
        if (!(names[n] = strdup(label)))
            break;
        n++;
    }
    closedir(d);
    if (n > 1) /* an empty directory leaves names NULL, which qsort must not get */
        qsort(names, n, sizeof *names, cmp_names);
    h1_buf_t *b = &j->body;
    h1_buf_adds(b, "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n"
                   "<pre>\n");
    for (size_t i = 0; i < n; i++) {
        h1_buf_adds(b, "<a href=\"");
        url_escape(b, names[i]);
        h1_buf_adds(b, "\">");
        h1_html_escape(b, names[i]);
        h1_buf_adds(b, "</a>\n");
        free(names[i]);
    }
    free(names);
    h1_buf_adds(b, "</pre>\n");
    j->what = FJ_LISTING;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* Pool thread: open `path` for sending, or say 403/404. */
static void open_file(files_job_t *j, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int open_errno = errno;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        j->what = FJ_STATUS;
        j->status = fd < 0 && open_errno == EACCES ? 403 : 404;
        return;
    }
    j->what = FJ_FILE;
    j->fd = fd;
    j->size = (long long)st.st_size;
    snprintf(j->path, sizeof j->path, "%s", path);
}

/* Pool thread: everything that touches the file system before answering. */
static void files_work(void *ud)
{
    files_job_t *j = ud;
    struct stat st;
    if (stat(j->full, &st) != 0) {
        j->what = FJ_STATUS;
        j->status = errno == EACCES ? 403 : 404;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        open_file(j, j->full);
        return;
    }
    if (j->rel[strlen(j->rel) - 1] != '/') {
        j->what = FJ_REDIRECT;
        return;
    }
    char index[8300];
    snprintf(index, sizeof index, "%sindex.html", j->full);
    if (stat(index, &st) == 0 && S_ISREG(st.st_mode))
        open_file(j, index);
    else
        build_listing(j, j->full);
}

void bw__http_files_pump(http_conn_t *c)
{
    char buf[CHUNK];
    while (c->file_fd >= 0 && !c->pub_full && c->phase == C_HTTP) {
        ssize_t n = read(c->file_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(c->file_fd);
            c->file_fd = -1;
            if (n < 0) {
                /* Content-Length promised more: the client must see a cut. */
                c->close_after = 1;
            }
            bw__http_local_done(c);
            return;
        }
        if (c->cap)
            H->capture_raw(c->cap, BW_CAPTURE_RESPONSE, buf, (size_t)n);
        bw__http_pub_write(c, buf, (size_t)n);
    }
}

/* Loop thread: the head of an opened file, then its body as the client
 * drains. Takes over j->fd. */
static void send_file(http_conn_t *c, files_job_t *j)
{
    h1_buf_t head = {0};
    h1_buf_addf(&head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\n%s\r\n",
                content_type(j->path), j->size, c->close_after ? "Connection: close\r\n" : "");
    int fd = j->fd;
    j->fd = -1;
    c->mode = X_LOCAL;
    bw__http_capture_local_head(c, head.data, head.len);
    if (c->cap)
        H->capture_raw(c->cap, BW_CAPTURE_RESPONSE, head.data, head.len);
    bw__http_pub_write(c, head.data, head.len);
    h1_buf_free(&head);
    if (c->is_head) {
        close(fd);
        c->sstate = S_DONE;
        return;
    }
    c->sstate = S_BODY;
    c->file_fd = fd;
    bw__http_files_pump(c);
}

static void redirect_to_dir(http_conn_t *c, const char *rel)
{
    /* As Go does: a directory's URL ends in a slash, so relative links work. */
    h1_buf_t loc = {0};
    h1_buf_adds(&loc, "Location: ");
    url_escape(&loc, rel);
    h1_buf_adds(&loc, "/\r\n");
    reply_text(c, 301, loc.data);
    h1_buf_free(&loc);
}

/* Loop thread: answer what files_work found. `status` BW_ECANCELED: the
 * tunnel stopped before a thread ran it; the connection is still ours, so
 * look the request up here instead. */
static void files_done(void *ud, int status)
{
    files_job_t *j = ud;
    http_conn_t *c = j->c;
    if (status < 0 && c->phase == C_HTTP)
        files_work(j);
    if (c->phase == C_HTTP) {
        switch (j->what) {
        case FJ_STATUS:
            reply_text(c, j->status, NULL);
            break;
        case FJ_REDIRECT:
            redirect_to_dir(c, j->rel);
            break;
        case FJ_FILE:
            send_file(c, j);
            break;
        case FJ_LISTING:
            bw__http_local_reply(c, 200, NULL, "text/html; charset=utf-8", j->body.data,
                                 j->body.len, 0);
            break;
        }
        /* The request may have ended while the pool worked. */
        bw__http_finish_exchange(c);
    }
    if (j->fd >= 0)
        close(j->fd);
    h1_buf_free(&j->body);
    free(j);
    bw__http_conn_unref(c);
}

void bw__http_files_serve(http_conn_t *c)
{
    const h1_head_t *h = &c->req.head;
    c->mode = X_LOCAL;
    if (strcmp(h->method, "GET") != 0 && strcmp(h->method, "HEAD") != 0) {
        reply_text(c, 405, "Allow: GET, HEAD\r\n");
        return;
    }
    files_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        reply_text(c, 500, NULL);
        return;
    }
    j->fd = -1;
    int bad = decode_path(h->uri, j->rel, sizeof j->rel);
    if (bad) {
        free(j);
        reply_text(c, bad, NULL);
        return;
    }
    snprintf(j->full, sizeof j->full, "%s%s", c->tt->root, j->rel);
    j->c = c;
    bw__http_conn_ref(c);
    if (!c->tt->t || !BW_HOST_HAS(H, work_queue) ||
        H->work_queue(c->tt->t, files_work, files_done, j) < 0) {
        files_work(j);
        files_done(j, 0);
    }
}
