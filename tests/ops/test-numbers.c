/*
 * test-numbers.c - the numbers an operator reads are right in every
 * phase, on real daemons:
 *   - during the first pass: throughput and expected downtime from what
 *     was sent so far (not 0), a percentage that moves and never starts
 *     over at a pass;
 *   - one pass numbering: MIGRATION_PASS 1..N without gaps, the last
 *     dirty-sync-count and livemig-ctl's "passes" all N;
 *   - the destination's total-time counts from the source's first bytes,
 *     not from when it began to listen;
 *   - switchover-hold: MIGRATION_READY true/false, real rates (within
 *     max-bandwidth), at most ~10 syncs a second and one MIGRATION_PASS a
 *     second, and livemig-ctl status says held and ready;
 *   - micro-checkpointing in HMP info migrate and livemig-ctl status, on
 *     both sides, before and after a takeover (plain-words reason), and
 *     every event in query-qmp-schema.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double qm_num(lmh_daemon *d, const char *path)
{
    json_object *qm = it_qm(d);
    json_object *v = lmh_get(qm, path);
    double r = v ? json_object_get_double(v) : -1;
    json_object_put(qm);
    return r;
}

static char *ctl_out(lmh_daemon *d, const char *a1, const char *a2)
{
    const char *argv[] = { lmh_ctl_path(), "-s", d->addr, a1, a2, NULL };
    char *out = NULL;
    if (lmh_run(argv, NULL, &out, NULL, 60000) != 0)
        it_fail("livemig-ctl %s %s failed: %s", a1, a2 ? a2 : "", out);
    return out;
}

static void test_first_pass_and_passes(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start("pattern,size=64M,dirty-rate=4M", NULL, NULL);
    lmh_daemon *dst = it_start("pattern,size=64M", uri, NULL);
    it_set_cap(src, "events", true);
    /* 16 MiB/s: the first pass lasts about 4 s */
    it_set_params(src, "{\"max-bandwidth\": 16777216}");
    it_migrate(src, uri);
    it_wait_qm_above(src, "total-time", 1200, 30000);
    json_object *qm = it_qm(src);
    long long pass = lmh_get_int(qm, "ram.dirty-sync-count");
    double mbps = json_object_get_double(lmh_get(qm, "ram.mbps"));
    long long exp = lmh_get_int(qm, "expected-downtime");
    double pct = json_object_get_double(lmh_get(qm, "progress-percent"));
    fprintf(stderr, "first pass: pass %lld, %.1f mbps, expected downtime "
            "%lld ms, %.1f %%\n", pass, mbps, exp, pct);
    if (pass != 1)
        it_fail("1.2 s into a 4 s first pass, dirty-sync-count is %lld, "
                "expected 1 (the pass being sent)", pass);
    if (mbps <= 0 || mbps > 16777216.0 * 8 / 1e6 * 1.5)
        it_fail("throughput during the first pass: %.1f mbps (the limit is "
                "134 mbps)", mbps);
    if (exp <= 0)
        it_fail("expected downtime during the first pass is %lld ms", exp);
    if (pct <= 0 || pct >= 100)
        it_fail("progress during the first pass: %.1f %%", pct);
    json_object_put(qm);

    /* let it finish, watching the percentage */
    it_set_params(src, "{\"max-bandwidth\": 0}");
    double last = pct, worst = 0;
    while (!it_is_terminal(it_status(src))) {
        double p = qm_num(src, "progress-percent");
        if (p >= 0 && last - p > worst)
            worst = last - p;
        if (p >= 0)
            last = p;
        it_sleep_ms(20);
    }
    if (worst > 10)
        it_fail("the percentage fell back by %.1f points", worst);
    it_check_completed(src, dst, 64 * IT_MiB, true);
    long long n = (long long)qm_num(src, "ram.dirty-sync-count");
    if (qm_num(src, "progress-percent") != 100)
        it_fail("a completed migration shows %.1f %%",
                qm_num(src, "progress-percent"));
    json_object *evs = it_drain_events(src->qmp, 200);
    long long want = 1;
    for (size_t i = 0; i < json_object_array_length(evs); i++) {
        json_object *e = json_object_array_get_idx(evs, i);
        if (strcmp(lmh_get_str(e, "event"), "MIGRATION_PASS"))
            continue;
        long long p = lmh_get_int(e, "data.pass");
        if (p != want)
            it_fail("MIGRATION_PASS %lld where %lld was next", p, want);
        want++;
    }
    json_object_put(evs);
    if (want - 1 != n || n < 2)
        it_fail("MIGRATION_PASS counted to %lld, dirty-sync-count is %lld",
                want - 1, n);
    fprintf(stderr, "passes: %lld, MIGRATION_PASS 1..%lld\n", n, want - 1);

    /* the destination counted from the first byte: start a second
     * migration to a destination that listened for a while */
    char uri2[64];
    it_tcp_uri(lmh_port(), uri2, sizeof(uri2));
    lmh_daemon *src2 = it_start("pattern,size=32M,dirty-rate=1M", NULL, NULL);
    lmh_daemon *dst2 = it_start("pattern,size=32M", uri2, NULL);
    long long t_listen = it_now_ms();
    it_sleep_ms(2000);   /* listening time the destination must not count */
    long long t0 = it_now_ms();
    it_migrate(src2, uri2);
    it_wait_status(dst2, "completed", 60000);
    long long took = it_now_ms() - t0;
    long long dtt = (long long)qm_num(dst2, "total-time");
    fprintf(stderr, "destination total-time %lld ms, migration took %lld ms "
            "(listened %lld ms before)\n", dtt, took, t0 - t_listen);
    if (dtt < 0 || dtt > took)
        it_fail("the destination's total-time is %lld ms for a migration "
                "that took %lld ms after %lld ms of listening", dtt, took,
                t0 - t_listen);
}

