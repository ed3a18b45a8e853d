/*
 * test-switchover.c - issue 4: switchover-hold and pause-before-switchover
 * on real livemigd processes.
 *
 * switchover-hold, idle guest (64M, dirty-rate=0): the migration stays
 *   'active' for more than 20 dirty syncs and never completes while held
 *   (no MIGRATION device/completed event); convergence.would-switchover is
 *   true; the source daemon uses under 5 % of a core over 2 s while held
 *   and converged (utime + stime from /proc/PID/stat) yet keeps syncing;
 *   clearing switchover-hold completes it within 100 ms of the set's reply
 *   (loopback, fast polling).
 * switchover-hold, dirtying guest (32M at 32 MB/s): more than 20 syncs,
 *   never completes; on a 24 MiB/s link downtime-limit 1 ms turns
 *   would-switchover false, 10 s turns it true from the next pass on (and
 *   it stays true); after release the migration completes and verifies.
 * pause-before-switchover: status pre-switchover with the source guest
 *   stopped; migrate-continue with a wrong state is an error and changes
 *   nothing; with state pre-switchover it completes; MIGRATION events are
 *   setup, active, pre-switchover, device, completed.  (migrate_cancel from
 *   pre-switchover and during a hold: test-cancel.c.)
 */
#include "itest.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool would_switchover(lmh_daemon *d, long long *syncs, char *status,
                             size_t len)
{
    json_object *r = it_qm(d);
    json_object *w = lmh_get(r, "convergence.would-switchover");
    if (!w)
        it_fail("query-migrate has no convergence.would-switchover: %s",
                json_object_to_json_string(r));
    bool v = json_object_get_boolean(w);
    if (syncs)
        *syncs = lmh_get_int(r, "ram.dirty-sync-count");
    if (status)
        snprintf(status, len, "%s", lmh_get_str(r, "status"));
    json_object_put(r);
    return v;
}

/* Held: wait for more than @n syncs, failing if the status ever leaves
 * 'active'. */
static void wait_held_syncs(lmh_daemon *src, long long n, int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms, syncs = 0;
    char st[64] = "";
    for (;;) {
        json_object *r = it_qm(src);
        snprintf(st, sizeof(st), "%s", lmh_get_str(r, "status"));
        syncs = lmh_get_int(r, "ram.dirty-sync-count");
        json_object_put(r);
        if (strcmp(st, "active") != 0 && strcmp(st, "setup") != 0)
            it_fail("with switchover-hold the status became '%s' after %lld "
                    "syncs", st, syncs);
        if (syncs > n)
            return;
        if (it_now_ms() > end)
            it_fail("only %lld dirty syncs in %d ms while held", syncs,
                    timeout_ms);
        it_sleep_ms(10);
    }
}

