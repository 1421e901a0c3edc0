/* Config files: both formats, merging, every validation, add-authtoken, addr
 * normalisation, and the data-driven cases in tests/data/config/.
 *
 * Over 600 lines: one test program per module, as tests/unit/meson.build
 * builds them; its cases share the fixtures above them. */
#include <dirent.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <burrow/error.h>

#include "config.h"
#include "log.h"

#ifndef BW_TEST_DATA_DIR
#error "BW_TEST_DATA_DIR must name tests/data"
#endif

/* ----- helpers --------------------------------------------------------------- */

/* Linked with --wrap=strdup,--wrap=realloc (tests/unit/meson.build): strdup
 * of `g_strdup_fails` returns NULL, and with `g_realloc_moves` every realloc
 * moves the block, as a growing array may. */
char *__real_strdup(const char *s);
char *__wrap_strdup(const char *s);
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static const char *g_strdup_fails;
static int g_realloc_moves;

char *__wrap_strdup(const char *s)
{
    if (g_strdup_fails && strcmp(s, g_strdup_fails) == 0)
        return NULL;
    return __real_strdup(s);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (!g_realloc_moves || !p || !n)
        return __real_realloc(p, n);
    void *q = malloc(n);
    if (!q)
        return NULL;
    size_t old = malloc_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    free(p);
    return q;
}

static int parse(bw_config_t *cfg, const char *yaml, char *err, size_t errlen)
{
    return bw_config_parse(cfg, yaml, strlen(yaml), "mem.yml", err, errlen);
}