static void test_hold_watchable(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start("pattern,size=32M,dirty-rate=4M", NULL, NULL);
    lmh_daemon *dst = it_start("pattern,size=32M", uri, NULL);
    it_set_cap(src, "events", true);
    const long long bw = 40LL * IT_MiB;
    it_set_params(src, "{\"switchover-hold\": true, "
                       "\"max-bandwidth\": 41943040}");
    it_migrate(src, uri);
    json_object *ev = NULL;
    long long end = it_now_ms() + 60000;
    while (!ev && it_now_ms() < end) {
        json_object *e = livemig_qmp_next_event(src->qmp, 500);
        if (e && !strcmp(lmh_get_str(e, "event"), "MIGRATION_READY"))
            ev = e;
        else
            json_object_put(e);
    }
    if (!ev || !json_object_get_boolean(lmh_get(ev, "data.ready")))
        it_fail("no MIGRATION_READY {ready: true} within 60 s");
    json_object_put(ev);
    char *st = ctl_out(src, "status", NULL);
    if (!strstr(st, "held, ready to switch over"))
        it_fail("livemig-ctl status of a held, ready migration: %s", st);
    free(st);

    /* two seconds held: syncs, events, rates */
    long long p0 = (long long)qm_num(src, "ram.dirty-sync-count");
    json_object_put(it_drain_events(src->qmp, 0));
    it_sleep_ms(2000);   /* a measurement window */
    long long p1 = (long long)qm_num(src, "ram.dirty-sync-count");
    json_object *evs = it_drain_events(src->qmp, 0);
    int passes = 0;
    for (size_t i = 0; i < json_object_array_length(evs); i++)
        if (!strcmp(lmh_get_str(json_object_array_get_idx(evs, i), "event"),
                    "MIGRATION_PASS"))
            passes++;
    json_object_put(evs);
    json_object *qm = it_qm(src);
    double mbps = json_object_get_double(lmh_get(qm, "ram.mbps"));
    double dirty = (double)lmh_get_int(qm, "ram.dirty-pages-rate") * 4096;
    long long exp = lmh_get_int(qm, "expected-downtime");
    json_object_put(qm);
    fprintf(stderr, "held 2 s: %lld syncs, %d MIGRATION_PASS, %.1f mbps, "
            "dirty %.0f B/s, expected downtime %lld ms\n", p1 - p0, passes,
            mbps, dirty, exp);
    if (p1 - p0 > 25)
        it_fail("held and ready, %lld syncs in 2 s (at most every 100 ms "
                "when the dirty rate allows)", p1 - p0);
    if (passes > 4)
        it_fail("held and ready, %d MIGRATION_PASS events in 2 s", passes);
    if (mbps > (double)bw * 8 / 1e6 * 1.1)
        it_fail("held: throughput %.1f mbps above max-bandwidth", mbps);
    if (dirty < 4.0 * IT_MiB / 4 || dirty > 4.0 * IT_MiB * 3)
        it_fail("held: dirty rate %.0f B/s for a guest writing 4 MiB/s",
                dirty);

    /* not ready any more: the rest no longer fits downtime-limit */
    it_set_params(src, "{\"downtime-limit\": 1, \"max-bandwidth\": 1048576}");
    ev = NULL;
    end = it_now_ms() + 30000;
    while (!ev && it_now_ms() < end) {
        json_object *e = livemig_qmp_next_event(src->qmp, 500);
        if (e && !strcmp(lmh_get_str(e, "event"), "MIGRATION_READY"))
            ev = e;
        else
            json_object_put(e);
    }
    if (!ev || json_object_get_boolean(lmh_get(ev, "data.ready")))
        it_fail("no MIGRATION_READY {ready: false} after downtime-limit "
                "became 1 ms");
    json_object_put(ev);
    st = ctl_out(src, "status", NULL);
    if (!strstr(st, "held, not ready"))
        it_fail("livemig-ctl status of a held migration that is not "
                "ready: %s", st);
    free(st);
    it_set_params(src, "{\"downtime-limit\": 300, \"max-bandwidth\": 0, "
                       "\"switchover-hold\": false}");
    it_check_completed(src, dst, 32 * IT_MiB, true);
}