static void test_hold_idle(void **state)
{
    (void)state;
    const char *spec = "pattern,size=64M,threads=1,dirty-rate=0,fill=random";
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(spec, NULL, NULL);
    lmh_daemon *dst = it_start(spec, uri, NULL);
    it_set_cap(src, "events", true);
    it_set_params(src, "{\"switchover-hold\": true}");
    it_migrate(src, uri);
    wait_held_syncs(src, 20, 30000);

    long long syncs0;
    char st[64];
    long long end = it_now_ms() + 5000;
    while (!would_switchover(src, &syncs0, st, sizeof(st))) {
        if (it_now_ms() > end)
            it_fail("an idle held guest never shows would-switchover true");
        it_sleep_ms(10);
    }

    /* CPU while held and converged: measure a 2 s window, not polling
     * the daemon meanwhile. */
    long hz = sysconf(_SC_CLK_TCK);
    long long c0 = it_cpu_ticks(src->pid), t0 = it_now_ms();
    it_sleep_ms(2000);   /* measurement window, not synchronisation */
    long long c1 = it_cpu_ticks(src->pid), t1 = it_now_ms();
    assert_true(c0 >= 0 && c1 >= c0);
    double cpu_ms = (double)(c1 - c0) * 1000.0 / (double)hz;
    double pct = 100.0 * cpu_ms / (double)(t1 - t0);
    long long syncs1;
    bool ws = would_switchover(src, &syncs1, st, sizeof(st));
    fprintf(stderr, "held idle: %.1f %% of a core over %lld ms, %lld "
            "syncs\n", pct, t1 - t0, syncs1 - syncs0);
    if (strcmp(st, "active") != 0 || !ws)
        it_fail("held idle migration is '%s', would-switchover %d", st, ws);
    if (pct >= 5.0)
        it_fail("a held, converged migration of an idle guest uses %.1f %% "
                "of a core (%.0f ms CPU in %lld ms); the limit is 5 %%", pct,
                cpu_ms, t1 - t0);
    if (syncs1 - syncs0 < 10)
        it_fail("held migration stopped syncing: %lld syncs in 2 s",
                syncs1 - syncs0);

    /* Nothing switched over while held. */
    json_object *evs = it_drain_events(src->qmp, 0);
    size_t npass = 0;
    for (size_t i = 0; i < json_object_array_length(evs); i++) {
        json_object *ev = json_object_array_get_idx(evs, i);
        const char *name = lmh_get_str(ev, "event");
        const char *s = lmh_get_str(ev, "data.status");
        if (name && strcmp(name, "MIGRATION_PASS") == 0)
            npass++;
        if (name && strcmp(name, "STOP") == 0)
            it_fail("the source guest stopped while held");
        if (s && (strcmp(s, "device") == 0 || strcmp(s, "completed") == 0))
            it_fail("MIGRATION '%s' while switchover-hold was set", s);
    }
    json_object_put(evs);
    /* Held and ready, passes go on (syncs above) but their events are
     * limited to about one a second (docs/qmp.md). */
    if (npass < 2)
        it_fail("only %zu MIGRATION_PASS events while held", npass);
    if (!it_running(src, st, sizeof(st)))
        it_fail("the source guest does not run while held ('%s')", st);

    /* Release: completed well under 100 ms after the set returns. */
    it_set_params(src, "{\"switchover-hold\": false}");
    long long r0 = it_now_ms(), r1;
    for (;;) {
        const char *s = it_status(src);
        r1 = it_now_ms();
        if (strcmp(s, "completed") == 0)
            break;
        if (it_is_terminal(s))
            it_fail("released migration ended '%s'", s);
        if (r1 - r0 > 5000)
            it_fail("released migration still '%s' after 5 s", s);
        usleep(500);
    }
    fprintf(stderr, "release to completed: %lld ms\n", r1 - r0);
    if (r1 - r0 >= 100)
        it_fail("switchover-hold false completed the converged migration "
                "%lld ms after the set returned; expected < 100 ms", r1 - r0);
    it_check_completed(src, dst, 64 * IT_MiB, false);
}

/* Poll until would-switchover is @want (the status must stay active);
 * returns the dirty-sync-count when it was seen. */
static long long wait_would(lmh_daemon *src, bool want, int timeout_ms,
                            const char *why)
{
    long long end = it_now_ms() + timeout_ms, syncs = 0;
    char st[64];
    while (would_switchover(src, &syncs, st, sizeof(st)) != want) {
        if (strcmp(st, "active") != 0)
            it_fail("held migration became '%s'", st);
        if (it_now_ms() > end)
            it_fail("%s: would-switchover still %s after %d ms", why,
                    want ? "false" : "true", timeout_ms);
        it_sleep_ms(5);
    }
    return syncs;
}

static void expect_would_stays(lmh_daemon *src, bool want, const char *why)
{
    char st[64];
    for (int i = 0; i < 10; i++) {
        if (would_switchover(src, NULL, st, sizeof(st)) != want)
            it_fail("%s: would-switchover went back to %s", why,
                    want ? "false" : "true");
        if (strcmp(st, "active") != 0)
            it_fail("held migration became '%s'", st);
        it_sleep_ms(20);
    }
}

