/*
 * test-roundtrip.c - every tunable of the table, set and queried back
 * through each way a user has: QMP migrate-set-parameters and the extended
 * migrate-set-capabilities, HMP migrate_set_parameter with unit suffixes,
 * and livemig-ctl set/get.  The list comes from
 * query-migrate-parameter-info, so a new row is covered without touching
 * this file.  Plus: atomic sets, legacy commands.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int setup(void **state)
{
    *state = lmh_start(NULL);
    return 0;
}

static int teardown(void **state)
{
    lmh_daemon *d = *state;
    bool clean = lmh_stop(d);
    lmh_free(d);
    assert_true(clean);
    return 0;
}

/* One tunable, a value to set that differs from the default, and how to
 * spell it for HMP (with a unit suffix where the type has one). */
typedef struct pick {
    const char *name;
    const char *type;
    bool capability;
    json_object *value;     /* the JSON value to set and expect back */
    char hmp[96];           /* the same value as HMP text */
    char shown[96];         /* as livemig-ctl get prints it */
} pick;

static void pick_value(json_object *info, pick *p)
{
    p->name = lmh_get_str(info, "name");
    p->type = lmh_get_str(info, "type");
    json_object *cap = lmh_get(info, "capability");
    p->capability = cap && json_object_get_boolean(cap);
    json_object *def = lmh_get(info, "default");
    if (p->capability || !strcmp(p->type, "bool")) {
        bool v = !json_object_get_boolean(def);
        p->value = json_object_new_boolean(v);
        snprintf(p->hmp, sizeof(p->hmp), "%s", v ? "on" : "off");
        snprintf(p->shown, sizeof(p->shown), "%s", v ? "on" : "off");
    } else if (!strcmp(p->type, "enum")) {
        json_object *vals = lmh_get(info, "values");
        const char *dv = json_object_get_string(def), *v = NULL;
        for (size_t i = 0; i < json_object_array_length(vals) && !v; i++) {
            const char *c = json_object_get_string(
                json_object_array_get_idx(vals, i));
            if (strcmp(c, dv))
                v = c;
        }
        assert_non_null(v);
        p->value = json_object_new_string(v);
        snprintf(p->hmp, sizeof(p->hmp), "%s", v);
        snprintf(p->shown, sizeof(p->shown), "%s", v);
    } else if (!strcmp(p->type, "string")) {
        p->value = json_object_new_string("lm-roundtrip");
        snprintf(p->hmp, sizeof(p->hmp), "lm-roundtrip");
        snprintf(p->shown, sizeof(p->shown), "lm-roundtrip");
    } else {
        uint64_t d = (uint64_t)json_object_get_int64(def);
        uint64_t mn = (uint64_t)lmh_get_int(info, "min");
        uint64_t mx = (uint64_t)lmh_get_int(info, "max");
        uint64_t step = !strcmp(p->type, "size") ? 1024 : 1;
        uint64_t v = d + step <= mx ? d + step : d - step;
        if (v < mn || v > mx)
            v = d + 1 <= mx ? d + 1 : d - 1;
        p->value = json_object_new_int64((int64_t)v);
        if (!strcmp(p->type, "size") && v % 1024 == 0)
            snprintf(p->hmp, sizeof(p->hmp), "%" PRIu64 "K", v / 1024);
        else if (!strcmp(p->type, "ms"))
            snprintf(p->hmp, sizeof(p->hmp), "%" PRIu64 "ms", v);
        else
            snprintf(p->hmp, sizeof(p->hmp), "%" PRIu64, v);
        snprintf(p->shown, sizeof(p->shown), "%" PRIu64, v);
    }
}

/* The current value of a tunable (new reference), from the plain queries
 * and from the extended capabilities query; both must agree. */