static void test_mc_everywhere(void **state)
{
    (void)state;
    lmh_daemon *probe = it_start("pattern,size=16M", NULL, NULL);
    json_object *schema = lmh_ok(probe->qmp, "query-qmp-schema", NULL);
    const char *want[] = { "MIGRATION", "MIGRATION_PASS", "MIGRATION_READY",
                           "MC_CHECKPOINTING", "MC_BACKUP_LOST",
                           "MC_FAILOVER", "STOP", "RESUME", "SHUTDOWN" };
    for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
        bool found = false;
        for (size_t i = 0; i < json_object_array_length(schema); i++) {
            json_object *e = json_object_array_get_idx(schema, i);
            if (!strcmp(lmh_get_str(e, "meta-type"), "event") &&
                !strcmp(lmh_get_str(e, "name"), want[k]))
                found = true;
        }
        if (!found)
            it_fail("query-qmp-schema has no event %s", want[k]);
    }
    json_object_put(schema);

    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *bak = it_start("pattern,size=32M", uri, NULL);
    lmh_daemon *pri = it_start("pattern,size=32M,dirty-rate=2M", NULL, NULL);
    it_set_cap(pri, "micro-checkpointing", true);
    it_set_params(pri, "{\"mc-delay\": 100, \"mc-heartbeat-timeout\": 1000}");
    it_migrate(pri, uri);
    it_wait_status(pri, "checkpointing", 30000);
    it_wait_status(bak, "checkpointing", 30000);
    it_wait_qm_above(pri, "mc.checkpoints", 3, 30000);

    char *t = lmh_hmp(pri->qmp, "info migrate");
    if (!strstr(t, "micro-checkpointing: primary, epoch ") ||
        !strstr(t, "guest pause: p50 ") ||
        !strstr(t, "acknowledgement: p50 ") ||
        !strstr(t, "checkpoint pool: ") || !strstr(t, "outputs: "))
        it_fail("HMP info migrate on the primary: %s", t);
    free(t);
    t = ctl_out(pri, "status", NULL);
    if (!strstr(t, "micro-checkpointing: primary, epoch ") ||
        !strstr(t, "guest pause: "))
        it_fail("livemig-ctl status on the primary: %s", t);
    free(t);
    t = lmh_hmp(bak->qmp, "info migrate");
    if (!strstr(t, "micro-checkpointing: backup, epoch ") ||
        !strstr(t, "apply: p50 "))
        it_fail("HMP info migrate on the backup: %s", t);
    free(t);

    it_kill9(pri);
    it_wait_status(bak, "completed", 30000);
    t = lmh_hmp(bak->qmp, "info migrate");
    if (!strstr(t, "took over from checkpoint ") ||
        !strstr(t, "the primary's connection closed"))
        it_fail("HMP info migrate after the takeover: %s", t);
    free(t);
    t = ctl_out(bak, "status", NULL);
    if (!strstr(t, "took over from checkpoint "))
        it_fail("livemig-ctl status after the takeover: %s", t);
    fprintf(stderr, "%s", t);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_first_pass_and_passes, it_teardown),
        cmocka_unit_test_teardown(test_hold_watchable, it_teardown),
        cmocka_unit_test_teardown(test_mc_everywhere, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
