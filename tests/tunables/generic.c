/*
 * generic.c - tests of the tunables that hold for any table: every row is
 * found through query-migrate-parameter-info and exercised through every
 * interface (QMP set/query, extended capabilities, HMP strings, legacy
 * commands, schema).  Compiled into both test programs: the real table and
 * the richer test table (test-table.def).
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

/* ---- helpers (also used by the table-specific tests) ------------------ */

json_object *info_of(const char *name)
{
    static json_object *info;   /* per process, freed at exit by the OS */
    if (!info)
        info = lm_tunables_parameter_info();
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        if (strcmp(jstr(o, "name"), name) == 0)
            return o;
    }
    return NULL;
}

json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

const char *jstr(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    return v ? json_object_get_string(v) : "";
}

bool jbool(json_object *o, const char *key)
{
    return json_object_get_boolean(jget(o, key));
}

uint64_t ju64(json_object *o, const char *key)
{
    return json_object_get_uint64(jget(o, key));
}

/* Everything a client can see of the state, as one string. */
char *state_of(lm_tunables *t)
{
    json_object *p = lm_tunables_query_parameters(t);
    json_object *c = lm_tunables_query_capabilities(t, false);
    char *s;
    if (asprintf(&s, "%s %s", json_object_to_json_string(p),
                 json_object_to_json_string(c)) < 0)
        abort();
    json_object_put(p);
    json_object_put(c);
    return s;
}

/* The current value of a parameter (new reference). */
json_object *param_value(lm_tunables *t, const char *name)
{
    json_object *p = lm_tunables_query_parameters(t);
    json_object *v = jget(p, name);
    assert_non_null(v);
    json_object_get(v);
    json_object_put(p);
    return v;
}

bool cap_state(lm_tunables *t, const char *name)
{
    json_object *a = lm_tunables_query_capabilities(t, false);
    bool found = false, state = false;
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        json_object *o = json_object_array_get_idx(a, i);
        if (strcmp(jstr(o, "capability"), name) == 0) {
            found = true;
            state = jbool(o, "state");
        }
    }
    json_object_put(a);
    assert_true(found);
    return state;
}

bool set1(lm_tunables *t, const char *name, json_object *v,
          livemig_error *err)
{
    json_object *args = json_object_new_object();
    bool ok;
    json_object_object_add(args, name, v);
    livemig_error_clear(err);
    ok = lm_tunables_set_parameters(t, args, err);
    json_object_put(args);
    assert_true(ok != livemig_error_is_set(err));
    return ok;
}

bool setcaps(lm_tunables *t, const char *json, livemig_error *err)
{
    json_object *args = json_tokener_parse(json);
    bool ok;
    assert_non_null(args);
    livemig_error_clear(err);
    ok = lm_tunables_set_capabilities(t, args, err);
    json_object_put(args);
    assert_true(ok != livemig_error_is_set(err));
    return ok;
}

void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("'%s' does not contain '%s'", hay, needle);
}

static bool is_numeric(json_object *info)
{
    return jget(info, "min") != NULL;
}

/* A value of the row that differs from @cur (new reference). */
static json_object *other_value(json_object *info, json_object *cur)
{
    const char *type = jstr(info, "type");
    if (strcmp(type, "bool") == 0)
        return json_object_new_boolean(!json_object_get_boolean(cur));
    if (strcmp(type, "string") == 0)
        return json_object_new_string(
            strcmp(json_object_get_string(cur), "abc") ? "abc" : "xyz");
    if (strcmp(type, "enum") == 0) {
        json_object *vals = jget(info, "values");
        for (size_t i = 0; i < json_object_array_length(vals); i++) {
            const char *v =
                json_object_get_string(json_object_array_get_idx(vals, i));
            if (strcmp(v, json_object_get_string(cur)) != 0)
                return json_object_new_string(v);
        }
        return NULL;   /* one-value enum */
    }
    uint64_t mn = ju64(info, "min"), mx = ju64(info, "max");
    uint64_t c = json_object_get_uint64(cur);
    return json_object_new_uint64(c != mx ? mx : mn);
}

/* ---- introspection ---------------------------------------------------- */

