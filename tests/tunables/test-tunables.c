/*
 * test-tunables.c - the real table (src/tunables/tunables.def): the generic
 * tests over every row, the exact messages users see, the conversions of
 * the legacy commands, and that docs/tunables.md is current.
 */
#include <pthread.h>
#include <stdatomic.h>
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

static void test_docs_are_current(void **state)
{
    const char *path = getenv("LM_TUNABLES_MD");
    char *want = lm_tunables_markdown(), *have;
    FILE *f;
    long n;
    (void)state;

    if (!path)
        skip();
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s; run `ninja -C BUILD docs`", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    have = calloc(1, (size_t)n + 1);
    assert_non_null(have);
    assert_int_equal(fread(have, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    if (strcmp(have, want) != 0)
        fail_msg("%s is out of date with src/tunables/tunables.def; run "
                 "`ninja -C BUILD docs` and commit it", path);
    free(have);
    free(want);
}

static void test_messages(void **state)
{
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    (void)state;

    assert_false(set1(t, "downtime-limit", json_object_new_int(0), &err));
    assert_string_equal(err.desc, "parameter 'downtime-limit' must be "
                        "between 1 and 2000000 ms, got 0");
    assert_string_equal(err.cls, "GenericError");
    assert_false(set1(t, "foo", json_object_new_int(0), &err));
    assert_string_equal(err.desc, "parameter 'foo' does not exist; "
                        "query-migrate-parameter-info lists the parameters");
    assert_false(set1(t, "downtime-limit", json_object_new_int(-5), &err));
    assert_string_equal(err.desc, "parameter 'downtime-limit' must not be "
                        "negative, got -5");
    assert_false(set1(t, "downtime-limit", json_object_new_string("300"),
                      &err));
    assert_string_equal(err.desc, "parameter 'downtime-limit' must be an "
                        "integer (ms), got a string");
    assert_false(set1(t, "zero-page-detection",
                      json_object_new_string("all"), &err));
    assert_string_equal(err.desc, "parameter 'zero-page-detection' must be "
                        "one of none, legacy; got 'all'");
    assert_false(set1(t, "events", json_object_new_boolean(true), &err));
    assert_string_equal(err.desc, "'events' is a capability, not a "
                        "parameter; set it with migrate-set-capabilities");

    lm_tunables_set_active(t, true, "active");
    assert_false(set1(t, "zero-page-detection",
                      json_object_new_string("none"), &err));
    assert_string_equal(err.desc, "parameter 'zero-page-detection' cannot "
                        "change while a migration is active (status "
                        "'active'); set it before starting the migration");
    assert_false(setcaps(t, "{\"capabilities\": [{\"capability\": "
                         "\"events\", \"state\": true}]}", &err));
    assert_string_equal(err.desc, "capability 'events' cannot change while "
                        "a migration is active (status 'active'); set it "
                        "before starting the migration");
    assert_true(set1(t, "downtime-limit", json_object_new_int(100), &err));

    livemig_error_clear(&err);
    assert_false(lm_tunables_set_from_string(t, "max-bandwidth", "99999999T",
                                             &err));
    assert_string_equal(err.desc, "parameter 'max-bandwidth' value "
                        "'99999999T' is too large; it must be between 0 "
                        "and 1125899906842624 B/s (1 PiB/s)");
    livemig_error_clear(&err);
    assert_false(lm_tunables_set_from_string(t, "max-bandwidth", "12X",
                                             &err));
    assert_string_equal(err.desc, "parameter 'max-bandwidth' value '12X' is "
                        "not a size; use a number of bytes with an optional "
                        "K, M, G, T or P suffix (powers of 1024), e.g. 512M "
                        "or 1.5G");
    livemig_error_clear(&err);
    assert_false(lm_tunables_set_from_string(t, "downtime-limit", "5 min",
                                             &err));
    assert_string_equal(err.desc, "parameter 'downtime-limit' value '5 min' "
                        "is not a time; use milliseconds, or a number with "
                        "an ms or s suffix, e.g. 300, 300ms or 0.5s");
    lm_tunables_free(t);
}

static uint64_t u64_of(lm_tunables *t, const char *name)
{
    json_object *v = param_value(t, name);
    uint64_t u = json_object_get_uint64(v);
    json_object_put(v);
    return u;
}

static void test_hmp_suffixes(void **state)
{
    static const struct { const char *name, *value; uint64_t want; } ok[] = {
        { "max-bandwidth", "1G", UINT64_C(1) << 30 },
        { "max-bandwidth", "512M", UINT64_C(512) << 20 },
        { "max-bandwidth", "64k", 65536 },
        { "max-bandwidth", "1024", 1024 },
        { "max-bandwidth", "1.5G", UINT64_C(3) << 29 },
        { "max-bandwidth", "2T", UINT64_C(2) << 40 },
        { "max-bandwidth", "1P", UINT64_C(1) << 50 },
        { "max-bandwidth", "100MiB", UINT64_C(100) << 20 },
        { "max-bandwidth", "0", 0 },
        { "downtime-limit", "300ms", 300 },
        { "downtime-limit", "2s", 2000 },
        { "downtime-limit", "300", 300 },
        { "downtime-limit", "0.5s", 500 },
        { "downtime-limit", "1.25S", 1250 },
    };
    static const struct { const char *name, *value; } bad[] = {
        { "max-bandwidth", "1.5" }, { "max-bandwidth", "1PB5" },
        { "max-bandwidth", "1Q" }, { "max-bandwidth", "2P" },
        { "max-bandwidth", "+5" }, { "max-bandwidth", "0x10" },
        { "max-bandwidth", "18446744073709551616" },
        { "downtime-limit", "0" }, { "downtime-limit", "0.0001s" },
        { "downtime-limit", "1h" }, { "downtime-limit", "3000s" },
        { "downtime-limit", "." },
    };
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    (void)state;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        livemig_error_clear(&err);
        if (!lm_tunables_set_from_string(t, ok[i].name, ok[i].value, &err))
            fail_msg("%s %s: %s", ok[i].name, ok[i].value, err.desc);
        assert_int_equal(u64_of(t, ok[i].name), ok[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        livemig_error_clear(&err);
        if (lm_tunables_set_from_string(t, bad[i].name, bad[i].value, &err))
            fail_msg("%s accepted '%s'", bad[i].name, bad[i].value);
        assert_contains(err.desc, bad[i].value);
    }
    assert_true(lm_tunables_set_from_string(t, "zero-page-detection", "none",
                                            &err));
    assert_true(lm_tunables_set_capability_string(t, "events", "on", &err));
    livemig_error_clear(&err);
    assert_false(lm_tunables_set_capability_string(t, "downtime-limit", "on",
                                                   &err));
    assert_contains(err.desc, "migrate_set_parameter");
    lm_tunables_free(t);
}

static void test_info_text(void **state)
{
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    char *text;
    (void)state;

    text = lm_tunables_format_parameters(t);
    assert_contains(text, "downtime-limit: 300 ms\n");
    assert_contains(text, "max-bandwidth: 0 B/s\n");
    assert_contains(text, "zero-page-detection: legacy\n");
    free(text);
    assert_true(lm_tunables_set_from_string(t, "max-bandwidth", "1G", &err));
    text = lm_tunables_format_parameters(t);
    assert_contains(text, "max-bandwidth: 1073741824 B/s (1 GiB/s)\n");
    free(text);
    text = lm_tunables_format_capabilities(t);
    assert_contains(text, "events: off\n");
    free(text);
    lm_tunables_free(t);
}

static void test_legacy_conversions(void **state)
{
    static const struct { const char *args; uint64_t ms; } ok[] = {
        { "{\"value\": 0.5}", 500 }, { "{\"value\": 2}", 2000 },
        { "{\"value\": 0.001}", 1 }, { "{\"value\": 2000}", 2000000 },
        { "{\"value\": 0.0123}", 12 },
    };
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    json_object *args;
    (void)state;

    /* migrate_set_downtime, migrate_set_speed, migrate-set-cache-size,
     * migrate-set-mc-delay */
    assert_int_equal(lm_tunables_legacy_count(), 4);
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        args = json_tokener_parse(ok[i].args);
        livemig_error_clear(&err);
        assert_true(lm_tunables_legacy_call(t, "migrate_set_downtime", args,
                                            &err));
        json_object_put(args);
        assert_int_equal(u64_of(t, "downtime-limit"), ok[i].ms);
    }
    args = json_tokener_parse("{\"value\": 0}");
    livemig_error_clear(&err);
    assert_false(lm_tunables_legacy_call(t, "migrate_set_downtime", args,
                                         &err));
    assert_string_equal(err.desc, "migrate_set_downtime: 'value' must be "
                        "between 0.001 and 2000 seconds, got 0");
    json_object_put(args);

    args = json_tokener_parse("{\"value\": 33554432}");
    livemig_error_clear(&err);
    assert_true(lm_tunables_legacy_call(t, "migrate_set_speed", args, &err));
    json_object_put(args);
    assert_int_equal(u64_of(t, "max-bandwidth"), 33554432);

    assert_true(lm_tunables_legacy_call_string(t, "migrate_set_downtime",
                                               "0.25", &err));
    assert_int_equal(u64_of(t, "downtime-limit"), 250);
    assert_true(lm_tunables_legacy_call_string(t, "migrate_set_downtime",
                                               "40ms", &err));
    assert_int_equal(u64_of(t, "downtime-limit"), 40);
    assert_true(lm_tunables_legacy_call_string(t, "migrate_set_speed",
                                               "1G", &err));
    assert_int_equal(u64_of(t, "max-bandwidth"), UINT64_C(1) << 30);
    livemig_error_clear(&err);
    assert_false(lm_tunables_legacy_call_string(t, "migrate_set_downtime",
                                                "soon", &err));
    assert_contains(err.desc, "'soon'");
    lm_tunables_free(t);
}

static int hold_kicks;
static void on_kick(void *opaque)
{
    (void)opaque;
    hold_kicks++;
}

/* switchover-hold wakes the migration thread when it changes, nothing
 * else in the precopy table does. */
static void test_switchover_hold_kicks(void **state)
{
    lm_tunables *t;
    livemig_error err = { 0 };
    (void)state;

    if (!info_of("switchover-hold"))
        skip();
    t = lm_tunables_new();
    lm_tunables_set_kick(t, on_kick, NULL);
    lm_tunables_set_active(t, true, "active");
    hold_kicks = 0;
    assert_true(set1(t, "switchover-hold", json_object_new_boolean(true),
                     &err));
    assert_int_equal(hold_kicks, 1);
    assert_true(set1(t, "downtime-limit", json_object_new_int(100), &err));
    assert_int_equal(hold_kicks, 1);
    assert_true(lm_tunables_set_from_string(t, "switchover-hold", "off",
                                            &err));
    assert_int_equal(hold_kicks, 2);
    assert_true(lm_tunables_set_from_string(t, "switchover-hold", "off",
                                            &err));
    assert_int_equal(hold_kicks, 2);
    lm_tunables_free(t);
}

/* The migration thread's snapshot is never half a set. */
struct race {
    lm_tunables *t;
    _Atomic bool stop;
    int torn;
};

static void *snapshotter(void *opaque)
{
    struct race *r = opaque;
    while (!r->stop) {
        lm_params p;
        lm_tunables_snapshot(r->t, &p);
        if (p.downtime_limit != p.max_bandwidth)
            r->torn++;
    }
    return NULL;
}

static void test_snapshot_is_consistent(void **state)
{
    struct race r = { .t = lm_tunables_new() };
    livemig_error err = { 0 };
    pthread_t th;
    (void)state;

    assert_true(set1(r.t, "max-bandwidth", json_object_new_int(300), &err));
    assert_int_equal(pthread_create(&th, NULL, snapshotter, &r), 0);
    for (int i = 1; i <= 20000; i++) {
        json_object *args = json_object_new_object();
        json_object_object_add(args, "downtime-limit", json_object_new_int(i));
        json_object_object_add(args, "max-bandwidth", json_object_new_int(i));
        assert_true(lm_tunables_set_parameters(r.t, args, &err));
        json_object_put(args);
    }
    r.stop = true;
    pthread_join(th, NULL);
    assert_int_equal(r.torn, 0);
    lm_tunables_free(r.t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_docs_are_current),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_hmp_suffixes),
        cmocka_unit_test(test_info_text),
        cmocka_unit_test(test_legacy_conversions),
        cmocka_unit_test(test_switchover_hold_kicks),
        cmocka_unit_test(test_snapshot_is_consistent),
    };
    int failed = run_generic_tests();
    return failed + cmocka_run_group_tests_name("tunables-real-table", tests,
                                                NULL, NULL);
}
