/* burrowd: the edge's command line (docs/edge.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <uv.h>

#include "cli.h"
#include "edge.h"
#include "log.h"
#include "stream.h"
#include "util.h"

static struct {
    const char *agent_addr, *tcp_addr, *tcp_ports, *domain, *state_dir;
    const char *tls_cert, *tls_key, *auth_tokens, *grace;
    const char *log, *log_level, *log_format;
    const char *http_addr, *https_addr, *header_timeout, *http_idle, *body_timeout;
    const char *per_ip, *max_conns;
    bw_flag_list_t host_certs;
    int help, version;
} o;

static const bw_flag_t flags[] = {
    {"agent-addr", BW_FLAG_STR, &o.agent_addr,
     "address agents connect to (default 127.0.0.1:4443)"},
    {"tcp-addr", BW_FLAG_STR, &o.tcp_addr,
     "interface TCP tunnel ports bind on (default 127.0.0.1)"},
    {"tcp-ports", BW_FLAG_STR, &o.tcp_ports, "port range for TCP tunnels (default 10000-10999)"},
    {"domain", BW_FLAG_STR, &o.domain, "domain of public URLs (default localhost)"},
    {"state-dir", BW_FLAG_STR, &o.state_dir,
     "where dev certificates live (default ~/.local/share/burrowd)"},
    {"tls-cert", BW_FLAG_STR, &o.tls_cert, "certificate chain (PEM) for the agent listener"},
    {"tls-key", BW_FLAG_STR, &o.tls_key, "private key (PEM) for --tls-cert"},
    {"auth-tokens", BW_FLAG_STR, &o.auth_tokens, "file of accepted agent tokens, one per line"},
    {"http-addr", BW_FLAG_STR, &o.http_addr,
     "public HTTP listener (default 127.0.0.1:8080; 'false' disables it)"},
    {"https-addr", BW_FLAG_STR, &o.https_addr,
     "public HTTPS listener (default 127.0.0.1:8443; 'false' disables it)"},
    {"host-cert", BW_FLAG_LIST, &o.host_certs,
     "CERT.pem:KEY.pem for HTTPS hosts named in its SAN (repeatable; default: dev wildcard)"},
    {"http-header-timeout", BW_FLAG_STR, &o.header_timeout,
     "a public request head must arrive within this, else 408 (default 10s)"},
    {"http-idle-timeout", BW_FLAG_STR, &o.http_idle,
     "close a public HTTP connection silent this long (default 90s)"},
    {"http-body-timeout", BW_FLAG_STR, &o.body_timeout,
     "a public request body must bring 1 KiB (or its end) this often, else 408 (default 30s)"},
    {"max-conns-per-ip", BW_FLAG_STR, &o.per_ip,
     "public connections open at once from one IP address (default 256)"},
    {"max-public-conns", BW_FLAG_STR, &o.max_conns,
     "public connections open at once in all (default: descriptor limit - 128)"},
    {"grace", BW_FLAG_STR, &o.grace, "how long a lost session's addresses stay reserved (60s)"},
    {"log", BW_FLAG_STR, &o.log, "'stdout' (default), 'stderr', 'false' or a file path"},
    {"log-level", BW_FLAG_STR, &o.log_level, "debug, info (default), warn, error, crit"},
    {"log-format", BW_FLAG_STR, &o.log_format, "logfmt (default), json or term"},
    {"help", BW_FLAG_BOOL, &o.help, "show help"},
    {"h", BW_FLAG_BOOL, &o.help, NULL},
    {"version", BW_FLAG_BOOL, &o.version, "print the version"},
};

static uv_signal_t sigint_h, sigterm_h;
static bw_edge_t *edge;

static void on_signal(uv_signal_t *h, int signum)
{
    bw_log(BW_LOG_INFO, "received stop request", "obj", "edge", NULL);
    bw_edge_stop(edge);
    uv_close((uv_handle_t *)&sigint_h, NULL);
    uv_close((uv_handle_t *)&sigterm_h, NULL);
}

static int parse_range(const char *s, int *lo, int *hi)
{
    char a[16], *dash = strchr(s, '-');
    long long l, h;
    if (!dash || (size_t)(dash - s) >= sizeof a)
        return -1;
    memcpy(a, s, (size_t)(dash - s));
    a[dash - s] = '\0';
    if (bw_parse_int(a, 1, 65535, &l) != 0 || bw_parse_int(dash + 1, 1, 65535, &h) != 0 || l > h)
        return -1;
    *lo = (int)l;
    *hi = (int)h;
    return 0;
}

static int parse_timeout(const char *flag, const char *v, uint64_t *ms)
{
    if (!v)
        return 0;
    if (bw_parse_duration_ms(v, ms) != 0 || *ms == 0) {
        fprintf(stderr, "ERROR:  invalid %s '%s' (expected a duration like 10s)\n", flag, v);
        return -1;
    }
    return 0;
}

/* Public connections each hold a descriptor, and a slow client costs
 * nothing to keep open, so the distribution's default soft limit (often
 * 1024) is what lets a few hundred of them lock agents out. Take all the
 * hard limit allows; logged so an operator sees what the edge got. */
