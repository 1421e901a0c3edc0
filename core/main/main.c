/* burrow: the agent's command line, compatible with ngrok's (docs/cli.md).
 *
 *   burrow http|tcp|tls ADDR [flags]     one tunnel named "command_line"
 *   burrow start NAME... | --all | --none tunnels from the config files
 *   burrow config check | add-authtoken TOKEN
 *   burrow authtoken TOKEN               (ngrok v2 spelling)
 *   burrow version | --version | help
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <uv.h>

#include "agent.h"
#include "api.h"
#include "cli.h"
#include "config.h"
#include "host.h"
#include "inspect_ui.h"
#include "json_build.h"
#include "log.h"
#include "plugin_loader.h"
#include "stream.h"
#include "tunnel_def.h"
#include "util.h"

#define MAX_POSITIONAL 64

typedef struct cli {
    const char *words[MAX_POSITIONAL]; /* command, sub-command and arguments */
    int n_words;
    bw_flag_list_t config;
    const char *authtoken, *server_addr, *root_cas, *web_addr, *region, *metadata;
    const char *log, *log_level, *log_format;
    const char *remote_addr, *subdomain, *hostname, *auth, *bind_tls, *host_header;
    const char *inspect, *crt, *key, *client_cas, *terminate_at;
    int all, none, help, version;
} cli_t;

static cli_t g_cli;

static const bw_flag_t flags[] = {
    {"config", BW_FLAG_LIST, &g_cli.config, "path to config files; they are merged if multiple"},
    {"log", BW_FLAG_STR, &g_cli.log, "path to log file, 'stdout', 'stderr' or 'false'"},
    {"log-format", BW_FLAG_STR, &g_cli.log_format, "log record format: 'term', 'logfmt', 'json'"},
    {"log-level", BW_FLAG_STR, &g_cli.log_level, "logging level: debug, info, warn, error, crit"},
    {"authtoken", BW_FLAG_STR, &g_cli.authtoken, "authentication token of the edge"},
    {"region", BW_FLAG_STR, &g_cli.region,
     "accepted for compatibility; a self-hosted edge has none"},
    {"metadata", BW_FLAG_STR, &g_cli.metadata, "opaque user metadata for the session"},
    {"server-addr", BW_FLAG_STR, &g_cli.server_addr,
     "edge address host:port (default localhost:4443)"},
    {"root-cas", BW_FLAG_STR, &g_cli.root_cas, "PEM file of CAs trusted for the edge certificate"},
    {"web-addr", BW_FLAG_STR, &g_cli.web_addr,
     "agent API address (default 127.0.0.1:4040; 'false' disables)"},
    {"remote-addr", BW_FLAG_STR, &g_cli.remote_addr, "tcp: bind remote address host:port"},
    {"subdomain", BW_FLAG_STR, &g_cli.subdomain, "http/tls: host tunnel on a custom subdomain"},
    {"hostname", BW_FLAG_STR, &g_cli.hostname, "http/tls: host tunnel on a custom hostname"},
    {"auth", BW_FLAG_STR, &g_cli.auth, "http: enforce basic auth on the endpoint, 'user:password'"},
    {"bind-tls", BW_FLAG_STR, &g_cli.bind_tls,
     "http: listen for http, https or both: true/false/both"},
    {"host-header", BW_FLAG_STR, &g_cli.host_header,
     "http: set Host header; if 'rewrite' use local address hostname"},
    {"inspect", BW_FLAG_STR, &g_cli.inspect, "http: enable/disable http introspection"},
    {"crt", BW_FLAG_STR, &g_cli.crt, "tls: PEM TLS certificate at path to terminate TLS traffic"},
    {"key", BW_FLAG_STR, &g_cli.key, "tls: PEM TLS private key at path to terminate TLS traffic"},
    {"client-cas", BW_FLAG_STR, &g_cli.client_cas,
     "tls: path to TLS certificate authority to verify client certs"},
    {"terminate-at", BW_FLAG_STR, &g_cli.terminate_at,
     "tls: where TLS ends: 'agent' (needs --crt and --key) or 'upstream'"},
    {"all", BW_FLAG_BOOL, &g_cli.all, "start: start all tunnels in the configuration file"},
    {"none", BW_FLAG_BOOL, &g_cli.none, "start: start running no tunnels"},
    {"help", BW_FLAG_BOOL, &g_cli.help, "show help"},
    {"h", BW_FLAG_BOOL, &g_cli.help, NULL},
    {"version", BW_FLAG_BOOL, &g_cli.version, "print the version"},
};

