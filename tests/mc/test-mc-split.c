/*
 * test-mc-split.c - never two primaries on purpose: one daemon of a
 * protected pair is frozen (SIGSTOP) for a length around the timeouts
 * and thawed (SIGCONT); once both have settled, at most one guest runs
 * (query-status) and the one that runs verifies.
 *
 * With mc-heartbeat-timeout 1000 the primary gives its backup up after
 * 2000 ms without a word from it, and the backup's lease is 1500 ms
 * (src/engine/mc-int.h).
 *
 *   backup_frozen     the backup frozen 300 .. 4000 ms: the primary runs
 *                     on (still protected, or having given the backup up),
 *                     the backup never runs the guest by itself
 *   primary_frozen    the primary frozen 300 .. 1200 ms, or until the
 *                     backup took over: the backup takes over only after
 *                     a silence of the heartbeat timeout, and a primary
 *                     that wakes to find it replaced stops its guest and
 *                     releases nothing more
 *   standby_forced    a backup that stood down takes over on mc-failover
 *                     (and only then), after the primary is killed
 *   second_failover   a second mc-failover is an error on either side
 */
#include "mctest.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static const mct_conf conf = { 64, "20M", 100, 1000 };

static bool terminal(const char *st)
{
    return strcmp(st, "failed") == 0 || strcmp(st, "completed") == 0 ||
           strcmp(st, "cancelled") == 0;
}

typedef struct settle {
    mct_pair *p;
    long long ck0;
} settle;

/* Settled: both checkpointing and the primary made 3 more checkpoints,
 * or neither is checkpointing any more. */
static bool settled(void *opaque)
{
    settle *w = opaque;
    char pst[32], bst[32];
    snprintf(pst, sizeof(pst), "%s", mct_status(w->p->pri));
    snprintf(bst, sizeof(bst), "%s", mct_status(w->p->bak));
    if (strcmp(pst, "checkpointing") == 0 &&
        strcmp(bst, "checkpointing") == 0)
        return mct_qm_int(w->p->pri, "mc.checkpoints", 0) >= w->ck0 + 3;
    return terminal(pst) && terminal(bst);
}

static void wait_settled(mct_pair *p, const char *what)
{
    settle w = { p, mct_qm_int(p->pri, "mc.checkpoints", 0) };
    if (!lmh_wait_for(settled, &w, 30000, 20))
        mct_fail("%s: the pair did not settle within 30 s (primary '%s', "
                 "backup '%s')", what, mct_status(p->pri),
                 mct_status(p->bak));
}

/* At most one guest runs; returns which (0 none, 1 primary, 2 backup). */
static int one_runs(mct_pair *p, const char *what)
{
    bool pr = mct_running(p->pri), br = mct_running(p->bak);
    char pst[32];
    snprintf(pst, sizeof(pst), "%s", mct_status(p->pri));
    printf("%s: primary '%s' %s, backup '%s' %s\n", what, pst,
           pr ? "running" : "stopped", mct_status(p->bak),
           br ? "running" : "stopped");
    if (pr && br)
        mct_fail("%s: two guests run (primary '%s', backup '%s')", what, pst,
                 mct_status(p->bak));
    return pr ? 1 : br ? 2 : 0;
}

/* ---- the backup frozen -------------------------------------------------- */

static void backup_frozen(void **state)
{
    (void)state;
    static const int lengths[] = { 300, 900, 1100, 1400, 1600, 1900, 2100,
                                   2500, 4000 };
    for (size_t i = 0; i < sizeof(lengths) / sizeof(*lengths); i++) {
        char what[64];
        snprintf(what, sizeof(what), "backup frozen %d ms", lengths[i]);
        mct_pair *p = mct_pair_start(&conf);
        mct_protect(p, 30000);
        long long ck0 = mct_qm_int(p->pri, "mc.checkpoints", 0);
        kill(p->bak->pid, SIGSTOP);
        mct_sleep_ms(lengths[i]);   /* the length under test */
        kill(p->bak->pid, SIGCONT);
        wait_settled(p, what);
        if (one_runs(p, what) != 1)
            mct_fail("%s: the primary must run on (protected or not)", what);
        mct_verify_ok(p->pri, "primary");
        if (strcmp(mct_status(p->pri), "checkpointing") == 0) {
            if (mct_qm_int(p->pri, "mc.checkpoints", 0) < ck0 + 3)
                mct_fail("%s: still protected but no new checkpoints", what);
        } else {
            /* Given up: it says so in MC words. */
            json_object *qm = mct_qm(p->pri);
            const char *d = lmh_get_str(qm, "error-desc");
            if (!d || !strstr(d, "backup") || strstr(d, "confirming"))
                mct_fail("%s: the primary's error-desc should name the "
                         "backup: %s", what, json_object_to_json_string(qm));
            json_object_put(qm);
            /* A backup whose primary may have run on stands down. */
            json_object *ev = mct_wait_event(p->bak, "MC_STOOD_DOWN", 30000);
            if (!ev)
                mct_fail("%s: no MC_STOOD_DOWN on the given-up backup",
                         what);
            json_object_put(ev);
        }
        mct_pair_finish(p);
    }
}

/* ---- the primary frozen ------------------------------------------------- */

static void primary_frozen_for(int ms)
{
    char what[64];
    snprintf(what, sizeof(what), "primary frozen %d ms", ms);
    mct_pair *p = mct_pair_start(&conf);
    mct_protect(p, 30000);
    kill(p->pri->pid, SIGSTOP);
    mct_sleep_ms(ms);   /* the length under test */
    kill(p->pri->pid, SIGCONT);
    wait_settled(p, what);
    one_runs(p, what);
    if (!mct_running(p->pri) && !mct_running(p->bak))
        mct_fail("%s: no guest runs", what);
    mct_pair_finish(p);
}

