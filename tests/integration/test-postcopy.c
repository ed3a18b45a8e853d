/*
 * test-postcopy.c - postcopy between two hosts (scripts/two-hosts, a
 * 1 Gbit/s link; skipped with the reason otherwise):
 *
 *  - a 256M guest at dirty-rate=max, which precopy cannot converge over
 *    1 Gbit/s, completes in postcopy: the destination runs while pages
 *    still come (status postcopy-active on both sides), asks for pages,
 *    and verifies after; the source ends in postmigrate; the statistics
 *    (postcopy-bytes, -requests, -blocktime, -latency-dist) add up;
 *  - max-postcopy-bandwidth paces the background pages and applies live;
 *    migrate_cancel is refused once the guest runs on the destination;
 *  - refusals: file: and exec: URIs, migrate-start-postcopy without the
 *    capability or without a migration, the capability on one side only
 *    (either one): a clear error, the source guest keeps running;
 *  - kill -9 of either side during postcopy: the survivor goes to
 *    postcopy-paused, never completed, and does not run a guest it does
 *    not wholly have (docs/postcopy.md);
 *  - recovery: the link cut (every packet dropped) 10 times at random
 *    moments: each time both sides pause by themselves, migrate-recover
 *    and migrate {resume: true} resume it, and at the end the guest
 *    verifies; migrate-pause cuts by hand, and a stream of another
 *    migration is refused while recovering (uuid).
 */
#include "itest.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPEC "pattern,size=256M,threads=1,dirty-rate=max,fill=random"
#define SIZE (256 * IT_MiB)

typedef struct pair {
    lmh_daemon *src, *dst;
    char uri[64];
} pair;

static void caps(lmh_daemon *d, bool postcopy)
{
    it_set_cap(d, "events", true);
    it_set_cap(d, "postcopy-ram", postcopy);
}

/* Source and a --incoming defer destination listening on the link. */
static pair start_pair2(const char *spec, const char *dst_spec, bool src_pc,
                        bool dst_pc)
{
    pair p;
    it_tcp_uri(lmh_port(), p.uri, sizeof(p.uri));
    p.src = it_start(spec, NULL, NULL);
    p.dst = it_start(dst_spec, "defer", NULL);
    caps(p.src, src_pc);
    caps(p.dst, dst_pc);
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(p.uri));
    json_object_put(lmh_ok_obj(p.dst->qmp, "migrate-incoming", a));
    it_wait_guest_writes(p.src, "source", 5000);
    return p;
}

static pair start_pair(const char *spec, bool src_pc, bool dst_pc)
{
    return start_pair2(spec, spec, src_pc, dst_pc);
}

/* A destination guest that writes slowly asks for few pages: the
 * background stream (and its cap) moves the rest.  (Since the guest's
 * state carries the source's dirty-rate, it only says so until the
 * switch: after it, the guest runs at the source's rate.) */
#define SLOW_DST "pattern,size=256M,threads=1,dirty-rate=1M,fill=random"

static bool saw_status(json_object *evs, const char *status)
{
    for (size_t i = 0; i < json_object_array_length(evs); i++) {
        json_object *ev = json_object_array_get_idx(evs, i);
        const char *n = lmh_get_str(ev, "event");
        const char *s = lmh_get_str(ev, "data.status");
        if (n && s && strcmp(n, "MIGRATION") == 0 && strcmp(s, status) == 0)
            return true;
    }
    return false;
}