static json_object *current(livemig_qmp *q, const pick *p)
{
    json_object *v = NULL;
    if (p->capability) {
        json_object *caps = lmh_ok(q, "query-migrate-capabilities", NULL);
        for (size_t i = 0; i < json_object_array_length(caps); i++) {
            json_object *c = json_object_array_get_idx(caps, i);
            if (!strcmp(lmh_get_str(c, "capability"), p->name))
                v = json_object_get(lmh_get(c, "state"));
        }
        json_object_put(caps);
    } else {
        json_object *params = lmh_ok(q, "query-migrate-parameters", NULL);
        v = json_object_get(lmh_get(params, p->name));
        json_object_put(params);
    }
    if (!v)
        fail_msg("'%s' is not in the query output", p->name);
    json_object *ext = lmh_ok(q, "query-migrate-capabilities",
                              "{\"extended\": true}");
    bool found = false;
    for (size_t i = 0; i < json_object_array_length(ext); i++) {
        json_object *c = json_object_array_get_idx(ext, i);
        if (strcmp(lmh_get_str(c, "capability"), p->name))
            continue;
        found = true;
        json_object *ev = lmh_get(c, p->capability ? "state" : "value");
        if (!json_object_equal(ev, v))
            fail_msg("extended query disagrees on '%s': %s vs %s", p->name,
                     json_object_to_json_string(ev),
                     json_object_to_json_string(v));
        assert_non_null(lmh_get(c, "live"));
    }
    json_object_put(ext);
    if (!found)
        fail_msg("'%s' missing from the extended capabilities", p->name);
    return v;
}

static void check_readback(livemig_qmp *q, const pick *p, const char *how)
{
    json_object *v = current(q, p);
    if (!json_object_equal(v, p->value))
        fail_msg("%s: '%s' reads back %s, expected %s", how, p->name,
                 json_object_to_json_string(v),
                 json_object_to_json_string(p->value));
    json_object_put(v);
}

static json_object *infos(livemig_qmp *q)
{
    json_object *info = lmh_ok(q, "query-migrate-parameter-info", NULL);
    assert_true(json_object_array_length(info) >= 5);
    return info;
}

static void set_qmp(livemig_qmp *q, const pick *p, json_object *value)
{
    if (p->capability) {
        json_object *a = lmh_json("{\"capabilities\": [{\"capability\": "
                                  "\"%s\", \"state\": %s}]}", p->name,
                                  json_object_to_json_string(value));
        json_object_put(lmh_ok_obj(q, "migrate-set-capabilities", a));
    } else {
        json_object *a = json_object_new_object();
        json_object_object_add(a, p->name, json_object_get(value));
        json_object_put(lmh_ok_obj(q, "migrate-set-parameters", a));
    }
}

/* Capabilities that are refused without another one (QEMU's rule too):
 * that one is set first and cleared after. */
static const char *prerequisite(const pick *p)
{
    if (p->capability && !strcmp(p->name, "postcopy-preempt"))
        return "postcopy-ram";
    return NULL;
}

static void set_cap(livemig_qmp *q, const char *name, bool on)
{
    json_object *a = lmh_json("{\"capabilities\": [{\"capability\": "
                              "\"%s\", \"state\": %s}]}", name,
                              on ? "true" : "false");
    json_object_put(lmh_ok_obj(q, "migrate-set-capabilities", a));
}

static void test_qmp_roundtrip(void **state)
{
    lmh_daemon *d = *state;
    json_object *info = infos(d->qmp);
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *e = json_object_array_get_idx(info, i);
        pick p;
        pick_value(e, &p);
        const char *pre = prerequisite(&p);
        if (pre)
            set_cap(d->qmp, pre, true);
        set_qmp(d->qmp, &p, p.value);
        check_readback(d->qmp, &p, "QMP");
        /* Back to the default, through the extended capabilities form
         * for parameters. */
        json_object *def = lmh_get(e, "default");
        if (!p.capability) {
            json_object *a = lmh_json("{\"capabilities\": [{\"capability\": "
                                      "\"%s\", \"value\": %s}]}", p.name,
                                      json_object_to_json_string(def));
            json_object_put(lmh_ok_obj(d->qmp, "migrate-set-capabilities",
                                       a));
        } else {
            set_qmp(d->qmp, &p, def);
        }
        json_object *v = current(d->qmp, &p);
        assert_true(json_object_equal(v, def));
        json_object_put(v);
        json_object_put(p.value);
        if (pre)
            set_cap(d->qmp, pre, false);
    }
    json_object_put(info);
}

static void test_hmp_roundtrip(void **state)
{
    lmh_daemon *d = *state;
    json_object *info = infos(d->qmp);
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        pick p;
        pick_value(json_object_array_get_idx(info, i), &p);
        char line[256];
        snprintf(line, sizeof(line), "%s %s %s",
                 p.capability ? "migrate_set_capability"
                              : "migrate_set_parameter", p.name, p.hmp);
        char *t = lmh_hmp(d->qmp, line);
        if (t[0])
            fail_msg("HMP '%s' said: %s", line, t);
        free(t);
        check_readback(d->qmp, &p, line);
        t = lmh_hmp(d->qmp, p.capability ? "info migrate_capabilities"
                                         : "info migrate_parameters");
        if (!strstr(t, p.name))
            fail_msg("'%s' missing from HMP info:\n%s", p.name, t);
        free(t);
        json_object_put(p.value);
    }
    json_object_put(info);
}

