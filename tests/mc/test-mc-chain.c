/*
 * test-mc-chain.c - re-protection after failover: the backup that took
 * over is protected by a fresh backup, three times in a row.  Each hop:
 * the running daemon (A) is protected by a new backup (B), A is killed,
 * B takes over from a complete checkpoint, verifies, and every output A
 * released is backed by the state B resumed from.  B is then the next A.
 */
#include "mctest.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static const mct_conf conf = { 64, "20M", 100, 1000 };

typedef struct ck_min {
    lmh_daemon *d;
    long long want;
} ck_min;

static bool has_checkpoints(void *opaque)
{
    ck_min *w = opaque;
    return mct_qm_int(w->d, "mc.checkpoints", 0) >= w->want;
}

/* A backup whose guest, once it runs, writes its outputs to @outputs. */
static lmh_daemon *start_backup(mct_pair *p, const char *outputs)
{
    char spec[512];
    snprintf(p->uri, sizeof(p->uri), "tcp:127.0.0.1:%d", lmh_port());
    snprintf(spec, sizeof(spec), "pattern,size=%dM,threads=1,dirty-rate=%s,"
             "fill=random,outputs=%s", conf.size_mib, conf.rate, outputs);
    return lmh_start("--guest", spec, "--incoming", p->uri, NULL);
}

/* Make @d a primary: capability and parameters as the first one had. */
static void make_primary(lmh_daemon *d)
{
    json_object_put(lmh_ok(d->qmp, "migrate-set-capabilities",
        "{\"capabilities\": [{\"capability\": \"micro-checkpointing\", "
        "\"state\": true}, {\"capability\": \"events\", "
        "\"state\": true}]}"));
    json_object *a = lmh_json("{\"mc-delay\": %lld, "
                              "\"mc-heartbeat-timeout\": %lld}",
                              conf.mc_delay, conf.heartbeat);
    json_object_put(lmh_ok_obj(d->qmp, "migrate-set-parameters", a));
}

static void chain(void **state)
{
    (void)state;
    mct_pair *p = mct_pair_start(&conf);
    /* Every daemon writes its guest's outputs to its own file. */
    char pri_out[320], bak_out[320];
    snprintf(pri_out, sizeof(pri_out), "%s", p->outputs);
    snprintf(bak_out, sizeof(bak_out), "%s/outputs-b1.jsonl", p->dir);
    mct_drop(p, &p->bak);
    p->bak = start_backup(p, bak_out);
    for (int hop = 1; hop <= 3; hop++) {
        mct_protect(p, 30000);
        /* A few acknowledged checkpoints with outputs released. */
        long long c0 = mct_qm_int(p->pri, "mc.checkpoints", 0);
        ck_min w = { p->pri, c0 + 5 };
        if (!lmh_wait_for(has_checkpoints, &w, 30000, 10))
            mct_fail("hop %d: fewer than 5 checkpoints in 30 s", hop);
        if (mct_outputs(pri_out, NULL, NULL) == 0)
            mct_fail("hop %d: no output released by the protected primary",
                     hop);

        mct_kill(p->pri);
        json_object *ev = mct_wait_event(p->bak, "MC_FAILOVER", 30000);
        if (!ev)
            mct_fail("hop %d: no MC_FAILOVER within 30 s of killing the "
                     "primary", hop);
        json_object_put(ev);
        mct_wait_status(p->bak, "completed", 30000);
        if (!mct_running(p->bak))
            mct_fail("hop %d: the new primary's guest does not run", hop);
        mct_verify_ok(p->bak, "backup that took over");
        json_object *g = mct_guest(p->bak);
        long long gen = lmh_get_int(g, "resumed-from.generation");
        long long cur = lmh_get_int(g, "resumed-from.cursor");
        json_object_put(g);
        size_t n = mct_outputs_backed(pri_out, 0, gen, cur);
        printf("hop %d: took over at generation %lld cursor %lld; %zu "
               "outputs of the dead primary, all backed\n", hop, gen, cur, n);
        if (n == 0)
            mct_fail("hop %d: the dead primary released no output", hop);
        mct_wait_writes(p->bak, "backup that took over", 30000);

        /* The survivor becomes the primary of a fresh backup. */
        mct_drop(p, &p->pri);
        p->pri = p->bak;
        p->bak = NULL;
        make_primary(p->pri);
        snprintf(pri_out, sizeof(pri_out), "%s", bak_out);
        snprintf(bak_out, sizeof(bak_out), "%s/outputs-b%d.jsonl", p->dir,
                 hop + 1);
        p->bak = start_backup(p, bak_out);
    }
    /* The last survivor is protected too, and verifies. */
    mct_protect(p, 30000);
    mct_verify_ok(p->pri, "last primary");
    mct_pair_finish(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(chain, mct_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
