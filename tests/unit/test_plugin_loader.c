/* The plugin loader against fixture plugins (tests/plugins/fixture.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "host.h"
#include "log.h"
#include "plugin_loader.h"

static char err[1024];

static int load_fixture(bw_registry_t *r, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/fixture-%s.so", BW_TEST_PLUGIN_DIR, name);
    err[0] = '\0';
    return bw_registry_load(r, path, err, sizeof err);
}

static void loads_good_plugin(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "good"), 0);
    assert_int_equal(bw_registry_count(r), 1);
    const bw_loaded_plugin_t *p = bw_registry_find(r, "fixture");
    assert_non_null(p);
    assert_string_equal(p->desc.public_scheme, "tcp");
    assert_non_null(p->state); /* init ran */
    assert_null(bw_registry_find(r, "nope"));
    bw_registry_free(r);
}

static void refuses_missing_entry(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "missing-entry"), BW_ENOENT);
    assert_non_null(strstr(err, "does not export bw_plugin_entry"));
    assert_int_equal(bw_registry_count(r), 0);
    bw_registry_free(r);
}

static void refuses_newer_abi_major(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "abi-too-new"), BW_EABI);
    assert_non_null(strstr(err, "built for plugin ABI 2."));
    assert_non_null(strstr(err, "this agent speaks 1."));
    bw_registry_free(r);
}

static void refuses_missing_mandatory_slot(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "missing-slot"), BW_EINVAL);
    assert_non_null(strstr(err, "lacks mandatory slot 'conn_open'"));
    bw_registry_free(r);
}

static void refuses_duplicate_proto(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "good"), 0);
    assert_int_equal(load_fixture(r, "duplicate-proto"), BW_EEXIST);
    assert_non_null(strstr(err, "provides proto 'fixture', already provided by"));
    assert_int_equal(bw_registry_count(r), 1);
    bw_registry_free(r);
}

static void reports_init_failure_and_destroys(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "init-fails"), BW_EINVAL);
    assert_non_null(strstr(err, "failed to initialise: fixture refuses to start: no license"));
    assert_int_equal(bw_registry_count(r), 0);
    /* destroy() freed init's allocation: LeakSanitizer checks that. */
    bw_registry_free(r);
}

static void loads_every_proto_of_an_object(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "siblings"), 0);
    assert_int_equal(bw_registry_count(r), 2);
    const bw_loaded_plugin_t *a = bw_registry_find(r, "fixture-a");
    const bw_loaded_plugin_t *b = bw_registry_find(r, "fixture-b");
    assert_non_null(a);
    assert_non_null(b);
    /* Each proto has its own init and state, and the object's options. */
    assert_non_null(a->state);
    assert_non_null(b->state);
    assert_ptr_not_equal(a->state, b->state);
    assert_string_equal(b->desc.options[0].key, "greeting");
    assert_string_equal(a->path, b->path);
    bw_registry_free(r); /* both destroyed, the object closed twice: no leak */
}

static void refuses_whole_object_when_a_sibling_fails(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "sibling-fails"), BW_EINVAL);
    assert_non_null(strstr(err, "plugin 'fixture-d'"));
    assert_non_null(strstr(err, "sibling refuses to start"));
    /* fixture-c had initialised: it was destroyed again (LeakSanitizer). */
    assert_int_equal(bw_registry_count(r), 0);
    assert_null(bw_registry_find(r, "fixture-c"));
    bw_registry_free(r);
}

static void refuses_extra_exports(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "extra-export"), BW_EINVAL);
    assert_non_null(strstr(err, "not just bw_plugin_entry"));
    assert_non_null(strstr(err, "fixture_helper"));
    assert_int_equal(bw_registry_count(r), 0);
    bw_registry_free(r);
}

static void refuses_zero_struct_size(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "struct-size-zero"), BW_EABI);
    assert_non_null(strstr(err, "struct_size is 0"));
    assert_null(strstr(err, "smaller than"));
    assert_int_equal(bw_registry_count(r), 0);
    bw_registry_free(r);
}

static void refuses_plugin_calling_agent_symbols(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "calls-core"), BW_ENOENT);
    assert_non_null(strstr(err, "undefined symbol: bw_strerror"));
    assert_non_null(strstr(err, "only through the bw_host_t table"));
    assert_int_equal(bw_registry_count(r), 0);
    bw_registry_free(r);
}

/* What keeps the fixture above from loading inside the real agent: the
 * executable exports none of its functions. */
static void agent_exports_no_core_symbols(void **state)
{
    static char names[1 << 16];
    int n = bw_elf_exports(BW_AGENT_EXE, names, sizeof names);
    assert_true(n >= 0);
    assert_true(strlen(names) + 1 < sizeof names); /* the whole list was read */
    for (const char *p = names; (p = strstr(p, "bw_")) != NULL; p++)
        fail_msg("the agent exports %.40s", p);
}

static void refuses_non_plugin_file(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(bw_registry_load(r, "/nonexistent/x.so", err, sizeof err), BW_ENOENT);
    assert_non_null(strstr(err, "cannot load plugin"));
    bw_registry_free(r);
}