static void test_info_is_whole(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    lm_tunables *t = lm_tunables_new();
    json_object *q = lm_tunables_query_parameters(t);
    json_object *c = lm_tunables_query_capabilities(t, false);
    size_t nparams = 0, ncaps = 0;
    (void)state;

    assert_true(json_object_array_length(info) > 0);
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        const char *name = jstr(o, "name"), *type = jstr(o, "type");
        static const char *const fields[] = {
            "name", "type", "default", "unit", "live", "kick", "doc",
            "since", "deprecated", "unstable", "aliases", "capability",
        };
        for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
            if (!json_object_object_get_ex(o, fields[f], NULL))
                fail_msg("'%s' lacks '%s'", name, fields[f]);
        assert_true(strlen(jstr(o, "doc")) > 0);
        assert_true(strlen(jstr(o, "since")) > 0);
        /* names are unique among rows and aliases */
        for (size_t k = i + 1; k < json_object_array_length(info); k++) {
            json_object *o2 = json_object_array_get_idx(info, k);
            assert_string_not_equal(name, jstr(o2, "name"));
            json_object *al = jget(o2, "aliases");
            for (size_t a = 0; a < json_object_array_length(al); a++)
                assert_string_not_equal(name, json_object_get_string(
                                        json_object_array_get_idx(al, a)));
        }
        if (jbool(o, "kick"))
            assert_true(jbool(o, "live"));
        if (jbool(o, "capability")) {
            ncaps++;
            assert_string_equal(type, "bool");
            assert_false(jbool(o, "default"));
            assert_false(jbool(o, "live"));
            assert_false(cap_state(t, name));
            continue;
        }
        nparams++;
        /* the default is what a fresh table reports */
        assert_string_equal(json_object_to_json_string(jget(o, "default")),
                            json_object_to_json_string(jget(q, name)));
        if (strcmp(type, "uint") == 0 || strcmp(type, "size") == 0 ||
            strcmp(type, "ms") == 0 || strcmp(type, "percent") == 0) {
            uint64_t mn = ju64(o, "min"), mx = ju64(o, "max");
            uint64_t d = ju64(o, "default");
            assert_true(mn <= d && d <= mx);
            assert_true(json_object_is_type(jget(o, "default"),
                                            json_type_int));
            if (strcmp(type, "percent") == 0)
                assert_true(mx <= 100);
            if (strcmp(type, "ms") == 0)
                assert_string_equal(jstr(o, "unit"), "ms");
        } else if (strcmp(type, "enum") == 0) {
            json_object *vals = jget(o, "values");
            bool found = false;
            assert_non_null(vals);
            for (size_t v = 0; v < json_object_array_length(vals); v++)
                found |= strcmp(json_object_get_string(
                                json_object_array_get_idx(vals, v)),
                                jstr(o, "default")) == 0;
            assert_true(found);
            assert_null(jget(o, "min"));
        } else if (strcmp(type, "bool") == 0) {
            assert_true(json_object_is_type(jget(o, "default"),
                                            json_type_boolean));
        } else {
            assert_string_equal(type, "string");
            assert_true(json_object_is_type(jget(o, "default"),
                                            json_type_string));
        }
    }
    /* no write-only tunable: query shows every parameter and capability */
    assert_int_equal(json_object_object_length(q), nparams);
    assert_int_equal(json_object_array_length(c), ncaps);
    json_object_put(info);
    json_object_put(q);
    json_object_put(c);
    lm_tunables_free(t);
}

/* ---- round trips ------------------------------------------------------ */

static void roundtrip_value(lm_tunables *t, const char *name, json_object *v)
{
    livemig_error err = { 0 };
    json_object *got;
    json_object_get(v);
    if (!set1(t, name, v, &err))
        fail_msg("set %s=%s: %s", name, json_object_to_json_string(v),
                 err.desc);
    got = param_value(t, name);
    assert_string_equal(json_object_to_json_string(got),
                        json_object_to_json_string(v));
    json_object_put(got);
}

static void test_qmp_roundtrip_every_row(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    (void)state;

    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        const char *name = jstr(o, "name"), *type = jstr(o, "type");
        json_object *v;
        char buf[256];

        if (jbool(o, "capability")) {
            snprintf(buf, sizeof(buf), "{\"capabilities\": [{\"capability\":"
                     " \"%s\", \"state\": true}]}", name);
            assert_true(setcaps(t, buf, &err));
            assert_true(cap_state(t, name));
            snprintf(buf, sizeof(buf), "{\"capabilities\": [{\"capability\":"
                     " \"%s\", \"state\": false}]}", name);
            assert_true(setcaps(t, buf, &err));
            assert_false(cap_state(t, name));
            continue;
        }
        if (is_numeric(o)) {
            uint64_t mn = ju64(o, "min"), mx = ju64(o, "max");
            uint64_t vals[] = { mn, mx, mn + (mx - mn) / 3, ju64(o, "default") };
            for (size_t k = 0; k < 4; k++) {
                v = json_object_new_uint64(vals[k]);
                roundtrip_value(t, name, v);
                json_object_put(v);
            }
        } else if (strcmp(type, "enum") == 0) {
            json_object *vals = jget(o, "values");
            for (size_t k = 0; k < json_object_array_length(vals); k++)
                roundtrip_value(t, name, json_object_array_get_idx(vals, k));
        } else if (strcmp(type, "bool") == 0) {
            v = json_object_new_boolean(true);
            roundtrip_value(t, name, v);
            json_object_put(v);
            v = json_object_new_boolean(false);
            roundtrip_value(t, name, v);
            json_object_put(v);
        } else {
            v = json_object_new_string("some-id.example");
            roundtrip_value(t, name, v);
            json_object_put(v);
        }
        roundtrip_value(t, name, jget(o, "default"));
    }
    json_object_put(info);
    lm_tunables_free(t);
}

