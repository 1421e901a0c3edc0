/* Fuzz target for the config-file parser (core/config/config.c).
 *
 * The input is a YAML file parsed twice into the same config, as a second
 * --config file merged on top of the first, so the merge paths run too.
 * Errors are expected; crashes, leaks and unterminated or empty error text
 * are not. Every loaded tunnel's addr is also run through normalisation.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <burrow/error.h>

#include "addr.h"
#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_config: invariant failed at line %d: %s\n", __LINE__, #cond);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_tunnels(const bw_config_t *cfg)
{
    char out[512], err[512];

    for (size_t i = 0; i < cfg->n_tunnels; i++) {
        const bw_config_tunnel_t *t = &cfg->tunnels[i];
        const char *addr = json_string_value(json_object_get(t->def, "addr"));
        int rc;

        CHECK(t->name && json_is_object(t->def) && t->line > 0);
        CHECK(bw_config_find_tunnel(cfg, t->name) == t);
        if (!addr)
            continue;
        err[0] = '\0';
        rc = bw_addr_normalize(addr, out, sizeof out, t->name, err, sizeof err);
        CHECK(rc == 0 || rc == BW_EINVAL || rc == BW_EMSGSIZE);
        CHECK(rc == 0 || err[0] != '\0');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    bw_config_t cfg;
    char err[1024];
    int rc;

    if (!quiet) {
        bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_INFO);
        quiet = 1;
    }
    bw_config_init(&cfg);
    for (int pass = 0; pass < 2; pass++) {
        err[0] = '\0';
        rc = bw_config_parse(&cfg, (const char *)data, size, "fuzz.yml", err, sizeof err);
        CHECK(rc == 0 || rc == BW_EINVAL || rc == BW_EMSGSIZE || rc == BW_ENOMEM);
        CHECK(rc == 0 || err[0] != '\0');
        CHECK(memchr(err, '\0', sizeof err) != NULL);
        if (rc != 0)
            break;
        CHECK(cfg.version == 1 || cfg.version == 2);
        CHECK(cfg.n_files == (size_t)pass + 1);
        check_tunnels(&cfg);
    }
    bw_config_free(&cfg);
    return 0;
}