static void test_ctl_roundtrip(void **state)
{
    lmh_daemon *d = *state;
    const char *ctl = lmh_ctl_path();
    json_object *info = infos(d->qmp);
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        pick p;
        pick_value(json_object_array_get_idx(info, i), &p);
        char assign[256];
        snprintf(assign, sizeof(assign), "%s=%s", p.name, p.hmp);
        const char *set[] = { ctl, "-s", d->sock, "set", assign, NULL };
        char *out = NULL, *err = NULL;
        int rc = lmh_run(set, NULL, &out, &err, 10000);
        if (rc != 0)
            fail_msg("livemig-ctl set %s: exit %d: %s%s", assign, rc, out,
                     err);
        free(out);
        free(err);
        check_readback(d->qmp, &p, "livemig-ctl set");
        const char *get[] = { ctl, "-s", d->sock, "get", p.name, NULL };
        rc = lmh_run(get, NULL, &out, &err, 10000);
        assert_int_equal(rc, 0);
        char want[256];
        snprintf(want, sizeof(want), "%s: %s\n", p.name, p.shown);
        if (strcmp(out, want))
            fail_msg("livemig-ctl get %s printed '%s', expected '%s'",
                     p.name, out, want);
        free(out);
        free(err);
        json_object_put(p.value);
    }
    json_object_put(info);
}

static void test_ctl_commands(void **state)
{
    lmh_daemon *d = *state;
    const char *ctl = lmh_ctl_path();
    char *out, *err;
    /* Environment default for the socket. */
    char env[400];
    snprintf(env, sizeof(env), "LIVEMIG_SOCKET=%s", d->sock);
    const char *envs[] = { env, NULL };
    const char *status[] = { ctl, "status", NULL };
    assert_int_equal(lmh_run(status, envs, &out, &err, 10000), 0);
    assert_non_null(strstr(out, "VM status: running"));
    free(out);
    free(err);
    const char *params[] = { ctl, "-s", d->sock, "params", NULL };
    assert_int_equal(lmh_run(params, NULL, &out, &err, 10000), 0);
    assert_non_null(strstr(out, "downtime-limit"));
    assert_non_null(strstr(out, "LIVE"));
    free(out);
    free(err);
    const char *caps[] = { ctl, "-s", d->sock, "caps", NULL };
    assert_int_equal(lmh_run(caps, NULL, &out, &err, 10000), 0);
    assert_non_null(strstr(out, "events: off"));
    free(out);
    free(err);
    const char *qmp[] = { ctl, "-s", d->sock, "qmp",
                          "{\"execute\": \"query-version\"}", NULL };
    assert_int_equal(lmh_run(qmp, NULL, &out, &err, 10000), 0);
    assert_non_null(strstr(out, "livemig"));
    free(out);
    free(err);
    const char *qbad[] = { ctl, "-s", d->sock, "qmp",
                           "{\"execute\": \"nope\"}", NULL };
    assert_int_equal(lmh_run(qbad, NULL, &out, &err, 10000), 1);
    assert_non_null(strstr(out, "CommandNotFound"));
    free(out);
    free(err);
    const char *hmp[] = { ctl, "-s", d->sock, "hmp", "info", "status",
                          NULL };
    assert_int_equal(lmh_run(hmp, NULL, &out, &err, 10000), 0);
    assert_string_equal(out, "VM status: running\n");
    free(out);
    free(err);
    const char *hbad[] = { ctl, "-s", d->sock, "hmp", "bogus", NULL };
    assert_int_equal(lmh_run(hbad, NULL, &out, &err, 10000), 1);
    free(out);
    free(err);
    const char *sbad[] = { ctl, "-s", d->sock, "set", "downtime-limit=0",
                           NULL };
    assert_int_equal(lmh_run(sbad, NULL, &out, &err, 10000), 1);
    assert_non_null(strstr(err, "downtime-limit"));
    free(out);
    free(err);
    const char *gbad[] = { ctl, "-s", d->sock, "get", "no-such", NULL };
    assert_int_equal(lmh_run(gbad, NULL, &out, &err, 10000), 1);
    free(out);
    free(err);
    const char *usage[] = { ctl, "-s", d->sock, "frobnicate", NULL };
    assert_int_equal(lmh_run(usage, NULL, &out, &err, 10000), 2);
    free(out);
    free(err);
    const char *usage2[] = { ctl, "-s", d->sock, "set", "novalue", NULL };
    assert_int_equal(lmh_run(usage2, NULL, &out, &err, 10000), 2);
    free(out);
    free(err);
    char nosock[400];
    lmh_path(d, "no-such.sock", nosock, sizeof(nosock));
    const char *noconn[] = { ctl, "-s", nosock, "status", NULL };
    assert_int_equal(lmh_run(noconn, NULL, &out, &err, 10000), 3);
    free(out);
    free(err);
    const char *help[] = { ctl, "-h", NULL };
    assert_int_equal(lmh_run(help, NULL, &out, &err, 10000), 0);
    assert_non_null(strstr(out, "usage: livemig-ctl"));
    free(out);
    free(err);
    /* events: -n stops after N; the STOP/RESUME come from this client. */
    const char *cancel[] = { ctl, "-s", d->sock, "cancel", NULL };
    int rc = lmh_run(cancel, NULL, &out, &err, 10000);
    assert_true(rc == 0 || rc == 1);
    free(out);
    free(err);
    const char *events[] = { ctl, "-s", d->sock, "events", "-t", "0.3",
                             NULL };
    assert_int_equal(lmh_run(events, NULL, &out, &err, 10000), 0);
    free(out);
    free(err);
}