/* Set @s by HMP and expect the query to show @want (JSON text). */
static void hmp_expect(lm_tunables *t, const char *name, const char *s,
                       const char *want)
{
    livemig_error err = { 0 };
    json_object *got;
    livemig_error_clear(&err);
    if (!lm_tunables_set_from_string(t, name, s, &err))
        fail_msg("hmp %s %s: %s", name, s, err.desc);
    got = param_value(t, name);
    assert_string_equal(json_object_to_json_string(got), want);
    json_object_put(got);
}

static void test_hmp_roundtrip_every_row(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    char s[64], want[256];
    (void)state;

    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        const char *name = jstr(o, "name"), *type = jstr(o, "type");

        if (jbool(o, "capability")) {
            assert_true(lm_tunables_set_capability_string(t, name, "on",
                                                          &err));
            assert_true(cap_state(t, name));
            char *text = lm_tunables_format_capabilities(t);
            snprintf(s, sizeof(s), "%s: on\n", name);
            assert_contains(text, s);
            free(text);
            assert_true(lm_tunables_set_capability_string(t, name, "off",
                                                          &err));
            assert_false(cap_state(t, name));
            continue;
        }
        if (is_numeric(o)) {
            uint64_t mn = ju64(o, "min"), mx = ju64(o, "max");
            uint64_t vals[] = { mn, mx, mn + (mx - mn) / 3 };
            for (size_t k = 0; k < 3; k++) {
                snprintf(s, sizeof(s), "%llu", (unsigned long long)vals[k]);
                hmp_expect(t, name, s, s);
                /* the info text shows it, with the unit */
                char *text = lm_tunables_format_parameters(t);
                snprintf(want, sizeof(want), "%s: %s", name, s);
                assert_contains(text, want);
                if (strlen(jstr(o, "unit")) && strcmp(jstr(o, "unit"), "%"))
                    snprintf(want, sizeof(want), "%s: %s %s\n", name, s,
                             jstr(o, "unit"));
                else
                    snprintf(want, sizeof(want), "%s: %s%s\n", name, s,
                             jstr(o, "unit"));
                if (strcmp(type, "size") != 0)
                    assert_contains(text, want);
                free(text);
            }
            if (strcmp(type, "size") == 0 && mn <= 3072 && 3072 <= mx) {
                hmp_expect(t, name, "3K", "3072");
                hmp_expect(t, name, "3kib", "3072");
                hmp_expect(t, name, "1.5k", "1536");
                hmp_expect(t, name, "3072B", "3072");
            }
            if (strcmp(type, "size") == 0 && mx >= (1ULL << 30)) {
                hmp_expect(t, name, "1G", "1073741824");
                hmp_expect(t, name, "1.5G", "1610612736");
                hmp_expect(t, name, "512M", "536870912");
            }
            if (strcmp(type, "ms") == 0 && mn <= 2000 && 2000 <= mx) {
                hmp_expect(t, name, "2s", "2000");
                hmp_expect(t, name, "0.5s", "500");
                hmp_expect(t, name, "300ms", "300");
                hmp_expect(t, name, " 300 ms ", "300");
            }
            if (strcmp(type, "percent") == 0 && mn <= 50 && 50 <= mx) {
                hmp_expect(t, name, "50%", "50");
                hmp_expect(t, name, "50", "50");
            }
        } else if (strcmp(type, "enum") == 0) {
            json_object *vals = jget(o, "values");
            for (size_t k = 0; k < json_object_array_length(vals); k++) {
                json_object *v = json_object_array_get_idx(vals, k);
                hmp_expect(t, name, json_object_get_string(v),
                           json_object_to_json_string(v));
                char *text = lm_tunables_format_parameters(t);
                snprintf(want, sizeof(want), "%s: %s\n", name,
                         json_object_get_string(v));
                assert_contains(text, want);
                free(text);
            }
        } else if (strcmp(type, "bool") == 0) {
            /* on and off only, as the docs say (any case) */
            hmp_expect(t, name, "on", "true");
            hmp_expect(t, name, "ON", "true");
            hmp_expect(t, name, "off", "false");
            hmp_expect(t, name, "Off", "false");
        } else {
            hmp_expect(t, name, "my-creds", "\"my-creds\"");
            hmp_expect(t, name, "", "\"\"");
        }
    }
    json_object_put(info);
    lm_tunables_free(t);
}

/* ---- errors ----------------------------------------------------------- */

