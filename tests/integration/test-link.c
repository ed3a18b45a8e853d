/*
 * test-link.c - migration between two hosts: run by scripts/two-hosts
 * (two network namespaces, a veth pair shaped to 1 Gbit/s), skipped with
 * the reason (exit 77) when started any other way.
 *
 *  - the daemons really are on two hosts: source, destination and the
 *    test each in a network namespace of their own, and an idle guest
 *    moves no faster than the link allows;
 *  - a link cut (every packet dropped) for 2 s in the middle of a
 *    migration, then restored: TCP carries on and the migration completes
 *    and verifies;
 *  - a 256M guest at dirty-rate=max cannot converge over 1 Gbit/s:
 *    query-migrate says "stalled" within 10 s, with the reason and the
 *    figures, and MIGRATION_CONVERGENCE announced it.
 */
#include "itest.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINK_BPS 1e9   /* the rate meson asks scripts/two-hosts for */

static unsigned long long netns_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    struct stat st;
    if (stat(path, &st) != 0)
        it_fail("cannot stat '%s'", path);
    return (unsigned long long)st.st_ino;
}

static void test_two_hosts_and_link_rate(void **state)
{
    (void)state;
    const char *spec = "pattern,size=128M,threads=1,dirty-rate=0,"
                       "fill=random";
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(spec, NULL, NULL);
    lmh_daemon *dst = it_start(spec, uri, NULL);
    unsigned long long me = netns_of(getpid()), s = netns_of(src->pid),
                       d = netns_of(dst->pid);
    if (s == me || d == me || s == d)
        it_fail("daemons not on two hosts: network namespaces test %llu, "
                "source %llu, destination %llu", me, s, d);
    long long t0 = it_now_ms();
    it_migrate(src, uri);
    it_check_completed(src, dst, 128 * IT_MiB, false);
    long long total_ms = it_qm_int(src, "total-time", -1);
    long long sent = it_qm_int(src, "ram.transferred", -1);
    /* tbf lets a burst through at once, and the stream is a little more
     * than the pages: allow 10 % either way. */
    double floor_ms = (double)sent * 8 / LINK_BPS * 1000 * 0.9;
    fprintf(stderr, "link: %lld bytes in %lld ms (%.0f Mbit/s; link "
            "1000), %lld ms seen by the test\n", sent, total_ms,
            (double)sent * 8 / ((double)total_ms / 1000) / 1e6,
            it_now_ms() - t0);
    if ((double)total_ms < floor_ms)
        it_fail("%lld bytes crossed a 1 Gbit/s link in %lld ms, faster "
                "than the link (at least %.0f ms): not over the shaped "
                "link", sent, total_ms, floor_ms);
}

static void test_cut_and_restore(void **state)
{
    (void)state;
    const char *spec = "pattern,size=128M,threads=1,dirty-rate=20M,"
                       "fill=random";
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(spec, NULL, NULL);
    lmh_daemon *dst = it_start(spec, uri, NULL);
    it_migrate(src, uri);
    it_wait_qm_above(src, "ram.transferred", 16 * IT_MiB, 30000);
    it_link("cut", "drop");
    long long before = it_qm_int(dst, "ram.transferred", -1);
    it_sleep_ms(2000);   /* the length of the cut, not a synchronisation */
    long long during = it_qm_int(dst, "ram.transferred", -1);
    const char *st = it_status(src);
    if (it_is_terminal(st))
        it_fail("a 2 s link cut ended the migration ('%s')", st);
    it_link("restore", NULL);
    /* Nothing gets through a dropped link (a segment in flight may). */
    if (during - before > 4 * IT_MiB)
        it_fail("%lld bytes arrived while every packet was dropped",
                during - before);
    it_check_completed(src, dst, 128 * IT_MiB, true);
}

static void test_precopy_stalls(void **state)
{
    (void)state;
    const char *spec = "pattern,size=256M,threads=1,dirty-rate=max,"
                       "fill=random";
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(spec, NULL, NULL);
    lmh_daemon *dst = it_start(spec, uri, NULL);
    it_set_cap(src, "events", true);
    it_wait_guest_writes(src, "source", 5000);
    long long t0 = it_now_ms(), t_stalled = -1;
    it_migrate(src, uri);
    char shown[2048] = "";
    while (it_now_ms() - t0 < 30000) {
        json_object *r = it_qm(src);
        const char *st = lmh_get_str(r, "status");
        const char *v = lmh_get_str(r, "convergence.verdict");
        snprintf(shown, sizeof(shown), "%s",
                 json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
        bool stalled = v && strcmp(v, "stalled") == 0;
        bool ended = !st || it_is_terminal(st);
        json_object_put(r);
        if (ended)
            it_fail("a guest dirtying all its RAM faster than the link "
                    "ended its migration: %s", shown);
        if (stalled) {
            t_stalled = it_now_ms() - t0;
            break;
        }
        it_sleep_ms(100);
    }
    fprintf(stderr, "stalled after %lld ms: %s\n", t_stalled, shown);
    if (t_stalled < 0 || t_stalled > 10000)
        it_fail("verdict 'stalled' %s (must be within 10 s): %s",
                t_stalled < 0 ? "not reached in 30 s" : "came late",
                shown);
    json_object *r = it_qm(src);
    const char *reason = lmh_get_str(r, "convergence.reason");
    if (!reason || !strstr(reason, "not shrinking") ||
        !strstr(reason, "downtime-limit 300 ms") || !strstr(reason, "MB/s"))
        it_fail("the stall's reason does not say why with the figures: %s",
                reason ? reason : "(none)");
    if (lmh_get_int(r, "convergence.expected-downtime") <= 300)
        it_fail("stalled with an expected downtime within the limit");
    json_object_put(r);
    json_object *evs = it_drain_events(src->qmp, 300);
    bool seen = false;
    for (size_t i = 0; i < json_object_array_length(evs); i++) {
        json_object *ev = json_object_array_get_idx(evs, i);
        const char *name = lmh_get_str(ev, "event");
        const char *v = lmh_get_str(ev, "data.verdict");
        if (name && strcmp(name, "MIGRATION_CONVERGENCE") == 0 && v &&
            strcmp(v, "stalled") == 0 && lmh_get_str(ev, "data.reason"))
            seen = true;
    }
    json_object_put(evs);
    if (!seen)
        it_fail("no MIGRATION_CONVERGENCE event with verdict 'stalled'");
    json_object_put(lmh_ok(src->qmp, "migrate_cancel", NULL));
    it_wait_status(src, "cancelled", 30000);
    it_verify_ok(src, "source");
    (void)dst;
}

int main(void)
{
    if (!it_two_hosts()) {
        fprintf(stderr, "SKIP: test-link runs between two hosts: start it "
                "with 'scripts/two-hosts run --rate 1gbit -- %s' (meson "
                "does)\n", "test-link");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_two_hosts_and_link_rate, it_teardown),
        cmocka_unit_test_teardown(test_cut_and_restore, it_teardown),
        cmocka_unit_test_teardown(test_precopy_stalls, it_teardown),
    };
    return cmocka_run_group_tests_name("two-hosts-link", tests, NULL, NULL);
}