static void test_postcopy_completes(void **state)
{
    (void)state;
    pair p = start_pair(SPEC, true, true);
    long long t0 = it_now_ms();
    it_migrate(p.src, p.uri);
    /* Asked during the first pass: it switches when that pass ends. */
    json_object_put(lmh_ok(p.src->qmp, "migrate-start-postcopy", NULL));
    it_wait_status(p.dst, "postcopy-active", 30000);
    /* The destination runs before it has every page. */
    char rs[64];
    if (!it_running(p.dst, rs, sizeof(rs)))
        it_fail("destination in postcopy-active but not running ('%s')",
                rs);
    it_wait_status(p.src, "completed", 60000);
    it_wait_status(p.dst, "completed", 30000);
    long long total = it_now_ms() - t0;
    it_verify_ok(p.dst, "destination");
    it_wait_guest_writes(p.dst, "destination", 5000);
    if (it_running(p.src, rs, sizeof(rs)) || strcmp(rs, "postmigrate") != 0)
        it_fail("source after postcopy: '%s', not stopped in postmigrate",
                rs);

    json_object *s = it_qm(p.src), *d = it_qm(p.dst);
    long long sbytes = lmh_get_int(s, "ram.postcopy-bytes");
    long long dbytes = lmh_get_int(d, "ram.postcopy-bytes");
    long long dreq = lmh_get_int(d, "ram.postcopy-requests");
    long long block = lmh_get_int(d, "postcopy-blocktime");
    json_object *dist = lmh_get(d, "postcopy-latency-dist");
    long long faults = 0;
    for (size_t i = 0; dist && i < json_object_array_length(dist); i++)
        faults += json_object_get_int64(json_object_array_get_idx(dist, i));
    fprintf(stderr, "postcopy: %lld ms; source sent %lld B after the "
            "switch, destination received %lld B, %lld requests, %lld "
            "answered, blocktime %lld ms, avg latency %lld ns\n", total,
            sbytes, dbytes, dreq, faults, block,
            lmh_get_int(d, "postcopy-latency"));
    /* A guest that rewrote all of its RAM during pass 1: most of it is
     * dirty at the switch. */
    if (sbytes < (long long)(SIZE / 2) || dbytes < (long long)(SIZE / 2))
        it_fail("postcopy moved %lld / %lld bytes of a 256M guest that "
                "dirties everything", sbytes, dbytes);
    if (dreq <= 0 || faults <= 0 || !dist ||
        json_object_array_length(dist) != 24)
        it_fail("a running guest asked for no page (requests %lld, "
                "latency histogram with %lld entries)", dreq, faults);
    if (faults > dreq)
        it_fail("%lld latencies for %lld requests", faults, dreq);
    /* The fine histogram counts the same latencies, in order. */
    long long fcount = lmh_get_int(d, "postcopy-latency-us.count");
    long long p50 = lmh_get_int(d, "postcopy-latency-us.p50");
    long long p99 = lmh_get_int(d, "postcopy-latency-us.p99");
    long long lmax = lmh_get_int(d, "postcopy-latency-us.max");
    fprintf(stderr, "postcopy: fault latency p50 %lld us, p99 %lld us, "
            "max %lld us\n", p50, p99, lmax);
    if (fcount != faults || p50 <= 0 || p50 > p99 || p99 > lmax)
        it_fail("postcopy-latency-us: count %lld (log2 histogram %lld), "
                "p50 %lld, p99 %lld, max %lld", fcount, faults, p50, p99,
                lmax);
    json_object_put(s);
    json_object_put(d);
    json_object *es = it_drain_events(p.src->qmp, 200);
    json_object *ed = it_drain_events(p.dst->qmp, 200);
    if (!saw_status(es, "postcopy-active") || !saw_status(ed, "postcopy-active"))
        it_fail("MIGRATION postcopy-active missing on %s",
                saw_status(es, "postcopy-active") ? "the destination"
                                                  : "the source");
    json_object_put(es);
    json_object_put(ed);
}