/* A set that must fail, change nothing, and name @name in its message. */
static void expect_refused(lm_tunables *t, const char *name, json_object *v,
                           const char *needle)
{
    char *before = state_of(t), *after, quoted[128];
    livemig_error err = { 0 };
    if (set1(t, name, v, &err))
        fail_msg("%s accepted a bad value", name);
    snprintf(quoted, sizeof(quoted), "'%s'", name);
    assert_contains(err.desc, quoted);
    if (needle)
        assert_contains(err.desc, needle);
    after = state_of(t);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void hmp_refused(lm_tunables *t, const char *name, const char *s,
                        const char *needle)
{
    char *before = state_of(t), *after, quoted[128];
    livemig_error err = { 0 };
    livemig_error_clear(&err);
    if (lm_tunables_set_from_string(t, name, s, &err))
        fail_msg("hmp %s accepted '%s'", name, s);
    snprintf(quoted, sizeof(quoted), "'%s'", name);
    assert_contains(err.desc, quoted);
    snprintf(quoted, sizeof(quoted), "'%s'", s);
    if (strlen(s) < 64)
        assert_contains(err.desc, quoted);   /* names the value */
    if (needle)
        assert_contains(err.desc, needle);
    after = state_of(t);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_errors_every_row(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    (void)state;

    expect_refused(t, "no-such-tunable", json_object_new_int(1),
                   "does not exist");
    assert_false(lm_tunables_set_from_string(t, "no-such-tunable", "1",
                                             &err));
    assert_contains(err.desc, "'no-such-tunable'");

    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        const char *name = jstr(o, "name"), *type = jstr(o, "type");

        if (jbool(o, "capability")) {
            /* a capability is not a parameter, and takes a bool state */
            expect_refused(t, name, json_object_new_boolean(true),
                           "capability");
            char buf[256];
            snprintf(buf, sizeof(buf), "{\"capabilities\": [{\"capability\":"
                     " \"%s\", \"state\": 1}]}", name);
            assert_false(setcaps(t, buf, &err));
            assert_contains(err.desc, name);
            livemig_error_clear(&err);
            assert_false(lm_tunables_set_capability_string(t, name, "maybe",
                                                           &err));
            assert_contains(err.desc, "'maybe'");
            continue;
        }
        expect_refused(t, name, json_object_new_array(), NULL);
        if (is_numeric(o)) {
            uint64_t mn = ju64(o, "min"), mx = ju64(o, "max");
            char range[128];
            snprintf(range, sizeof(range), "between %llu and %llu",
                     (unsigned long long)mn, (unsigned long long)mx);
            expect_refused(t, name, json_object_new_string("300"),
                           "integer");
            expect_refused(t, name, json_object_new_double(1.5), "integer");
            expect_refused(t, name, json_object_new_boolean(true), NULL);
            expect_refused(t, name, json_object_new_int64(-1), "negative");
            if (mn > 0)
                expect_refused(t, name, json_object_new_uint64(mn - 1),
                               range);
            if (mx < UINT64_MAX)
                expect_refused(t, name, json_object_new_uint64(mx + 1),
                               range);
            hmp_refused(t, name, "12X", "is not");
            hmp_refused(t, name, "", "is not");
            hmp_refused(t, name, "abc", "is not");
            hmp_refused(t, name, "-1", "negative");
            hmp_refused(t, name, "99999999T", "'99999999T'");
            hmp_refused(t, name, "99999999999999999999999", "between");
            if (mx < UINT64_MAX) {
                char s[32];
                snprintf(s, sizeof(s), "%llu", (unsigned long long)mx + 1);
                hmp_refused(t, name, s, range);
            }
            if (strcmp(type, "size") == 0)
                hmp_refused(t, name, "0.1K", "whole number");
            if (strcmp(type, "ms") == 0)
                hmp_refused(t, name, "0.5ms", "whole number");
        } else if (strcmp(type, "enum") == 0) {
            expect_refused(t, name, json_object_new_string("no-such-value"),
                           "must be one of");
            expect_refused(t, name, json_object_new_int(0), "string");
            hmp_refused(t, name, "no-such-value", "not one of");
        } else if (strcmp(type, "bool") == 0) {
            expect_refused(t, name, json_object_new_int(1), "true or false");
            expect_refused(t, name, json_object_new_string("true"),
                           "true or false");
            hmp_refused(t, name, "maybe", "on or off");
            hmp_refused(t, name, "yes", "use on or off");
            hmp_refused(t, name, "1", "use on or off");
            hmp_refused(t, name, "true", "use on or off");
        } else {
            char longs[400];
            memset(longs, 'a', sizeof(longs) - 1);
            longs[sizeof(longs) - 1] = '\0';
            expect_refused(t, name, json_object_new_int(1), "string");
            expect_refused(t, name, json_object_new_string(longs), "at most");
            hmp_refused(t, name, longs, "at most");
        }
    }
    json_object_put(info);
    lm_tunables_free(t);
}

/* A set with good members and one bad one changes nothing. */
static void test_atomic_set(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    lm_tunables *t = lm_tunables_new();
    json_object *args = json_object_new_object(), *cur = NULL;
    livemig_error err = { 0 };
    char *before, *after, list[4096] = "";
    size_t used = 0;
    (void)state;

    /* every parameter and capability changed, plus one unknown member */
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        const char *name = jstr(o, "name");
        if (jbool(o, "capability")) {
            used += (size_t)snprintf(list + used, sizeof(list) - used,
                                     "{\"capability\": \"%s\", \"state\": "
                                     "true}, ", name);
            continue;
        }
        cur = param_value(t, name);
        json_object *v = other_value(o, cur);
        if (v) {
            used += (size_t)snprintf(list + used, sizeof(list) - used,
                                     "{\"capability\": \"%s\", \"value\": "
                                     "%s}, ", name,
                                     json_object_to_json_string(v));
            json_object_object_add(args, name, v);
        }
        json_object_put(cur);
    }
    json_object_object_add(args, "zz-no-such-tunable", json_object_new_int(1));
    before = state_of(t);
    assert_false(lm_tunables_set_parameters(t, args, &err));
    assert_contains(err.desc, "'zz-no-such-tunable'");
    after = state_of(t);
    assert_string_equal(before, after);
    free(after);

    /* the same through set-capabilities, with the bad entry last */
    char *caps;
    assert_true(asprintf(&caps, "{\"capabilities\": [%s{\"capability\": "
                         "\"zz-no-such-tunable\", \"state\": true}]}",
                         list) > 0);
    assert_false(setcaps(t, caps, &err));
    assert_contains(err.desc, "'zz-no-such-tunable'");
    after = state_of(t);
    assert_string_equal(before, after);
    free(after);
    free(caps);

    /* and without the bad member, everything changes at once */
    json_object_object_del(args, "zz-no-such-tunable");
    assert_true(lm_tunables_set_parameters(t, args, &err));
    json_object_object_foreach(args, key, val) {
        json_object *got = param_value(t, key);
        assert_string_equal(json_object_to_json_string(got),
                            json_object_to_json_string(val));
        json_object_put(got);
    }
    free(before);
    json_object_put(args);
    json_object_put(info);
    lm_tunables_free(t);
}

