/* YAML into a tree of nodes that remember their line and column, and the
 * node helpers the loader uses. See config_int.h.
 *
 * libyaml's event parser builds the tree, so every error can point at the
 * offending key. Building our own tree (rather than yaml_document_t) lets
 * us stop early on aliases, depth and size limits, and keep only the first
 * document, as Go's yaml.Unmarshal does. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <burrow/error.h>

#include "config_int.h"
#include "util.h"

/* ---------------------------------------------------------------------------
 * YAML → node tree
 * ------------------------------------------------------------------------- */

typedef struct yread {
    yaml_parser_t parser;
    const char *file;
    const char *buf;
    size_t len;
    size_t nodes;
    int depth;
    ynode_t *stack[BW_CONFIG_MAX_DEPTH];
    ynode_t *root;
    char *err;
    size_t errlen;
} yread_t;

void bw__ynode_free(ynode_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        bw__ynode_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

static int ynode_append(ynode_t *parent, ynode_t *kid)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        ynode_t **k = realloc(parent->kids, cap * sizeof *k);
        if (!k)
            return BW_ENOMEM;
        parent->kids = k;
        parent->cap = cap;
    }
    parent->kids[parent->n++] = kid;
    return 0;
}

/* libyaml reports reader errors (bad encoding) as a byte offset. */
static void offset_to_mark(const char *buf, size_t len, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

static int yread_fail(yread_t *y)
{
    yaml_parser_t *p = &y->parser;
    const char *problem = p->problem ? p->problem : "unknown error";
    int line, col;

    if (p->error == YAML_MEMORY_ERROR) {
        bw__config_seterr(y->err, y->errlen, y->file, 0, 0, "out of memory parsing YAML");
        return BW_ENOMEM;
    }
    if (p->error == YAML_READER_ERROR) {
        offset_to_mark(y->buf, y->len, p->problem_offset, &line, &col);
    } else {
        line = (int)p->problem_mark.line + 1;
        col = (int)p->problem_mark.column + 1;
    }
    if (p->context)
        bw__config_seterr(y->err, y->errlen, y->file, 0, 0,
                          "YAML parsing error: %s at line %d column %d (%s at line %d column %d)",
                          problem, line, col, p->context, (int)p->context_mark.line + 1,
                          (int)p->context_mark.column + 1);
    else
        bw__config_seterr(y->err, y->errlen, y->file, 0, 0,
                          "YAML parsing error: %s at line %d column %d", problem, line, col);
    return BW_EINVAL;
}

static ynode_t *ynode_new(yread_t *y, yaml_node_type_t kind, const yaml_event_t *ev)
{
    ynode_t *n;

    if (++y->nodes > BW_CONFIG_MAX_NODES) {
        bw__config_seterr(y->err, y->errlen, y->file, (int)ev->start_mark.line + 1,
                          (int)ev->start_mark.column + 1, "config has more than %d YAML nodes",
                          BW_CONFIG_MAX_NODES);
        return NULL;
    }
    n = calloc(1, sizeof *n);
    if (!n) {
        bw__config_seterr(y->err, y->errlen, y->file, 0, 0, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->line = (int)ev->start_mark.line + 1;
    n->col = (int)ev->start_mark.column + 1;
    return n;
}

/* gcc 12 -fanalyzer false positive: the node is kept in y->root or its parent's
 * kids array, which the analyzer does not follow, so it reports a leak. */
BW_ANALYZER_IGNORE("-Wanalyzer-malloc-leak")
static int yread_attach(yread_t *y, ynode_t *n)
{
    if (y->depth == 0) {
        y->root = n;
        return 0;
    }
    if (ynode_append(y->stack[y->depth - 1], n) != 0) {
        bw__ynode_free(n);
        bw__config_seterr(y->err, y->errlen, y->file, 0, 0, "out of memory");
        return BW_ENOMEM;
    }
    return 0;
}
BW_ANALYZER_END

static int yread_scalar(yread_t *y, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    ynode_t *n;

    /* "\0" escapes would silently cut C strings short. */
    if (memchr(v, '\0', len)) {
        bw__config_seterr(y->err, y->errlen, y->file, (int)ev->start_mark.line + 1,
                          (int)ev->start_mark.column + 1,
                          "NUL characters are not allowed in values");
        return BW_EINVAL;
    }
    n = ynode_new(y, YAML_SCALAR_NODE, ev);
    if (!n)
        return y->nodes > BW_CONFIG_MAX_NODES ? BW_EINVAL : BW_ENOMEM;
    n->plain = ev->data.scalar.plain_implicit;
    n->len = len;
    n->text = malloc(len + 1);
    if (!n->text) {
        bw__ynode_free(n);
        bw__config_seterr(y->err, y->errlen, y->file, 0, 0, "out of memory");
        return BW_ENOMEM;
    }
    memcpy(n->text, v, len);
    n->text[len] = '\0';
    return yread_attach(y, n);
}

static int yread_open(yread_t *y, const yaml_event_t *ev, yaml_node_type_t kind)
{
    ynode_t *n;
    int rc;

    if (y->depth >= BW_CONFIG_MAX_DEPTH) {
        bw__config_seterr(y->err, y->errlen, y->file, (int)ev->start_mark.line + 1,
                          (int)ev->start_mark.column + 1, "config is nested deeper than %d levels",
                          BW_CONFIG_MAX_DEPTH);
        return BW_EINVAL;
    }
    n = ynode_new(y, kind, ev);
    if (!n)
        return y->nodes > BW_CONFIG_MAX_NODES ? BW_EINVAL : BW_ENOMEM;
    rc = yread_attach(y, n);
    if (rc == 0)
        y->stack[y->depth++] = n;
    return rc;
}

static int yread_event(yread_t *y, const yaml_event_t *ev, int *done)
{
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
    case YAML_DOCUMENT_END_EVENT: /* only the first document counts */
        *done = 1;
        return 0;
    case YAML_ALIAS_EVENT:
        /* Aliases make "billion laughs" inputs possible; ngrok files never need them. */
        bw__config_seterr(y->err, y->errlen, y->file, (int)ev->start_mark.line + 1,
                          (int)ev->start_mark.column + 1, "YAML aliases (*%s) are not supported",
                          (const char *)ev->data.alias.anchor);
        return BW_EINVAL;
    case YAML_SCALAR_EVENT:
        return yread_scalar(y, ev);
    case YAML_SEQUENCE_START_EVENT:
        return yread_open(y, ev, YAML_SEQUENCE_NODE);
    case YAML_MAPPING_START_EVENT:
        return yread_open(y, ev, YAML_MAPPING_NODE);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        y->depth--;
        return 0;
    default:
        return 0;
    }
}

/* Parse buf into a tree. *root is NULL for an empty document. Returns 0 or
 * BW_EINVAL/BW_ENOMEM with err set; *root is owned by the caller. */
int bw__yaml_read(const char *buf, size_t len, const char *file, ynode_t **root, char *err,
                  size_t errlen)
{
    yread_t y = {.file = file, .buf = buf, .len = len, .err = err, .errlen = errlen};
    yaml_event_t ev;
    int done = 0, rc = 0;

    *root = NULL;
    if (!yaml_parser_initialize(&y.parser)) {
        bw__config_seterr(err, errlen, file, 0, 0, "out of memory");
        return BW_ENOMEM;
    }
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)buf, len);
    while (!done && rc == 0) {
        if (!yaml_parser_parse(&y.parser, &ev)) {
            rc = yread_fail(&y);
            break;
        }
        rc = yread_event(&y, &ev, &done);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&y.parser);
    if (rc != 0)
        bw__ynode_free(y.root);
    else
        *root = y.root;
    return rc;
}