/*
 * A dirtying guest, held.  First on an unlimited link, where it converges
 * at once: more than 20 syncs, never completing.  Then the link is cut to
 * 24 MiB/s, below the guest's 32 MB/s dirty rate, and downtime-limit set to
 * 1 ms: what is left to send cannot go in 1 ms, so would-switchover turns
 * (and stays) false.  Then downtime-limit 10 s (the whole 32M guest needs
 * under 1.4 s at 24 MiB/s): true, from the next pass on - the pass that runs
 * during the set took its snapshot before it, so at most 3 syncs after the
 * count read just before the set.  Released on a free link with the default
 * limit, it completes.
 */
static void test_hold_dirtying(void **state)
{
    (void)state;
    const char *spec = "pattern,size=32M,threads=1,dirty-rate=32M,"
                       "fill=random";
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(spec, NULL, NULL);
    lmh_daemon *dst = it_start(spec, uri, NULL);
    it_set_params(src, "{\"switchover-hold\": true}");
    it_migrate(src, uri);
    wait_held_syncs(src, 20, 30000);
    wait_would(src, true, 5000, "held dirtying guest, free link");

    it_set_params(src, "{\"max-bandwidth\": 25165824, "
                       "\"downtime-limit\": 1}");
    wait_would(src, false, 10000, "24 MiB/s, downtime-limit 1 ms");
    expect_would_stays(src, false, "24 MiB/s, downtime-limit 1 ms");

    long long before;
    would_switchover(src, &before, NULL, 0);
    it_set_params(src, "{\"downtime-limit\": 10000}");
    long long seen = wait_would(src, true, 15000,
                                "24 MiB/s, downtime-limit 10 s");
    fprintf(stderr, "downtime-limit 10000: would-switchover true %lld "
            "syncs after the set\n", seen - before);
    if (seen - before > 3)
        it_fail("downtime-limit 10 s applied only %lld syncs after the set",
                seen - before);
    expect_would_stays(src, true, "24 MiB/s, downtime-limit 10 s");
    assert_string_equal(it_status(src), "active");

    /* Free link and the default limit first, applied by the next passes;
     * then release. */
    it_set_params(src, "{\"max-bandwidth\": 0, \"downtime-limit\": 300}");
    would_switchover(src, &before, NULL, 0);
    wait_held_syncs(src, before + 3, 30000);
    wait_would(src, true, 5000, "free link, downtime-limit 300 ms");
    it_set_params(src, "{\"switchover-hold\": false}");
    it_check_completed(src, dst, 32 * IT_MiB, true);
}

/*
 * Release together with new limits.  Held on a 24 MiB/s link with
 * downtime-limit 10 s, the migration "would switch over" (more than 12 MiB
 * left, under 10 s at 24 MiB/s).  One atomic migrate-set-parameters then frees
 * the link, sets downtime-limit back to 300 ms and clears the hold.  The
 * user was promised downtime <= downtime-limit: the switchover this set
 * triggers must honour the 300 ms (and the free link) it carries, not the
 * verdict and rate of the pass before.
 */