/* max-postcopy-bandwidth paces the background pages, live. */
static void test_bandwidth_and_no_cancel(void **state)
{
    (void)state;
    pair p = start_pair2(SPEC, SLOW_DST, true, true);
    it_set_params(p.src, "{\"max-postcopy-bandwidth\": 16777216}");
    it_migrate(p.src, p.uri);
    json_object_put(lmh_ok(p.src->qmp, "migrate-start-postcopy", NULL));
    it_wait_status(p.src, "postcopy-active", 30000);
    it_wait_status(p.dst, "postcopy-active", 30000);
    lmh_err(p.src->qmp, "migrate_cancel", NULL, "GenericError",
            "already runs on the destination");
    lmh_err(p.dst->qmp, "migrate_cancel", NULL, "GenericError",
            "already runs on the destination");
    /* stop and cont on the destination while its guest threads wait for
     * pages: the stop waits for them to park, which needs their pages
     * placed, so it must not hold what placing a page takes (the
     * harness's reply timeout catches a hang). */
    json_object_put(lmh_ok(p.dst->qmp, "stop", NULL));
    char rs[32];
    if (it_running(p.dst, rs, sizeof(rs)) || strcmp(rs, "paused") != 0)
        it_fail("the destination's guest is '%s' after stop in postcopy",
                rs);
    json_object_put(lmh_ok(p.dst->qmp, "cont", NULL));
    if (!it_running(p.dst, rs, sizeof(rs)))
        it_fail("the destination's guest is '%s' after cont in postcopy", rs);
    /* Asked-for pages are never held back by the cap (they count
     * against it: the background makes room), and the guest (the
     * source's dirty-rate=max comes with its state) asks as fast as
     * pages arrive.  A 200 Mbit/s link keeps 256M in flight for over
     * 10 s; within it, the background pages (all but the asked-for
     * ones) keep to the cap. */
    it_link("shape", "200mbit");
    long long b0 = it_qm_int(p.src, "ram.postcopy-bytes", 0);
    long long r0 = it_qm_int(p.src, "ram.postcopy-requests", 0);
    long long t0 = it_now_ms();
    it_sleep_ms(2000);   /* a measurement window, not a synchronisation */
    long long b1 = it_qm_int(p.src, "ram.postcopy-bytes", 0);
    long long r1 = it_qm_int(p.src, "ram.postcopy-requests", 0);
    long long dt = it_now_ms() - t0;
    double rate = (double)(b1 - b0) * 1000 / (double)dt;
    double asked = (double)(r1 - r0) * 4096 * 1000 / (double)dt;
    fprintf(stderr, "postcopy at max-postcopy-bandwidth 16 MiB/s over "
            "200 Mbit/s: %.1f MiB/s, %.1f MiB/s of it asked for\n",
            rate / IT_MiB, asked / IT_MiB);
    if (rate - asked > 1.2 * 16 * IT_MiB || rate <= 0)
        it_fail("postcopy moved %.1f MiB/s (%.1f MiB/s asked for) with "
                "max-postcopy-bandwidth 16 MiB/s", rate / IT_MiB,
                asked / IT_MiB);
    if (strcmp(it_status(p.src), "postcopy-active") != 0)
        it_fail("at 200 Mbit/s 256M cannot be done in 2 s");
    const char *lr = getenv("LM_LINK_RATE");   /* the run's own */
    it_link("shape", lr && lr[0] ? lr : "none");
    it_set_params(p.src, "{\"max-postcopy-bandwidth\": 0}");
    it_wait_status(p.src, "completed", 60000);
    it_wait_status(p.dst, "completed", 30000);
    it_verify_ok(p.dst, "destination");
}

static void test_refusals(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    /* Without the capability. */
    lmh_err(src->qmp, "migrate-start-postcopy", NULL, "GenericError",
            "postcopy-ram");
    it_set_cap(src, "postcopy-ram", true);
    /* Without a migration. */
    lmh_err(src->qmp, "migrate-start-postcopy", NULL, "GenericError",
            "no precopy migration runs");
    char path[400], args[480];
    lmh_path(src, "out.bin", path, sizeof(path));
    snprintf(args, sizeof(args), "{\"uri\": \"file:%s\"}", path);
    lmh_err(src->qmp, "migrate", args, "GenericError", "postcopy-ram");
    lmh_err(src->qmp, "migrate", "{\"uri\": \"exec:cat > /dev/null\"}",
            "GenericError", "postcopy-ram");
    it_set_cap(src, "multifd", true);
    lmh_err(src->qmp, "migrate", "{\"uri\": \"tcp:127.0.0.1:1\"}",
            "GenericError", "multifd");
    char st[64];
    if (!it_running(src, st, sizeof(st)))
        it_fail("refused migrations stopped the guest ('%s')", st);
}

/* The capability on one side only: the migration fails at once with the
 * reason on both sides; the source guest keeps running. */