/* ---- liveness and kick ------------------------------------------------ */

static int kicks;
static void count_kick(void *opaque)
{
    assert_ptr_equal(opaque, &kicks);
    kicks++;
}

static void test_liveness_every_row(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    (void)state;

    lm_tunables_set_active(t, true, "active");
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        const char *name = jstr(o, "name");
        char buf[256];

        if (jbool(o, "capability")) {
            snprintf(buf, sizeof(buf), "{\"capabilities\": [{\"capability\":"
                     " \"%s\", \"state\": true}]}", name);
            assert_false(setcaps(t, buf, &err));
            assert_contains(err.desc, "cannot change while a migration is "
                            "active (status 'active')");
            snprintf(buf, sizeof(buf), "'%s'", name);
            assert_contains(err.desc, buf);
            livemig_error_clear(&err);
            assert_false(lm_tunables_set_capability_string(t, name, "on",
                                                           &err));
            assert_contains(err.desc, buf);
            assert_false(cap_state(t, name));
            continue;
        }
        json_object *cur = param_value(t, name);
        json_object *v = other_value(o, cur);
        json_object_put(cur);
        if (!v)
            continue;
        if (jbool(o, "live")) {
            assert_true(set1(t, name, v, &err));
            continue;
        }
        snprintf(buf, sizeof(buf), "'%s' cannot change while a migration is "
                 "active (status 'active'); set it before starting the "
                 "migration", name);
        expect_refused(t, name, v, buf);
        /* even to the value it has */
        expect_refused(t, name, param_value(t, name), buf);
    }
    /* the status named is the one the engine gave; a capability-free
     * set is fine while active */
    lm_tunables_set_active(t, true, "postcopy-active");
    assert_true(setcaps(t, "{\"capabilities\": []}", &err));
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        char buf[256];
        if (!jbool(o, "capability"))
            continue;
        snprintf(buf, sizeof(buf), "{\"capabilities\": [{\"capability\":"
                 " \"%s\", \"state\": false}]}", jstr(o, "name"));
        assert_false(setcaps(t, buf, &err));
        assert_contains(err.desc, "(status 'postcopy-active')");
    }
    lm_tunables_set_active(t, false, "completed");
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        if (jbool(o, "capability"))
            assert_true(lm_tunables_set_capability_string(t, jstr(o, "name"),
                                                          "on", &err));
    }
    json_object_put(info);
    lm_tunables_free(t);
}