/* ---------------------------------------------------------------------------
 * Node helpers
 * ------------------------------------------------------------------------- */

int bw__ynode_scalar(const ynode_t *n)
{
    return n->kind == YAML_SCALAR_NODE;
}

int bw__ynode_null(const ynode_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (!bw__ynode_scalar(n) || !n->plain)
        return 0;
    for (size_t i = 0; i < BW_ARRAY_SIZE(nulls); i++)
        if (strcmp(n->text, nulls[i]) == 0)
            return 1;
    return 0;
}

/* A plain true/false (YAML 1.2 core schema spellings). Returns 0/1, or -1. */
int bw__ynode_bool(const ynode_t *n)
{
    static const char *const t[] = {"true", "True", "TRUE"};
    static const char *const f[] = {"false", "False", "FALSE"};
    if (!bw__ynode_scalar(n) || !n->plain)
        return -1;
    for (size_t i = 0; i < BW_ARRAY_SIZE(t); i++) {
        if (strcmp(n->text, t[i]) == 0)
            return 1;
        if (strcmp(n->text, f[i]) == 0)
            return 0;
    }
    return -1;
}

/* A plain decimal integer; leading zeros stay text (YAML 1.1 would read octal). */
int bw__ynode_int(const ynode_t *n, long long *v)
{
    const char *s = n->text;
    if (!bw__ynode_scalar(n) || !n->plain)
        return 0;
    if (*s == '-' || *s == '+')
        s++;
    if (s[0] == '0' && s[1] != '\0')
        return 0;
    return bw_parse_int(n->text, LLONG_MIN, LLONG_MAX, v) == 0;
}

const char *bw__ynode_desc(const ynode_t *n)
{
    if (n->kind == YAML_SEQUENCE_NODE)
        return "a sequence";
    if (n->kind == YAML_MAPPING_NODE)
        return "a mapping";
    return n->text;
}

/* The key node of `key` in a mapping, or NULL. */
const ynode_t *bw__ynode_key(const ynode_t *map, const char *key)
{
    for (size_t i = 0; i + 1 < map->n; i += 2)
        if (bw__ynode_scalar(map->kids[i]) && strcmp(map->kids[i]->text, key) == 0)
            return map->kids[i];
    return NULL;
}

const ynode_t *bw__ynode_value(const ynode_t *map, const char *key)
{
    for (size_t i = 0; i + 1 < map->n; i += 2)
        if (bw__ynode_scalar(map->kids[i]) && strcmp(map->kids[i]->text, key) == 0)
            return map->kids[i + 1];
    return NULL;
}
