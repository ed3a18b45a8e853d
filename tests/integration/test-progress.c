/*
 * test-progress.c - what query-migrate shows while a migration runs, and
 * how a low max-bandwidth sends:
 *  - with multifd, the channels' stats and mbps show during the first
 *    pass, not only after completion;
 *  - at max-bandwidth 1 MiB/s (multifd or not) the bytes trickle out
 *    steadily: no second without progress, then a burst; the rate stays
 *    near the limit;
 *  - a truncated incoming file is reported as truncated.
 */
#include "itest.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPEC "pattern,size=32M,threads=1,dirty-rate=0,fill=random"
#define RATE (1024 * 1024)

static long long mf_bytes(json_object *r)
{
    json_object *ch = lmh_get(r, "multifd.channels");
    if (!ch || !json_object_is_type(ch, json_type_array))
        return -1;
    long long sum = 0;
    for (size_t i = 0; i < json_object_array_length(ch); i++)
        sum += lmh_get_int(json_object_array_get_idx(ch, i), "bytes");
    return sum;
}

static void slow_migration(bool multifd)
{
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    (void)dst;
    if (multifd)
        it_set_cap(src, "multifd", true);
    it_set_params(src, "{\"max-bandwidth\": 1048576}");
    it_migrate(src, uri);
    it_wait_status(src, "active", 20000);
    /* Let the first writes through, then watch 4 s of a ~32 s pass. */
    it_wait_qm_above(src, "ram.transferred", 64 * 1024, 10000);

    long long t0 = it_now_ms(), last_change = t0, max_gap = 0;
    long long b0 = it_qm_int(src, "ram.transferred", 0), prev = b0, b = b0;
    long long mf_seen = -1;
    double mbps = 0;
    while (it_now_ms() - t0 < 4000) {
        it_sleep_ms(50);
        json_object *r = it_qm(src);
        const char *st = lmh_get_str(r, "status");
        if (!st || strcmp(st, "active") != 0)
            it_fail("the 1 MiB/s migration of 32 MiB is '%s' after %lld ms",
                    st ? st : "?", it_now_ms() - t0);
        b = lmh_get_int(r, "ram.transferred");
        long long now = it_now_ms();
        if (b != prev) {
            if (now - last_change > max_gap)
                max_gap = now - last_change;
            last_change = now;
            prev = b;
        }
        if (multifd)
            mf_seen = mf_bytes(r) > mf_seen ? mf_bytes(r) : mf_seen;
        json_object *m = lmh_get(r, "ram.mbps");
        if (m)
            mbps = json_object_get_double(m);
        json_object_put(r);
    }
    long long took = it_now_ms() - t0;
    if (it_now_ms() - last_change > max_gap)
        max_gap = it_now_ms() - last_change;
    double rate = (double)(b - b0) * 1000.0 / (double)took;
    fprintf(stderr, "%s at 1 MiB/s: %.0f B/s over %lld ms, longest silence "
            "%lld ms, mbps %.2f, multifd channel bytes %lld\n",
            multifd ? "multifd" : "main stream", rate, took, max_gap, mbps,
            mf_seen);
    if (max_gap >= 1000)
        it_fail("%lld ms without a byte sent at max-bandwidth 1 MiB/s",
                max_gap);
    if (rate < RATE * 0.5 || rate > RATE * 1.5)
        it_fail("%.0f B/s sent at max-bandwidth %d B/s", rate, RATE);
    if (mbps <= 0)
        it_fail("ram.mbps is %.2f while the first pass runs", mbps);
    if (multifd && mf_seen <= 0)
        it_fail("no multifd channel stats (bytes %lld) while the migration "
                "runs", mf_seen);
    json_object_put(lmh_ok(src->qmp, "migrate_cancel", NULL));
    it_wait_status(src, "cancelled", 10000);
}

static void test_multifd_slow(void **state)
{
    (void)state;
    slow_migration(true);
}

static void test_main_stream_slow(void **state)
{
    (void)state;
    slow_migration(false);
}

static void test_truncated_file(void **state)
{
    (void)state;
    char full[300], cut[300], uri[320], err[600];
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_path(src, "full.bin", full, sizeof(full));
    lmh_path(src, "cut.bin", cut, sizeof(cut));
    snprintf(uri, sizeof(uri), "file:%s", full);
    it_migrate(src, uri);
    it_wait_status(src, "completed", 30000);
    struct stat sb;
    assert_int_equal(stat(full, &sb), 0);
    /* Cut inside the pages, and just before the end. */
    off_t cuts[] = { sb.st_size / 3, sb.st_size - 1 };
    for (int i = 0; i < 2; i++) {
        char cmd[800];
        snprintf(cmd, sizeof(cmd), "head -c %lld '%s' > '%s'",
                 (long long)cuts[i], full, cut);
        assert_int_equal(system(cmd), 0);
        snprintf(uri, sizeof(uri), "file:%s", cut);
        lmh_daemon *dst = it_start(SPEC, uri, NULL);
        const char *end = it_wait_end(dst, 20000);
        json_object *r = it_qm(dst);
        snprintf(err, sizeof(err), "%s", lmh_get_str(r, "error-desc")
                                             ? lmh_get_str(r, "error-desc")
                                             : "");
        json_object_put(r);
        if (strcmp(end, "failed") != 0 || !strstr(err, "truncated") ||
            strstr(err, "connection"))
            it_fail("a file cut at %lld of %lld bytes ended '%s' with "
                    "error-desc '%s'; expected failed, reported truncated",
                    (long long)cuts[i], (long long)sb.st_size, end, err);
        if (it_running(dst, NULL, 0))
            it_fail("a truncated file's guest runs");
        it_stop(dst);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_multifd_slow, it_teardown),
        cmocka_unit_test_teardown(test_main_stream_slow, it_teardown),
        cmocka_unit_test_teardown(test_truncated_file, it_teardown),
    };
    return cmocka_run_group_tests_name("integration-progress", tests, NULL,
                                       NULL);
}
