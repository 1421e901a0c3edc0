/* `burrow config add-authtoken`: save a token into a config file, keeping
 * every other byte of it. See config.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <burrow/error.h>

#include "config_int.h"
#include "util.h"

#define MAX_TOKEN 4096

/* ---------------------------------------------------------------------------
 * add-authtoken
 * ------------------------------------------------------------------------- */

/* Plain YAML unless the token would read as something else or needs
 * escaping. Returns 0 with a new "authtoken: ..." string in *out. */
static int token_line(const char *token, char **out)
{
    static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_.~+/=-";
    size_t len = strlen(token), o;
    int plain = strspn(token, safe) == len && token[0] != '-' && strspn(token, "0123456789") != len;
    static const char *const words[] = {"true", "false", "null", "yes", "no", "on", "off", "~"};
    char *s;

    for (size_t i = 0; i < BW_ARRAY_SIZE(words); i++)
        if (strcasecmp(token, words[i]) == 0)
            plain = 0;
    s = malloc(16 + 2 * len);
    if (!s)
        return BW_ENOMEM;
    o = (size_t)snprintf(s, 16, "authtoken: %s", plain ? "" : "\"");
    for (size_t i = 0; i < len; i++) {
        if (!plain && (token[i] == '"' || token[i] == '\\'))
            s[o++] = '\\';
        s[o++] = token[i];
    }
    if (!plain)
        s[o++] = '"';
    s[o] = '\0';
    *out = s;
    return 0;
}

static int token_ok(const char *token)
{
    size_t len = token ? strlen(token) : 0;
    if (len == 0 || len > MAX_TOKEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)token[i] < 0x20 || token[i] == 0x7f)
            return 0;
    return 1;
}

static size_t line_end(const char *buf, size_t len, size_t pos)
{
    const char *nl = memchr(buf + pos, '\n', len - pos);
    return nl ? (size_t)(nl - buf) : len;
}

/* Where a top-level `authtoken:` line starts, or len when there is none. */
static size_t find_token_line(const char *buf, size_t len)
{
    static const char key[] = "authtoken";
    for (size_t pos = 0; pos < len; pos = line_end(buf, len, pos) + 1) {
        size_t i = pos + sizeof key - 1;
        if (len - pos < sizeof key - 1 || memcmp(buf + pos, key, sizeof key - 1) != 0)
            continue;
        while (i < len && buf[i] == ' ')
            i++;
        if (i < len && buf[i] == ':' && (i + 1 == len || strchr(" \r\n", buf[i + 1])))
            return pos;
    }
    return len;
}

/* The end of a quoted scalar starting at buf[i] on this line, or 0 when it
 * does not close on it. */
static size_t quoted_end(const char *buf, size_t i, size_t eol)
{
    char q = buf[i];
    for (i++; i < eol; i++) {
        if (q == '"' && buf[i] == '\\')
            i++;
        else if (buf[i] == q && !(q == '\'' && i + 1 < eol && buf[i + 1] == '\''))
            return i + 1;
        else if (q == '\'' && buf[i] == q)
            i++;
    }
    return 0;
}

/* The part of the authtoken line to keep after the new value (a trailing
 * comment), and where the old value's last line ends: block scalars and
 * continued plain scalars span the indented lines that follow. */
static void old_value_span(const char *buf, size_t len, size_t pos, size_t *tail, size_t *end)
{
    size_t eol = line_end(buf, len, pos), v = pos;
    int block = 0;

    while (buf[v] != ':') /* find_token_line saw the colon */
        v++;
    v++;

    while (v < eol && buf[v] == ' ')
        v++;
    *tail = eol;
    if (v == eol || buf[v] == '\r' || buf[v] == '#' || strchr("|>&!", buf[v])) {
        block = 1;
    } else if (buf[v] == '"' || buf[v] == '\'') {
        size_t q = quoted_end(buf, v, eol);
        if (q)
            *tail = q;
        else
            block = 1;
    } else {
        for (size_t i = v; i < eol; i++)
            if (buf[i] == '#' && buf[i - 1] == ' ') {
                *tail = i - 1;
                break;
            }
    }
    if (block)
        *tail = eol;
    /* Drop indented continuation lines, keeping indented comments unless the
     * value is a block (where '#' is content) and any blank lines after. */
    *end = eol;
    for (size_t p = eol + 1; p < len && buf[p] == ' ';) {
        size_t e = line_end(buf, len, p), s = p;
        while (s < e && buf[s] == ' ')
            s++;
        if (!block && (s == e || buf[s] == '#' || buf[s] == '\r'))
            break;
        if (s < e && buf[s] != '\r')
            *end = e;
        p = e + 1;
    }
}

