/*
 * test-converge.c - issue 4, auto-converge on real livemigd processes.
 *
 * A 32M guest dirtying 96 MB/s over a link held to 32 MiB/s with
 * downtime-limit 50 ms cannot converge on its own:
 *  - without auto-converge it does not complete within 6 s: status active,
 *    verdict not "converged", several passes; then migrate_cancel leaves
 *    the source guest running and intact;
 *  - with auto-converge (cpu-throttle-initial 30, cpu-throttle-increment
 *    20) it completes; query-migrate showed cpu-throttle-percentage > 0
 *    during the migration; afterwards the source guest's throttle is back
 *    to 0; the destination runs and verifies; downtime <= 50 ms;
 *  - with the throttle pinned at 50 %: the guest writes at most 65 % of
 *    its unthrottled rate (livemig.h: "slow the guest down to (100 -
 *    percent) % of its speed"); a cancel lifts the throttle (the guest's
 *    throttle-percentage 0, it runs and verifies).
 */
#include "itest.h"

#include <stdio.h>
#include <string.h>

#define SPEC "pattern,size=32M,threads=1,dirty-rate=96M,fill=random"
#define SIZE (32 * IT_MiB)
#define LINK "{\"max-bandwidth\": 33554432, \"downtime-limit\": 50}"
#define AC_PARAMS "{\"cpu-throttle-initial\": 30, " \
                  "\"cpu-throttle-increment\": 20}"

