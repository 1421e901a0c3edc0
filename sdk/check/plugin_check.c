/* burrow-plugin-check: the conformance checker for protocol plugins.
 *
 *   burrow-plugin-check path/to/plugin.so
 *
 * Loads the plugin with the agent's own loader and host table and checks what
 * the ABI requires of it (docs/plugin-abi.md): one exported symbol, a valid
 * descriptor, well-formed option declarations whose defaults parse as their
 * type, a clean init/destroy cycle, and a tunnel that starts and stops with
 * default options. Prints one PASS/FAIL line per check; exits 1 on failure. */
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "host.h"
#include "log.h"
#include "plugin_loader.h"
#include "stream.h"
#include "util.h"

static int failures;

static void report(int ok, const char *check, const char *detail)
{
    printf("%s  %s%s%s\n", ok ? "PASS" : "FAIL", check, detail && *detail ? ": " : "",
           detail ? detail : "");
    if (!ok)
        failures++;
}

static void check_exports(const char *path)
{
    char names[1024], detail[1100];
    int n = bw_elf_exports(path, names, sizeof names);
    snprintf(detail, sizeof detail, "%d exported: %s", n, n >= 0 ? names : "(unreadable ELF)");
    report(n == 1 && strcmp(names, BW_PLUGIN_ENTRY_SYMBOL) == 0, "exports only bw_plugin_entry",
           n == 1 && strcmp(names, BW_PLUGIN_ENTRY_SYMBOL) == 0 ? NULL : detail);
}

static int default_parses(const bw_option_t *o)
{
    long long v;
    if (!o->default_value)
        return 1;
    switch (o->type) {
    case BW_OPT_BOOL:
        return strcmp(o->default_value, "true") == 0 || strcmp(o->default_value, "false") == 0;
    case BW_OPT_INT:
        return bw_parse_int(o->default_value, INT64_MIN, INT64_MAX, &v) == 0;
    default:
        return 1;
    }
}

static void check_options(const bw_plugin_t *d)
{
    char detail[256] = "";
    int ok = 1;
    for (size_t i = 0; d->options && d->options[i].key && ok; i++) {
        const bw_option_t *o = &d->options[i];
        if (!o->description || !*o->description)
            snprintf(detail, sizeof detail, "option '%s' has no description", o->key), ok = 0;
        else if (!default_parses(o))
            snprintf(detail, sizeof detail, "default '%s' of option '%s' is not of its type",
                     o->default_value, o->key),
                ok = 0;
        for (size_t k = 0; k < i && ok; k++)
            if (strcmp(d->options[k].key, o->key) == 0)
                snprintf(detail, sizeof detail, "option '%s' declared twice", o->key), ok = 0;
    }
    report(ok, "option declarations", detail);
}

static void check_tunnel(const bw_loaded_plugin_t *p)
{
    char err[512] = "";
    bw_conf_t conf;
    json_t *empty = json_object();
    int rc = bw_conf_build(p->desc.options, empty, 1, &conf, err, sizeof err);
    json_decref(empty);
    if (rc < 0) {
        report(0, "tunnel starts with default options", err);
        return;
    }
    bw_tunnel_t *t = bw_tunnel_new("conformance", "localhost:9", p, &conf);
    rc = t ? bw_tunnel_start(t, err, sizeof err) : BW_ENOMEM;
    report(rc == 0, "tunnel starts with default options", err);
    bw_tunnel_free(t);
    if (p->desc.normalize_addr) {
        char out[256];
        bw_error_t e = {{0}};
        rc = p->desc.normalize_addr(p->state, "80", out, sizeof out, "conformance", &e);
        report(rc == 0 || e.msg[0], "normalize_addr answers or explains", rc ? e.msg : out);
    }
}

int main(int argc, char **argv)
{
    char err[1024] = "";
    if (argc != 2) {
        fprintf(stderr, "usage: burrow-plugin-check PLUGIN.so\n");
        return 2;
    }
    bw_log_open("stderr", BW_LOGFMT_LOGFMT, BW_LOG_WARN);
    uv_loop_t *loop = uv_default_loop();
    bw_io_t *io = bw_io_new(loop);
    if (!io) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    bw_host_set_io(io);
    check_exports(argv[1]);
    for (int round = 0; round < 2; round++) {
        bw_registry_t *r = bw_registry_new(bw_host_table_for);
        int rc = bw_registry_load(r, argv[1], err, sizeof err);
        if (round == 0)
            report(rc == 0, "loads (descriptor, ABI version, mandatory slots, init)", err);
        /* Every proto the object provides (ABI 1.2 siblings) is checked. */
        for (size_t i = 0; rc == 0 && round == 0 && i < bw_registry_count(r); i++) {
            const bw_loaded_plugin_t *p = bw_registry_at(r, i);
            printf("      name=%s scheme=%s edge_type=%d abi=%u.%u version=%s\n", p->desc.name,
                   p->desc.public_scheme, (int)p->desc.edge_type, p->desc.abi_major,
                   p->desc.abi_minor, p->desc.version ? p->desc.version : "");
            check_options(&p->desc);
            check_tunnel(p);
        }
        if (rc == 0 && round == 1)
            report(1, "loads again after destroy (no global state left behind)", NULL);
        bw_registry_free(r);
        if (rc != 0)
            break;
    }
    bw_host_set_io(NULL);
    bw_io_free(io);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    printf("%s\n", failures ? "plugin does NOT conform" : "plugin conforms");
    return failures ? 1 : 0;
}
