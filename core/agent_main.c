/* burrow: the agent's command line (ngrok-compatible; docs/cli.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "agent.h"
#include "api.h"
#include "cli.h"
#include "host.h"
#include "log.h"
#include "plugin_loader.h"
#include "stream.h"
#include "util.h"

#define MAX_POSITIONAL 16

typedef struct cli {
    const char *command;
    const char *positional[MAX_POSITIONAL];
    int n_positional;
    const char *authtoken, *server_addr, *root_cas, *remote_addr;
    const char *log, *log_level, *log_format;
    const char *region; /* accepted for compatibility: no regions on a self-hosted edge */
    const char *web_addr;
    int help, version;
} cli_t;

static cli_t g_cli;

static const bw_flag_t flags[] = {
    {"authtoken", BW_FLAG_STR, &g_cli.authtoken, "authentication token of the edge"},
    {"server-addr", BW_FLAG_STR, &g_cli.server_addr,
     "edge address host:port (default localhost:4443)"},
    {"root-cas", BW_FLAG_STR, &g_cli.root_cas, "PEM file of CAs trusted for the edge certificate"},
    {"remote-addr", BW_FLAG_STR, &g_cli.remote_addr, "tcp: bind this public address (host:port)"},
    {"log", BW_FLAG_STR, &g_cli.log, "path to log file, 'stdout', 'stderr' or 'false'"},
    {"log-level", BW_FLAG_STR, &g_cli.log_level, "logging level: debug, info, warn, error, crit"},
    {"log-format", BW_FLAG_STR, &g_cli.log_format, "log record format: 'term', 'logfmt', 'json'"},
    {"region", BW_FLAG_STR, &g_cli.region, NULL},
    {"web-addr", BW_FLAG_STR, &g_cli.web_addr,
     "agent API and inspector address (default 127.0.0.1:4040, 'false' disables)"},
    {"help", BW_FLAG_BOOL, &g_cli.help, "show help"},
    {"h", BW_FLAG_BOOL, &g_cli.help, NULL},
    {"version", BW_FLAG_BOOL, &g_cli.version, "print the version"},
};

static void usage(FILE *f)
{
    fprintf(f, "NAME:\n   burrow - tunnel local ports to public URLs\n\n"
               "USAGE:\n   burrow [command] [flags]\n\n"
               "COMMANDS:\n"
               "   tcp ADDR     start a TCP tunnel to ADDR (port or host:port)\n"
               "   version      print the version string\n"
               "   help         show this help\n\n"
               "FLAGS:\n");
    bw_cli_print_flags(f, flags, BW_ARRAY_SIZE(flags));
}

static int parse_args(int argc, char **argv, cli_t *c)
{
    const char *pos[MAX_POSITIONAL + 1];
    int npos = 0;
    char err[256];
    if (bw_cli_parse(argc, argv, flags, BW_ARRAY_SIZE(flags), pos, &npos, MAX_POSITIONAL + 1, err,
                     sizeof err) < 0) {
        fprintf(stderr, "ERROR:  %s\n", err);
        return -1;
    }
    if (npos > 0)
        c->command = pos[0];
    for (int i = 1; i < npos; i++)
        c->positional[c->n_positional++] = pos[i];
    return 0;
}

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
    uv_close((uv_handle_t *)&g.sigint, NULL);
    uv_close((uv_handle_t *)&g.sigterm, NULL);
}

/* The agent API on web_addr. Failing to bind is logged, not fatal: the
 * tunnels still work, and a second agent on the machine keeps running. */