/* The new file content: `old` with its authtoken replaced or appended. */
static int edit_token(const char *old, size_t len, const char *line, char **out, size_t *outlen)
{
    size_t pos = find_token_line(old, len), tail = len, end = len, n;
    size_t ll = strlen(line);
    char *buf;

    if (pos < len)
        old_value_span(old, len, pos, &tail, &end);
    buf = malloc(len + ll + 2);
    if (!buf)
        return BW_ENOMEM;
    if (pos < len) {
        /* old[..pos] + line + old[tail..eol(pos)] + old[end..] */
        size_t eol = line_end(old, len, pos);
        memcpy(buf, old, pos);
        n = pos;
        memcpy(buf + n, line, ll);
        n += ll;
        memcpy(buf + n, old + tail, eol - tail);
        n += eol - tail;
        memcpy(buf + n, old + end, len - end);
        n += len - end;
    } else {
        memcpy(buf, old, len);
        n = len;
        if (n && buf[n - 1] != '\n')
            buf[n++] = '\n';
        memcpy(buf + n, line, ll);
        n += ll;
        buf[n++] = '\n';
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* Does the edited text really hold the token at the top level? Guards
 * against layouts the line edit does not understand (flow maps, several
 * documents...). */
static int token_verified(const char *buf, size_t len, const char *token)
{
    ynode_t *root = NULL;
    const ynode_t *v;
    int ok = 0;

    if (bw__yaml_read(buf, len, "", &root, NULL, 0) == 0 && root &&
        root->kind == YAML_MAPPING_NODE) {
        v = bw__ynode_value(root, "authtoken");
        ok = v && bw__ynode_scalar(v) && strcmp(v->text, token) == 0;
    }
    bw__ynode_free(root);
    return ok;
}

static int mkdir_parents(const char *path)
{
    char *dir = strdup(path);
    int rc = 0;

    if (!dir)
        return BW_ENOMEM;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *p = '/';
    }
    free(dir);
    return rc;
}

/* Write to a temporary file next to `path`, then rename it over `path`. */
static int write_atomic(const char *path, const char *buf, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t off = 0;
    int fd, rc = bw_fmt(tmp, sizeof tmp, "%s.tmpXXXXXX", path);

    if (rc != 0)
        return rc;
    fd = mkstemp(tmp);
    if (fd < 0)
        return -errno;
    if (fchmod(fd, mode) != 0)
        goto err_errno;
    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto err_errno;
        off += (size_t)n;
    }
    if (fsync(fd) != 0)
        goto err_errno;
    if (close(fd) != 0) {
        fd = -1;
        goto err_errno;
    }
    if (rename(tmp, path) != 0) {
        fd = -1;
        goto err_errno;
    }
    return 0;

err_errno:
    rc = -errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

/* The new content for an existing file, or for a new one when `target`
 * does not exist. */
static int token_content(const char *target, const char *token, const char *line, char **out,
                         size_t *outlen, mode_t *mode, char *err, size_t errlen)
{
    struct stat st;
    char *old = NULL;
    size_t len;
    int rc;

    if (stat(target, &st) != 0 && errno == ENOENT) {
        size_t cap = strlen(line) + 16;
        *mode = 0600;
        *out = malloc(cap);
        if (!*out)
            return BW_ENOMEM;
        *outlen = (size_t)snprintf(*out, cap, "version: \"2\"\n%s\n", line);
        return 0;
    }
    *mode = st.st_mode & 07777;
    rc = bw__config_read_file(target, &old, &len, err, errlen);
    if (rc == 0)
        rc = edit_token(old, len, line, out, outlen);
    free(old);
    if (rc == 0 && !token_verified(*out, *outlen, token)) {
        free(*out);
        *out = NULL;
        bw__config_seterr(err, errlen, target, 0, 0,
                          "cannot update the authtoken in this file's layout; edit it by hand");
        rc = BW_EINVAL;
    }
    return rc;
}

int bw_config_add_authtoken(const char *path, const char *token, char *err, size_t errlen)
{
    char *line = NULL, *content = NULL, *real = NULL;
    const char *target = path;
    size_t len = 0;
    mode_t mode;
    int rc;

    if (!token_ok(token)) {
        bw__config_seterr(err, errlen, path, 0, 0,
                          "the authtoken must be 1 to %d characters without control characters",
                          MAX_TOKEN);
        return BW_EINVAL;
    }
    /* Edit through a symlink rather than replacing it. */
    real = realpath(path, NULL);
    if (real)
        target = real;
    rc = token_line(token, &line);
    if (rc == 0)
        rc = token_content(target, token, line, &content, &len, &mode, err, errlen);
    if (rc == 0 && !real)
        rc = mkdir_parents(target);
    if (rc == 0)
        rc = write_atomic(target, content, len, mode);
    if (rc != 0 && rc != BW_EINVAL && rc != BW_EMSGSIZE)
        bw__config_seterr(err, errlen, target, 0, 0, "could not save the authtoken: %s",
                          strerror(-rc));
    free(line);
    free(content);
    free(real);
    return rc;
}
