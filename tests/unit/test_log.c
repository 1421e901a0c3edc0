/* Log record formats: ngrok's logfmt (log15), json and term. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fail_json_string.h"
#include "log.h"

/* 2020-10-09T05:36:59Z, shown in UTC so the expectations are fixed. */
#define T_SEC 1602221819LL

static size_t fmt(char *buf, size_t len, bw_log_format_t f, bw_log_level_t l, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    size_t n = bw_log_format_record(buf, len, f, l, T_SEC, 824277919L, msg, ap);
    va_end(ap);
    return n;
}

static void logfmt_matches_ngrok(void **state)
{
    char buf[512];
    fmt(buf, sizeof buf, BW_LOGFMT_LOGFMT, BW_LOG_INFO, "starting web service", "obj", "web",
        "addr", "127.0.0.1:4040", NULL);
    assert_string_equal(buf, "t=2020-10-09T05:36:59+0000 lvl=info msg=\"starting web service\" "
                             "obj=web addr=127.0.0.1:4040");
}

static void logfmt_quotes_and_escapes(void **state)
{
    char buf[512];
    fmt(buf, sizeof buf, BW_LOGFMT_LOGFMT, BW_LOG_ERROR, "x", "name", "command_line (http)", "q",
        "say \"hi\"\nnow", "empty", "", "eq", "a=b", "nil", NULL, NULL);
    assert_string_equal(buf, "t=2020-10-09T05:36:59+0000 lvl=eror msg=x name=\"command_line "
                             "(http)\" q=\"say \\\"hi\\\"\\nnow\" empty=\"\" eq=\"a=b\" nil=nil");
}

static void level_names_are_log15s(void **state)
{
    char buf[256];
    const char *want[] = {"crit", "eror", "warn", "info", "dbug"};
    for (int l = BW_LOG_CRIT; l <= BW_LOG_DEBUG; l++) {
        fmt(buf, sizeof buf, BW_LOGFMT_LOGFMT, (bw_log_level_t)l, "m", NULL);
        char expect[64];
        snprintf(expect, sizeof expect, "lvl=%s ", want[l]);
        assert_non_null(strstr(buf, expect));
    }
    assert_int_equal(bw_log_parse_level("debug"), BW_LOG_DEBUG);
    assert_int_equal(bw_log_parse_level("error"), BW_LOG_ERROR);
    assert_int_equal(bw_log_parse_level("eror"), BW_LOG_ERROR);
    assert_int_equal(bw_log_parse_level("loud"), -1);
    assert_int_equal(bw_log_parse_format("json"), BW_LOGFMT_JSON);
    assert_int_equal(bw_log_parse_format("xml"), -1);
}

static void json_sorts_keys_and_escapes_html(void **state)
{
    char buf[512];
    fmt(buf, sizeof buf, BW_LOGFMT_JSON, BW_LOG_INFO, "starting web service", "obj", "web", "addr",
        "0.0.0.0:4040", "err", "<nil>", NULL);
    assert_string_equal(buf, "{\"addr\":\"0.0.0.0:4040\",\"err\":\"\\u003cnil\\u003e\","
                             "\"lvl\":\"info\",\"msg\":\"starting web service\",\"obj\":\"web\","
                             "\"t\":\"2020-10-09T05:36:59.824277919Z\"}");
}

static void term_pads_message(void **state)
{
    char buf[512];
    fmt(buf, sizeof buf, BW_LOGFMT_TERM, BW_LOG_INFO, "no configuration paths supplied", NULL);
    assert_string_equal(buf, "INFO[10-09|05:36:59] no configuration paths supplied         ");
}

static void truncates_without_overflow(void **state)
{
    char buf[24];
    size_t n = fmt(buf, sizeof buf, BW_LOGFMT_LOGFMT, BW_LOG_INFO, "a long message here", NULL);
    assert_int_equal(n, sizeof buf - 1);
    assert_int_equal(strlen(buf), sizeof buf - 1);
}

/* Log to a new file named from the template `path` ("...XXXXXX"). */
static void open_temp_log(char *path, bw_log_format_t format)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(bw_log_open(path, format, BW_LOG_INFO), 0);
}

