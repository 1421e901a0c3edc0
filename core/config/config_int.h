/* What the parts of the config loader share: yaml_tree.c (YAML into a tree
 * of nodes with positions, and node helpers), config.c (settings, the top
 * level, loading), config_tunnels.c (tunnel definitions), authtoken.c
 * (`config add-authtoken`). Not part of config.h's API. */
#ifndef BW_CONFIG_CONFIG_INT_H
#define BW_CONFIG_CONFIG_INT_H

#include <stdarg.h>
#include <stddef.h>

#include <yaml.h>

#include "config.h"

typedef struct ynode ynode_t;
struct ynode {
    yaml_node_type_t kind; /* YAML_SCALAR_NODE, YAML_SEQUENCE_NODE or YAML_MAPPING_NODE */
    int plain;             /* untagged plain scalar: may resolve to null, bool or int */
    char *text;            /* scalars: NUL-terminated, no NUL inside */
    size_t len;
    int line, col;  /* 1-based */
    ynode_t **kids; /* sequence items, or mapping key, value, key, value, ... */
    size_t n, cap;
};

/* One file being applied to a config. */
typedef struct ctx {
    bw_config_t *cfg;
    const char *file;
    int version;
    char *err;
    size_t errlen;
} ctx_t;

/* ---- yaml_tree.c ---- */

/* Parse buf[len] (the first document only) into a tree. Returns 0 with
 * *root owned by the caller (bw__ynode_free), or BW_EINVAL/BW_ENOMEM with
 * err set ("FILE:LINE:COL: ..."). */
int bw__yaml_read(const char *buf, size_t len, const char *file, ynode_t **root, char *err,
                  size_t errlen);
void bw__ynode_free(ynode_t *n);
int bw__ynode_scalar(const ynode_t *n);
/* A plain null (empty, ~, null). */
int bw__ynode_null(const ynode_t *n);
/* A plain true/false (YAML 1.2 core schema spellings): 0/1, or -1. */
int bw__ynode_bool(const ynode_t *n);
/* A plain decimal integer into *v: 1, else 0 (leading zeros stay text). */
int bw__ynode_int(const ynode_t *n, long long *v);
/* The scalar's text, or "a sequence" / "a mapping". */
const char *bw__ynode_desc(const ynode_t *n);
/* The key node / value node of `key` in a mapping, or NULL. */
const ynode_t *bw__ynode_key(const ynode_t *map, const char *key);
const ynode_t *bw__ynode_value(const ynode_t *map, const char *key);

/* ---- config.c ---- */

/* "FILE:LINE:COL: msg" (or "FILE: msg" when line is 0) into err[errlen]. */
void bw__config_vseterr(char *err, size_t errlen, const char *file, int line, int col,
                        const char *fmt, va_list ap);
void bw__config_seterr(char *err, size_t errlen, const char *file, int line, int col,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* An error at node `at` (NULL: the whole file). Returns BW_EINVAL. */
int bw__config_fail(const ctx_t *c, const ynode_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "out of memory". Returns BW_ENOMEM. */
int bw__config_nomem(const ctx_t *c);
void bw__config_free_list(char **list, size_t n);
/* Read a whole file (at most BW_CONFIG_MAX_FILE_SIZE) into a new buffer. */
int bw__config_read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen);

/* ---- config_tunnels.c ---- */

/* Apply the `tunnels:` mapping `v` (key `k`). */
int bw__config_apply_tunnels(ctx_t *c, const ynode_t *k, const ynode_t *v);

#endif /* BW_CONFIG_CONFIG_INT_H */