static void test_release_with_new_limits(void **state)
{
    (void)state;
    const char *spec = "pattern,size=32M,threads=1,dirty-rate=32M,"
                       "fill=random";
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(spec, NULL, NULL);
    lmh_daemon *dst = it_start(spec, uri, NULL);
    it_set_params(src, "{\"switchover-hold\": true}");
    it_migrate(src, uri);
    wait_held_syncs(src, 5, 30000);
    /* The guest (32 MB/s) outruns the 24 MiB/s link: let the dirty set
     * grow past 12 MiB (0.5 s at 24 MiB/s), then accept up to 10 s. */
    it_set_params(src, "{\"max-bandwidth\": 25165824, "
                       "\"downtime-limit\": 1}");
    it_wait_qm_above(src, "ram.remaining", 12 * IT_MiB, 30000);
    it_set_params(src, "{\"downtime-limit\": 10000}");
    wait_would(src, true, 15000, "24 MiB/s, downtime-limit 10 s");
    /* Release in the middle of a pass (a user does not time a set to the
     * engine's passes): 200 ms after a pass ended, the next one (about
     * half a second or more at 24 MiB/s) still runs. */
    long long s0, s1;
    would_switchover(src, &s0, NULL, 0);
    long long t_end = it_now_ms() + 15000;
    do {
        it_sleep_ms(5);
        would_switchover(src, &s1, NULL, 0);
        if (it_now_ms() > t_end)
            it_fail("no pass ended within 15 s");
    } while (s1 == s0);
    long long t_pass = it_now_ms();
    while (it_now_ms() - t_pass < 200) {
        it_sleep_ms(5);
        would_switchover(src, &s0, NULL, 0);
        if (s0 != s1) {          /* a short pass: start over from this one */
            s1 = s0;
            t_pass = it_now_ms();
        }
        if (it_now_ms() > t_end)
            it_fail("no pass lasted 200 ms at 24 MiB/s");
    }
    json_object *h = it_qm(src);
    fprintf(stderr, "held at 24 MiB/s, mid-pass: %s\n",
            json_object_to_json_string_ext(h, JSON_C_TO_STRING_PLAIN));
    json_object_put(h);

    it_set_params(src, "{\"max-bandwidth\": 0, \"downtime-limit\": 300, "
                       "\"switchover-hold\": false}");
    it_wait_status(src, "completed", 30000);
    json_object *r = it_qm(src);
    fprintf(stderr, "released: %s\n",
            json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
    json_object_put(r);
    it_check_completed(src, dst, 32 * IT_MiB, true);
}

static void test_pause_before_switchover(void **state)
{
    (void)state;
    const char *spec = "pattern,size=64M,threads=1,dirty-rate=50M,"
                       "fill=random";
    char uri[64], st[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(spec, NULL, NULL);
    lmh_daemon *dst = it_start(spec, uri, NULL);

    /* No migration: nothing to continue. */
    lmh_err(src->qmp, "migrate-continue", "{\"state\": \"pre-switchover\"}",
            "GenericError", NULL);

    it_set_cap(src, "events", true);
    it_set_cap(src, "pause-before-switchover", true);
    it_migrate(src, uri);
    it_wait_status(src, "pre-switchover", 30000);
    if (it_running(src, st, sizeof(st)))
        it_fail("in pre-switchover the source guest runs ('%s')", st);
    long long pw = it_guest_int(src, "pages-written");

    lmh_err(src->qmp, "migrate-continue", "{\"state\": \"active\"}",
            "GenericError", "pre-switchover");
    lmh_err(src->qmp, "migrate-continue", "{\"state\": \"device\"}",
            "GenericError", NULL);
    /* Still paused, guest still stopped and not writing. */
    assert_string_equal(it_status(src), "pre-switchover");
    if (it_running(src, st, sizeof(st)))
        it_fail("a wrong migrate-continue resumed the source guest");
    if (it_guest_int(src, "pages-written") != pw)
        it_fail("the source guest writes in pre-switchover");

    json_object_put(lmh_ok(src->qmp, "migrate-continue",
                           "{\"state\": \"pre-switchover\"}"));
    it_check_completed(src, dst, 64 * IT_MiB, true);

    json_object *evs = it_drain_events(src->qmp, 300);
    const char *want[] = { "setup", "active", "pre-switchover", "device",
                           "completed" };
    size_t n = 0;
    for (size_t i = 0; i < json_object_array_length(evs); i++) {
        json_object *ev = json_object_array_get_idx(evs, i);
        const char *name = lmh_get_str(ev, "event");
        if (!name || strcmp(name, "MIGRATION") != 0)
            continue;
        const char *s = lmh_get_str(ev, "data.status");
        if (n >= 5 || !s || strcmp(s, want[n]) != 0)
            it_fail("MIGRATION event %zu is '%s', expected '%s'", n,
                    s ? s : "?", n < 5 ? want[n] : "(none)");
        n++;
    }
    json_object_put(evs);
    if (n != 5)
        it_fail("%zu MIGRATION events, expected setup, active, "
                "pre-switchover, device, completed", n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_hold_idle, it_teardown),
        cmocka_unit_test_teardown(test_hold_dirtying, it_teardown),
        cmocka_unit_test_teardown(test_release_with_new_limits,
                                  it_teardown),
        cmocka_unit_test_teardown(test_pause_before_switchover, it_teardown),
    };
    return cmocka_run_group_tests_name("integration-switchover", tests,
                                       NULL, NULL);
}
