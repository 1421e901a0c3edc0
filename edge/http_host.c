/* The host a request is for: the Host header's routing name, and whether
 * an absolute-form target agrees with it. See http_host.h. */
#include "http_host.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "http_rewrite.h"

int bw__http_host_name(const char *v, size_t len, char *out)
{
    size_t end = len;
    if (len == 0 || len >= BW_HRW_HOSTLEN)
        return -1;
    if (v[0] == '[') {
        const char *rb = memchr(v, ']', len);
        if (!rb)
            return -1;
        end = (size_t)(rb - v) + 1;
        if (end < len && v[end] != ':')
            return -1;
    } else {
        const char *colon = memchr(v, ':', len);
        if (colon)
            end = (size_t)(colon - v);
    }
    for (size_t i = end; i < len; i++)
        if (i > end && !isdigit((unsigned char)v[i]))
            return -1;
    if (end > 1 && v[end - 1] == '.' && v[0] != '[')
        end--; /* "example.com." is example.com */
    if (end == 0)
        return -1;
    for (size_t i = 0; i < end; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!c || (!isalnum(c) && !strchr("-._[]:", c)))
            return -1;
        out[i] = (char)tolower(c);
    }
    out[end] = '\0';
    return 0;
}

/* Port of a Host value or URL authority (already checked by bw__http_host_name),
 * or `dflt` when it names none. */
static unsigned host_port(const char *v, size_t len, unsigned dflt)
{
    const char *rb = len > 0 && v[0] == '[' ? memchr(v, ']', len) : NULL;
    const char *from = rb ? rb : v;
    const char *colon = memchr(from, ':', len - (size_t)(from - v));
    unsigned port = 0;
    if (!colon || colon + 1 == v + len)
        return dflt;
    for (const char *d = colon + 1; d < v + len && port <= 65535; d++)
        port = port * 10 + (unsigned)(*d - '0');
    return port;
}

/* An absolute-form target (RFC 9112 3.2.2) is what a backend routes by,
 * while the edge routes by Host: it is accepted only if it names the same
 * host and port, so both pick the same site. */
const char *bw__http_target_check(const char *line, size_t line_len, const char *host,
                                  size_t host_len, const char *name, int https)
{
    const char *sp = memchr(line, ' ', line_len), *end = line + line_len;
    struct http_parser_url u;
    char tname[BW_HRW_HOSTLEN];
    while (end > sp && end[-1] != ' ')
        end--;
    if (!sp || end <= sp + 1)
        return NULL; /* http_parser already refused such a line */
    const char *t = sp + 1;
    size_t tlen = (size_t)(end - 1 - t);
    http_parser_url_init(&u);
    if (tlen == 0 || t[0] == '/' || t[0] == '*' || http_parser_parse_url(t, tlen, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_SCHEMA)))
        return NULL; /* origin-form and asterisk-form name no host */
    const char *scheme = t + u.field_data[UF_SCHEMA].off;
    size_t slen = u.field_data[UF_SCHEMA].len;
    int t_https = slen == 5 && strncasecmp(scheme, "https", 5) == 0;
    if ((!t_https && !(slen == 4 && strncasecmp(scheme, "http", 4) == 0)) ||
        (u.field_set & (1 << UF_USERINFO)) || !(u.field_set & (1 << UF_HOST)))
        return "invalid request line: bad request target";
    /* the authority runs from the host (brackets included) to path or end */
    const char *a = t + u.field_data[UF_HOST].off;
    if (a > t && a[-1] == '[')
        a--;
    size_t alen = 0;
    while (a + alen < t + tlen && a[alen] != '/' && a[alen] != '?' && a[alen] != '#')
        alen++;
    if (bw__http_host_name(a, alen, tname) != 0 || strcmp(tname, name) != 0 ||
        host_port(a, alen, t_https ? 443 : 80) != host_port(host, host_len, https ? 443 : 80))
        return "request target does not match Host";
    return NULL;
}
