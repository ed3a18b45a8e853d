/*
 * test-errors.c - errors that lead somewhere, on a real daemon: "did you
 * mean" for mistyped parameters, capabilities and HMP commands; HMP hints
 * that name HMP commands; tcp:// and out-of-range ports explained; and,
 * after a cancelled migration left the destination no longer listening,
 * a hint to run migrate-incoming on it again, which then works.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hmp_has(lmh_daemon *d, const char *line, const char *want,
                    const char *unwanted)
{
    char *t = lmh_hmp(d->qmp, line);
    if (!strstr(t, want) || (unwanted && strstr(t, unwanted)))
        it_fail("HMP '%s' said '%s'; expected '%s'%s%s", line, t, want,
                unwanted ? " and no " : "", unwanted ? unwanted : "");
    free(t);
}

static void test_did_you_mean(void **state)
{
    (void)state;
    lmh_daemon *d = it_start("pattern,size=16M", NULL, NULL);
    lmh_err(d->qmp, "migrate-set-parameters", "{\"downtime-limt\": 300}",
            "GenericError", "did you mean 'downtime-limit'?");
    lmh_err(d->qmp, "migrate-set-parameters", "{\"max_bandwidth\": 1}",
            "GenericError", "did you mean 'max-bandwidth'?");
    lmh_err(d->qmp, "migrate-set-capabilities",
            "{\"capabilities\": [{\"capability\": \"xbzlre\", "
            "\"state\": true}]}", "GenericError", "did you mean 'xbzrle'?");
    /* nothing close: no guess */
    char *t = lmh_hmp(d->qmp, "migrate_set_parameter qwertyuiop 1");
    if (strstr(t, "did you mean"))
        it_fail("a far-off name got a guess: %s", t);
    free(t);
    hmp_has(d, "migrate_set_parameter downtime_limit 300ms",
            "did you mean 'downtime-limit'?", NULL);
    hmp_has(d, "migrate_set_capability evnets on", "did you mean 'events'?",
            NULL);
    hmp_has(d, "migrte tcp:127.0.0.1:1", "did you mean 'migrate'?", NULL);
    /* HMP hints name HMP commands, not QMP ones */
    hmp_has(d, "migrate_set_parameter nosuchthing 1",
            "help migrate_set_parameter", "query-");
    hmp_has(d, "migrate_continue pre-switchover", "migrate_continue",
            "migrate-continue");
    hmp_has(d, "migrate_set_capability nosuchcap on",
            "info migrate_capabilities", "query-");
}

static void test_uri_mistakes(void **state)
{
    (void)state;
    lmh_daemon *d = it_start("pattern,size=16M", NULL, NULL);
    lmh_err(d->qmp, "migrate", "{\"uri\": \"tcp://127.0.0.1:4444\"}",
            "GenericError", "use 'tcp:127.0.0.1:4444'");
    lmh_err(d->qmp, "migrate", "{\"uri\": \"tcp:127.0.0.1:99999\"}",
            "GenericError", "port 99999");
    lmh_err(d->qmp, "migrate", "{\"uri\": \"tcp:127.0.0.1:99999\"}",
            "GenericError", "1 to 65535");
    /* the daemon keeps serving, its guest untouched */
    it_verify_ok(d, "source");
}

static void test_hint_after_cancel(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start("pattern,size=64M,dirty-rate=8M", NULL, NULL);
    lmh_daemon *dst = it_start("pattern,size=64M", uri, NULL);
    it_set_params(src, "{\"max-bandwidth\": 8388608}");
    it_migrate(src, uri);
    it_wait_status(dst, "active", 30000);
    json_object_put(lmh_ok(src->qmp, "migrate_cancel", NULL));
    it_wait_end(src, 30000);
    const char *end = it_wait_end(dst, 30000);
    if (strcmp(end, "failed") && strcmp(end, "cancelled"))
        it_fail("the destination ended '%s' after the cancel", end);

    /* migrate answers at once and connects on the migration thread: the
     * hint is in the failed migration's error-desc, in HMP words at HMP */
    it_set_params(src, "{\"max-bandwidth\": 0}");
    it_migrate(src, uri);
    end = it_wait_end(src, 30000);
    if (strcmp(end, "failed"))
        it_fail("a migrate to a destination that stopped listening ended "
                "'%s', not 'failed'", end);
    json_object *q = it_qm(src);
    const char *desc = lmh_get_str(q, "error-desc");
    if (!desc || !strstr(desc, "run migrate-incoming"))
        it_fail("the error names no migrate-incoming: %s",
                desc ? desc : "(no error-desc)");
    json_object_put(q);
    char *t;
    char line[128];
    snprintf(line, sizeof(line), "migrate %s", uri);
    t = lmh_hmp(src->qmp, line);
    free(t);
    end = it_wait_end(src, 30000);
    t = lmh_hmp(src->qmp, "info migrate");
    if (!strstr(t, "run migrate_incoming"))
        it_fail("HMP info migrate's hint names no migrate_incoming: %s", t);
    free(t);

    /* following the hint works */
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
    it_migrate(src, uri);
    it_wait_status(dst, "completed", 60000);
    it_wait_status(src, "completed", 60000);
    it_verify_ok(dst, "destination");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_did_you_mean, it_teardown),
        cmocka_unit_test_teardown(test_uri_mistakes, it_teardown),
        cmocka_unit_test_teardown(test_hint_after_cancel, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
