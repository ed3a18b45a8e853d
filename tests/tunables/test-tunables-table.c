/*
 * test-tunables-table.c - the tunables machinery against test-table.def,
 * which has a row of every kind (aliases, kick rows, strings, percentages,
 * unstable and deprecated rows, several legacy commands), so the mechanism
 * is proven before the real table grows such rows.  The generic tests run
 * over this table too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tunables/tunables.h"
#include "generic.h"

static int kicks;
static void on_kick(void *opaque)
{
    (void)opaque;
    kicks++;
}

static void test_aliases(void **state)
{
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    lm_params p;
    json_object *q, *al;
    (void)state;

    lm_tunables_set_kick(t, on_kick, NULL);
    kicks = 0;
    assert_true(set1(t, "x-t-delay", json_object_new_int(5), &err));
    assert_true(set1(t, "t-old-compression", json_object_new_string("zstd"),
                     &err));
    assert_true(lm_tunables_set_from_string(t, "t-old-ms", "2s", &err));
    assert_true(setcaps(t, "{\"capabilities\": [{\"capability\": "
                        "\"x-t-delay\", \"value\": 7}]}", &err));
    lm_tunables_snapshot(t, &p);
    assert_int_equal(p.t_delay, 7);
    assert_int_equal(p.t_comp, 2);
    assert_int_equal(p.t_ms, 2000);
    assert_int_equal(kicks, 2);   /* t-delay is a kick row, via its alias */

    q = lm_tunables_query_parameters(t);
    assert_null(jget(q, "x-t-delay"));
    assert_null(jget(q, "t-old-ms"));
    assert_int_equal(json_object_get_uint64(jget(q, "t-delay")), 7);
    json_object_put(q);
    q = lm_tunables_query_capabilities(t, true);
    assert_null(strstr(json_object_to_json_string(q), "x-t-delay"));
    json_object_put(q);

    al = jget(info_of("t-delay"), "aliases");
    assert_string_equal(json_object_to_json_string(al), "[ \"x-t-delay\" ]");
    /* errors through an alias name the spelling used */
    assert_false(set1(t, "t-old-ms", json_object_new_int(0), &err));
    assert_contains(err.desc, "'t-ms'");
    lm_tunables_free(t);
}

static void test_strings(void **state)
{
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    lm_params p;
    char *text;
    (void)state;

    lm_tunables_snapshot(t, &p);
    assert_string_equal(p.t_host, "localhost");
    assert_string_equal(p.t_creds, "");
    assert_true(set1(t, "t-creds", json_object_new_string("tls0"), &err));
    lm_tunables_snapshot(t, &p);
    assert_string_equal(p.t_creds, "tls0");
    text = lm_tunables_format_parameters(t);
    assert_contains(text, "t-creds: 'tls0'\n");
    free(text);
    /* null clears, as QEMU's StrOrNull */
    assert_true(set1(t, "t-creds", NULL, &err));
    lm_tunables_snapshot(t, &p);
    assert_string_equal(p.t_creds, "");
    lm_tunables_free(t);
}

static void test_flags_in_schema_and_info(void **state)
{
    json_object *members = lm_tunables_schema_members();
    json_object *types = lm_tunables_schema_types();
    const char *s;
    (void)state;

    s = json_object_to_json_string(members);
    assert_contains(s, "{ \"name\": \"x-t-flag\", \"type\": \"bool\", "
                    "\"default\": null, \"features\": [ \"live\", "
                    "\"unstable\" ] }");
    assert_contains(s, "{ \"name\": \"t-mode\", \"type\": \"TMode\", "
                    "\"default\": null, \"features\": [ \"live\", "
                    "\"deprecated\" ] }");
    assert_contains(s, "{ \"name\": \"t-compression\", \"type\": "
                    "\"TCompression\", \"default\": null }");
    assert_contains(s, "{ \"name\": \"x-t-delay\", \"type\": \"int\", "
                    "\"default\": null, \"features\": [ \"live\", "
                    "\"deprecated\" ] }");
    s = json_object_to_json_string(types);
    assert_contains(s, "\"name\": \"TCompression\", \"meta-type\": \"enum\"");
    assert_contains(s, "\"values\": [ \"none\", \"zlib\", \"zstd\", \"lz4\" ]");
    assert_contains(s, "{ \"name\": \"x-c-unstable\", \"features\": "
                    "[ \"unstable\" ] }");
    assert_true(jbool(info_of("x-t-flag"), "unstable"));
    assert_true(jbool(info_of("t-mode"), "deprecated"));
    assert_true(jbool(info_of("x-c-unstable"), "unstable"));
    assert_true(jbool(info_of("x-c-unstable"), "capability"));
    assert_true(jbool(info_of("t-delay"), "kick"));
    assert_false(jbool(info_of("t-ms"), "kick"));
    assert_string_equal(jstr(info_of("t-pct"), "type"), "percent");
    assert_int_equal(ju64(info_of("t-pct"), "max"), 99);
    json_object_put(members);
    json_object_put(types);
}

