/*
 * test-cancel.c - issue 3/4: migrate_cancel at several points of a
 * migration between real livemigd processes: right after migrate (setup
 * or the first pass), during a slow max-bandwidth-limited pass, while
 * switchover-hold keeps it from finishing, and in pre-switchover with the
 * guest stopped.  Each time: the source ends 'cancelled' within 5 s, its
 * guest runs, writes and passes guest-verify; the destination discards
 * what it got (ends failed or cancelled, guest not running); and a new
 * migration to a fresh destination completes and verifies.
 */
#include "itest.h"

#include <stdio.h>
#include <string.h>

#define SPEC "pattern,size=128M,threads=1,dirty-rate=20M,fill=random"
#define SIZE (128 * IT_MiB)

static void cancel_and_check(lmh_daemon *src, lmh_daemon *dst,
                             const char *when)
{
    long long t0 = it_now_ms();
    json_object_put(lmh_ok(src->qmp, "migrate_cancel", NULL));
    const char *end = it_wait_end(src, 30000);
    long long took = it_now_ms() - t0;
    if (strcmp(end, "cancelled") != 0)
        it_fail("migrate_cancel %s: the source ended '%s'", when, end);
    fprintf(stderr, "cancel %s: cancelled after %lld ms\n", when, took);

    char st[64];
    if (!it_running(src, st, sizeof(st)))
        it_fail("after migrate_cancel %s the source guest does not run "
                "(query-status '%s')", when, st);
    it_verify_ok(src, "source");
    it_wait_guest_writes(src, "source", 30000);
    if (it_guest_int(src, "throttle-percentage") != 0)
        it_fail("the source guest is still throttled after the cancel");

    end = it_wait_dst_end(dst, 30000);
    if (strcmp(end, "failed") != 0 && strcmp(end, "cancelled") != 0)
        it_fail("after migrate_cancel %s on the source, the destination "
                "ended '%s'", when, end);
    if (it_running(dst, st, sizeof(st)))
        it_fail("after migrate_cancel %s the destination guest runs "
                "(query-status '%s')", when, st);

    /* A new migration afterwards completes. */
    it_set_params(src, "{\"max-bandwidth\": 0, \"switchover-hold\": false}");
    it_set_cap(src, "pause-before-switchover", false);
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *dst2 = it_start(SPEC, uri, NULL);
    it_migrate(src, uri);
    it_check_completed(src, dst2, SIZE, true);
}

static void test_cancel_right_after_migrate(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_migrate(src, uri);
    cancel_and_check(src, dst, "right after migrate");
}

static void test_cancel_slow(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_params(src, "{\"max-bandwidth\": 20971520}");
    it_migrate(src, uri);
    /* One second into a ~6 s first pass. */
    it_wait_qm_above(src, "total-time", 1000, 30000);
    assert_string_equal(it_status(src), "active");
    cancel_and_check(src, dst, "during a slow pass");
}

static void test_cancel_held(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_params(src, "{\"switchover-hold\": true}");
    it_migrate(src, uri);
    it_wait_qm_above(src, "ram.dirty-sync-count", 3, 30000);
    assert_string_equal(it_status(src), "active");
    cancel_and_check(src, dst, "during switchover-hold");
}

static void test_cancel_pre_switchover(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_cap(src, "pause-before-switchover", true);
    it_migrate(src, uri);
    it_wait_status(src, "pre-switchover", 30000);
    char st[64];
    if (it_running(src, st, sizeof(st)))
        it_fail("in pre-switchover the source guest runs");
    cancel_and_check(src, dst, "in pre-switchover");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cancel_right_after_migrate,
                                  it_teardown),
        cmocka_unit_test_teardown(test_cancel_slow, it_teardown),
        cmocka_unit_test_teardown(test_cancel_held, it_teardown),
        cmocka_unit_test_teardown(test_cancel_pre_switchover, it_teardown),
    };
    return cmocka_run_group_tests_name("integration-cancel", tests, NULL,
                                       NULL);
}