/* Parse and expect failure with `want` in the message. */
static void expect_error(const char *yaml, const char *want)
{
    bw_config_t cfg;
    char err[1024] = "";
    bw_config_init(&cfg);
    int rc = parse(&cfg, yaml, err, sizeof err);
    if (rc == 0 || !strstr(err, want))
        fail_msg("yaml:\n%s\nwanted error containing \"%s\", got rc=%d \"%s\"", yaml, want, rc,
                 err);
    bw_config_free(&cfg);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = calloc(1, (size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        if (len)
            *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

static void write_all(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static char g_tmp[256];

static int make_tmpdir(void **state)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/bw_test_config.XXXXXX");
    assert_non_null(mkdtemp(g_tmp));
    return 0;
}

static int remove_tmpdir(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void tmp_path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", g_tmp, name);
}

/* ----- formats and settings ---------------------------------------------------- */

static void classic_settings(void **state)
{
    bw_config_t cfg;
    char err[512] = "";
    bw_config_init(&cfg);
    assert_int_equal(parse(&cfg,
                           "authtoken: tok\n"
                           "server_addr: edge.example.com:4443\n"
                           "root_cas: host\n"
                           "region: eu\n"
                           "web_addr: 0.0.0.0:4041\n"
                           "inspect_db_size: 1000\n"
                           "log: stderr\nlog_level: debug\nlog_format: json\n"
                           "console_ui: false\n"
                           "metadata: '{\"a\": 1}'\n"
                           "heartbeat_interval: 1m30s\nheartbeat_tolerance: 15s\n"
                           "connect_timeout: 250ms\n"
                           "update: true\nupdate_channel: beta\nupdate_check: false\n"
                           "dns_resolver_ips: [1.1.1.1]\n",
                           err, sizeof err),
                     0);
    assert_int_equal(cfg.version, 1);
    assert_string_equal(cfg.authtoken, "tok");
    assert_string_equal(cfg.server_addr, "edge.example.com:4443");
    assert_string_equal(cfg.root_cas, "host");
    assert_string_equal(cfg.region, "eu");
    assert_string_equal(cfg.web_addr, "0.0.0.0:4041");
    assert_false(cfg.web_disabled);
    assert_int_equal(cfg.inspect_db_size, 1000);
    assert_string_equal(cfg.log, "stderr");
    assert_string_equal(cfg.log_level, "debug");
    assert_string_equal(cfg.log_format, "json");
    assert_int_equal(cfg.console_ui, BW_CONSOLE_UI_FALSE);
    assert_string_equal(cfg.metadata, "{\"a\": 1}");
    assert_int_equal(cfg.heartbeat_interval_ms, 90000);
    assert_int_equal(cfg.heartbeat_tolerance_ms, 15000);
    assert_int_equal(cfg.connect_timeout_ms, 250);
    assert_int_equal(cfg.n_files, 1);
    assert_string_equal(cfg.files[0], "mem.yml");
    bw_config_free(&cfg);
}

static void v2_format_settings(void **state)
{
    bw_config_t cfg;
    char err[512] = "";
    bw_config_init(&cfg);
    assert_int_equal(parse(&cfg,
                           "version: \"2\"\n"
                           "api_key: k\nproxy_url: socks5://127.0.0.1:9050\n"
                           "web_allow_hosts: [a.example, b.example]\n"
                           "console_ui: iftty\n"
                           "web_addr: false\ninspect_db_size: -1\n",
                           err, sizeof err),
                     0);
    assert_int_equal(cfg.version, 2);
    assert_string_equal(cfg.api_key, "k");
    assert_string_equal(cfg.proxy_url, "socks5://127.0.0.1:9050");
    assert_int_equal(cfg.n_web_allow_hosts, 2);
    assert_string_equal(cfg.web_allow_hosts[1], "b.example");
    assert_int_equal(cfg.console_ui, BW_CONSOLE_UI_IFTTY);
    assert_true(cfg.web_disabled);
    assert_null(cfg.web_addr);
    assert_int_equal(cfg.inspect_db_size, -1);
    bw_config_free(&cfg);

    /* An unquoted 2 is the same version; defaults stay unset. */
    bw_config_init(&cfg);
    assert_int_equal(parse(&cfg, "version: 2\nconsole_ui: true\n", err, sizeof err), 0);
    assert_int_equal(cfg.version, 2);
    assert_int_equal(cfg.console_ui, BW_CONSOLE_UI_TRUE);
    assert_int_equal(cfg.inspect_db_size, 0);
    assert_null(cfg.authtoken);
    bw_config_free(&cfg);
}

static void tunnel_definitions_as_json(void **state)
{
    bw_config_t cfg;
    char err[512] = "";
    const bw_config_tunnel_t *t;
    bw_config_init(&cfg);
    assert_int_equal(parse(&cfg,
                           "tunnels:\n"
                           "  web:\n"
                           "    proto: http\n"
                           "    addr: 8080\n"
                           "    inspect: false\n"
                           "    subdomain: \"123\"\n"
                           "    host_header: 0755\n"
                           "    auth:\n"
                           "    schemes: [http, https]\n"
                           "    ip_restriction: {allow_cidrs: [10.0.0.0/8]}\n"
                           "  ssh: {proto: tcp, addr: 'localhost:22'}\n",
                           err, sizeof err),
                     0);
    assert_int_equal(cfg.n_tunnels, 2);
    t = &cfg.tunnels[0];
    assert_string_equal(t->name, "web");
    assert_string_equal(t->file, "mem.yml");
    assert_int_equal(t->line, 2);
    assert_string_equal(json_string_value(json_object_get(t->def, "proto")), "http");
    assert_int_equal(json_integer_value(json_object_get(t->def, "addr")), 8080);
    assert_true(json_is_false(json_object_get(t->def, "inspect")));
    assert_string_equal(json_string_value(json_object_get(t->def, "subdomain")), "123");
    assert_string_equal(json_string_value(json_object_get(t->def, "host_header")), "0755");
    assert_true(json_is_null(json_object_get(t->def, "auth")));
    assert_int_equal(json_array_size(json_object_get(t->def, "schemes")), 2);
    assert_true(
        json_is_array(json_object_get(json_object_get(t->def, "ip_restriction"), "allow_cidrs")));
    t = bw_config_find_tunnel(&cfg, "ssh");
    assert_non_null(t);
    assert_string_equal(json_string_value(json_object_get(t->def, "addr")), "localhost:22");
    assert_null(bw_config_find_tunnel(&cfg, "nope"));
    bw_config_free(&cfg);
}

static void merge_order(void **state)
{
    char a[300], b[300], err[512] = "";
    const char *paths[2] = {a, b};
    bw_config_t cfg;

    tmp_path(a, sizeof a, "a.yml");
    tmp_path(b, sizeof b, "b.yml");
    write_all(a, "authtoken: first\nregion: us\n"
                 "tunnels:\n"
                 "  one: {proto: http, addr: 1}\n"
                 "  two: {proto: http, addr: 2}\n"
                 "  three: {proto: tcp, addr: 3}\n");
    write_all(b, "version: \"2\"\nauthtoken: second\n"
                 "tunnels:\n"
                 "  four: {proto: tcp, addr: 4}\n"
                 "  two: {proto: tcp, addr: 22}\n");
    bw_config_init(&cfg);
    assert_int_equal(bw_config_load(&cfg, paths, 2, err, sizeof err), 0);
    assert_string_equal(cfg.authtoken, "second"); /* later wins */
    assert_string_equal(cfg.region, "us");        /* kept when not overridden */
    assert_int_equal(cfg.version, 2);
    assert_int_equal(cfg.n_tunnels, 4);
    assert_string_equal(cfg.tunnels[0].name, "one");
    assert_string_equal(cfg.tunnels[1].name, "two");
    assert_string_equal(cfg.tunnels[2].name, "three");
    assert_string_equal(cfg.tunnels[3].name, "four");
    /* replaced whole, in place, and attributed to the later file */
    assert_string_equal(json_string_value(json_object_get(cfg.tunnels[1].def, "proto")), "tcp");
    assert_int_equal(json_integer_value(json_object_get(cfg.tunnels[1].def, "addr")), 22);
    assert_string_equal(cfg.tunnels[1].file, b);
    assert_int_equal(cfg.tunnels[1].line, 5);
    assert_int_equal(cfg.n_files, 2);
    assert_string_equal(cfg.files[1], b);
    bw_config_free(&cfg);
}

static void missing_files(void **state)
{
    char p[300], err[512] = "";
    const char *paths[1] = {p};
    bw_config_t cfg;

    tmp_path(p, sizeof p, "does-not-exist.yml");
    bw_config_init(&cfg);
    assert_int_equal(bw_config_load(&cfg, paths, 1, err, sizeof err), BW_ENOENT);
    assert_non_null(strstr(err, p));
    assert_non_null(strstr(err, "No such file"));

    /* A missing default file is not an error, just reported. */
    char home[300], path[400];
    tmp_path(home, sizeof home, "home");
    setenv("HOME", home, 1);
    unsetenv("XDG_CONFIG_HOME");
    assert_int_equal(bw_config_default_path(path, sizeof path), 0);
    assert_true(strstr(path, "/home/.config/burrow/burrow.yml") != NULL);
    assert_int_equal(bw_config_load_default(&cfg, path, sizeof path, err, sizeof err), BW_ENOENT);
    setenv("XDG_CONFIG_HOME", g_tmp, 1);
    assert_int_equal(bw_config_default_path(path, sizeof path), 0);
    assert_true(strstr(path, "/burrow/burrow.yml") == path + strlen(g_tmp));
    setenv("XDG_CONFIG_HOME", "relative/dir", 1); /* ignored, per the XDG spec */
    assert_int_equal(bw_config_default_path(path, sizeof path), 0);
    assert_non_null(strstr(path, "/home/.config/"));
    unsetenv("XDG_CONFIG_HOME");
    bw_config_free(&cfg);
}

static void default_file_loads(void **state)
{
    char dir[300], path[400], err[512] = "";
    bw_config_t cfg;

    tmp_path(path, sizeof path, "xdg/burrow/burrow.yml");
    assert_int_equal(bw_config_add_authtoken(path, "t0k", err, sizeof err), 0);
    tmp_path(dir, sizeof dir, "xdg");
    setenv("XDG_CONFIG_HOME", dir, 1);
    bw_config_init(&cfg);
    assert_int_equal(bw_config_load_default(&cfg, path, sizeof path, err, sizeof err), 0);
    assert_string_equal(cfg.authtoken, "t0k");
    assert_int_equal(cfg.version, 2);
    unsetenv("XDG_CONFIG_HOME");
    bw_config_free(&cfg);
}

/* ----- validation ---------------------------------------------------------- */

static void tunnel_validation(void **state)
{
    expect_error("tunnels:\n  w: {addr: 80}\n",
                 "mem.yml:2:3: Tunnel w does not specify a protocol");
    expect_error("tunnels:\n  w: {proto: http}\n",
                 "mem.yml:2:3: Tunnel w must specify 'addr' to tunnel to");
    expect_error("tunnels:\n  w: {proto: http, addr: ~}\n", "must specify 'addr'");
    expect_error("tunnels:\n  w: {proto: http, addr: [1]}\n", "'addr' must be a port");
    expect_error("tunnels:\n  w: {proto: http, addr: 80, subdomain: a, hostname: a.b}\n",
                 "mem.yml:2:44: Tunnel w must not specify both hostname and subdomain.");
    expect_error("tunnels:\n  w: {proto: tls, addr: 80, subdomain: a, hostname: a.b}\n",
                 "must not specify both hostname and subdomain.");
    expect_error("tunnels:\n  w: 80\n", "mem.yml:2:6: tunnel \"w\" must be a mapping");
    expect_error("tunnels:\n  w:\n", "tunnel \"w\" must be a mapping of options, not empty");
    expect_error("tunnels:\n  ? [a]\n  : {proto: http, addr: 1}\n",
                 "tunnel names must be non-empty strings");
    expect_error("tunnels:\n  w: {proto: http, addr: 1, {a: b}: c}\n",
                 "mapping keys must be strings");
    expect_error("tunnels: yes\n", "'tunnels' must be a mapping");
}

static void tunnel_checks_are_proto_aware(void **state)
{
    bw_config_t cfg;
    char err[512] = "";
    bw_config_init(&cfg);
    /* bind_tls means nothing to tcp; crt alone means nothing to http; a
     * plugin's own proto gets only the common checks. */
    assert_int_equal(parse(&cfg,
                           "tunnels:\n"
                           "  t: {proto: tcp, addr: 22, bind_tls: whatever}\n"
                           "  h: {proto: http, addr: 80, crt: x}\n"
                           "  p: {proto: postgres, addr: 5432, anything: 1}\n"
                           "  l: {labels: [edge=1], addr: 80}\n",
                           err, sizeof err),
                     0);
    assert_int_equal(cfg.n_tunnels, 4);
    bw_config_free(&cfg);
}

/* The config layer knows no plugin's keys: it records which files are
 * strict (version "2") and where each key stands, for the plugin check. */
static void tunnels_record_strictness_and_positions(void **state)
{
    bw_config_t cfg;
    char err[512] = "";
    int line = 0, col = 0;

    bw_config_init(&cfg);
    assert_int_equal(
        parse(&cfg, "tunnels:\n  web:\n    proto: http\n    addr: 80\n", err, sizeof err), 0);
    assert_false(cfg.tunnels[0].strict);
    bw_config_free(&cfg);
    bw_config_init(&cfg);
    assert_int_equal(parse(&cfg,
                           "version: \"2\"\ntunnels:\n  web:\n    proto: http\n    addr: 80\n"
                           "    options: {a: b}\n",
                           err, sizeof err),
                     0);
    const bw_config_tunnel_t *t = bw_config_find_tunnel(&cfg, "web");
    assert_true(t->strict);
    assert_int_equal(bw_config_tunnel_mark(t, "options", 0, &line, &col), 0);
    assert_int_equal(line, 6);
    assert_int_equal(col, 5);
    assert_int_equal(bw_config_tunnel_mark(t, "options", 1, &line, &col), 0);
    assert_int_equal(line, 6);
    assert_int_equal(col, 14);
    assert_int_equal(bw_config_tunnel_mark(t, "hostname", 0, &line, &col), BW_ENOENT);
    bw_config_free(&cfg);
}

static void settings_validation(void **state)
{
    expect_error("inspect_db_size: -2\n", "inspect db size must be a positive integer, 0 for "
                                          "default, or -1 to disable");
    expect_error("inspect_db_size: 1.5\n", "inspect db size must be a positive integer");
    expect_error("inspect_db_size: 99999999999999999999\n", "inspect db size must be");
    expect_error("heartbeat_tolerance: soon\n",
                 "mem.yml:1:22: 'heartbeat_tolerance' is not a valid duration: 'soon'");
    expect_error("connect_timeout: 1e400s\n", "'connect_timeout' is not a valid duration");
    expect_error("connect_timeout: [1s]\n", "not a valid duration: 'a sequence'");
    expect_error("log_level: verbose\n", "invalid 'log_level' 'verbose'");
    expect_error("log_format: xml\n", "invalid 'log_format' 'xml'");
    expect_error("console_ui: maybe\n", "'console_ui' must be iftty, true or false");
    expect_error("web_addr: nowhere\n", "'web_addr' must be host:port or false");
    expect_error("web_addr: true\n", "'web_addr' must be host:port or false");
    expect_error("server_addr: [a]\n", "mem.yml:1:14: 'server_addr' must be a string");
    expect_error("web_allow_hosts: [[a]]\n", "'web_allow_hosts' must be a list");
    expect_error("region: us\nregion: eu\n", "'region' is defined twice (first at line 1)");
    expect_error("? [a]\n: b\n", "config keys must be strings");
    expect_error("version: 3\n", "mem.yml:1:10: config version 3 (agent:/endpoints:) is not "
                                 "supported yet");
    expect_error("version: [2]\n", "unsupported config version 'a sequence'");
}

static void metadata_limit(void **state)
{
    char *yaml = malloc(5000);
    assert_non_null(yaml);
    memcpy(yaml, "metadata: ", 10);
    memset(yaml + 10, 'm', 4097);
    memcpy(yaml + 10 + 4097, "\n", 2);
    expect_error(yaml, "'metadata' is longer than 4096 characters");
    free(yaml);
}

static void yaml_errors(void **state)
{
    expect_error("a: b\n  c: d\n", "mem.yml: YAML parsing error: mapping values are not "
                                   "allowed in this context at line 2 column 4");
    expect_error("a: 'unterminated\n", "YAML parsing error: found unexpected end of stream");
    expect_error("a:\n\tb: 1\n", "mem.yml:2:1: config contains tab characters, YAML must use "
                                 "spaces for indentation");
    expect_error("a:\n  \t b: 1\n", "mem.yml:2:3: config contains tab characters");
    expect_error("x: *nope\n", "YAML aliases (*nope) are not supported");
    expect_error("a: \"\\0\"\n", "NUL characters are not allowed");
}

static void limits(void **state)
{
    bw_config_t cfg;
    char err[512] = "";
    size_t big = BW_CONFIG_MAX_FILE_SIZE + 1;
    char *buf = malloc(big);
    assert_non_null(buf);

    assert_non_null(buf);
    memset(buf, '#', big);
    bw_config_init(&cfg);
    assert_int_equal(bw_config_parse(&cfg, buf, big, "big.yml", err, sizeof err), BW_EMSGSIZE);
    assert_non_null(strstr(err, "big.yml: config file is larger than 1048576 bytes"));

    /* 32 levels are fine, 33 are not. */
    char deep[200];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "x: ");
    for (int i = 0; i < 31; i++)
        deep[n++] = '[';
    for (int i = 0; i < 31; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    assert_int_equal(parse(&cfg, deep, err, sizeof err), 0);
    expect_error("x: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
                 "mem.yml:1:35: config is nested deeper than 32 levels");

    /* Too many nodes. */
    size_t count = BW_CONFIG_MAX_NODES + 10;
    char *many = malloc(4 + 2 * count + 2);
    assert_non_null(many);
    memcpy(many, "x: [", 4);
    n = 4;
    for (size_t i = 0; i < count; i++) {
        many[n++] = '1';
        many[n++] = ',';
    }
    many[n - 1] = ']';
    many[n] = '\0';
    expect_error(many, "config has more than 100000 YAML nodes");
    free(many);
    free(buf);
    bw_config_free(&cfg);
}

static void failed_parse_keeps_config_usable(void **state)
{
    bw_config_t cfg;
    char err[512] = "";
    bw_config_init(&cfg);
    assert_int_equal(
        parse(&cfg, "authtoken: a\ntunnels:\n  w: {proto: http, addr: 1}\n", err, sizeof err), 0);
    assert_int_equal(parse(&cfg, "tunnels:\n  v: {proto: http}\n", err, sizeof err), BW_EINVAL);
    assert_int_equal(cfg.n_tunnels, 1);
    assert_int_equal(cfg.n_files, 1);
    bw_config_free(&cfg);
    bw_config_free(&cfg); /* idempotent */
}

/* The tunnels array grew (and moved) but the new name could not be copied:
 * the config must own the moved array, not free the old one again. */
static void tunnel_name_oom_keeps_array(void **state)
{
    bw_config_t cfg;
    char err[512] = "";
    bw_config_init(&cfg);
    g_realloc_moves = 1;
    g_strdup_fails = "second";
    int rc =
        parse(&cfg, "tunnels:\n  first: {proto: tcp, addr: 1}\n  second: {proto: tcp, addr: 2}\n",
              err, sizeof err);
    g_strdup_fails = NULL;
    g_realloc_moves = 0;
    assert_int_equal(rc, BW_ENOMEM);
    assert_int_equal(cfg.n_tunnels, 1);
    assert_string_equal(cfg.tunnels[0].name, "first");
    bw_config_free(&cfg);
}

/* ----- add-authtoken ---------------------------------------------------------- */

static void authtoken_creates_file(void **state)
{
    char p[300], dir[300], err[512] = "";
    struct stat st;
    size_t len;

    tmp_path(p, sizeof p, "new/sub/burrow.yml");
    assert_int_equal(bw_config_add_authtoken(p, "2AbC_dEf-123", err, sizeof err), 0);
    char *text = read_all(p, &len);
    assert_non_null(text);
    assert_string_equal(text, "version: \"2\"\nauthtoken: 2AbC_dEf-123\n");
    free(text);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    tmp_path(dir, sizeof dir, "new/sub");
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    /* And it loads. */
    bw_config_t cfg;
    const char *paths[1] = {p};
    bw_config_init(&cfg);
    assert_int_equal(bw_config_load(&cfg, paths, 1, err, sizeof err), 0);
    assert_string_equal(cfg.authtoken, "2AbC_dEf-123");
    bw_config_free(&cfg);
}

static void check_token_edit(const char *before, const char *token, const char *after)
{
    char p[300], err[512] = "";
    tmp_path(p, sizeof p, "edit.yml");
    write_all(p, before);
    chmod(p, 0640);
    if (bw_config_add_authtoken(p, token, err, sizeof err) != 0)
        fail_msg("add_authtoken failed: %s", err);
    char *text = read_all(p, NULL);
    assert_non_null(text);
    if (strcmp(text, after) != 0)
        fail_msg("before:\n%s\nwanted:\n%s\ngot:\n%s", before, after, text);
    free(text);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640); /* mode kept */
}

static void authtoken_edits_preserve_file(void **state)
{
    /* replaced in place, comments and layout kept byte for byte */
    check_token_edit("# my config\nversion: \"2\"\nauthtoken: old # keep me\n\n"
                     "tunnels:\n  # the web one\n  web: {proto: http, addr: 80}\n",
                     "NEW",
                     "# my config\nversion: \"2\"\nauthtoken: NEW # keep me\n\n"
                     "tunnels:\n  # the web one\n  web: {proto: http, addr: 80}\n");
    /* appended when absent, adding the missing newline */
    check_token_edit("# only a comment\nregion: us", "tok",
                     "# only a comment\nregion: us\nauthtoken: tok\n");
    check_token_edit("", "tok", "authtoken: tok\n");
    /* quoted old values, CRLF files */
    check_token_edit("authtoken: \"a # b\"   # c\r\nregion: us\r\n", "x",
                     "authtoken: x   # c\r\nregion: us\r\n");
    check_token_edit("authtoken: 'it''s' \nlog: stdout\n", "y", "authtoken: y \nlog: stdout\n");
    /* block and continued values lose their continuation lines only */
    check_token_edit("authtoken: >\n  abc\n  def\n\n# after\nlog: false\n", "z",
                     "authtoken: z\n\n# after\nlog: false\n");
    check_token_edit("authtoken: abc\n  def\n  # note\nlog: false\n", "z",
                     "authtoken: z\n  # note\nlog: false\n");
    /* an indented authtoken belongs to something else */
    check_token_edit("tunnels:\n  w:\n    authtoken: nope\n", "t",
                     "tunnels:\n  w:\n    authtoken: nope\nauthtoken: t\n");
    /* tokens that YAML would read as something else are quoted */
    check_token_edit("", "true", "authtoken: \"true\"\n");
    check_token_edit("", "12345", "authtoken: \"12345\"\n");
    check_token_edit("", "a\"b\\c: d", "authtoken: \"a\\\"b\\\\c: d\"\n");
    check_token_edit("", "-dash", "authtoken: \"-dash\"\n");
}

static void authtoken_refuses_unsafe_edits(void **state)
{
    char p[300], err[512] = "";
    tmp_path(p, sizeof p, "flow.yml");
    write_all(p, "{authtoken: old, region: us}\n");
    assert_int_equal(bw_config_add_authtoken(p, "new", err, sizeof err), BW_EINVAL);
    assert_non_null(strstr(err, "edit it by hand"));
    char *text = read_all(p, NULL);
    assert_non_null(text);
    assert_string_equal(text, "{authtoken: old, region: us}\n"); /* untouched */
    free(text);
    assert_int_equal(bw_config_add_authtoken(p, "", err, sizeof err), BW_EINVAL);
    assert_int_equal(bw_config_add_authtoken(p, "a\nb", err, sizeof err), BW_EINVAL);
    assert_non_null(strstr(err, "control characters"));
}

static void authtoken_follows_symlink(void **state)
{
    char real[300], link[300], err[512] = "";
    struct stat st;
    tmp_path(real, sizeof real, "real.yml");
    tmp_path(link, sizeof link, "link.yml");
    write_all(real, "region: us\n");
    assert_int_equal(symlink(real, link), 0);
    assert_int_equal(bw_config_add_authtoken(link, "t", err, sizeof err), 0);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    char *text = read_all(real, NULL);
    assert_non_null(text);
    assert_string_equal(text, "region: us\nauthtoken: t\n");
    free(text);
}

/* ----- data-driven cases ----------------------------------------------------------- */

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static int run_case(const char *dir, int want_ok)
{
    char input[1024], expected_path[1024], err[1024] = "";
    const char *paths[1] = {input};
    bw_config_t cfg;
    int rc, failed = 0;

    snprintf(input, sizeof input, "%s/input.yaml", dir);
    snprintf(expected_path, sizeof expected_path, "%s/expected", dir);
    bw_config_init(&cfg);
    rc = bw_config_load(&cfg, paths, 1, err, sizeof err);
    if (want_ok && rc != 0) {
        print_error("valid case %s failed: %s\n", dir, err);
        failed = 1;
    } else if (!want_ok) {
        char *expected = read_all(expected_path, NULL);
        if (expected)
            chomp(expected);
        if (!expected || rc == 0 || !strstr(err, expected)) {
            print_error("invalid case %s: rc=%d\n  wanted: %s\n  got:    %s\n", dir, rc,
                        expected ? expected : "(no expected file)", err);
            failed = 1;
        }
        free(expected);
    }
    bw_config_free(&cfg);
    return failed;
}

static int run_cases(const char *kind, int want_ok, int *count)
{
    char root[400], dir[800];
    struct dirent *e;
    int failed = 0;
    DIR *d;

    snprintf(root, sizeof root, "%s/config/%s", BW_TEST_DATA_DIR, kind);
    d = opendir(root);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        failed += run_case(dir, want_ok);
        ++*count;
    }
    closedir(d);
    return failed;
}

static void data_cases(void **state)
{
    int n_invalid = 0, n_valid = 0;
    int failed = run_cases("invalid", 0, &n_invalid) + run_cases("valid", 1, &n_valid);
    assert_true(n_invalid >= 15);
    assert_true(n_valid >= 1);
    assert_int_equal(failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(classic_settings),
        cmocka_unit_test(tunnel_name_oom_keeps_array),
        cmocka_unit_test(v2_format_settings),
        cmocka_unit_test(tunnel_definitions_as_json),
        cmocka_unit_test(merge_order),
        cmocka_unit_test(missing_files),
        cmocka_unit_test(default_file_loads),
        cmocka_unit_test(tunnel_validation),
        cmocka_unit_test(tunnel_checks_are_proto_aware),
        cmocka_unit_test(tunnels_record_strictness_and_positions),
        cmocka_unit_test(settings_validation),
        cmocka_unit_test(metadata_limit),
        cmocka_unit_test(yaml_errors),
        cmocka_unit_test(limits),
        cmocka_unit_test(failed_parse_keeps_config_usable),
        cmocka_unit_test(authtoken_creates_file),
        cmocka_unit_test(authtoken_edits_preserve_file),
        cmocka_unit_test(authtoken_refuses_unsafe_edits),
        cmocka_unit_test(authtoken_follows_symlink),
        cmocka_unit_test(data_cases),
    };
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_INFO); /* quiet "unknown key" lines */
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
