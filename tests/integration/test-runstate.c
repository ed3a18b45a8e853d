/*
 * test-runstate.c - the guest's run state travels, as in QEMU: a guest
 * stopped on the source arrives stopped (over tcp and through a file),
 * query-status says so, `cont` starts it and it verifies; a migration of a
 * stopped guest that is cancelled leaves it stopped.
 */
#include "itest.h"

#include <stdio.h>
#include <string.h>

#define SPEC "pattern,size=32M,threads=1,dirty-rate=8M,fill=random"

static void check_paused(lmh_daemon *d, const char *who)
{
    char st[64];
    if (it_running(d, st, sizeof(st)))
        it_fail("the %s guest runs; it was stopped before the migration",
                who);
    if (strcmp(st, "paused") != 0)
        it_fail("%s query-status is '%s', expected 'paused'", who, st);
}

static void check_cont(lmh_daemon *d, const char *who)
{
    char st[64];
    json_object_put(lmh_ok(d->qmp, "cont", NULL));
    if (!it_running(d, st, sizeof(st)))
        it_fail("after cont the %s guest does not run ('%s')", who, st);
    it_wait_guest_writes(d, who, 5000);
    it_verify_ok(d, who);
}

static void test_stopped_arrives_stopped(void **state)
{
    (void)state;
    char uri[64], st[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    json_object_put(lmh_ok(src->qmp, "stop", NULL));
    check_paused(src, "source");
    it_migrate(src, uri);
    it_wait_status(src, "completed", 30000);
    it_wait_status(dst, "completed", 10000);
    if (it_running(src, st, sizeof(st)) || strcmp(st, "postmigrate") != 0)
        it_fail("source query-status is '%s' after completing", st);
    check_paused(dst, "destination");
    /* Loaded whole while stopped. */
    it_verify_ok(dst, "destination");
    long long w = it_guest_int(dst, "pages-written");
    check_paused(dst, "destination");
    if (it_guest_int(dst, "pages-written") != w)
        it_fail("the paused destination guest writes pages");
    check_cont(dst, "destination");
}

static void test_stopped_through_file(void **state)
{
    (void)state;
    char path[320], uri[340];
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_path(src, "paused.bin", path, sizeof(path));
    snprintf(uri, sizeof(uri), "file:%s", path);
    json_object_put(lmh_ok(src->qmp, "stop", NULL));
    it_migrate(src, uri);
    it_wait_status(src, "completed", 30000);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_wait_status(dst, "completed", 30000);
    check_paused(dst, "restored");
    it_verify_ok(dst, "restored");
    check_cont(dst, "restored");
}

static void test_stopped_cancelled_stays_stopped(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_cap(src, "pause-before-switchover", true);
    json_object_put(lmh_ok(src->qmp, "stop", NULL));
    it_migrate(src, uri);
    it_wait_status(src, "pre-switchover", 30000);
    json_object_put(lmh_ok(src->qmp, "migrate_cancel", NULL));
    it_wait_status(src, "cancelled", 10000);
    check_paused(src, "source");
    const char *end = it_wait_end(dst, 10000);
    if (strcmp(end, "completed") == 0 || it_running(dst, NULL, 0))
        it_fail("the destination ended '%s' after the source's cancel", end);
    check_cont(src, "source");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_stopped_arrives_stopped, it_teardown),
        cmocka_unit_test_teardown(test_stopped_through_file, it_teardown),
        cmocka_unit_test_teardown(test_stopped_cancelled_stays_stopped,
                                  it_teardown),
    };
    return cmocka_run_group_tests_name("integration-runstate", tests, NULL,
                                       NULL);
}
