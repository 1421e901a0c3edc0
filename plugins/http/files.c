/* The file:// upstream: a small static file server in the spirit of Go's
 * http.FileServer. GET and HEAD only; files are streamed in chunks as the
 * public side drains; directories serve index.html or a listing. */
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

static void listing(http_conn_t *c, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        reply_text(c, 403, NULL);
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
    qsort(names, n, sizeof *names, cmp_names);
    h1_buf_t b = {0};
    h1_buf_adds(&b, "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n"
                    "<pre>\n");
    for (size_t i = 0; i < n; i++) {
        h1_buf_adds(&b, "<a href=\"");
        url_escape(&b, names[i]);
        h1_buf_adds(&b, "\">");
        h1_html_escape(&b, names[i]);
        h1_buf_adds(&b, "</a>\n");
        free(names[i]);
    }
    free(names);
    h1_buf_adds(&b, "</pre>\n");
    bw__http_local_reply(c, 200, NULL, "text/html; charset=utf-8", b.data, b.len, 0);
    h1_buf_free(&b);
}

void bw__http_files_pump(http_conn_t *c)
{
    char buf[CHUNK];
    while (c->file_fd >= 0 && !c->pub_full && !c->closing) {
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

static void send_file(http_conn_t *c, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        reply_text(c, fd < 0 && errno == EACCES ? 403 : 404, NULL);
        return;
    }
    h1_buf_t head = {0};
    h1_buf_addf(&head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\n%s\r\n",
                content_type(path), (long long)st.st_size,
                c->close_after ? "Connection: close\r\n" : "");
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

void bw__http_files_serve(http_conn_t *c)
{
    const h1_head_t *h = &c->req.head;
    char rel[4096], full[8192];
    struct stat st;
    c->mode = X_LOCAL;
    if (strcmp(h->method, "GET") != 0 && strcmp(h->method, "HEAD") != 0) {
        reply_text(c, 405, "Allow: GET, HEAD\r\n");
        return;
    }
    int bad = decode_path(h->uri, rel, sizeof rel);
    if (bad) {
        reply_text(c, bad, NULL);
        return;
    }
    snprintf(full, sizeof full, "%s%s", c->tt->root, rel);
    if (stat(full, &st) != 0) {
        reply_text(c, errno == EACCES ? 403 : 404, NULL);
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        send_file(c, full);
        return;
    }
    size_t rl = strlen(rel);
    if (rel[rl - 1] != '/') {
        /* As Go does: a directory's URL ends in a slash, so relative links work. */
        h1_buf_t loc = {0};
        h1_buf_adds(&loc, "Location: ");
        url_escape(&loc, rel);
        h1_buf_adds(&loc, "/\r\n");
        reply_text(c, 301, loc.data);
        h1_buf_free(&loc);
        return;
    }
    char index[8300];
    snprintf(index, sizeof index, "%sindex.html", full);
    if (stat(index, &st) == 0 && S_ISREG(st.st_mode))
        send_file(c, index);
    else
        listing(c, full);
}