static uint64_t raise_nofile(void)
{
    struct rlimit rl;
    char cur[24], was[24];
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    snprintf(was, sizeof was, "%llu", (unsigned long long)rl.rlim_cur);
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) != 0)
            bw_log(BW_LOG_WARN, "cannot raise descriptor limit", "obj", "edge", "nofile", was,
                   NULL);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(cur, sizeof cur, "unlimited");
    else
        snprintf(cur, sizeof cur, "%llu", (unsigned long long)rl.rlim_cur);
    bw_log(BW_LOG_INFO, "descriptor limit", "obj", "edge", "nofile", cur, "was", was, NULL);
    return rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
}

/* Leave descriptors for agents, tunnel listeners, certificates and logs
 * whatever the public side does. */
#define NOFILE_KEEP 128

static int parse_caps(bw_edge_config_t *c, uint64_t nofile)
{
    long long v;
    if (o.per_ip && bw_parse_int(o.per_ip, 1, 1000000, &v) != 0) {
        fprintf(stderr, "ERROR:  invalid --max-conns-per-ip '%s' (expected 1-1000000)\n", o.per_ip);
        return -1;
    }
    c->max_conns_per_ip = o.per_ip ? (unsigned)v : 256;
    if (o.max_conns && bw_parse_int(o.max_conns, 1, 100000000, &v) != 0) {
        fprintf(stderr, "ERROR:  invalid --max-public-conns '%s' (expected 1-100000000)\n",
                o.max_conns);
        return -1;
    }
    if (o.max_conns)
        c->max_public_conns = (unsigned)v;
    else if (nofile > 0)
        c->max_public_conns =
            nofile > 2 * NOFILE_KEEP ? (unsigned)(nofile - NOFILE_KEEP) : NOFILE_KEEP;
    return 0;
}