static void test_without_auto_converge(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_params(src, LINK);
    it_set_cap(src, "auto-converge", false);
    it_migrate(src, uri);

    long long t0 = it_now_ms(), max_throttle = 0;
    while (it_now_ms() - t0 < 6000) {
        json_object *r = it_qm(src);
        const char *st = lmh_get_str(r, "status");
        if (!st || (strcmp(st, "active") != 0 && strcmp(st, "setup") != 0))
            it_fail("without auto-converge the migration became '%s' "
                    "within 6 s: %s", st ? st : "?",
                    json_object_to_json_string(r));
        json_object *t = lmh_get(r, "cpu-throttle-percentage");
        if (t && json_object_get_int64(t) > max_throttle)
            max_throttle = json_object_get_int64(t);
        json_object_put(r);
        it_sleep_ms(50);
    }
    json_object *r = it_qm(src);
    char verdict_buf[64];
    const char *v = lmh_get_str(r, "convergence.verdict");
    snprintf(verdict_buf, sizeof(verdict_buf), "%s", v ? v : "");
    const char *verdict = v ? verdict_buf : NULL;
    long long passes = lmh_get_int(r, "ram.dirty-sync-count");
    char shown[1024];
    snprintf(shown, sizeof(shown), "%s",
             json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
    json_object_put(r);
    fprintf(stderr, "without auto-converge after 6 s: %s\n", shown);
    if (!verdict || strcmp(verdict, "converged") == 0)
        it_fail("verdict '%s' for a guest dirtying 3x the link",
                verdict ? verdict : "(none)");
    if (passes < 3)
        it_fail("only %lld passes in 6 s (a pass of the 32M guest takes "
                "1 s at 32 MiB/s)", passes);
    if (max_throttle != 0)
        it_fail("cpu-throttle-percentage %lld without auto-converge",
                max_throttle);
    if (it_guest_int(src, "throttle-percentage") != 0)
        it_fail("guest throttled without auto-converge");

    json_object_put(lmh_ok(src->qmp, "migrate_cancel", NULL));
    it_wait_status(src, "cancelled", 30000);
    char st[64];
    if (!it_running(src, st, sizeof(st)))
        it_fail("source guest does not run after the cancel ('%s')", st);
    it_verify_ok(src, "source");
    const char *e = it_wait_end(dst, 30000);
    if (strcmp(e, "completed") == 0 || it_running(dst, st, sizeof(st)))
        it_fail("destination of a cancelled migration ended '%s' and runs "
                "('%s')", e, st);
}

/* Run a migration with auto-converge until cpu-throttle-percentage > 0
 * (returns the highest seen) or, with @to_end, until it ends. */
static long long watch_throttle(lmh_daemon *src, bool to_end,
                                int timeout_ms, char *end_status,
                                size_t len)
{
    long long t0 = it_now_ms(), max_throttle = 0;
    for (;;) {
        json_object *r = it_qm(src);
        char st[64];
        snprintf(st, sizeof(st), "%s", lmh_get_str(r, "status"));
        json_object *t = lmh_get(r, "cpu-throttle-percentage");
        if (t && json_object_get_int64(t) > max_throttle)
            max_throttle = json_object_get_int64(t);
        json_object_put(r);
        if (it_is_terminal(st)) {
            snprintf(end_status, len, "%s", st);
            return max_throttle;
        }
        if (!to_end && max_throttle > 0) {
            snprintf(end_status, len, "%s", st);
            return max_throttle;
        }
        if (it_now_ms() - t0 > timeout_ms)
            it_fail("auto-converge: still '%s' after %d ms (highest "
                    "throttle %lld %%)", st, timeout_ms, max_throttle);
        it_sleep_ms(20);
    }
}

static void test_with_auto_converge(void **state)
{
    (void)state;
    char uri[64], end[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_params(src, LINK);
    it_set_params(src, AC_PARAMS);
    it_set_cap(src, "auto-converge", true);
    long long t0 = it_now_ms();
    it_migrate(src, uri);
    long long max_throttle = watch_throttle(src, true, 30000, end,
                                            sizeof(end));
    fprintf(stderr, "auto-converge: '%s' after %lld ms, highest throttle "
            "%lld %%\n", end, it_now_ms() - t0, max_throttle);
    if (strcmp(end, "completed") != 0)
        it_fail("with auto-converge the migration ended '%s'", end);
    if (max_throttle <= 0)
        it_fail("completed, but cpu-throttle-percentage was never above 0");
    it_check_completed(src, dst, SIZE, true);
    long long left = it_guest_int(src, "throttle-percentage");
    if (left != 0)
        it_fail("the source guest's throttle-percentage is %lld after the "
                "migration; the throttle must be lifted", left);
    if (it_guest_int(dst, "throttle-percentage") != 0)
        it_fail("the destination guest runs throttled");
}

/* Pages the guest of @d writes per second, over a @ms window. */
static double guest_rate(lmh_daemon *d, int ms)
{
    long long p0 = it_guest_int(d, "pages-written"), t0 = it_now_ms();
    it_sleep_ms(ms);   /* a measurement window, not synchronisation */
    long long p1 = it_guest_int(d, "pages-written"), t1 = it_now_ms();
    return (double)(p1 - p0) * 1000.0 / (double)(t1 - t0);
}

/*
 * The throttle does what livemig.h promises ("slow the guest down to
 * (100 - percent) % of its speed").  With
 * cpu-throttle-initial = max-cpu-throttle = 50 the engine applies exactly
 * 50 %: the guest's write rate must fall to at most 65 % of what it was
 * before the migration (50 % plus slack).
 */
static void test_auto_converge_throttles(void **state)
{
    (void)state;
    char uri[64], st[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_params(src, LINK);
    it_set_params(src, "{\"cpu-throttle-initial\": 50, "
                       "\"cpu-throttle-increment\": 10, "
                       "\"max-cpu-throttle\": 50}");
    it_set_cap(src, "auto-converge", true);
    it_wait_guest_writes(src, "source", 30000);
    double r0 = guest_rate(src, 1000);

    it_migrate(src, uri);
    watch_throttle(src, false, 20000, st, sizeof(st));
    if (strcmp(st, "active") != 0)
        it_fail("throttled migration is '%s', expected 'active'", st);
    long long g = it_guest_int(src, "throttle-percentage");
    if (g != 50)
        it_fail("query-migrate shows a throttle but the guest's "
                "throttle-percentage is %lld, expected 50", g);
    double r1 = guest_rate(src, 1000);
    fprintf(stderr, "guest writes %.0f pages/s unthrottled, %.0f pages/s "
            "at 50 %% throttle\n", r0, r1);
    if (r1 > 0.65 * r0)
        it_fail("at throttle-percentage 50 the guest still writes %.0f "
                "pages/s, %.0f %% of its unthrottled %.0f pages/s (expected "
                "at most 65 %%): the throttle does not slow it", r1,
                100.0 * r1 / r0, r0);

    json_object_put(lmh_ok(src->qmp, "migrate_cancel", NULL));
    it_wait_status(src, "cancelled", 30000);
    (void)dst;
}

/* A cancel once throttled lifts the throttle. */
static void test_auto_converge_cancel_lifts_throttle(void **state)
{
    (void)state;
    char uri[64], st[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_params(src, LINK);
    it_set_params(src, AC_PARAMS);
    it_set_cap(src, "auto-converge", true);
    it_migrate(src, uri);
    watch_throttle(src, false, 20000, st, sizeof(st));
    if (strcmp(st, "active") != 0)
        it_fail("throttled migration is '%s', expected 'active'", st);
    long long g = it_guest_int(src, "throttle-percentage");
    if (g <= 0)
        it_fail("query-migrate shows a throttle but the guest's "
                "throttle-percentage is %lld", g);
    json_object_put(lmh_ok(src->qmp, "migrate_cancel", NULL));
    it_wait_status(src, "cancelled", 30000);
    g = it_guest_int(src, "throttle-percentage");
    if (g != 0)
        it_fail("after migrate_cancel the guest stays throttled at %lld %%",
                g);
    if (!it_running(src, st, sizeof(st)))
        it_fail("source guest does not run after the cancel ('%s')", st);
    it_verify_ok(src, "source");
    it_wait_guest_writes(src, "source", 30000);
    const char *e = it_wait_end(dst, 30000);
    if (strcmp(e, "completed") == 0)
        it_fail("destination completed a cancelled migration");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_without_auto_converge, it_teardown),
        cmocka_unit_test_teardown(test_with_auto_converge, it_teardown),
        cmocka_unit_test_teardown(test_auto_converge_throttles,
                                  it_teardown),
        cmocka_unit_test_teardown(test_auto_converge_cancel_lifts_throttle,
                                  it_teardown),
    };
    return cmocka_run_group_tests_name("integration-converge", tests, NULL,
                                       NULL);
}
