/*
 * test-refused.c - a tunable that can't be honoured is refused when it is
 * set, and never fails a migration later: xbzrle-cache-size of 1 TiB,
 * before a migration and during one (through QMP, HMP and the legacy
 * command); the old value stays, and the migration goes on and completes.
 */
#include "itest.h"

#include <stdio.h>
#include <string.h>

#define SPEC "pattern,size=64M,threads=1,dirty-rate=20M,fill=zero"
#define TIB "1099511627776"

static long long cache_param(lmh_daemon *d)
{
    json_object *p = lmh_ok(d->qmp, "query-migrate-parameters", NULL);
    long long v = lmh_get_int(p, "xbzrle-cache-size");
    json_object_put(p);
    return v;
}

/* Every way of setting 1 TiB is refused, naming the parameter; the value
 * stays @keep. */
static void check_refused(lmh_daemon *d, long long keep)
{
    lmh_err(d->qmp, "migrate-set-parameters",
            "{\"xbzrle-cache-size\": " TIB "}", "GenericError",
            "'xbzrle-cache-size'");
    lmh_err(d->qmp, "migrate-set-cache-size", "{\"value\": " TIB "}",
            "GenericError", "'xbzrle-cache-size'");
    lmh_err(d->qmp, "migrate-set-capabilities",
            "{\"capabilities\": [{\"capability\": \"xbzrle-cache-size\", "
            "\"value\": " TIB "}]}", "GenericError", "'xbzrle-cache-size'");
    char *t = lmh_hmp(d->qmp, "migrate_set_parameter xbzrle-cache-size 1T");
    if (!strstr(t, "xbzrle-cache-size") || !strstr(t, "cannot be had"))
        it_fail("HMP accepted a 1 TiB xbzrle cache: '%s'", t);
    free(t);
    if (cache_param(d) != keep)
        it_fail("xbzrle-cache-size is %lld after refused sets, was %lld",
                cache_param(d), keep);
}

static void test_cache_too_big(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_cap(src, "xbzrle", true);

    /* Before migrate. */
    it_set_params(src, "{\"xbzrle-cache-size\": 33554432}");
    check_refused(src, 33554432);

    /* During it, held so passes go on. */
    it_set_params(src, "{\"switchover-hold\": true}");
    it_migrate(src, uri);
    it_wait_qm_above(src, "ram.dirty-sync-count", 2, 30000);
    check_refused(src, 33554432);
    /* A size that can be had still applies live. */
    it_set_params(src, "{\"xbzrle-cache-size\": 16777216}");
    long long passes = it_qm_int(src, "ram.dirty-sync-count", 0);
    it_wait_qm_above(src, "ram.dirty-sync-count", passes + 2, 30000);
    if (strcmp(it_status(src), "active") != 0)
        it_fail("the migration is '%s' after the refused sets",
                it_status(src));
    if (it_qm_int(src, "xbzrle-cache.cache-size", -1) != 16777216)
        it_fail("xbzrle-cache.cache-size is %lld, not the 16 MiB set",
                it_qm_int(src, "xbzrle-cache.cache-size", -1));
    it_set_params(src, "{\"switchover-hold\": false}");
    it_check_completed(src, dst, 64 * IT_MiB, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cache_too_big, it_teardown),
    };
    return cmocka_run_group_tests_name("integration-refused", tests, NULL,
                                       NULL);
}