static int build_config(bw_edge_config_t *c, char *state, size_t statelen)
{
    const char *home = getenv("HOME"), *xdg = getenv("XDG_DATA_HOME");
    memset(c, 0, sizeof *c);
    c->agent_addr = o.agent_addr ? o.agent_addr : "127.0.0.1:4443";
    c->tcp_addr = o.tcp_addr;
    c->domain = o.domain;
    c->tls_cert = o.tls_cert;
    c->tls_key = o.tls_key;
    c->auth_tokens = o.auth_tokens;
    c->auth_timeout_ms = 10000;
    c->idle_ms = 30000;
    c->max_tunnels = 1024;
    c->grace_ms = 60000;
    if (parse_range(o.tcp_ports ? o.tcp_ports : "10000-10999", &c->tcp_port_lo, &c->tcp_port_hi)) {
        fprintf(stderr, "ERROR:  invalid --tcp-ports '%s' (expected LOW-HIGH)\n", o.tcp_ports);
        return -1;
    }
    if (o.grace && bw_parse_duration_ms(o.grace, &c->grace_ms) != 0) {
        fprintf(stderr, "ERROR:  invalid --grace '%s' (expected a duration like 60s)\n", o.grace);
        return -1;
    }
    c->http_addr = o.http_addr ? o.http_addr : "127.0.0.1:8080";
    c->https_addr = o.https_addr ? o.https_addr : "127.0.0.1:8443";
    c->host_certs = o.host_certs.items;
    c->n_host_certs = (size_t)o.host_certs.n;
    c->http_header_timeout_ms = 10000;
    c->http_idle_ms = 90000;
    c->http_body_timeout_ms = 30000;
    if (parse_timeout("--http-header-timeout", o.header_timeout, &c->http_header_timeout_ms) ||
        parse_timeout("--http-idle-timeout", o.http_idle, &c->http_idle_ms) ||
        parse_timeout("--http-body-timeout", o.body_timeout, &c->http_body_timeout_ms))
        return -1;
    if (o.state_dir)
        snprintf(state, statelen, "%s", o.state_dir);
    else if (xdg && *xdg)
        snprintf(state, statelen, "%s/burrowd", xdg);
    else
        snprintf(state, statelen, "%s/.local/share/burrowd", home ? home : ".");
    c->state_dir = state;
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    const char *pos[4];
    int npos;
    char err[1024], state[1024];
    bw_edge_config_t cfg;
    signal(SIGPIPE, SIG_IGN);
    if (bw_cli_parse(argc, argv, flags, BW_ARRAY_SIZE(flags), pos, &npos, 4, err, sizeof err) < 0) {
        fprintf(stderr, "ERROR:  %s\n", err);
        return 2;
    }
    if (o.version) {
        printf("burrowd version %s\n", BW_VERSION);
        return 0;
    }
    if (o.help || npos > 0) {
        printf("USAGE:\n   burrowd [flags]\n\nFLAGS:\n");
        bw_cli_print_flags(stdout, flags, BW_ARRAY_SIZE(flags));
        return o.help ? 0 : 2;
    }
    int level = bw_log_parse_level(o.log_level ? o.log_level : "info");
    int format = bw_log_parse_format(o.log_format ? o.log_format : "logfmt");
    if (level < 0 || format < 0 || bw_log_open(o.log ? o.log : "stdout", format, level) != 0) {
        fprintf(stderr, "ERROR:  invalid --log, --log-level or --log-format\n");
        return 1;
    }
    /* Every invalid or refused setting is reported before anything is
     * created or listens. */
    if (build_config(&cfg, state, sizeof state) != 0)
        return 1;
    if (parse_caps(&cfg, raise_nofile()) != 0)
        return 1;
    if (bw_edge_config_check(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "ERROR:  %s\n", err);
        return 1;
    }
    uv_loop_t *loop = uv_default_loop();
    if (!loop) { /* libuv could not allocate the loop's internals */
        fprintf(stderr, "ERROR:  out of memory\n");
        return 1;
    }
    /* A stdout whose reader stops must not stop the edge: records queue
     * (bounded, counted when dropped) and drain from the loop once the pipe
     * takes more. */
    bw_log_attach_loop(loop);
    bw_io_t *io = bw_io_new(loop);
    edge = io ? bw_edge_new(io, &cfg, err, sizeof err) : NULL;
    if (!edge) {
        if (!io)
            snprintf(err, sizeof err, "out of memory");
        bw_log(BW_LOG_CRIT, "edge failed to start", "obj", "edge", "err", err, NULL);
        fprintf(stderr, "ERROR:  %s\n", err);
        bw_io_free(io);
        bw_log_detach_loop();
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
        return 1;
    }
    uv_signal_init(loop, &sigint_h);
    uv_signal_init(loop, &sigterm_h);
    uv_signal_start(&sigint_h, on_signal, SIGINT);
    uv_signal_start(&sigterm_h, on_signal, SIGTERM);
    bw_log(BW_LOG_INFO, "edge ready", "obj", "edge", NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    bw_io_free(io);
    bw_log_detach_loop();
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    bw_edge_free(edge);
    uv_loop_close(loop);
    bw_log_close();
    return 0;
}
