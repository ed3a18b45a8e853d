/*
 * test-workload.c - the workload carries over: a destination (or an MC
 * backup) started with another --guest dirty rate, thread count and fill
 * runs on as the source did, after a precopy migration and after an MC
 * failover; a size it cannot honour is refused naming both sizes.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SRC_RATE (4LL * IT_MiB)      /* 1024 pages/s */

static const char *guest_str(lmh_daemon *d, const char *key, char *buf,
                             size_t len)
{
    json_object *g = lmh_ok(d->qmp, "query-guest", NULL);
    const char *v = lmh_get_str(g, key);
    snprintf(buf, len, "%s", v ? v : "");
    json_object_put(g);
    return buf;
}

/* The guest on @d runs the source's workload: its query-guest says so,
 * and it writes at about that rate (at least a fifth of it: a loaded
 * machine may starve it, but a guest that kept its own dirty-rate=0
 * writes nothing). */
static void check_source_workload(lmh_daemon *d, const char *who)
{
    char buf[64];
    if (it_guest_int(d, "dirty-rate") != SRC_RATE)
        it_fail("the %s runs dirty-rate %lld, the source's was %lld", who,
                it_guest_int(d, "dirty-rate"), SRC_RATE);
    if (it_guest_int(d, "threads") != 1)
        it_fail("the %s runs threads=%lld, the source's was 1", who,
                it_guest_int(d, "threads"));
    if (strcmp(guest_str(d, "fill", buf, sizeof(buf)), "text") != 0)
        it_fail("the %s runs fill=%s, the source's was text", who, buf);
    long long w0 = it_guest_int(d, "pages-written");
    long long t0 = it_now_ms();
    long long want = SRC_RATE / 4096 * 2;     /* two seconds' worth */
    long long w = w0;
    while (it_now_ms() - t0 < 30000 && (w = it_guest_int(d, "pages-written"))
           - w0 < want / 5)
        it_sleep_ms(50);
    long long ms = it_now_ms() - t0;
    if (w - w0 < want / 5)
        it_fail("the %s wrote %lld pages in %lld ms at dirty-rate %lld",
                who, w - w0, ms, SRC_RATE);
    /* Not faster than the source's rate either (pacing allows a 10 ms
     * burst): over a second, at most 1.5 times the rate. */
    w0 = it_guest_int(d, "pages-written");
    t0 = it_now_ms();
    it_sleep_ms(1000);   /* a measurement window, not synchronisation */
    w = it_guest_int(d, "pages-written");
    ms = it_now_ms() - t0;
    double rate = (double)(w - w0) * 4096.0 * 1000.0 / (double)ms;
    fprintf(stderr, "%s: %.0f bytes/s written (source rate %lld)\n", who,
            rate, SRC_RATE);
    if (rate > 1.5 * (double)SRC_RATE + 4096.0 * 20)
        it_fail("the %s writes %.0f bytes/s, above the source's %lld", who,
                rate, SRC_RATE);
    it_verify_ok(d, who);
}

static void test_precopy_carries_workload(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start("pattern,size=32M,threads=1,dirty-rate=4M,"
                               "fill=text", NULL, NULL);
    lmh_daemon *dst = it_start("pattern,size=32M,threads=2,dirty-rate=0,"
                               "fill=random", uri, NULL);
    it_migrate(src, uri);
    it_wait_status(dst, "completed", 30000);
    it_wait_status(src, "completed", 30000);
    check_source_workload(dst, "destination");
}

static void test_failover_carries_workload(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    /* The backup as docs/micro-checkpointing.md starts it: size only. */
    lmh_daemon *bak = it_start("pattern,size=32M", uri, NULL);
    lmh_daemon *pri = it_start("pattern,size=32M,threads=1,dirty-rate=4M,"
                               "fill=text", NULL, NULL);
    it_set_cap(pri, "micro-checkpointing", true);
    it_set_params(pri, "{\"mc-delay\": 100, \"mc-heartbeat-timeout\": 1000}");
    it_migrate(pri, uri);
    it_wait_status(bak, "checkpointing", 30000);
    it_kill9(pri);
    it_wait_status(bak, "completed", 30000);
    check_source_workload(bak, "backup");
    /* the backup's log says what happened, in plain words */
    FILE *f = fopen(bak->log, "r");
    char *log = calloc(1, 1 << 20);
    size_t n = f ? fread(log, 1, (1 << 20) - 1, f) : 0;
    if (f)
        fclose(f);
    log[n] = '\0';
    if (!strstr(log, "micro-checkpointing: the guest is protected") ||
        !strstr(log, "this backup took over from checkpoint") ||
        !strstr(log, "the primary's connection closed"))
        it_fail("the backup's log lacks the protection or the takeover: %s",
                log);
    free(log);
}

static void test_size_mismatch_refused(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start("pattern,size=32M,dirty-rate=1M", NULL, NULL);
    lmh_daemon *dst = it_start("pattern,size=16M", uri, NULL);
    it_migrate(src, uri);
    const char *end = it_wait_end(src, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("a 32M source into a 16M destination ended '%s'", end);
    json_object *qm = it_qm(src);
    const char *e = lmh_get_str(qm, "error-desc");
    if (!e || !strstr(e, "33554432") || !strstr(e, "16777216"))
        it_fail("the error does not name both sizes: %s",
                e ? e : "(none)");
    json_object_put(qm);
    it_wait_end(dst, 30000);
    it_verify_ok(src, "source");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_precopy_carries_workload, it_teardown),
        cmocka_unit_test_teardown(test_failover_carries_workload,
                                  it_teardown),
        cmocka_unit_test_teardown(test_size_mismatch_refused, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