static const struct {
    const char *cmd, *usage, *what;
} commands[] = {
    {"http", "burrow http ADDR [flags]", "start an HTTP tunnel to ADDR (port, host:port or URL)"},
    {"tcp", "burrow tcp ADDR [flags]", "start a TCP tunnel to ADDR (port or host:port)"},
    {"tls", "burrow tls ADDR [flags]", "start a TLS tunnel to ADDR"},
    {"start", "burrow start NAME... | --all | --none [flags]",
     "start tunnels by name from the config files"},
    {"config", "burrow config check | add-authtoken TOKEN [flags]",
     "check the config files, or save the authtoken into one"},
    {"authtoken", "burrow authtoken TOKEN", "save the authtoken (ngrok v2 spelling)"},
    {"version", "burrow version", "print the version string"},
    {"help", "burrow help", "show this help"},
};

/* The whole help, or one command's when `cmd` names one. */
static void usage(FILE *f, const char *cmd)
{
    for (size_t i = 0; cmd && i < BW_ARRAY_SIZE(commands); i++)
        if (strcmp(cmd, commands[i].cmd) == 0) {
            fprintf(f, "NAME:\n   burrow %s - %s\n\nUSAGE:\n   %s\n\nFLAGS:\n", cmd,
                    commands[i].what, commands[i].usage);
            bw_cli_print_flags(f, flags, BW_ARRAY_SIZE(flags));
            return;
        }
    fprintf(f, "NAME:\n   burrow - tunnel local ports to public URLs\n\n"
               "USAGE:\n   burrow [command] [flags]\n\nCOMMANDS:\n");
    for (size_t i = 0; i < BW_ARRAY_SIZE(commands); i++)
        fprintf(f, "   %-50s %s\n", commands[i].usage, commands[i].what);
    fprintf(f, "\nFLAGS:\n");
    bw_cli_print_flags(f, flags, BW_ARRAY_SIZE(flags));
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ERROR:  ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* ------------------------------------------------------------------------- */
/* configuration */

/* Read --config files (or the default one when none is given), logging
 * ngrok's lines about it. Returns 0, or 1 after printing the error. */
static int load_config(const cli_t *c, bw_config_t *cfg, char *used, size_t usedlen)
{
    char err[1024];
    bw_config_init(cfg);
    used[0] = '\0';
    if (c->config.n > 0) {
        if (bw_config_load(cfg, c->config.items, (size_t)c->config.n, err, sizeof err) != 0) {
            bw_config_free(cfg); /* what the files before the bad one set */
            return fail("%s", err);
        }
        snprintf(used, usedlen, "%s", c->config.items[0]);
        return 0;
    }
    int rc = bw_config_load_default(cfg, used, usedlen, err, sizeof err);
    if (rc == BW_ENOENT) {
        used[0] = '\0';
        return 0;
    }
    if (rc < 0) {
        bw_config_free(cfg);
        return fail("%s", err);
    }
    return 0;
}

static void log_config_lines(const cli_t *c, const bw_config_t *cfg, const char *used)
{
    if (c->config.n == 0 && !used[0]) {
        char def[1024] = "";
        bw_config_default_path(def, sizeof def);
        bw_log(BW_LOG_INFO, "no configuration paths supplied", NULL);
        bw_log(BW_LOG_INFO, "ignoring default config path, could not stat it", "path", def, NULL);
        return;
    }
    if (c->config.n == 0)
        bw_log(BW_LOG_INFO, "using configuration at default config path", "path", used, NULL);
    for (size_t i = 0; i < cfg->n_files; i++)
        bw_log(BW_LOG_INFO, "open config file", "path", cfg->files[i], "err", "nil", NULL);
}

static int open_log(const cli_t *c, const bw_config_t *cfg)
{
    const char *target = c->log ? c->log : cfg->log ? cfg->log : "stdout";
    const char *lvl = c->log_level ? c->log_level : cfg->log_level ? cfg->log_level : "info";
    const char *fmt = c->log_format ? c->log_format : cfg->log_format ? cfg->log_format : "logfmt";
    int level = bw_log_parse_level(lvl), format = bw_log_parse_format(fmt);
    if (level < 0)
        return fail("invalid log level '%s'", lvl);
    if (format < 0)
        return fail("invalid log format '%s'", fmt);
    int rc = bw_log_open(target, format, level);
    if (rc < 0)
        return fail("cannot open log file '%s': %s", target, bw_strerror(rc));
    return 0;
}

/* ------------------------------------------------------------------------- */
/* running */

static struct {
    uv_signal_t sigint, sigterm;
    bw_agent_t *agent;
    bw_httpd_t *web;
} g;

/* The agent stopped (signal, refused token): let the loop run dry. */
static void agent_stopped(void *ud)
{
    bw_httpd_close(g.web);
    g.web = NULL;
}

static void on_signal(uv_signal_t *h, int signum)
{
    bw_log(BW_LOG_INFO, "received stop request", "obj", "app", NULL);
    bw_agent_stop(g.agent);
}

/* The agent API on web_addr. Failing to bind is logged, not fatal: the
 * tunnels still work, and a second agent on the machine keeps running. */
static void start_web(uv_loop_t *loop, const char *addr, const bw_config_t *cfg)
{
    bw_httpd_cfg_t hc;
    memset(&hc, 0, sizeof hc);
    hc.allow_hosts = (const char *const *)cfg->web_allow_hosts;
    int rc = bw_httpd_new(loop, addr, &hc, &g.web);
    if (rc == 0)
        rc = bw_api_register(g.web, g.agent);
    if (rc == 0)
        rc = bw_inspect_ui_register(g.web);
    if (rc < 0) {
        bw_log(BW_LOG_ERROR, "failed to start web service", "obj", "web", "addr", addr, "err",
               bw_strerror(rc), NULL);
        bw_httpd_close(g.web);
        g.web = NULL;
        return;
    }
    char hosts[1024] = "[";
    for (size_t i = 0; i < cfg->n_web_allow_hosts; i++) {
        size_t n = strlen(hosts);
        snprintf(hosts + n, sizeof hosts - n, "%s%s", i ? " " : "", cfg->web_allow_hosts[i]);
    }
    strncat(hosts, "]", sizeof hosts - strlen(hosts) - 1);
    bw_log(BW_LOG_INFO, "starting web service", "obj", "web", "addr", bw_httpd_addr(g.web),
           "allow_hosts", hosts, NULL);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* A tunnel definition from the command line, in config-file keys. */
static json_t *cli_tunnel(const cli_t *c, const char *proto, const char *addr)
{
    json_t *d = json_pack("{s:s, s:s}", "proto", proto, "addr", addr);
    const struct {
        const char *key, *value;
    } opt[] = {
        {"remote_addr", c->remote_addr},
        {"subdomain", c->subdomain},
        {"hostname", c->hostname},
        {"auth", c->auth},
        {"bind_tls", c->bind_tls},
        {"host_header", c->host_header},
        {"inspect", c->inspect},
        {"metadata", c->metadata},
        {"crt", c->crt},
        {"key", c->key},
        {"client_cas", c->client_cas},
        {"terminate_at", c->terminate_at},
    };
    int bad = 0;
    for (size_t i = 0; d && i < BW_ARRAY_SIZE(opt); i++)
        if (opt[i].value)
            bw_json_put(d, opt[i].key, json_string(opt[i].value), &bad);
    return bw_json_whole(d, bad);
}

/* The value position of the first key of `t` that `msg` quotes ('key' or
 * 'key.sub'): plugin messages name the option they refuse. */
static int quoted_key_mark(const bw_config_tunnel_t *t, const char *msg, int *line, int *col)
{
    const char *k;
    json_t *v;
    char q[160];
    json_object_foreach(t->def, k, v)
    {
        snprintf(q, sizeof q, "'%s'", k);
        if (strstr(msg, q))
            return bw_config_tunnel_mark(t, k, 1, line, col);
        snprintf(q, sizeof q, "'%s.", k);
        if (strstr(msg, q))
            return bw_config_tunnel_mark(t, k, 1, line, col);
    }
    return BW_ENOENT;
}

/* Check config tunnel `t` with its plugin from `reg` (keys, option types,
 * the plugin's validate). Prints FILE:LINE[:COL]: message and returns 1 on
 * error: at the offending key, or the value of the option the message
 * names, else at the tunnel's name. */
static int check_config_tunnel(bw_registry_t *reg, const bw_config_tunnel_t *t)
{
    char err[512];
    const char *key;
    int line = t->line, col = 0;
    if (bw_definition_check(reg, t->name, t->def, t->strict, &key, err, sizeof err) == 0)
        return 0;
    if (key ? bw_config_tunnel_mark(t, key, 0, &line, &col) != 0
            : quoted_key_mark(t, err, &line, &col) != 0) {
        line = t->line;
        col = 0;
    }
    if (col)
        return fail("%s:%d:%d: %s", t->file, line, col, err);
    return fail("%s:%d: %s", t->file, line, err);
}

/* Run the agent with `tunnels` (name/definition pairs; may be empty). */
static int run(const cli_t *c, const bw_config_t *cfg, const char *used, json_t *tunnels)
{
    char err[1024];
    int rc = 1;
    uv_loop_t *loop = uv_default_loop();
    if (!loop) /* libuv could not allocate the loop's internals */
        return fail("out of memory");
    if (open_log(c, cfg) != 0)
        return 1;
    /* A stdout whose reader stops must not stop the loop: the log drains
     * from it when the pipe takes more. */
    bw_log_attach_loop(loop);
    log_config_lines(c, cfg, used);
    bw_io_t *io = bw_io_new(loop);
    if (!io) {
        fail("out of memory");
        bw_log_detach_loop();
        uv_run(loop, UV_RUN_DEFAULT);
        bw_log_close();
        return 1;
    }
    bw_host_set_io(io);
    bw_registry_t *reg = bw_registry_new(bw_host_table_for);
    if (!reg || bw_registry_load_default(reg) == 0) {
        fail("no protocol plugins found (set BURROW_PLUGIN_PATH)");
        goto out_reg;
    }
    bw_agent_config_t ac = {
        .server_addr = c->server_addr ? c->server_addr : cfg->server_addr,
        .authtoken = c->authtoken ? c->authtoken : cfg->authtoken,
        .root_cas = c->root_cas ? c->root_cas : cfg->root_cas,
        .heartbeat_ms = cfg->heartbeat_interval_ms,
        .tolerance_ms = cfg->heartbeat_tolerance_ms,
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .inspect_db_size = cfg->inspect_db_size,
        .on_stop = agent_stopped,
    };
    g.agent = bw_agent_new(io, reg, &ac, err, sizeof err);
    if (!g.agent) {
        fail("%s", err);
        goto out_reg;
    }
    const char *name;
    json_t *def;
    /* Definitions from files are checked as `config check` does first, so
     * start refuses exactly what check refuses, at the same place. */
    json_object_foreach(tunnels, name, def)
    {
        const bw_config_tunnel_t *t = bw_config_find_tunnel(cfg, name);
        if (t && t->def == def && check_config_tunnel(reg, t) != 0)
            goto out_reg;
    }
    json_object_foreach(tunnels, name, def)
    {
        if (bw_agent_add_definition(g.agent, name, def, NULL, NULL, err, sizeof err) < 0) {
            fail("%s", err);
            bw_agent_stop(g.agent);
            uv_run(loop, UV_RUN_DEFAULT);
            goto out_agent;
        }
    }
    uv_signal_init(loop, &g.sigint);
    uv_signal_init(loop, &g.sigterm);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    /* Signals must not keep the loop alive once the agent is done. */
    uv_unref((uv_handle_t *)&g.sigint);
    uv_unref((uv_handle_t *)&g.sigterm);
    const char *web = c->web_addr ? c->web_addr : cfg->web_addr;
    if (!(cfg->web_disabled && !c->web_addr) && !(web && strcmp(web, "false") == 0))
        start_web(loop, web ? web : BW_HTTPD_DEFAULT_ADDR, cfg);
    bw_agent_start(g.agent);
    uv_run(loop, UV_RUN_DEFAULT);
    rc = bw_agent_exit_code(g.agent);
out_agent:
    bw_agent_free(g.agent);
out_reg:
    bw_host_set_io(NULL);
    bw_io_free(io);
    bw_stream_tls_done();
    bw_log_detach_loop();
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    bw_registry_free(reg);
    uv_loop_close(loop);
    bw_log_close();
    return rc;
}

/* ------------------------------------------------------------------------- */
/* commands */

static int cmd_tunnel(const cli_t *c, const bw_config_t *cfg, const char *used, const char *proto)
{
    if (c->n_words != 2) {
        if (strcmp(proto, "http") == 0 && c->n_words == 1)
            return fail("Specify a local port to tunnel to, e.g. burrow http 80");
        return fail("Specify a local port or address to tunnel to.\nERROR:  Example: burrow %s 22",
                    proto);
    }
    json_t *tunnels = json_object();
    int bad = 0;
    bw_json_put(tunnels, "command_line", cli_tunnel(c, proto, c->words[1]), &bad);
    /* A tunnel missing an option would start as something else. */
    if (!(tunnels = bw_json_whole(tunnels, bad)))
        return fail("out of memory");
    int rc = run(c, cfg, used, tunnels);
    json_decref(tunnels);
    return rc;
}

static int unknown_tunnel(const bw_config_t *cfg, const char *name)
{
    fprintf(stderr, "ERROR:  Tunnel '%s' is not defined in the config files.\n", name);
    fputs("ERROR:  Tunnels available: ", stderr);
    for (size_t i = 0; i < cfg->n_tunnels; i++)
        fprintf(stderr, "%s%s", i ? ", " : "", cfg->tunnels[i].name);
    fputs("\nERROR:  Config files read: [", stderr);
    for (size_t i = 0; i < cfg->n_files; i++)
        fprintf(stderr, "%s%s", i ? " " : "", cfg->files[i]);
    fputs("]\n", stderr);
    return 1;
}

static int cmd_start(const cli_t *c, const bw_config_t *cfg, const char *used)
{
    int names = c->n_words - 1;
    if (c->all && names)
        return fail("You may not specify any tunnel names with the --all switch");
    if (c->none && names)
        return fail("You may not specify any tunnel names with the --none switch");
    if (c->all && cfg->n_tunnels == 0)
        return fail("Your configuration file must define at least one tunnel when using --all. "
                    "To intentionally start no tunnels, use `burrow start --none.`");
    if (!c->all && !c->none && names == 0)
        return fail("Specify the names of tunnels to start, or --all, or --none.");
    json_t *tunnels = json_object();
    int bad = !tunnels;
    for (size_t i = 0; c->all && i < cfg->n_tunnels; i++)
        bw_json_put(tunnels, cfg->tunnels[i].name, json_incref(cfg->tunnels[i].def), &bad);
    for (int i = 1; i <= names; i++) {
        const bw_config_tunnel_t *t = bw_config_find_tunnel(cfg, c->words[i]);
        if (!t) {
            json_decref(tunnels);
            return unknown_tunnel(cfg, c->words[i]);
        }
        bw_json_put(tunnels, t->name, json_incref(t->def), &bad);
    }
    /* Starting fewer tunnels than asked for is not an answer. */
    if (!(tunnels = bw_json_whole(tunnels, bad)))
        return fail("out of memory");
    int rc = run(c, cfg, used, tunnels);
    json_decref(tunnels);
    return rc;
}

static int save_authtoken(const cli_t *c, const char *token)
{
    char path[1024], err[1024];
    if (c->config.n > 0)
        snprintf(path, sizeof path, "%s", c->config.items[0]);
    else if (bw_config_default_path(path, sizeof path) != 0)
        return fail("cannot determine the default config path (is HOME set?)");
    if (bw_config_add_authtoken(path, token, err, sizeof err) != 0)
        return fail("%s", err);
    printf("Authtoken saved to configuration file: %s\n", path);
    return 0;
}

/* A tunnel whose proto no plugin here offers: `burrow start` refuses it,
 * but the file is valid (the plugin may be installed elsewhere, or later),
 * so `config check` warns, naming where it looked, and still succeeds. */
static void warn_missing_plugin(bw_registry_t *reg, const bw_config_tunnel_t *t)
{
    const char *proto = json_string_value(json_object_get(t->def, "proto"));
    const char *dirs = bw_registry_searched(reg);
    if (!proto || bw_registry_find(reg, proto))
        return; /* no proto: a labeled definition, the loader's to judge */
    fprintf(stderr,
            "WARNING:  %s:%d: tunnel \"%s\": no plugin for proto '%s' in %s; "
            "burrow start will refuse it\n",
            t->file, t->line, t->name, proto, *dirs ? dirs : "(no plugin directory)");
}

/* What `burrow start` would refuse before connecting, with the plugins this
 * agent would load: the root_cas file, each definition's address and
 * option values (CIDRs, header rules, ...); a proto without a plugin here
 * is a warning. Returns 0, or 1 after printing the first error. */
static int check_definitions(const cli_t *c, const bw_config_t *cfg)
{
    char err[1024];
    int rc = 0;
    /* `config check` answers on stdout and stderr only: of the loader's
     * log, a refused plugin (a warning or worse) is worth a line. */
    bw_log_open("stderr", BW_LOGFMT_LOGFMT, BW_LOG_WARN);
    if (bw_agent_check_root_cas(c->root_cas ? c->root_cas : cfg->root_cas, err, sizeof err) != 0)
        return fail("%s", err);
    bw_registry_t *reg = bw_registry_new(bw_host_table_for);
    if (!reg)
        return fail("out of memory");
    bw_registry_load_default(reg);
    for (size_t i = 0; i < cfg->n_tunnels && rc == 0; i++) {
        warn_missing_plugin(reg, &cfg->tunnels[i]);
        rc = check_config_tunnel(reg, &cfg->tunnels[i]);
    }
    bw_registry_free(reg);
    return rc;
}

static int cmd_config(const cli_t *c, const bw_config_t *cfg, const char *used)
{
    const char *sub = c->n_words > 1 ? c->words[1] : "";
    if (strcmp(sub, "check") == 0) {
        if (cfg->n_files == 0)
            return fail("no config file found (looked for the default path; pass --config)");
        if (check_definitions(c, cfg) != 0)
            return 1;
        for (size_t i = 0; i < cfg->n_files; i++)
            printf("Valid configuration file at %s\n", cfg->files[i]);
        return 0;
    }
    return fail("unknown config command '%s' (use check or add-authtoken)", sub);
}

int main(int argc, char **argv)
{
    cli_t *c = &g_cli;
    bw_config_t cfg;
    char used[1024], err[512];
    int rc;
    signal(SIGPIPE, SIG_IGN);
    if (bw_cli_parse(argc, argv, flags, BW_ARRAY_SIZE(flags), c->words, &c->n_words, MAX_POSITIONAL,
                     err, sizeof err) < 0)
        return fail("%s", err);
    const char *cmd = c->n_words ? c->words[0] : NULL;
    if (c->version || (cmd && strcmp(cmd, "version") == 0)) {
        printf("burrow version %s\n", BW_VERSION);
        return 0;
    }
    if (c->help || !cmd || strcmp(cmd, "help") == 0) {
        const char *topic = cmd;
        if (cmd && strcmp(cmd, "help") == 0)
            topic = c->n_words > 1 ? c->words[1] : NULL;
        usage(stdout, topic);
        return cmd || c->help ? 0 : 1;
    }
    if (strcmp(cmd, "authtoken") == 0) {
        if (c->n_words != 2)
            return fail("You must pass a single argument, the authtoken to save to "
                        "configuration file.");
        return save_authtoken(c, c->words[1]);
    }
    if (strcmp(cmd, "http") && strcmp(cmd, "tcp") && strcmp(cmd, "tls") && strcmp(cmd, "start") &&
        strcmp(cmd, "config")) {
        fail("unknown command '%s'", cmd);
        usage(stderr, NULL);
        return 1;
    }
    /* add-authtoken must work on a file that does not exist yet. */
    if (strcmp(cmd, "config") == 0 && c->n_words > 1 && strcmp(c->words[1], "add-authtoken") == 0) {
        if (c->n_words != 3)
            return fail("You must pass a single argument, the authtoken to save to "
                        "configuration file.");
        return save_authtoken(c, c->words[2]);
    }
    if (load_config(c, &cfg, used, sizeof used) != 0)
        return 1;
    if (strcmp(cmd, "config") == 0)
        rc = cmd_config(c, &cfg, used);
    else if (strcmp(cmd, "start") == 0)
        rc = cmd_start(c, &cfg, used);
    else
        rc = cmd_tunnel(c, &cfg, used, cmd);
    bw_config_free(&cfg);
    return rc;
}