static void test_kick_exactly_on_kick_rows(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    (void)state;

    lm_tunables_set_kick(t, count_kick, &kicks);
    lm_tunables_set_active(t, true, "active");
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        const char *name = jstr(o, "name");
        if (jbool(o, "capability") || !jbool(o, "live"))
            continue;
        bool kick = jbool(o, "kick");
        json_object *cur = param_value(t, name);
        json_object *v = other_value(o, cur);
        if (!v) {
            json_object_put(cur);
            continue;
        }
        kicks = 0;
        assert_true(set1(t, name, json_object_get(v), &err));
        assert_int_equal(kicks, kick ? 1 : 0);
        /* the same value again is no change: no kick */
        assert_true(set1(t, name, json_object_get(v), &err));
        assert_int_equal(kicks, kick ? 1 : 0);
        /* a refused set never kicks */
        expect_refused(t, name, json_object_new_array(), NULL);
        assert_int_equal(kicks, kick ? 1 : 0);
        /* back, through an extended capabilities entry */
        char buf[512];
        snprintf(buf, sizeof(buf), "{\"capabilities\": [{\"capability\": "
                 "\"%s\", \"value\": %s}]}", name,
                 json_object_to_json_string(cur));
        assert_true(setcaps(t, buf, &err));
        assert_int_equal(kicks, kick ? 2 : 0);
        json_object_put(cur);
        json_object_put(v);
    }
    json_object_put(info);
    lm_tunables_free(t);
}

/* ---- extended capabilities -------------------------------------------- */

static void test_extended_capabilities(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    lm_tunables *t = lm_tunables_new();
    json_object *plain = lm_tunables_query_capabilities(t, false);
    json_object *ext = lm_tunables_query_capabilities(t, true);
    json_object *args;
    livemig_error err = { 0 };
    char *before, *after;
    (void)state;

    /* plain: capabilities only, {"capability", "state"} */
    for (size_t i = 0; i < json_object_array_length(plain); i++) {
        json_object *o = json_object_array_get_idx(plain, i);
        assert_int_equal(json_object_object_length(o), 2);
        assert_true(json_object_is_type(jget(o, "state"),
                                        json_type_boolean));
    }
    /* extended: every row, parameters with value and live */
    assert_int_equal(json_object_array_length(ext),
                     json_object_array_length(info));
    for (size_t i = 0; i < json_object_array_length(ext); i++) {
        json_object *o = json_object_array_get_idx(ext, i);
        json_object *row = info_of(jstr(o, "capability"));
        assert_non_null(row);
        assert_int_equal(jbool(o, "live"), jbool(row, "live"));
        if (jbool(row, "capability")) {
            assert_non_null(jget(o, "state"));
            assert_null(jget(o, "value"));
        } else {
            assert_null(jget(o, "state"));
            assert_string_equal(json_object_to_json_string(jget(o, "value")),
                                json_object_to_json_string(
                                    jget(row, "default")));
        }
    }
    /* what the extended query says can be set back as it is */
    before = state_of(t);
    args = json_object_new_object();
    json_object_object_add(args, "capabilities", json_object_get(ext));
    assert_true(lm_tunables_set_capabilities(t, args, &err));
    after = state_of(t);
    assert_string_equal(before, after);
    free(after);
    free(before);

    /* an entry must say state for a capability and value for a parameter */
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        char buf[256];
        if (jbool(o, "capability"))
            snprintf(buf, sizeof(buf), "{\"capabilities\": [{\"capability\":"
                     " \"%s\", \"value\": true}]}", jstr(o, "name"));
        else
            snprintf(buf, sizeof(buf), "{\"capabilities\": [{\"capability\":"
                     " \"%s\", \"state\": true}]}", jstr(o, "name"));
        assert_false(setcaps(t, buf, &err));
        assert_contains(err.desc, jstr(o, "name"));
    }
    assert_false(setcaps(t, "{\"capabilities\": [{\"capability\": \"x\"}, "
                         "1]}", &err));
    assert_false(setcaps(t, "{\"capabilities\": [1]}", &err));
    assert_contains(err.desc, "entry 0");
    assert_false(setcaps(t, "{\"capabilities\": [{\"state\": true}]}", &err));
    assert_false(setcaps(t, "{\"capabilities\": {}}", &err));
    assert_false(setcaps(t, "{}", &err));
    assert_false(setcaps(t, "{\"capabilities\": [], \"extra\": 1}", &err));
    assert_contains(err.desc, "'extra'");
    assert_true(setcaps(t, "{\"capabilities\": []}", &err));

    json_object_put(args);
    json_object_put(plain);
    json_object_put(ext);
    json_object_put(info);
    lm_tunables_free(t);
}

/* ---- legacy commands -------------------------------------------------- */