static void differ(bool src_pc, bool dst_pc, const char *want)
{
    pair p = start_pair("pattern,size=64M,threads=1,dirty-rate=10M,"
                        "fill=random", src_pc, dst_pc);
    it_migrate(p.src, p.uri);
    const char *end = it_wait_end(p.src, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("postcopy-ram on one side only: migration '%s'", end);
    json_object *q = it_qm(p.src);
    const char *e = lmh_get_str(q, "error-desc");
    if (!e || !strstr(e, want) || !strstr(e, "both sides"))
        it_fail("error '%s' does not say that %s", e ? e : "(none)", want);
    json_object_put(q);
    char st[64];
    if (!it_running(p.src, st, sizeof(st)))
        it_fail("source guest not running after the refusal ('%s')", st);
    it_verify_ok(p.src, "source");
}

static void test_caps_differ_src_only(void **state)
{
    (void)state;
    differ(true, false, "this destination has it off");
}

static void test_caps_differ_dst_only(void **state)
{
    (void)state;
    differ(false, true, "the source has it off");
}

/* kill -9 of one side after the switch: the other pauses, never says
 * completed. */
static void kill_during_postcopy(bool kill_src)
{
    pair p = start_pair2(SPEC, SLOW_DST, true, true);
    it_set_params(p.src, "{\"max-postcopy-bandwidth\": 8388608}");
    it_migrate(p.src, p.uri);
    json_object_put(lmh_ok(p.src->qmp, "migrate-start-postcopy", NULL));
    it_wait_status(p.src, "postcopy-active", 30000);
    it_wait_status(p.dst, "postcopy-active", 30000);
    lmh_daemon *dead = kill_src ? p.src : p.dst;
    lmh_daemon *alive = kill_src ? p.dst : p.src;
    it_kill9(dead);
    it_wait_status(alive, "postcopy-paused", 30000);
    json_object *q = it_qm(alive);
    const char *e = lmh_get_str(q, "error-desc");
    if (!e || !strstr(e, "postcopy paused"))
        it_fail("paused without saying why: '%s'", e ? e : "(none)");
    json_object_put(q);
    char st[64];
    bool running = it_running(alive, st, sizeof(st));
    if (!kill_src && running)
        it_fail("the source resumed a guest that ran on the destination");
    it_sleep_ms(500);   /* it stays paused: a window to see a change */
    if (strcmp(it_status(alive), "postcopy-paused") != 0)
        it_fail("after kill -9 of the %s the %s left postcopy-paused "
                "for '%s'", kill_src ? "source" : "destination",
                kill_src ? "destination" : "source", it_status(alive));
}

static void test_kill_source(void **state)
{
    (void)state;
    kill_during_postcopy(true);
}

static void test_kill_destination(void **state)
{
    (void)state;
    kill_during_postcopy(false);
}

static void recover(pair *p)
{
    char uri[64], args[128];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    snprintf(args, sizeof(args), "{\"uri\": \"%s\"}", uri);
    json_object_put(lmh_ok(p->dst->qmp, "migrate-recover", args));
    snprintf(args, sizeof(args), "{\"uri\": \"%s\", \"resume\": true}",
             uri);
    json_object_put(lmh_ok(p->src->qmp, "migrate", args));
    snprintf(p->uri, sizeof(p->uri), "%s", uri);
}

static void wait_resumed(lmh_daemon *d, int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms;
    for (;;) {
        const char *st = it_status(d);
        if (strcmp(st, "postcopy-active") == 0 ||
            strcmp(st, "completed") == 0)
            return;
        if (it_now_ms() > end)
            it_fail("not resumed after %d ms: status '%s'", timeout_ms, st);
        it_sleep_ms(10);
    }
}

static void test_recover_after_cuts(void **state)
{
    (void)state;
    pair p = start_pair2(SPEC, SLOW_DST, true, true);
    it_set_params(p.src, "{\"max-postcopy-bandwidth\": 16777216}");
    it_migrate(p.src, p.uri);
    json_object_put(lmh_ok(p.src->qmp, "migrate-start-postcopy", NULL));
    it_wait_status(p.dst, "postcopy-active", 30000);
    /* The guest asks for pages as fast as the link brings them (it runs
     * at the source's dirty-rate=max, and asked-for pages pass the cap):
     * a 100 Mbit/s link keeps 256M in flight for 20 s, time for 10 cuts
     * at random moments. */
    it_link("shape", "100mbit");
    srand((unsigned)getpid());
    for (int i = 0; i < 10; i++) {
        it_sleep_ms(100 + rand() % 500);   /* a random moment */
        if (strcmp(it_status(p.src), "postcopy-active") != 0)
            it_fail("cut %d: postcopy no longer active ('%s') before the "
                    "cut", i + 1, it_status(p.src));
        long long t0 = it_now_ms();
        it_link("cut", "drop");
        it_wait_status(p.src, "postcopy-paused", 30000);
        it_wait_status(p.dst, "postcopy-paused", 30000);
        long long paused = it_now_ms() - t0;
        char st[64];
        if (it_running(p.src, st, sizeof(st)))
            it_fail("cut %d: the source resumed its guest", i + 1);
        if (!it_running(p.dst, st, sizeof(st)))
            it_fail("cut %d: the destination guest stopped ('%s')", i + 1,
                    st);
        it_link("restore", NULL);
        recover(&p);
        wait_resumed(p.src, 30000);
        wait_resumed(p.dst, 30000);
        fprintf(stderr, "cut %d: both paused after %lld ms, resumed after "
                "%lld ms; %lld bytes sent after the switch\n", i + 1, paused,
                it_now_ms() - t0, it_qm_int(p.src, "ram.postcopy-bytes", 0));
    }
    const char *rate = getenv("LM_LINK_RATE");   /* the run's own */
    it_link("shape", rate && rate[0] ? rate : "none");
    it_set_params(p.src, "{\"max-postcopy-bandwidth\": 0}");
    it_wait_status(p.src, "completed", 60000);
    it_wait_status(p.dst, "completed", 30000);
    it_verify_ok(p.dst, "destination");
    it_wait_guest_writes(p.dst, "destination", 5000);
}

static void test_pause_and_unrelated_resume(void **state)
{
    (void)state;
    pair p = start_pair2(SPEC, SLOW_DST, true, true);
    it_set_params(p.src, "{\"max-postcopy-bandwidth\": 16777216}");
    lmh_err(p.src->qmp, "migrate-pause", NULL, "GenericError",
            "postcopy-active");
    lmh_err(p.src->qmp, "migrate", "{\"uri\": \"tcp:127.0.0.1:1\", "
            "\"resume\": true}", "GenericError", "cannot resume");
    it_migrate(p.src, p.uri);
    json_object_put(lmh_ok(p.src->qmp, "migrate-start-postcopy", NULL));
    it_wait_status(p.dst, "postcopy-active", 30000);
    json_object_put(lmh_ok(p.src->qmp, "migrate-pause", NULL));
    it_wait_status(p.src, "postcopy-paused", 30000);
    it_wait_status(p.dst, "postcopy-paused", 30000);
    /* Another source knocks on the recovery port: refused (uuid). */
    char uri[64], args[128];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    snprintf(args, sizeof(args), "{\"uri\": \"%s\"}", uri);
    json_object_put(lmh_ok(p.dst->qmp, "migrate-recover", args));
    it_wait_status(p.dst, "postcopy-recover", 10000);
    lmh_daemon *other = it_start(SPEC, NULL, NULL);
    it_migrate(other, uri);
    const char *end = it_wait_end(other, 30000);
    json_object *q = it_qm(other);
    const char *e = lmh_get_str(q, "error-desc");
    if (strcmp(end, "failed") != 0 || !e || !strstr(e, "uuid"))
        it_fail("an unrelated stream on the recovery port: '%s', %s", end,
                e ? e : "(no error)");
    json_object_put(q);
    if (strcmp(it_status(p.dst), "postcopy-recover") != 0)
        it_fail("the destination left postcopy-recover after refusing a "
                "stranger: '%s'", it_status(p.dst));
    snprintf(args, sizeof(args), "{\"uri\": \"%s\", \"resume\": true}",
             uri);
    json_object_put(lmh_ok(p.src->qmp, "migrate", args));
    wait_resumed(p.src, 30000);
    it_set_params(p.src, "{\"max-postcopy-bandwidth\": 0}");
    it_wait_status(p.src, "completed", 60000);
    it_wait_status(p.dst, "completed", 30000);
    it_verify_ok(p.dst, "destination");
}

int main(void)
{
    if (!it_two_hosts()) {
        fprintf(stderr, "SKIP: test-postcopy runs between two hosts: start "
                "it with 'scripts/two-hosts run --rate 1gbit -- "
                "test-postcopy' (meson does)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_postcopy_completes, it_teardown),
        cmocka_unit_test_teardown(test_bandwidth_and_no_cancel, it_teardown),
        cmocka_unit_test_teardown(test_refusals, it_teardown),
        cmocka_unit_test_teardown(test_caps_differ_src_only, it_teardown),
        cmocka_unit_test_teardown(test_caps_differ_dst_only, it_teardown),
        cmocka_unit_test_teardown(test_kill_source, it_teardown),
        cmocka_unit_test_teardown(test_kill_destination, it_teardown),
        cmocka_unit_test_teardown(test_pause_and_unrelated_resume,
                                  it_teardown),
        cmocka_unit_test_teardown(test_recover_after_cuts, it_teardown),
    };
    return cmocka_run_group_tests_name("two-hosts-postcopy", tests, NULL,
                                       NULL);
}