static void writes_to_file_target(void **state)
{
    char path[] = "/tmp/bwlogXXXXXX";
    open_temp_log(path, BW_LOGFMT_LOGFMT);
    bw_log(BW_LOG_INFO, "hello", "k", "v", NULL);
    bw_log(BW_LOG_DEBUG, "hidden", NULL);
    bw_log_close();
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256] = "";
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "msg=hello k=v\n"));
    assert_null(fgets(line, sizeof line, f)); /* the debug record was filtered */
    fclose(f);
    unlink(path);
    assert_true(bw_log_open("/nonexistent-dir/x.log", BW_LOGFMT_LOGFMT, BW_LOG_INFO) < 0);
}

/* A json record that cannot be built is dropped and counted, never written
 * with its fields missing ("{}" before), and the gap is reported before the
 * next record, on a blocking target too. */
static void json_without_memory_drops_and_counts(void **state)
{
    char buf[512], path[] = "/tmp/bwlogXXXXXX";
    fail_json_string = 1;
    size_t n = fmt(buf, sizeof buf, BW_LOGFMT_JSON, BW_LOG_INFO, "lost", "k", "v", NULL);
    fail_json_string = 0;
    assert_int_equal(n, 0);

    open_temp_log(path, BW_LOGFMT_JSON);
    fail_json_string = 1;
    bw_log(BW_LOG_INFO, "lost", "k", "v", NULL);
    fail_json_string = 0;
    bw_log(BW_LOG_INFO, "after", NULL);
    bw_log_close();
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512] = "";
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "\"msg\":\"dropped 1 log lines\""));
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "\"msg\":\"after\""));
    assert_null(fgets(line, sizeof line, f));
    fclose(f);
    unlink(path);
}

/* Read what the FIFO holds now onto the end of *all (grown as needed). */
static void drain(int rd, char **all, size_t *len)
{
    char tmp[65536];
    ssize_t n;
    while ((n = read(rd, tmp, sizeof tmp)) > 0) {
        *all = realloc(*all, *len + (size_t)n + 1);
        assert_non_null(*all);
        memcpy(*all + *len, tmp, (size_t)n);
        *len += (size_t)n;
        (*all)[*len] = '\0';
    }
}

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void full_pipe_drops_and_counts(void **state)
{
    /* A reader that stops must not stop the writer: records past the pipe
     * and a bounded queue are dropped, and once the pipe drains a line says
     * how many. Every record is either delivered or counted. */
    enum { N = 4000 };
    char dir[] = "/tmp/bwlogXXXXXX", path[64], pad[201];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    int rd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rd >= 0);
    assert_int_equal(bw_log_open(path, BW_LOGFMT_LOGFMT, BW_LOG_INFO), 0);
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    alarm(60); /* a blocking write would hang here: fail instead */
    for (int i = 0; i < N; i++)
        bw_log(BW_LOG_INFO, "flood", "pad", pad, NULL);
    alarm(0);
    char *all = NULL;
    size_t len = 0;
    int calls = 0;
    for (; calls < 1000 && !strstr(all ? all : "", "msg=after"); calls++) {
        drain(rd, &all, &len);
        bw_log(BW_LOG_INFO, "after", NULL); /* flushes the queue first */
    }
    drain(rd, &all, &len);
    const char *d = strstr(all, "msg=\"dropped ");
    assert_non_null(d);
    assert_non_null(strstr(d, " log lines\" obj=log\n"));
    unsigned long dropped = 0;
    for (const char *p = d; p; p = strstr(p + 1, "msg=\"dropped "))
        dropped += strtoul(p + strlen("msg=\"dropped "), NULL, 10);
    assert_true(dropped > 0);
    assert_int_equal(count(all, "msg=flood ") + count(all, "msg=after") + dropped, N + calls);
    assert_true(strstr(all, "msg=after") > d); /* one gap, and the count marks it */
    free(all);
    bw_log_close();
    close(rd);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(logfmt_matches_ngrok),
        cmocka_unit_test(logfmt_quotes_and_escapes),
        cmocka_unit_test(level_names_are_log15s),
        cmocka_unit_test(json_sorts_keys_and_escapes_html),
        cmocka_unit_test(term_pads_message),
        cmocka_unit_test(truncates_without_overflow),
        cmocka_unit_test(writes_to_file_target),
        cmocka_unit_test(full_pipe_drops_and_counts),
        cmocka_unit_test(json_without_memory_drops_and_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