static void test_legacy_commands(void **state)
{
    json_object *legacy = lm_tunables_legacy_info();
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    (void)state;

    assert_int_equal(json_object_array_length(legacy),
                     lm_tunables_legacy_count());
    assert_null(lm_tunables_legacy_name(lm_tunables_legacy_count()));
    for (size_t i = 0; i < json_object_array_length(legacy); i++) {
        json_object *l = json_object_array_get_idx(legacy, i);
        const char *cmd = jstr(l, "command"), *param = jstr(l, "parameter");
        const char *arg = jstr(l, "argument");
        json_object *row = info_of(param), *args, *got;
        char buf[256];

        assert_string_equal(lm_tunables_legacy_name(i), cmd);
        assert_non_null(row);
        assert_false(jbool(row, "capability"));
        if (strcmp(jstr(l, "type"), "number") == 0) {
            /* seconds, int or double, rounded to ms */
            assert_string_equal(jstr(row, "type"), "ms");
            uint64_t mn = ju64(row, "min"), mx = ju64(row, "max");
            uint64_t want = mn <= 500 && 500 <= mx ? 500 : mx / 1000 * 1000;
            snprintf(buf, sizeof(buf), "{\"%s\": %s}", arg,
                     want == 500 ? "0.5" : "X");
            if (want != 500)
                snprintf(buf, sizeof(buf), "{\"%s\": %llu}", arg,
                         (unsigned long long)want / 1000);
            args = json_tokener_parse(buf);
            livemig_error_clear(&err);
            assert_true(lm_tunables_legacy_call(t, cmd, args, &err));
            json_object_put(args);
            got = param_value(t, param);
            assert_int_equal(json_object_get_uint64(got), want);
            json_object_put(got);
            /* string form for HMP */
            livemig_error_clear(&err);
            assert_true(lm_tunables_legacy_call_string(t, cmd, "2", &err) ==
                        (mn <= 2000 && 2000 <= mx));
            /* negative, strings, too big are refused */
            snprintf(buf, sizeof(buf), "{\"%s\": -0.5}", arg);
            args = json_tokener_parse(buf);
            livemig_error_clear(&err);
            assert_false(lm_tunables_legacy_call(t, cmd, args, &err));
            assert_contains(err.desc, "seconds");
            json_object_put(args);
            snprintf(buf, sizeof(buf), "{\"%s\": \"1\"}", arg);
            args = json_tokener_parse(buf);
            livemig_error_clear(&err);
            assert_false(lm_tunables_legacy_call(t, cmd, args, &err));
            json_object_put(args);
            snprintf(buf, sizeof(buf), "{\"%s\": 1e300}", arg);
            args = json_tokener_parse(buf);
            livemig_error_clear(&err);
            assert_false(lm_tunables_legacy_call(t, cmd, args, &err));
            json_object_put(args);
        } else {
            json_object *cur = param_value(t, param);
            json_object *v = other_value(row, cur);
            json_object_put(cur);
            args = json_object_new_object();
            json_object_object_add(args, arg, json_object_get(v));
            livemig_error_clear(&err);
            if (!lm_tunables_legacy_call(t, cmd, args, &err))
                fail_msg("%s: %s", cmd, err.desc);
            got = param_value(t, param);
            assert_string_equal(json_object_to_json_string(got),
                                json_object_to_json_string(v));
            json_object_put(got);
            json_object_put(args);
            json_object_put(v);
        }
        /* missing or extra arguments */
        livemig_error_clear(&err);
        args = json_object_new_object();
        assert_false(lm_tunables_legacy_call(t, cmd, args, &err));
        assert_contains(err.desc, arg);
        json_object_object_add(args, "bogus", json_object_new_int(1));
        livemig_error_clear(&err);
        assert_false(lm_tunables_legacy_call(t, cmd, args, &err));
        assert_contains(err.desc, "'bogus'");
        json_object_put(args);
    }
    livemig_error_clear(&err);
    assert_false(lm_tunables_legacy_call(t, "no_such_command", NULL, &err));
    json_object_put(legacy);
    lm_tunables_free(t);
}

/* ---- schema ----------------------------------------------------------- */

