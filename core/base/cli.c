/* Go-style command-line flags. See cli.h. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const bw_flag_t *find_flag(const bw_flag_t *flags, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

static int set_flag(const bw_flag_t *f, const char *val, char *err, size_t errlen)
{
    switch (f->kind) {
    case BW_FLAG_BOOL:
        if (val && strcmp(val, "true") != 0 && strcmp(val, "false") != 0 && strcmp(val, "1") != 0 &&
            strcmp(val, "0") != 0) {
            snprintf(err, errlen, "invalid boolean value \"%s\" for -%s", val, f->name);
            return -1;
        }
        *(int *)f->dest = !val || strcmp(val, "true") == 0 || strcmp(val, "1") == 0;
        return 0;
    case BW_FLAG_LIST: {
        bw_flag_list_t *l = f->dest;
        if (l->n == BW_FLAG_LIST_MAX) {
            snprintf(err, errlen, "too many -%s flags", f->name);
            return -1;
        }
        l->items[l->n++] = val;
        return 0;
    }
    default:
        *(const char **)f->dest = val;
        return 0;
    }
}

int bw_cli_parse(int argc, char **argv, const bw_flag_t *flags, size_t nflags, const char **pos,
                 int *npos, int maxpos, char *err, size_t errlen)
{
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            while (++i < argc && *npos < maxpos)
                pos[(*npos)++] = argv[i];
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            if (*npos == maxpos) {
                snprintf(err, errlen, "unexpected argument '%s'", arg);
                return -1;
            }
            pos[(*npos)++] = arg;
            continue;
        }
        const char *name = arg + (arg[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const bw_flag_t *f = find_flag(flags, nflags, name, len);
        if (!f) {
            snprintf(err, errlen, "flag provided but not defined: -%.*s", (int)len, name);
            return -1;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val && f->kind != BW_FLAG_BOOL) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "flag needs an argument: -%s", f->name);
                return -1;
            }
            val = argv[++i];
        }
        if (set_flag(f, val, err, errlen) < 0)
            return -1;
    }
    return 0;
}

void bw_cli_print_flags(void *file, const bw_flag_t *flags, size_t nflags)
{
    for (size_t i = 0; i < nflags; i++)
        if (flags[i].help)
            fprintf(file, "   --%-16s %s\n", flags[i].name, flags[i].help);
}