static void test_atomic_set(void **state)
{
    lmh_daemon *d = *state;
    json_object *before = lmh_ok(d->qmp, "query-migrate-parameters", NULL);
    /* A good member and a bad one: nothing changes, the error names the
     * bad one. */
    lmh_err(d->qmp, "migrate-set-parameters",
            "{\"max-bandwidth\": 12345, \"downtime-limit\": 0}",
            "GenericError", "downtime-limit");
    lmh_err(d->qmp, "migrate-set-parameters",
            "{\"downtime-limit\": 1234, \"no-such\": 1}", "GenericError",
            "no-such");
    lmh_err(d->qmp, "migrate-set-capabilities",
            "{\"capabilities\": [{\"capability\": \"events\", "
            "\"state\": true}, {\"capability\": \"downtime-limit\", "
            "\"value\": -1}]}", "GenericError", "downtime-limit");
    json_object *after = lmh_ok(d->qmp, "query-migrate-parameters", NULL);
    assert_true(json_object_equal(before, after));
    json_object *caps = lmh_ok(d->qmp, "query-migrate-capabilities", NULL);
    for (size_t i = 0; i < json_object_array_length(caps); i++) {
        json_object *c = json_object_array_get_idx(caps, i);
        if (!strcmp(lmh_get_str(c, "capability"), "events"))
            assert_false(json_object_get_boolean(lmh_get(c, "state")));
    }
    json_object_put(caps);
    /* Several at once, all applied. */
    json_object_put(lmh_ok(d->qmp, "migrate-set-parameters",
                           "{\"max-bandwidth\": 4096, "
                           "\"downtime-limit\": 777}"));
    json_object *p = lmh_ok(d->qmp, "query-migrate-parameters", NULL);
    assert_int_equal(lmh_get_int(p, "max-bandwidth"), 4096);
    assert_int_equal(lmh_get_int(p, "downtime-limit"), 777);
    json_object_put(p);
    json_object_put(before);
    json_object_put(after);
}

static void test_legacy_commands(void **state)
{
    lmh_daemon *d = *state;
    json_object_put(lmh_ok(d->qmp, "migrate_set_downtime",
                           "{\"value\": 0.25}"));
    json_object_put(lmh_ok(d->qmp, "migrate_set_speed",
                           "{\"value\": 1048576}"));
    json_object *p = lmh_ok(d->qmp, "query-migrate-parameters", NULL);
    assert_int_equal(lmh_get_int(p, "downtime-limit"), 250);
    assert_int_equal(lmh_get_int(p, "max-bandwidth"), 1048576);
    json_object_put(p);
    lmh_err(d->qmp, "migrate_set_speed", "{\"value\": \"fast\"}",
            "GenericError", "'value'");
    lmh_err(d->qmp, "migrate_set_downtime", "{\"value\": 1, \"x\": 1}",
            "GenericError", "'x'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qmp_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hmp_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctl_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctl_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_atomic_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_commands, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