static void test_legacy_kinds(void **state)
{
    lm_tunables *t = lm_tunables_new();
    json_object *args, *legacy = lm_tunables_legacy_info();
    livemig_error err = { 0 };
    lm_params p;
    (void)state;

    assert_int_equal(lm_tunables_legacy_count(), 5);
    assert_string_equal(json_object_to_json_string(
                            json_object_array_get_idx(legacy, 0)),
                        "{ \"command\": \"t_set_downtime\", \"parameter\": "
                        "\"t-ms\", \"argument\": \"value\", \"type\": "
                        "\"number\", \"unit\": \"s\" }");
    assert_string_equal(jstr(json_object_array_get_idx(legacy, 4), "type"),
                        "TMode");
    lm_tunables_set_kick(t, on_kick, NULL);
    kicks = 0;
    args = json_tokener_parse("{\"value\": 1048576}");
    assert_true(lm_tunables_legacy_call(t, "t-set-cache-size", args, &err));
    json_object_put(args);
    args = json_tokener_parse("{\"value\": 250}");
    assert_true(lm_tunables_legacy_call(t, "t-set-delay", args, &err));
    json_object_put(args);
    args = json_tokener_parse("{\"mode\": \"slow\"}");
    assert_true(lm_tunables_legacy_call(t, "t-set-mode", args, &err));
    json_object_put(args);
    assert_true(lm_tunables_legacy_call_string(t, "t-set-cache-size", "2M",
                                               &err));
    lm_tunables_snapshot(t, &p);
    assert_int_equal(p.t_cache, 2 << 20);
    assert_int_equal(p.t_delay, 250);
    assert_int_equal(p.t_mode, 0);
    assert_int_equal(kicks, 1);
    /* a setup-only target is refused while active, like any set */
    lm_tunables_set_active(t, true, "checkpointing");
    args = json_tokener_parse("{\"value\": 4096}");
    livemig_error_clear(&err);
    assert_false(lm_tunables_legacy_call(t, "t-set-cache-size", args, &err));
    assert_contains(err.desc, "'t-cache'");
    assert_contains(err.desc, "(status 'checkpointing')");
    json_object_put(args);
    json_object_put(legacy);
    lm_tunables_free(t);
}

static void test_markdown(void **state)
{
    char *md = lm_tunables_markdown();
    (void)state;
    assert_contains(md, "| `t-delay` | ms | 100 | 0 – 60000 | ms | yes, wakes "
                    "the migration thread | 0.3 | A time that wakes the "
                    "migration thread |\n");
    assert_contains(md, "A percentage \\| with a pipe");
    assert_contains(md, "| `x-t-delay` | `t-delay` |\n");
    assert_contains(md, "| `x-t-flag` | bool | true | true, false |  | yes | "
                    "0.1 | **unstable.** An unstable bool, on by default |");
    assert_contains(md, "| `t_set_downtime` | `{\"value\": SECONDS}`");
    assert_contains(md, "| `t-cache` | size | 67108864 (64 MiB) | 4096 – "
                    "1099511627776 (1 TiB) | B | no (setup only) |");
    free(md);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_flags_in_schema_and_info),
        cmocka_unit_test(test_legacy_kinds),
        cmocka_unit_test(test_markdown),
    };
    int failed = run_generic_tests();
    return failed + cmocka_run_group_tests_name("tunables-test-table", tests,
                                                NULL, NULL);
}