static void test_schema(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    json_object *members = lm_tunables_schema_members();
    json_object *types = lm_tunables_schema_types();
    size_t nparams = 0, naliases = 0;
    (void)state;

    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        if (!jbool(o, "capability")) {
            nparams++;
            naliases += json_object_array_length(jget(o, "aliases"));
        }
    }
    assert_int_equal(json_object_array_length(members), nparams + naliases);
    for (size_t i = 0; i < json_object_array_length(members); i++) {
        json_object *m = json_object_array_get_idx(members, i);
        json_object *row = info_of(jstr(m, "name")), *f = jget(m, "features");
        const char *type = jstr(m, "type");
        bool live = false, dep = false, unst = false, alias = !row;

        assert_true(json_object_object_get_ex(m, "default", NULL));
        assert_null(jget(m, "default"));
        for (size_t k = 0; f && k < json_object_array_length(f); k++) {
            const char *s =
                json_object_get_string(json_object_array_get_idx(f, k));
            live |= !strcmp(s, "live");
            dep |= !strcmp(s, "deprecated");
            unst |= !strcmp(s, "unstable");
        }
        if (f)
            assert_true(json_object_array_length(f) > 0);
        if (alias) {
            assert_true(dep);
            continue;
        }
        assert_int_equal(live, jbool(row, "live"));
        assert_int_equal(dep, jbool(row, "deprecated"));
        assert_int_equal(unst, jbool(row, "unstable"));
        if (strcmp(jstr(row, "type"), "bool") == 0)
            assert_string_equal(type, "bool");
        else if (strcmp(jstr(row, "type"), "string") == 0)
            assert_string_equal(type, "str");
        else if (strcmp(jstr(row, "type"), "enum") == 0) {
            /* the enum type is among the schema types, with the values */
            bool found = false;
            for (size_t k = 0; k < json_object_array_length(types); k++) {
                json_object *ty = json_object_array_get_idx(types, k);
                if (strcmp(jstr(ty, "name"), type) != 0)
                    continue;
                found = true;
                assert_string_equal(jstr(ty, "meta-type"), "enum");
                assert_string_equal(
                    json_object_to_json_string(jget(ty, "values")),
                    json_object_to_json_string(jget(row, "values")));
                assert_int_equal(json_object_array_length(jget(ty, "members")),
                                 json_object_array_length(jget(row, "values")));
            }
            assert_true(found);
        } else
            assert_string_equal(type, "int");
    }
    /* MigrationCapability and MigrationParameter list the rows */
    for (size_t k = 0; k < json_object_array_length(types); k++) {
        json_object *ty = json_object_array_get_idx(types, k);
        bool caps = strcmp(jstr(ty, "name"), "MigrationCapability") == 0;
        if (!caps && strcmp(jstr(ty, "name"), "MigrationParameter") != 0)
            continue;
        json_object *vals = jget(ty, "values");
        size_t n = 0;
        for (size_t i = 0; i < json_object_array_length(info); i++)
            n += jbool(json_object_array_get_idx(info, i), "capability") ==
                 caps;
        assert_int_equal(json_object_array_length(vals), n);
        for (size_t i = 0; i < json_object_array_length(vals); i++) {
            json_object *row = info_of(json_object_get_string(
                json_object_array_get_idx(vals, i)));
            assert_non_null(row);
            assert_int_equal(jbool(row, "capability"), caps);
        }
    }
    /* HMP help names every parameter */
    char *help = lm_tunables_format_help();
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        if (!jbool(o, "capability"))
            assert_contains(help, jstr(o, "name"));
    }
    free(help);
    json_object_put(types);
    json_object_put(members);
    json_object_put(info);
}

/* ---- aliases ---------------------------------------------------------- */

static void test_aliases_accepted_not_shown(void **state)
{
    json_object *info = lm_tunables_parameter_info();
    lm_tunables *t = lm_tunables_new();
    livemig_error err = { 0 };
    (void)state;

    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *o = json_object_array_get_idx(info, i);
        json_object *al = jget(o, "aliases");
        for (size_t k = 0; k < json_object_array_length(al); k++) {
            const char *alias =
                json_object_get_string(json_object_array_get_idx(al, k));
            json_object *cur = param_value(t, jstr(o, "name"));
            json_object *v = other_value(o, cur), *got, *q;
            json_object_put(cur);
            if (!v)
                continue;
            json_object_get(v);
            assert_true(set1(t, alias, v, &err));
            got = param_value(t, jstr(o, "name"));
            assert_string_equal(json_object_to_json_string(got),
                                json_object_to_json_string(v));
            json_object_put(got);
            q = lm_tunables_query_parameters(t);
            assert_null(jget(q, alias));
            json_object_put(q);
            json_object_put(v);
        }
    }
    json_object_put(info);
    lm_tunables_free(t);
}

static void test_snapshot_and_defaults(void **state)
{
    lm_tunables *t = lm_tunables_new();
    lm_params a, b;
    (void)state;
    lm_tunables_snapshot(t, &a);
    lm_tunables_defaults(&b);
    assert_memory_equal(&a, &b, sizeof(a));
    lm_tunables_free(t);
    lm_tunables_free(NULL);
}

int run_generic_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_is_whole),
        cmocka_unit_test(test_qmp_roundtrip_every_row),
        cmocka_unit_test(test_hmp_roundtrip_every_row),
        cmocka_unit_test(test_errors_every_row),
        cmocka_unit_test(test_atomic_set),
        cmocka_unit_test(test_liveness_every_row),
        cmocka_unit_test(test_kick_exactly_on_kick_rows),
        cmocka_unit_test(test_extended_capabilities),
        cmocka_unit_test(test_legacy_commands),
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_aliases_accepted_not_shown),
        cmocka_unit_test(test_snapshot_and_defaults),
    };
    return cmocka_run_group_tests_name("tunables-generic", tests, NULL, NULL);
}