static void start_web(uv_loop_t *loop, const char *addr)
{
    if (addr && strcmp(addr, "false") == 0)
        return;
    int rc = bw_httpd_new(loop, addr ? addr : BW_HTTPD_DEFAULT_ADDR, NULL, &g.web);
    if (rc == 0)
        rc = bw_api_register(g.web, g.agent);
    if (rc < 0) {
        bw_log(BW_LOG_ERROR, "failed to start web service", "obj", "web", "addr",
               addr ? addr : BW_HTTPD_DEFAULT_ADDR, "err", bw_strerror(rc), NULL);
        bw_httpd_close(g.web);
        g.web = NULL;
        return;
    }
    bw_log(BW_LOG_INFO, "starting web service", "obj", "web", "addr", bw_httpd_addr(g.web),
           "allow_hosts", "[]", NULL);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int open_log(const cli_t *c)
{
    int level = bw_log_parse_level(c->log_level ? c->log_level : "info");
    int format = bw_log_parse_format(c->log_format ? c->log_format : "logfmt");
    if (level < 0) {
        fprintf(stderr, "ERROR:  invalid log level '%s'\n", c->log_level);
        return -1;
    }
    if (format < 0) {
        fprintf(stderr, "ERROR:  invalid log format '%s'\n", c->log_format);
        return -1;
    }
    int rc = bw_log_open(c->log ? c->log : "stdout", format, level);
    if (rc < 0) {
        fprintf(stderr, "ERROR:  cannot open log file '%s': %s\n", c->log, bw_strerror(rc));
        return -1;
    }
    return 0;
}

static int run_tunnel(const cli_t *c, const char *proto)
{
    char err[512];
    int rc = 1;
    if (c->n_positional != 1) {
        fprintf(stderr, "ERROR:  Specify a local port or address to tunnel to.\n"
                        "ERROR:  Example: burrow %s 22\n", proto);
        return 1;
    }
    if (open_log(c) < 0)
        return 1;
    uv_loop_t *loop = uv_default_loop();
    bw_stream_loop_init(loop);
    bw_registry_t *reg = bw_registry_new(bw_host_table());
    if (!reg || bw_registry_load_default(reg) == 0) {
        fprintf(stderr, "ERROR:  no protocol plugins found (set BURROW_PLUGIN_PATH)\n");
        goto out_reg;
    }
    bw_agent_config_t cfg = {
        .server_addr = c->server_addr,
        .authtoken = c->authtoken,
        .root_cas = c->root_cas,
        .on_stop = agent_stopped,
    };
    g.agent = bw_agent_new(loop, reg, &cfg, err, sizeof err);
    if (!g.agent) {
        fprintf(stderr, "ERROR:  %s\n", err);
        goto out_reg;
    }
    json_t *opts = json_object();
    if (c->remote_addr)
        json_object_set_new(opts, "remote_addr", json_string(c->remote_addr));
    bw_tunnel_spec_t spec = {
        .name = "command_line",
        .proto = proto,
        .addr = c->positional[0],
        .remote_addr = c->remote_addr,
        .options = opts,
    };
    int arc = bw_agent_add_tunnel(g.agent, &spec, NULL, NULL, err, sizeof err);
    json_decref(opts);
    if (arc < 0) {
        fprintf(stderr, "ERROR:  %s\n", err);
        bw_agent_stop(g.agent);
        uv_run(loop, UV_RUN_DEFAULT);
        goto out_agent;
    }
    uv_signal_init(loop, &g.sigint);
    uv_signal_init(loop, &g.sigterm);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    /* Signals must not keep the loop alive once the agent is done. */
    uv_unref((uv_handle_t *)&g.sigint);
    uv_unref((uv_handle_t *)&g.sigterm);
    start_web(loop, c->web_addr);
    bw_agent_start(g.agent);
    uv_run(loop, UV_RUN_DEFAULT);
    rc = bw_agent_exit_code(g.agent);
out_agent:
    bw_agent_free(g.agent);
out_reg:
    bw_stream_loop_done();
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    bw_registry_free(reg);
    uv_loop_close(loop);
    bw_log_close();
    return rc;
}

int main(int argc, char **argv)
{
    cli_t *c = &g_cli;
    signal(SIGPIPE, SIG_IGN);
    if (parse_args(argc, argv, c) < 0)
        return 1;
    if (c->version || (c->command && strcmp(c->command, "version") == 0)) {
        printf("burrow version %s\n", BW_VERSION);
        return 0;
    }
    if (c->help || !c->command || strcmp(c->command, "help") == 0) {
        usage(stdout);
        return c->command || c->help ? 0 : 1;
    }
    if (strcmp(c->command, "tcp") == 0)
        return run_tunnel(c, "tcp");
    fprintf(stderr, "ERROR:  unknown command '%s'\n", c->command);
    usage(stderr);
    return 1;
}
