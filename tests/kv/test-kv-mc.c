/*
 * test-kv-mc.c - the kv store under micro-checkpointing with output
 * commit, through 20 kill -9s of the primary at random moments: each time
 * the backup takes over (and only then serves its port), a fresh backup
 * re-protects it, and the checker's clients reconnect.  At the end no
 * write the checker saw acknowledged is missing and every counter is at
 * least its last acknowledged value and at most that plus the INCRs in
 * flight.
 */
#include "kvtest.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define KILLS 20

static void protect(lmh_daemon *pri, lmh_daemon *bak, const char *uri)
{
    json_object_put(lmh_ok(pri->qmp, "migrate-set-capabilities",
        "{\"capabilities\": [{\"capability\": \"micro-checkpointing\", "
        "\"state\": true}]}"));
    json_object_put(lmh_ok(pri->qmp, "migrate-set-parameters",
        "{\"mc-delay\": 20, \"mc-heartbeat-timeout\": 400}"));
    it_migrate(pri, uri);
    if (!lmh_wait_status(pri->qmp, "checkpointing", 60000) ||
        !lmh_wait_status(bak->qmp, "checkpointing", 60000))
        kvt_fail("protection did not reach checkpointing: primary %s",
                 lmh_migration_status(pri->qmp));
}

static lmh_daemon *new_backup(int *port, char *uri, size_t len,
                              const char *extra)
{
    *port = lmh_port();
    snprintf(uri, len, "tcp:127.0.0.1:%d", lmh_port());
    return kvt_start(*port, extra, uri);
}

static void kills(int nkills, const char *extra)
{
    srand((unsigned)getpid());
    int pport = lmh_port(), bport;
    char uri[64];
    lmh_daemon *pri = kvt_start(pport, extra, NULL);
    kvt_wait_serving(pport, 30000);
    lmh_daemon *bak = new_backup(&bport, uri, sizeof(uri), extra);
    protect(pri, bak, uri);

    kvt_checker *k = kvt_checker_start(30);
    int ports[2] = { pport, bport };
    kvt_checker_ports(k, ports, 2);
    for (int round = 1; round <= nkills; round++) {
        kvt_checker_wait_progress(k, 200, 30000);
        /* The backup serves nothing while it is one. */
        if (kvt_port_open(bport))
            kvt_fail("round %d: the backup accepts connections on %d "
                     "before it took over", round, bport);
        it_sleep_ms(rand() % 300);
        kill(pri->pid, SIGKILL);
        if (!lmh_wait_exit(pri, 10000))
            kvt_fail("round %d: the primary did not die", round);
        kvt_forget(pri);
        /* The backup takes over after the heartbeat timeout and serves. */
        kvt_wait_serving(bport, 30000);
        pri = bak;
        pport = bport;
        bak = new_backup(&bport, uri, sizeof(uri), extra);
        ports[0] = pport;
        ports[1] = bport;
        kvt_checker_ports(k, ports, 2);
        protect(pri, bak, uri);
    }
    kvt_checker_wait_progress(k, 200, 30000);
    uint64_t acked, unknown, reconnects;
    kvt_checker_stats(k, &acked, &unknown, &reconnects);
    uint64_t checked = kvt_checker_verify(k, pport);
    printf("%s: %d kills: %llu writes acknowledged, %llu unknown outcomes, "
           "%llu connections, %llu keys and counters checked\n",
           extra ? extra + 1 : "tracker=manual", nkills,
           (unsigned long long)acked, (unsigned long long)unknown,
           (unsigned long long)reconnects, (unsigned long long)checked);
    kvt_checker_free(k);
    kvt_finish();
}

static void test_mc_kills(void **state)
{
    (void)state;
    kills(KILLS, NULL);
}

/* The same with the kernel finding the written pages. */
static void test_mc_kills_uffd(void **state)
{
    (void)state;
    kvt_need_tracker("uffd-wp-async");
    kills(5, ",tracker=uffd-wp-async");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_mc_kills, kvt_teardown),
        cmocka_unit_test_teardown(test_mc_kills_uffd, kvt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