static void loads_directory_skipping_refusals(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    /* The fixture dir holds good plugins and ones it must refuse. Objects
     * load in name order, so of good and duplicate-proto (both "fixture")
     * the first by name wins; siblings adds two protos. The tcptls fixture
     * sits in a subdirectory, which is searched too. */
    int n = bw_registry_load_dir(r, BW_TEST_PLUGIN_DIR);
    assert_int_equal(n, 4);
    const bw_loaded_plugin_t *f = bw_registry_find(r, "fixture");
    assert_non_null(f);
    assert_non_null(strstr(f->path, "fixture-duplicate-proto.so"));
    assert_non_null(bw_registry_find(r, "fixture-a"));
    assert_non_null(bw_registry_find(r, "fixture-b"));
    assert_non_null(bw_registry_find(r, "tcptls"));
    bw_registry_free(r);
}

static void tcp_plugin_declares_options(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(bw_registry_load(r, BW_TCP_PLUGIN, err, sizeof err), 0);
    const bw_loaded_plugin_t *p = bw_registry_find(r, "tcp");
    assert_non_null(p);
    assert_int_equal(p->desc.edge_type, BW_EDGE_TCP);
    assert_string_equal(p->desc.options[0].key, "remote_addr");
    bw_registry_free(r);
}

static void conf_validates_against_declared_options(void **state)
{
    bw_registry_t *r = bw_registry_new(bw_host_table_for);
    assert_int_equal(load_fixture(r, "good"), 0);
    const bw_loaded_plugin_t *p = bw_registry_find(r, "fixture");
    const bw_host_t *h = bw_host_table();
    bw_conf_t c;
    json_t *in = json_loads("{\"greeting\": 42, \"loud\": \"true\", \"limits\": {\"max\": \"7\"},"
                            " \"tags\": \"one\", \"addr\": \"80\", \"other\": 1}",
                            0, NULL);
    assert_int_equal(bw_conf_build(p->desc.options, in, 0, &c, err, sizeof err), 0);
    assert_string_equal(h->conf_str(&c, "greeting"), "42");
    assert_int_equal(h->conf_bool(&c, "loud", 0), 1);
    assert_int_equal(h->conf_int(&c, "limits.max", 0), 7);
    assert_int_equal(h->conf_list_len(&c, "tags"), 1);
    assert_string_equal(h->conf_list_at(&c, "tags", 0), "one");
    assert_null(h->conf_list_at(&c, "tags", 1));
    bw_conf_free(&c);

    /* Defaults come from the declarations. */
    json_t *empty = json_object();
    assert_int_equal(bw_conf_build(p->desc.options, empty, 1, &c, err, sizeof err), 0);
    assert_string_equal(h->conf_str(&c, "greeting"), "hello");
    assert_int_equal(h->conf_bool(&c, "loud", 1), 0);
    assert_int_equal(h->conf_int(&c, "limits.max", -5), -5);
    bw_conf_free(&c);

    /* Strict mode names the unknown key; types are checked. */
    assert_int_equal(bw_conf_build(p->desc.options, in, 1, &c, err, sizeof err), BW_EINVAL);
    assert_string_equal(err, "unknown option 'other'");
    json_t *bad = json_loads("{\"loud\": \"maybe\"}", 0, NULL);
    assert_int_equal(bw_conf_build(p->desc.options, bad, 0, &c, err, sizeof err), BW_EINVAL);
    assert_string_equal(err, "option 'loud' must be a boolean");
    json_t *badgroup = json_loads("{\"limits\": 3}", 0, NULL);
    assert_int_equal(bw_conf_build(p->desc.options, badgroup, 0, &c, err, sizeof err), BW_EINVAL);
    assert_string_equal(err, "option 'limits' must be a map");
    json_decref(in);
    json_decref(empty);
    json_decref(bad);
    json_decref(badgroup);
    bw_registry_free(r);
}

int main(void)
{
    bw_log_open("false", BW_LOGFMT_LOGFMT, BW_LOG_CRIT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_good_plugin),
        cmocka_unit_test(refuses_missing_entry),
        cmocka_unit_test(refuses_newer_abi_major),
        cmocka_unit_test(refuses_missing_mandatory_slot),
        cmocka_unit_test(refuses_duplicate_proto),
        cmocka_unit_test(reports_init_failure_and_destroys),
        cmocka_unit_test(loads_every_proto_of_an_object),
        cmocka_unit_test(refuses_whole_object_when_a_sibling_fails),
        cmocka_unit_test(refuses_extra_exports),
        cmocka_unit_test(refuses_zero_struct_size),
        cmocka_unit_test(refuses_plugin_calling_agent_symbols),
        cmocka_unit_test(agent_exports_no_core_symbols),
        cmocka_unit_test(refuses_non_plugin_file),
        cmocka_unit_test(loads_directory_skipping_refusals),
        cmocka_unit_test(tcp_plugin_declares_options),
        cmocka_unit_test(conf_validates_against_declared_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
