/*
 * test-mc-kill.c - issue 5: SIGKILL the primary at random moments of
 * micro-checkpointing (between checkpoints, during a send, during an ack)
 * and check the backup takes over with nothing lost that anyone saw.
 *
 * Each kill is its own cmocka test on a fresh pair (32 MiB guests, mc-delay
 * 20-50 ms, dirty rate 10M-80M, mc-heartbeat-timeout 1000 ms), killed 0-300
 * ms after both sides reached checkpointing.  Asserted each time:
 *   - MC_FAILOVER on the backup within mc-heartbeat-timeout + 500 ms of the
 *     kill (event timestamp minus the wall clock just before kill()), with
 *     the epoch query-migrate then reports as failover-epoch;
 *   - the backup's status becomes completed, its guest runs (query-status
 *     running, pages-written grows) and guest-verify passes;
 *   - every line of the outputs file is backed: its (generation, cursor) is
 *     not ahead of the backup's resumed-from (threads=1);
 *   - the outputs file is not empty when an output must have been
 *     acknowledged: the backup took over at epoch 3 or later from a state
 *     more than one output (256 pages) plus one epoch of writes in.
 *
 * Usage: test-mc-kill [FIRST COUNT]: only kills FIRST .. FIRST+COUNT-1 of
 * the 20.  MC_KILL_SEED=N repeats a run; the seed, each kill's parameters
 * and takeover time, and min / median / max takeover are printed.
 */
#include "mctest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NKILLS 20
#define HEARTBEAT 1000

static unsigned seed;

typedef struct kill_case {
    int idx;
    mct_conf conf;
    int delay_ms;
} kill_case;

static kill_case cases[NKILLS];
static double takeover_ms[NKILLS];
static bool measured[NKILLS];

static long long rate_bytes(const char *r)
{
    return atoll(r) * 1024 * 1024;
}