static void primary_frozen(void **state)
{
    (void)state;
    primary_frozen_for(300);
    primary_frozen_for(700);
    primary_frozen_for(1200);

    /* Frozen until the backup took over, then thawed. */
    mct_pair *p = mct_pair_start(&conf);
    mct_protect(p, 30000);
    kill(p->pri->pid, SIGSTOP);
    json_object *ev = mct_wait_event(p->bak, "MC_FAILOVER", 30000);
    if (!ev)
        mct_fail("no MC_FAILOVER within 30 s of freezing the primary");
    json_object_put(ev);
    kill(p->pri->pid, SIGCONT);
    ev = mct_wait_event(p->pri, "MC_STOOD_DOWN", 30000);
    if (!ev)
        mct_fail("the thawed primary did not stand down (MC_STOOD_DOWN)");
    printf("thawed primary: %s\n", json_object_to_json_string(ev));
    if (strcmp(lmh_get_str(ev, "data.role") ?: "", "primary") != 0)
        mct_fail("MC_STOOD_DOWN should say role primary: %s",
                 json_object_to_json_string(ev));
    json_object_put(ev);
    mct_wait_status(p->pri, "failed", 30000);
    mct_wait_status(p->bak, "completed", 30000);
    if (one_runs(p, "primary thawed after takeover") != 2)
        mct_fail("after the takeover only the backup must run the guest");
    json_object *qm = mct_qm(p->pri);
    const char *d = lmh_get_str(qm, "error-desc");
    if (!d || !strstr(d, "took over"))
        mct_fail("the primary's error-desc should say the backup took "
                 "over: %s", json_object_to_json_string(qm));
    json_object_put(qm);
    mct_verify_ok(p->bak, "backup");
    /* Nothing the thawed primary held reached the world. */
    json_object *g = mct_guest(p->bak);
    long long gen = lmh_get_int(g, "resumed-from.generation");
    long long cur = lmh_get_int(g, "resumed-from.cursor");
    json_object_put(g);
    mct_outputs_backed(p->outputs, 0, gen, cur);
    mct_pair_finish(p);
}

/* ---- a stood-down backup is forced by mc-failover ----------------------- */

static void standby_forced(void **state)
{
    (void)state;
    mct_pair *p = mct_pair_start(&conf);
    mct_protect(p, 30000);
    kill(p->bak->pid, SIGSTOP);
    json_object *ev = mct_wait_event(p->pri, "MC_BACKUP_HUNG", 30000);
    if (!ev)
        mct_fail("no MC_BACKUP_HUNG within 30 s of freezing the backup");
    printf("hung: %s\n", json_object_to_json_string(ev));
    json_object_put(ev);
    kill(p->bak->pid, SIGCONT);
    ev = mct_wait_event(p->bak, "MC_STOOD_DOWN", 30000);
    if (!ev)
        mct_fail("the given-up backup did not stand down");
    json_object_put(ev);
    mct_wait_status(p->bak, "failed", 30000);
    one_runs(p, "backup stood down");
    json_object *qm = mct_qm(p->bak);
    const char *d = lmh_get_str(qm, "error-desc");
    if (!d || !strstr(d, "stood down") || !strstr(d, "mc-failover"))
        mct_fail("the backup's error-desc should say it stood down and "
                 "how to force it: %s", json_object_to_json_string(qm));
    json_object_put(qm);
    mct_verify_ok(p->pri, "primary");

    /* The primary dies for real: the operator forces the backup. */
    mct_kill(p->pri);
    json_object_put(lmh_ok(p->bak->qmp, "mc-failover", NULL));
    ev = mct_wait_event(p->bak, "MC_FAILOVER", 5000);
    if (!ev)
        mct_fail("no MC_FAILOVER after mc-failover on a stood-down backup");
    json_object_put(ev);
    mct_wait_status(p->bak, "completed", 30000);
    if (!mct_running(p->bak))
        mct_fail("the forced backup does not run the guest");
    mct_verify_ok(p->bak, "backup");
    mct_wait_writes(p->bak, "backup", 30000);
    lmh_err(p->bak->qmp, "mc-failover", NULL, "GenericError", "'completed'");
    mct_pair_finish(p);
}

/* ---- a second mc-failover ----------------------------------------------- */

static void second_failover(void **state)
{
    (void)state;
    mct_conf c = conf;
    c.heartbeat = 0;
    mct_pair *p = mct_pair_start(&c);
    mct_protect(p, 30000);
    json_object_put(lmh_ok(p->pri->qmp, "mc-failover", NULL));
    /* At once, or after the first ended: an error either way. */
    lmh_err(p->pri->qmp, "mc-failover", NULL, "GenericError", "mc-failover");
    mct_wait_status(p->pri, "cancelled", 30000);
    json_object_put(lmh_ok(p->bak->qmp, "mc-failover", NULL));
    lmh_err(p->bak->qmp, "mc-failover", NULL, "GenericError", "mc-failover");
    mct_wait_status(p->bak, "completed", 30000);
    lmh_err(p->bak->qmp, "mc-failover", NULL, "GenericError", "'completed'");
    /* This is two guests on purpose: two commands said so. */
    mct_pair_finish(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(backup_frozen, mct_teardown),
        cmocka_unit_test_teardown(primary_frozen, mct_teardown),
        cmocka_unit_test_teardown(standby_forced, mct_teardown),
        cmocka_unit_test_teardown(second_failover, mct_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
