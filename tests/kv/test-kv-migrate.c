/*
 * test-kv-migrate.c - live migration of the kv store under the checker:
 * the destination serves only once it runs, the source then closes its
 * clients and its port, the clients reconnect, and no write the checker
 * saw acknowledged is missing; the store's clock runs on (TTLs count
 * down through the moves).  Both dirty trackers: manual and
 * uffd-wp-async.
 */
#include "kvtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOPS 3

static void wait_port_closed(int port, int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms;
    while (kvt_port_open(port)) {
        if (it_now_ms() > end)
            kvt_fail("port %d still accepts connections %d ms after the "
                     "migration completed", port, timeout_ms);
        it_sleep_ms(10);
    }
}

static void chain(const char *tracker)
{
    kvt_need_tracker(tracker);
    int port[HOPS + 1];
    lmh_daemon *d[HOPS + 1];
    char extra[64];
    snprintf(extra, sizeof(extra), ",tracker=%s", tracker);
    port[0] = lmh_port();
    d[0] = kvt_start(port[0], extra, NULL);
    kvt_wait_serving(port[0], 30000);

    kvt_conn *c = kvt_open(port[0], 5000);
    kvt_expect(c, "SET ttl v PX 60000", "+OK");
    kvt_expect(c, "RPUSH list a b c", ":3");
    kvt_expect(c, "HSET hash f v", ":1");
    kvt_expect(c, "SADD set m", ":1");
    char *info = kvt_cmd(c, "INFO memory");
    char want[64];
    snprintf(want, sizeof(want), "dirty_tracker:%s", tracker);
    if (!strstr(info, want))
        kvt_fail("INFO memory does not say %s:\n%s", want, info);
    free(info);
    kvt_close(c);
    long long set_ms = it_now_ms();

    kvt_checker *k = kvt_checker_start(40);
    kvt_checker_ports(k, port, 1);
    kvt_checker_wait_progress(k, 2000, 30000);

    for (int h = 1; h <= HOPS; h++) {
        char inc[64];
        port[h] = lmh_port();
        int mport = lmh_port();
        snprintf(inc, sizeof(inc), "tcp:127.0.0.1:%d", mport);
        d[h] = kvt_start(port[h], extra, inc);
        /* A destination does not serve before it runs. */
        it_sleep_ms(50);   /* a window for a wrong listen to show */
        if (kvt_port_open(port[h]))
            kvt_fail("the destination serves port %d before the migration",
                     port[h]);
        int both[2] = { port[h - 1], port[h] };
        kvt_checker_ports(k, both, 2);
        it_migrate(d[h - 1], inc);
        if (!lmh_wait_status(d[h - 1]->qmp, "completed", 60000))
            kvt_fail("migration %d did not complete: %s", h,
                     lmh_migration_status(d[h - 1]->qmp));
        kvt_wait_serving(port[h], 30000);
        wait_port_closed(port[h - 1], 30000);
        /* The clients came back on the destination. */
        kvt_checker_wait_progress(k, 2000, 30000);
    }
    uint64_t acked, unknown, reconnects;
    kvt_checker_stats(k, &acked, &unknown, &reconnects);
    uint64_t checked = kvt_checker_verify(k, port[HOPS]);
    printf("%s: %d migrations, %llu writes acknowledged, %llu unknown, "
           "%llu connections, %llu keys checked\n", tracker, HOPS,
           (unsigned long long)acked, (unsigned long long)unknown,
           (unsigned long long)reconnects, (unsigned long long)checked);
    assert_true(checked > 40);
    kvt_checker_free(k);

    c = kvt_open(port[HOPS], 5000);
    kvt_expect(c, "LRANGE list 0 -1", "*[$a,$b,$c]");
    kvt_expect(c, "HGET hash f", "$v");
    kvt_expect(c, "SISMEMBER set m", ":1");
    char *r = kvt_cmd(c, "PTTL ttl");
    long long left = strtoll(r + 1, NULL, 10);
    long long elapsed = it_now_ms() - set_ms;
    /* The clock ran during the moves: the TTL went down by at least the
     * time that passed (less a little for the downtimes), never up. */
    if (r[0] != ':' || left <= 0 || left > 60000 - elapsed + 100)
        kvt_fail("PTTL ttl is %s after %lld ms; expected at most %lld", r,
                 elapsed, 60000 - elapsed + 100);
    free(r);
    kvt_close(c);
    kvt_finish();
}

static void test_migrate_manual(void **state)
{
    (void)state;
    chain("manual");
    kvt_finish();
}

static void test_migrate_uffd(void **state)
{
    (void)state;
    chain("uffd-wp-async");
    kvt_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_migrate_manual, kvt_teardown),
        cmocka_unit_test_teardown(test_migrate_uffd, kvt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
