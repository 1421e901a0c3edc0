/* Command-line flags as ngrok (Go's flag package) accepts them: one or two
 * leading dashes, "-flag=value" or "-flag value", booleans bare or with
 * "=true/false". Positional arguments may appear between flags. */
#ifndef BW_CORE_CLI_H
#define BW_CORE_CLI_H

#include <stddef.h>

typedef enum bw_flag_kind {
    BW_FLAG_STR = 0,  /* const char *: the last occurrence wins */
    BW_FLAG_BOOL = 1, /* int: 1 when given */
    BW_FLAG_LIST = 2  /* bw_flag_list_t: every occurrence, in order */
} bw_flag_kind_t;

#define BW_FLAG_LIST_MAX 16

typedef struct bw_flag_list {
    const char *items[BW_FLAG_LIST_MAX];
    int n;
} bw_flag_list_t;

typedef struct bw_flag {
    const char *name;
    bw_flag_kind_t kind;
    void *dest;
    const char *help; /* NULL: hidden from --help */
} bw_flag_t;

/* Parse argv[1..] against `flags`; non-flag words go to pos[*npos] (at most
 * maxpos). Returns 0, or -1 with a Go-style message in err[errlen]
 * ("flag provided but not defined: -x", "flag needs an argument: -x"). */
int bw_cli_parse(int argc, char **argv, const bw_flag_t *flags, size_t nflags, const char **pos,
                 int *npos, int maxpos, char *err, size_t errlen);

/* Print "   --name   help" lines for the visible flags. */
void bw_cli_print_flags(void *file, const bw_flag_t *flags, size_t nflags);

#endif /* BW_CORE_CLI_H */