static void kill_primary(void **state)
{
    kill_case *k = *state;
    const mct_conf *c = &k->conf;
    mct_pair *p = mct_pair_start(c);
    mct_protect(p, 30000);
    long long t0 = mct_now_ms();
    /* The random moment: a deliberate wait, not a synchronisation. */
    mct_sleep_ms(k->delay_ms);
    long long ran_ms = mct_now_ms() - t0;
    long long kill_us = mct_kill(p->pri);

    json_object *ev = mct_wait_event(p->bak, "MC_FAILOVER", HEARTBEAT + 5000);
    if (!ev)
        mct_fail("kill %d: no MC_FAILOVER on the backup within %d ms of "
                 "SIGKILL of the primary", k->idx, HEARTBEAT + 5000);
    double ms = (double)(mct_event_us(ev) - kill_us) / 1000.0;
    long long ev_epoch = lmh_get_int(ev, "data.epoch");
    const char *reason = lmh_get_str(ev, "data.reason");
    printf("kill %2d: mc-delay %3lld ms, dirty-rate %s, after %3lld ms: "
           "takeover %.1f ms at epoch %lld (%s)\n", k->idx, c->mc_delay,
           c->rate, ran_ms, ms, ev_epoch, reason ? reason : "?");
    fflush(stdout);
    json_object_put(ev);
    takeover_ms[k->idx] = ms;
    measured[k->idx] = true;
    if (ms > HEARTBEAT + 500)
        mct_fail("kill %d: the backup took over %.1f ms after the kill; "
                 "expected within mc-heartbeat-timeout + 500 = %d ms",
                 k->idx, ms, HEARTBEAT + 500);
    if (ev_epoch < 1)
        mct_fail("kill %d: MC_FAILOVER names epoch %lld", k->idx, ev_epoch);

    mct_wait_status(p->bak, "completed", 30000);
    if (!mct_running(p->bak))
        mct_fail("kill %d: the backup's guest does not run after the "
                 "takeover", k->idx);
    json_object *qm = mct_qm(p->bak);
    long long fe = lmh_get_int(qm, "mc.failover-epoch");
    const char *role = lmh_get_str(qm, "mc.role");
    if (fe != ev_epoch || !role || strcmp(role, "backup") != 0 ||
        !lmh_get_str(qm, "mc.failover-reason"))
        mct_fail("kill %d: query-migrate on the backup after takeover: "
                 "expected role backup, failover-epoch %lld and a "
                 "failover-reason: %s", k->idx, ev_epoch,
                 json_object_to_json_string(qm));
    json_object_put(qm);

    json_object *g = mct_guest(p->bak);
    long long gen = lmh_get_int(g, "resumed-from.generation");
    long long cur = lmh_get_int(g, "resumed-from.cursor");
    json_object_put(g);
    size_t lines = mct_outputs_backed(p->outputs, 0, gen, cur);

    /* Were outputs bound to have been released?  Checkpoint E-1 was
     * acknowledged (E, the last the backup applied, is only sent after
     * it), and epoch E lasts about mc-delay: so when the backup resumed
     * from more than 256 pages (one output) plus what the guest writes in
     * mc-delay + 50 ms past its first write (generation 2, cursor 0), an
     * output was released.  Epoch 1 covers the whole initial sync, so E
     * must be at least 3. */
    long long npages = (long long)c->size_mib * 256;
    long long done = (gen - 2) * npages + cur;
    long long per_epoch = rate_bytes(c->rate) / 4096 *
                          (c->mc_delay + 50) / 1000;
    bool long_enough = ev_epoch >= 3 && done > 256 + per_epoch;
    if (long_enough && lines == 0)
        mct_fail("kill %d: the backup resumed at epoch %lld from %lld pages "
                 "written (an output every 256, up to %lld per epoch) but "
                 "the outputs file is empty: no output was ever released",
                 k->idx, ev_epoch, done, per_epoch);
    mct_pos last;
    mct_outputs(p->outputs, &last, NULL);
    printf("         backup resumed from (%lld, %lld); %zu outputs, last "
           "(%lld, %lld)%s\n", gen, cur, lines, last.gen, last.cur,
           long_enough ? "" : " [too short to require outputs]");

    mct_verify_ok(p->bak, "backup");
    mct_wait_writes(p->bak, "backup", 30000);
    mct_pair_finish(p);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int first = 0, count = NKILLS;
    if (argc == 3) {
        first = atoi(argv[1]);
        count = atoi(argv[2]);
    }
    if (first < 0 || first >= NKILLS || count < 1 || first + count > NKILLS) {
        fprintf(stderr, "usage: %s [FIRST COUNT] (kills 0..%d)\n", argv[0],
                NKILLS - 1);
        return 2;
    }
    const char *s = getenv("MC_KILL_SEED");
    seed = s && s[0] ? (unsigned)strtoul(s, NULL, 0)
                     : (unsigned)time(NULL) ^ (unsigned)getpid();
    printf("MC_KILL_SEED=%u\n", seed);
    srand(seed);
    static const char *rates[] = { "10M", "20M", "40M", "80M" };
    /* Draw all 20 so FIRST..FIRST+COUNT is the same for a given seed. */
    for (int i = 0; i < NKILLS; i++) {
        cases[i].idx = i;
        cases[i].conf = (mct_conf){ .size_mib = 32,
                                    .rate = rates[rand() % 4],
                                    .mc_delay = 20 + rand() % 31,
                                    .heartbeat = HEARTBEAT };
        cases[i].delay_ms = rand() % 301;
    }
    struct CMUnitTest tests[NKILLS];
    static char names[NKILLS][32];
    for (int i = 0; i < count; i++) {
        kill_case *k = &cases[first + i];
        snprintf(names[i], sizeof(names[i]), "kill_primary_%02d", k->idx);
        tests[i] = (struct CMUnitTest){ names[i], kill_primary, NULL,
                                        mct_teardown, k };
    }
    int rc = _cmocka_run_group_tests("mc-kill", tests, (size_t)count, NULL,
                                     NULL);
    double t[NKILLS];
    int n = 0;
    for (int i = first; i < first + count; i++)
        if (measured[i])
            t[n++] = takeover_ms[i];
    if (n) {
        qsort(t, (size_t)n, sizeof(t[0]), cmp_double);
        printf("takeover after SIGKILL over %d kills: min %.1f ms, median "
               "%.1f ms, max %.1f ms\n", n, t[0], t[n / 2], t[n - 1]);
    }
    return rc;
}
