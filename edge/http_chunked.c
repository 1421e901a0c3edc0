/* Strict chunked framing. See http_chunked.h. */
#include "http_chunked.h"

#include "http_rewrite.h"

enum {
    CK_SIZE0,   /* a chunk-size line begins: a hex digit */
    CK_SIZE,    /* more hex digits, an extension, or CR */
    CK_EXT,     /* extension bytes up to CR */
    CK_SIZE_LF, /* the LF after the size line's CR */
    CK_DATA,    /* chunk data */
    CK_DATA_CR, /* the CRLF after the data */
    CK_DATA_LF,
    CK_TRAILER0, /* a trailer line (or the final CRLF) begins */
    CK_TRAILER,  /* a trailer line up to CR */
    CK_TRAILER_LF,
    CK_END_LF, /* the LF ending the body */
    CK_DONE,
};

static const char BARE_LF[] = "invalid line ending: LF without CR";
static const char BAD_SIZE[] = "invalid chunk size";
static const char NO_CRLF[] = "invalid chunk: data not followed by CRLF";
static const char BARE_CR[] = "invalid line ending: CR without LF";

void bw_chunked_init(bw_chunked_t *c)
{
    *c = (bw_chunked_t){.state = CK_SIZE0};
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* One byte of a size line, from its first digit to its CR. */
static const char *size_line(bw_chunked_t *c, char ch)
{
    int v = hexval(ch);
    if (c->state == CK_SIZE0) {
        if (v < 0)
            return BAD_SIZE;
        c->left = (uint64_t)v;
        c->state = CK_SIZE;
        return NULL;
    }
    if (ch == '\r') {
        c->state = CK_SIZE_LF;
        return NULL;
    }
    if (ch == '\n')
        return BARE_LF;
    if (c->state == CK_SIZE && v >= 0) {
        if (c->left > UINT64_MAX >> 4)
            return "invalid chunk size: too large";
        c->left = c->left << 4 | (uint64_t)v;
        return NULL;
    }
    if (c->state == CK_SIZE && ch != ';' && ch != ' ' && ch != '\t')
        return BAD_SIZE;
    c->state = CK_EXT;
    if (++c->ext > BW_HRW_MAX_CHUNK_EXT)
        return "invalid chunk: extensions too long";
    return NULL;
}

/* One byte after the last chunk: trailer lines, then CRLF. */
static const char *trailer(bw_chunked_t *c, char ch)
{
    switch (c->state) {
    case CK_TRAILER0:
        if (ch == '\r')
            c->state = CK_END_LF;
        else if (ch == '\n')
            return BARE_LF;
        else if (ch == ' ' || ch == '\t')
            return "invalid header: obsolete line folding";
        else
            c->state = CK_TRAILER;
        return NULL;
    case CK_TRAILER:
        if (ch == '\r')
            c->state = CK_TRAILER_LF;
        else if (ch == '\n')
            return BARE_LF;
        return NULL;
    default: /* CK_TRAILER_LF, CK_END_LF */
        if (ch != '\n')
            return BARE_CR;
        c->state = c->state == CK_END_LF ? CK_DONE : CK_TRAILER0;
        return NULL;
    }
}

const char *bw_chunked_check(bw_chunked_t *c, const char *data, size_t len)
{
    const char *bad = NULL;
    for (size_t i = 0; i < len && !bad && c->state != CK_DONE; i++) {
        char ch = data[i];
        switch (c->state) {
        case CK_SIZE0:
        case CK_SIZE:
        case CK_EXT:
            bad = size_line(c, ch);
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return BARE_CR;
            c->ext = 0;
            c->state = c->left ? CK_DATA : CK_TRAILER0;
            break;
        case CK_DATA: {
            uint64_t n = len - i < c->left ? len - i : c->left;
            c->left -= n;
            i += (size_t)n - 1;
            if (c->left == 0)
                c->state = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
        case CK_DATA_LF:
            if (ch != (c->state == CK_DATA_CR ? '\r' : '\n'))
                return NO_CRLF;
            c->state = c->state == CK_DATA_CR ? CK_DATA_LF : CK_SIZE0;
            break;
        default:
            bad = trailer(c, ch);
            break;
        }
    }
    return bad;
}
