/*
 * test-mc.c - issue 5: micro-checkpointing between two real livemigd
 * processes, everything but the random primary kills (test-mc-kill.c).
 *
 *   checkpointing_starts      MC_CHECKPOINTING on both sides (role, epoch),
 *                             query-migrate's mc block on each side, outputs
 *                             held until acknowledged
 *   heartbeat_timeout_sigstop primary frozen (SIGSTOP): the backup takes over
 *                             after mc-heartbeat-timeout of silence
 *   kill_backup               primary runs on unprotected, failed with an
 *                             error-desc, MC_BACKUP_LOST, outputs released at
 *                             once, a new backup re-protects it
 *   hung_backup               backup frozen (SIGSTOP): the primary gives it up
 *                             (MC_BACKUP_HUNG) within mc-heartbeat-timeout +
 *                             1000 ms (+ slack)
 *   mc_delay_live             mc-delay 500 -> 20 -> 500 (x-checkpoint-delay)
 *                             -> 20 (migrate-set-mc-delay) while checkpointing
 *   failover_on_command       mc-heartbeat-timeout 0: a frozen primary is not
 *                             replaced until mc-failover on the backup, which
 *                             takes over at once
 *   failover_on_primary       mc-failover on the primary drops the backup
 *   failover_without_mc       mc-failover errors name the status
 *   heartbeat_setup_only      mc-heartbeat-timeout refused while checkpointing
 */
#include "mctest.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define PAGE 4096LL

/* Pages between two positions of a one-thread guest of @npages pages. */
static long long pages_between(mct_pos a, mct_pos b, long long npages)
{
    return (b.gen - a.gen) * npages + (b.cur - a.cur);
}

static mct_pos guest_pos(lmh_daemon *d)
{
    json_object *g = mct_guest(d);
    json_object *gens = lmh_get(g, "generations"), *curs = lmh_get(g, "cursors");
    if (!gens || !curs || json_object_array_length(gens) != 1 ||
        json_object_array_length(curs) != 1)
        mct_fail("query-guest: expected one worker's generations and "
                 "cursors: %s", json_object_to_json_string(g));
    mct_pos p = { json_object_get_int64(json_object_array_get_idx(gens, 0)),
                  json_object_get_int64(json_object_array_get_idx(curs, 0)) };
    json_object_put(g);
    return p;
}

static mct_pos resumed_from(lmh_daemon *d)
{
    json_object *g = mct_guest(d);
    mct_pos p = { lmh_get_int(g, "resumed-from.generation"),
                  lmh_get_int(g, "resumed-from.cursor") };
    json_object_put(g);
    return p;
}

typedef struct lines_wait {
    const char *path;
    size_t want;
} lines_wait;

static bool has_lines(void *opaque)
{
    lines_wait *w = opaque;
    return mct_outputs(w->path, NULL, NULL) >= w->want;
}

static void wait_lines(const char *path, size_t want, int timeout_ms,
                       const char *why)
{
    lines_wait w = { path, want };
    if (!lmh_wait_for(has_lines, &w, timeout_ms, 10))
        mct_fail("the outputs file has %zu lines after %d ms, expected at "
                 "least %zu: %s", mct_outputs(path, NULL, NULL), timeout_ms,
                 want, why);
}

typedef struct ck_min {
    lmh_daemon *d;
    long long want;
} ck_min;

static bool has_checkpoints(void *opaque)
{
    ck_min *w = opaque;
    return mct_qm_int(w->d, "mc.checkpoints", 0) >= w->want;
}

/* Wait until the primary made @want checkpoints in all. */
static void wait_checkpoints(mct_pair *p, long long want, int timeout_ms)
{
    ck_min w = { p->pri, want };
    if (!lmh_wait_for(has_checkpoints, &w, timeout_ms, 20))
        mct_fail("the primary made %lld checkpoints in %d ms, expected %lld",
                 mct_qm_int(p->pri, "mc.checkpoints", 0), timeout_ms, want);
}

/* After a takeover: completed, running, writing, verified, every output
 * backed by the state it resumed from. */
static void check_took_over(mct_pair *p, const char *reason_part)
{
    mct_wait_status(p->bak, "completed", 30000);
    if (!mct_running(p->bak))
        mct_fail("the backup's guest does not run after the takeover");
    json_object *qm = mct_qm(p->bak);
    const char *reason = lmh_get_str(qm, "mc.failover-reason");
    if (!lmh_get(qm, "mc.failover-epoch") || !reason ||
        (reason_part && !strstr(reason, reason_part)))
        mct_fail("query-migrate on the backup: expected failover-epoch and a "
                 "failover-reason mentioning \"%s\": %s",
                 reason_part ? reason_part : "", json_object_to_json_string(qm));
    json_object_put(qm);
    mct_verify_ok(p->bak, "backup");
    mct_pos r = resumed_from(p->bak);
    size_t n = mct_outputs_backed(p->outputs, 0, r.gen, r.cur);
    if (n == 0)
        mct_fail("the outputs file is empty after a run of seconds");
    mct_wait_writes(p->bak, "backup", 30000);
}

/* ---- checkpointing starts ----------------------------------------------- */

/* query-migrate's mc.@name is {p50, p99, max, count, buckets} over a
 * non-empty window: ordered percentiles, buckets that add up to count,
 * the max in the last bucket. */
static void check_hist(json_object *qm, const char *name, const char *who)
{
    char path[64];
    snprintf(path, sizeof(path), "mc.%s", name);
    json_object *h = lmh_get(qm, path);
    json_object *b = lmh_get(h, "buckets");
    long long p50 = lmh_get_int(h, "p50"), p99 = lmh_get_int(h, "p99");
    long long max = lmh_get_int(h, "max"), count = lmh_get_int(h, "count");
    long long sum = 0;
    size_t nb = b && json_object_is_type(b, json_type_array)
                    ? json_object_array_length(b) : 0;
    for (size_t i = 0; i < nb; i++)
        sum += json_object_get_int64(json_object_array_get_idx(b, i));
    bool top_ok = nb > 0 && (max == 0 ? nb == 1
                                      : (long long)nb - 1 ==
                                            63 - __builtin_clzll((unsigned long long)max));
    if (!h || !b || count < 1 || p50 > p99 || p99 > max || sum != count ||
        !top_ok || max <= 0)
        mct_fail("query-migrate on the %s: %s should be {p50 <= p99 <= "
                 "max > 0, count >= 1, log2 buckets adding up to count}: %s",
                 who, path, json_object_to_json_string(qm));
}

static void checkpointing_starts(void **state)
{
    (void)state;
    mct_conf c = { 64, "20M", 200, 1000 };
    mct_pair *p = mct_pair_start(&c);
    mct_protect(p, 30000);

    json_object *ev = mct_wait_event(p->pri, "MC_CHECKPOINTING", 30000);
    if (!ev || strcmp(lmh_get_str(ev, "data.role") ?: "", "primary") != 0 ||
        lmh_get_int(ev, "data.epoch") < 1)
        mct_fail("MC_CHECKPOINTING {role: primary, epoch >= 1} expected on "
                 "the primary, got %s",
                 ev ? json_object_to_json_string(ev) : "none");
    json_object_put(ev);
    ev = mct_wait_event(p->bak, "MC_CHECKPOINTING", 30000);
    if (!ev || strcmp(lmh_get_str(ev, "data.role") ?: "", "backup") != 0 ||
        lmh_get_int(ev, "data.epoch") < 1)
        mct_fail("MC_CHECKPOINTING {role: backup, epoch >= 1} expected on "
                 "the backup, got %s",
                 ev ? json_object_to_json_string(ev) : "none");
    json_object_put(ev);

    /* A few epochs, then the stats on both sides. */
    long long c0 = mct_qm_int(p->pri, "mc.checkpoints", 0);
    wait_checkpoints(p, c0 + 3, 30000);
    json_object *qm = mct_qm(p->pri);
    static const char *pri_members[] = {
        "role", "checkpoints", "epoch", "pause-last-us", "pause-avg-us",
        "pause-max-us", "pages-avg", "paused-pages-avg", "paused-pages-last",
        "outputs-held",
        "outputs-released", "checkpoint-bytes-last", "checkpoint-bytes-avg",
    };
    for (size_t i = 0; i < sizeof(pri_members) / sizeof(*pri_members); i++) {
        char path[64];
        snprintf(path, sizeof(path), "mc.%s", pri_members[i]);
        if (!lmh_get(qm, path))
            mct_fail("query-migrate on the primary lacks %s: %s", path,
                     json_object_to_json_string(qm));
    }
    if (lmh_get_int(qm, "mc.checkpoints") < c0 + 3 ||
        strcmp(lmh_get_str(qm, "mc.role") ?: "", "primary") != 0 ||
        lmh_get_int(qm, "mc.pause-max-us") < lmh_get_int(qm, "mc.pause-avg-us")
        || lmh_get_int(qm, "mc.outputs-released") < 1 ||
        lmh_get_int(qm, "mc.checkpoint-bytes-avg") <= 0)
        mct_fail("query-migrate on the primary after 3 more checkpoints at "
                 "mc-delay 200: %s", json_object_to_json_string(qm));
    /* The worst pause's parts are its own: they add up to it (each part
     * is whole microseconds of the same clock reads). */
    int64_t worst = 0;
    static const char *parts[] = { "stop", "sync", "copy", "sections",
                                   "cont" };
    for (size_t i = 0; i < 5; i++) {
        char path[64];
        snprintf(path, sizeof(path), "mc.pause-max-parts-us.%s", parts[i]);
        if (!lmh_get(qm, path))
            mct_fail("query-migrate on the primary lacks %s: %s", path,
                     json_object_to_json_string(qm));
        worst += lmh_get_int(qm, path);
    }
    if (!lmh_get(qm, "mc.pause-max-parts-us.pages") ||
        worst != lmh_get_int(qm, "mc.pause-max-us"))
        mct_fail("mc.pause-max-parts-us does not add up to pause-max-us: "
                 "%s", json_object_to_json_string(qm));
    static const char *pri_hists[] = { "pause-us", "checkpoint-bytes",
                                       "ack-us", "commit-us" };
    for (size_t i = 0; i < 4; i++)
        check_hist(qm, pri_hists[i], "primary");
    /* Memory: the pages of an epoch (about 4 MB at 20 MB/s and 200 ms),
     * not a second copy of the 64 MiB guest. */
    long long shadow = lmh_get_int(qm, "mc.shadow-bytes");
    if (shadow <= 0 || shadow > 32LL << 20 ||
        lmh_get_int(qm, "mc.shadow-peak-bytes") < shadow)
        mct_fail("query-migrate on the primary: shadow-bytes %lld should be "
                 "above 0 and far below the 64 MiB guest: %s", shadow,
                 json_object_to_json_string(qm));
    json_object_put(qm);
    qm = mct_qm(p->bak);
    check_hist(qm, "checkpoint-bytes", "backup");
    check_hist(qm, "ack-us", "backup");
    if (strcmp(lmh_get_str(qm, "mc.role") ?: "", "backup") != 0 ||
        lmh_get_int(qm, "mc.checkpoints") < 1 || lmh_get(qm, "mc.failover-epoch"))
        mct_fail("query-migrate on the backup while checkpointing: %s",
                 json_object_to_json_string(qm));
    json_object_put(qm);

    /* Both guests: the primary's runs, the backup's waits. */
    if (!mct_running(p->pri) || mct_running(p->bak))
        mct_fail("while checkpointing the primary's guest must run and the "
                 "backup's must not");
    mct_wait_writes(p->pri, "primary", 30000);

    /* Output commit while protected: an output reaches the file only after
     * the backup applied the checkpoint behind it, so the file read first
     * is never ahead of the backup's state read after it. */
    size_t n = mct_outputs(p->outputs, NULL, NULL);
    mct_pos r = resumed_from(p->bak);
    if (n == 0)
        mct_fail("no output released after several acknowledged "
                 "checkpoints");
    if (mct_outputs_backed(p->outputs, n, r.gen, r.cur) < n)
        mct_fail("the outputs file shrank");
    mct_pair_finish(p);
}

/* ---- heartbeat timeout -------------------------------------------------- */

static void heartbeat_timeout_sigstop(void **state)
{
    (void)state;
    const long long hb = 800, delay = 30;
    mct_conf c = { 64, "20M", delay, hb };
    mct_pair *p = mct_pair_start(&c);
    mct_protect(p, 30000);
    wait_lines(p->outputs, 3, 30000, "outputs must flow while protected");

    long long stop_us = mct_wall_us();
    kill(p->pri->pid, SIGSTOP);
    json_object *ev = mct_wait_event(p->bak, "MC_FAILOVER", (int)hb + 5000);
    if (!ev)
        mct_fail("no MC_FAILOVER on the backup within %lld ms of freezing "
                 "the primary (mc-heartbeat-timeout %lld)", hb + 5000, hb);
    double ms = (double)(mct_event_us(ev) - stop_us) / 1000.0;
    printf("heartbeat timeout %lld ms: takeover %.1f ms after SIGSTOP (%s)\n",
           hb, ms, lmh_get_str(ev, "data.reason") ?: "?");
    json_object_put(ev);
    /* Silence starts with the last record sent before the freeze, at most
     * one epoch (mc-delay + a checkpoint) earlier. */
    if (ms < (double)(hb - delay - 50) || ms > (double)(hb + 500))
        mct_fail("the backup took over %.1f ms after the primary froze; "
                 "expected about mc-heartbeat-timeout: %lld .. %lld ms", ms,
                 hb - delay - 50, hb + 500);
    check_took_over(p, NULL);
    mct_kill(p->pri);
    mct_pair_finish(p);
}

/* ---- kill the backup ---------------------------------------------------- */

static void kill_backup(void **state)
{
    (void)state;
    mct_conf c = { 64, "20M", 1000, 1000 };
    const long long npages = 64LL * 1024 * 1024 / PAGE;
    mct_pair *p = mct_pair_start(&c);
    mct_protect(p, 30000);
    wait_checkpoints(p, 2, 30000);

    mct_kill(p->bak);
    json_object *ev = mct_wait_event(p->pri, "MC_BACKUP_LOST", 30000);
    if (!ev)
        mct_fail("no MC_BACKUP_LOST on the primary within 30 s of killing "
                 "the backup");
    printf("backup lost: %s\n", json_object_to_json_string(ev));
    json_object_put(ev);
    mct_wait_status(p->pri, "failed", 30000);
    json_object *qm = mct_qm(p->pri);
    const char *desc = lmh_get_str(qm, "error-desc");
    if (!desc || !desc[0])
        mct_fail("status failed without an error-desc: %s",
                 json_object_to_json_string(qm));
    printf("error-desc: %s\n", desc);
    char lost_desc[512];
    snprintf(lost_desc, sizeof(lost_desc), "%s", desc);
    json_object_put(qm);

    /* The guest runs on, unprotected. */
    if (!mct_running(p->pri))
        mct_fail("the primary's guest stopped when its backup died");
    mct_wait_writes(p->pri, "primary", 30000);
    mct_verify_ok(p->pri, "primary");

    /* Outputs flow at once: a few more lines, and the file keeps up with
     * the guest (at mc-delay 1000 a protected guest is up to ~5000 pages
     * ahead of its last released output; here less than 4 outputs). */
    size_t n0 = mct_outputs(p->outputs, NULL, NULL);
    wait_lines(p->outputs, n0 + 3, 3000, "outputs must flow without a "
               "backup");
    long long worst = 0;
    for (int i = 0; i < 5; i++) {
        mct_pos last;
        mct_outputs(p->outputs, &last, NULL);
        mct_pos now = guest_pos(p->pri);
        long long lag = pages_between(last, now, npages);
        if (lag > worst)
            worst = lag;
        mct_sleep_ms(50);
    }
    if (worst >= 4 * 256)
        mct_fail("without a backup the outputs file lags the guest by %lld "
                 "pages (an output every 256): outputs are still held",
                 worst);
    if (mct_qm_int(p->pri, "mc.outputs-held", 0) > 1)
        mct_fail("outputs-held is %lld without a backup",
                 mct_qm_int(p->pri, "mc.outputs-held", 0));

    /* mc-failover with no MC running names the status. */
    lmh_err(p->pri->qmp, "mc-failover", NULL, "GenericError", "'failed'");

    /* A new backup re-protects the guest. */
    mct_drop(p, &p->bak);
    mct_new_backup(p, &c);
    mct_protect(p, 30000);
    long long ck = mct_qm_int(p->pri, "mc.checkpoints", 0);
    if (ck < 1)
        mct_fail("re-protected primary reports %lld checkpoints", ck);
    /* ... and takes over if the primary dies now. */
    mct_kill(p->pri);
    json_object *fo = mct_wait_event(p->bak, "MC_FAILOVER", 30000);
    if (!fo)
        mct_fail("the new backup did not take over after SIGKILL of the "
                 "primary");
    json_object_put(fo);
    check_took_over(p, NULL);
    mct_pair_finish(p);

    /* Last, so the checks above run whatever it says: the error names what
     * was lost in the user's terms (the backup, checkpointing), not a
     * precopy switchover that never was meant to happen. */
    if (!strstr(lost_desc, "backup") && !strstr(lost_desc, "checkpoint"))
        mct_fail("the error-desc after the backup died does not say the "
                 "backup was lost: \"%s\"", lost_desc);
}

/* ---- a hung backup ------------------------------------------------------ */

/* A backup that stops answering (SIGSTOP: its socket stays open) is lost
 * like a dead one, only later: the primary waits at most
 * mc-heartbeat-timeout + 1000 ms for any word from it, so within that
 * (plus an epoch) it emits MC_BACKUP_HUNG, runs on and releases outputs.
 * Checkpoints of ~20 MB (100 MB/s dirtied, mc-delay 200) do not fit in
 * the loopback socket buffers, so the primary also has to give up while
 * it is still sending one. */
static void hung_backup(void **state)
{
    (void)state;
    const long long hb = 1000;
    mct_conf c = { 64, "100M", 200, hb };
    const long long npages = 64LL * 1024 * 1024 / PAGE;
    mct_pair *p = mct_pair_start(&c);
    mct_protect(p, 30000);
    wait_checkpoints(p, 5, 30000);

    long long t = mct_wall_us();
    kill(p->bak->pid, SIGSTOP);
    json_object *ev = mct_wait_event(p->pri, "MC_BACKUP_HUNG",
                                     (int)hb + 6000);
    if (!ev) {
        json_object *qm = mct_qm(p->pri);
        char shown[2048];
        snprintf(shown, sizeof(shown), "%s", json_object_to_json_string(qm));
        json_object_put(qm);
        mct_pos last;
        mct_outputs(p->outputs, &last, NULL);
        long long lag = pages_between(last, guest_pos(p->pri), npages);
        mct_kill(p->bak);
        mct_fail("the primary did not notice its backup stopped answering "
                 "within %lld ms (mc-heartbeat-timeout %lld): its outputs "
                 "now lag the guest by %lld pages; query-migrate: %s",
                 hb + 6000, hb, lag, shown);
    }
    double ms = (double)(mct_event_us(ev) - t) / 1000.0;
    printf("hung backup: MC_BACKUP_HUNG %.1f ms after SIGSTOP: %s\n", ms,
           json_object_to_json_string(ev));
    if (lmh_get_int(ev, "data.silent-ms") < hb + 1000 ||
        !strstr(lmh_get_str(ev, "data.reason") ?: "", "hung"))
        mct_fail("MC_BACKUP_HUNG should say the backup is hung and how long "
                 "it was silent (>= %lld ms): %s", hb + 1000,
                 json_object_to_json_string(ev));
    json_object_put(ev);
    mct_kill(p->bak);
    mct_wait_status(p->pri, "failed", 30000);
    if (!mct_running(p->pri))
        mct_fail("the primary's guest stopped when its backup hung");
    size_t n0 = mct_outputs(p->outputs, NULL, NULL);
    wait_lines(p->outputs, n0 + 3, 3000, "outputs must flow once the hung "
               "backup is given up");
    mct_verify_ok(p->pri, "primary");
    mct_pair_finish(p);
}

/* ---- mc-delay while checkpointing --------------------------------------- */

static long long checkpoints(mct_pair *p)
{
    return mct_qm_int(p->pri, "mc.checkpoints", 0);
}

/* Checkpoints during a @ms window (a measurement, not a synchronisation). */
static long long count_during(mct_pair *p, int ms)
{
    long long c0 = checkpoints(p);
    mct_sleep_ms(ms);
    return checkpoints(p) - c0;
}

typedef struct ck_wait {
    mct_pair *p;
    long long above;
} ck_wait;

static bool ck_above(void *opaque)
{
    ck_wait *w = opaque;
    return checkpoints(w->p) > w->above;
}

/* After a change to a short mc-delay: the next checkpoint comes at once
 * (not after the old delay), then more than 10 in the next second. */
static void expect_fast(mct_pair *p, const char *how)
{
    ck_wait w = { p, checkpoints(p) };
    long long t0 = mct_now_ms();
    if (!lmh_wait_for(ck_above, &w, 300, 5))
        mct_fail("%s: no checkpoint within 300 ms of setting mc-delay 20 "
                 "(the old delay was 500)", how);
    long long first = mct_now_ms() - t0;
    long long n = count_during(p, 1000);
    printf("%s: mc-delay 20: first checkpoint after %lld ms, %lld in the "
           "next second\n", how, first, n);
    if (n <= 10)
        mct_fail("%s: %lld checkpoints in the second after setting mc-delay "
                 "20; expected more than 10", how, n);
    if (mct_param(p->pri, "mc-delay") != 20)
        mct_fail("%s: query-migrate-parameters shows mc-delay %lld, not 20",
                 how, mct_param(p->pri, "mc-delay"));
}

static void expect_slow(mct_pair *p, const char *how)
{
    mct_sleep_ms(100);   /* let the epoch in flight end */
    long long n = count_during(p, 2000);
    printf("%s: mc-delay 500: %lld checkpoints in 2 s\n", how, n);
    if (n < 2 || n > 6)
        mct_fail("%s: %lld checkpoints in 2 s at mc-delay 500; expected "
                 "about 4", how, n);
    if (mct_param(p->pri, "mc-delay") != 500)
        mct_fail("%s: query-migrate-parameters shows mc-delay %lld, not 500",
                 how, mct_param(p->pri, "mc-delay"));
}

static void mc_delay_live(void **state)
{
    (void)state;
    mct_conf c = { 32, "10M", 500, 1000 };
    mct_pair *p = mct_pair_start(&c);
    mct_protect(p, 30000);
    expect_slow(p, "initial");

    mct_set_params(p->pri, "{\"mc-delay\": 20}");
    expect_fast(p, "migrate-set-parameters mc-delay");

    mct_set_params(p->pri, "{\"x-checkpoint-delay\": 500}");
    expect_slow(p, "migrate-set-parameters x-checkpoint-delay");

    json_object_put(lmh_ok(p->pri->qmp, "migrate-set-mc-delay",
                           "{\"value\": 20}"));
    expect_fast(p, "migrate-set-mc-delay");

    /* Still protected and consistent after all the changes. */
    if (strcmp(mct_status(p->pri), "checkpointing") != 0 ||
        strcmp(mct_status(p->bak), "checkpointing") != 0)
        mct_fail("checkpointing ended while mc-delay changed");
    mct_kill(p->pri);
    json_object *ev = mct_wait_event(p->bak, "MC_FAILOVER", 30000);
    if (!ev)
        mct_fail("no takeover after SIGKILL of the primary");
    json_object_put(ev);
    check_took_over(p, NULL);
    mct_pair_finish(p);
}

/* ---- mc-failover -------------------------------------------------------- */

static void failover_on_command(void **state)
{
    (void)state;
    mct_conf c = { 64, "20M", 50, 0 };
    mct_pair *p = mct_pair_start(&c);
    if (mct_param(p->pri, "mc-heartbeat-timeout") != 0)
        mct_fail("mc-heartbeat-timeout 0 not kept");
    mct_protect(p, 30000);
    wait_lines(p->outputs, 3, 30000, "outputs must flow while protected");

    /* 0 = fail over only on command: a frozen primary is not replaced. */
    kill(p->pri->pid, SIGSTOP);
    json_object *ev = mct_wait_event(p->bak, "MC_FAILOVER", 1500);
    if (ev)
        mct_fail("with mc-heartbeat-timeout 0 the backup took over by "
                 "itself: %s", json_object_to_json_string(ev));
    if (strcmp(mct_status(p->bak), "checkpointing") != 0 ||
        mct_running(p->bak))
        mct_fail("with mc-heartbeat-timeout 0 and a silent primary the "
                 "backup must stay in checkpointing, guest stopped");

    long long t = mct_wall_us();
    json_object_put(lmh_ok(p->bak->qmp, "mc-failover", NULL));
    ev = mct_wait_event(p->bak, "MC_FAILOVER", 30000);
    if (!ev)
        mct_fail("no MC_FAILOVER after mc-failover on the backup");
    double ms = (double)(mct_event_us(ev) - t) / 1000.0;
    printf("mc-failover on the backup: MC_FAILOVER after %.1f ms: %s\n", ms,
           json_object_to_json_string(ev));
    if (strcmp(lmh_get_str(ev, "data.reason") ?: "", "mc-failover") != 0)
        mct_fail("MC_FAILOVER reason should be mc-failover: %s",
                 json_object_to_json_string(ev));
    json_object_put(ev);
    if (ms > 500)
        mct_fail("mc-failover took %.1f ms; expected at once (< 500 ms)",
                 ms);
    check_took_over(p, "mc-failover");
    lmh_err(p->bak->qmp, "mc-failover", NULL, "GenericError", "'completed'");
    mct_kill(p->pri);
    mct_pair_finish(p);
}

static void failover_on_primary(void **state)
{
    (void)state;
    mct_conf c = { 64, "20M", 50, 0 };
    const long long npages = 64LL * 1024 * 1024 / PAGE;
    mct_pair *p = mct_pair_start(&c);
    mct_protect(p, 30000);
    mct_wait_writes(p->pri, "primary", 30000);

    json_object_put(lmh_ok(p->pri->qmp, "mc-failover", NULL));
    json_object *ev = mct_wait_event(p->pri, "MC_BACKUP_LOST", 30000);
    if (!ev)
        mct_fail("no MC_BACKUP_LOST after mc-failover on the primary");
    printf("mc-failover on the primary: %s\n",
           json_object_to_json_string(ev));
    if (!strstr(lmh_get_str(ev, "data.reason") ?: "", "mc-failover"))
        mct_fail("MC_BACKUP_LOST should say it was dropped by mc-failover: "
                 "%s", json_object_to_json_string(ev));
    json_object_put(ev);
    mct_wait_status(p->pri, "cancelled", 30000);
    if (!mct_running(p->pri))
        mct_fail("the primary's guest stopped after dropping its backup");
    mct_wait_writes(p->pri, "primary", 30000);
    mct_verify_ok(p->pri, "primary");

    /* Outputs are released at once now. */
    size_t n0 = mct_outputs(p->outputs, NULL, NULL);
    wait_lines(p->outputs, n0 + 3, 3000, "outputs must flow after the "
               "backup is dropped");
    mct_pos last;
    mct_outputs(p->outputs, &last, NULL);
    long long lag = pages_between(last, guest_pos(p->pri), npages);
    if (lag >= 4 * 256)
        mct_fail("after dropping the backup the outputs lag the guest by "
                 "%lld pages", lag);
    lmh_err(p->pri->qmp, "mc-failover", NULL, "GenericError", "'cancelled'");

    /* The dropped backup must not become a second running copy of the
     * guest: the primary runs on, and mc-heartbeat-timeout 0 means the
     * backup takes over only on its own mc-failover. */
    mct_sleep_ms(500);
    bool bak_runs = mct_running(p->bak);
    const char *st = mct_status(p->bak);
    printf("dropped backup: status %s, guest %s\n", st,
           bak_runs ? "running" : "stopped");
    if (bak_runs)
        mct_fail("split brain: after mc-failover on the primary (drop the "
                 "backup) the backup took over too (status '%s', guest "
                 "running), so two copies of the guest run", st);
    mct_pair_finish(p);
}

static void failover_without_mc(void **state)
{
    (void)state;
    lmh_daemon *d = lmh_start("--guest", "pattern,size=32M,threads=1,"
                              "dirty-rate=1M,fill=random", NULL);
    lmh_err(d->qmp, "mc-failover", NULL, "GenericError", "'none'");
    if (!lmh_stop(d))
        fail_msg("livemigd did not exit cleanly on quit");
    lmh_free(d);

    /* A backup still waiting for its primary. */
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", lmh_port());
    d = lmh_start("--guest", "pattern,size=32M,threads=1,dirty-rate=1M,"
                  "fill=random", "--incoming", uri, NULL);
    lmh_err(d->qmp, "mc-failover", NULL, "GenericError", "'setup'");
    if (!lmh_stop(d))
        fail_msg("livemigd did not exit cleanly on quit");
    lmh_free(d);

    /* A precopy migration in progress (no micro-checkpointing). */
    mct_conf c = { 64, "20M", 100, 1000 };
    mct_pair *p = mct_pair_start(&c);
    json_object_put(lmh_ok(p->pri->qmp, "migrate-set-capabilities",
        "{\"capabilities\": [{\"capability\": \"micro-checkpointing\", "
        "\"state\": false}]}"));
    mct_set_params(p->pri, "{\"max-bandwidth\": 8388608}");
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(p->uri));
    json_object_put(lmh_ok_obj(p->pri->qmp, "migrate", a));
    mct_wait_status(p->pri, "active", 30000);
    lmh_err(p->pri->qmp, "mc-failover", NULL, "GenericError", "'active'");
    json_object_put(lmh_ok(p->pri->qmp, "migrate_cancel", NULL));
    mct_pair_finish(p);
}

static void heartbeat_setup_only(void **state)
{
    (void)state;
    mct_conf c = { 32, "10M", 100, 1000 };
    mct_pair *p = mct_pair_start(&c);
    mct_protect(p, 30000);
    lmh_err(p->pri->qmp, "migrate-set-parameters",
            "{\"mc-heartbeat-timeout\": 2000}", "GenericError",
            "mc-heartbeat-timeout");
    lmh_err(p->pri->qmp, "migrate-set-parameters",
            "{\"mc-heartbeat-timeout\": 2000}", "GenericError",
            "'checkpointing'");
    /* Atomic: a set with a live member and the setup-only one changes
     * nothing. */
    lmh_err(p->pri->qmp, "migrate-set-parameters",
            "{\"mc-delay\": 77, \"mc-heartbeat-timeout\": 2000}",
            "GenericError", "mc-heartbeat-timeout");
    if (mct_param(p->pri, "mc-heartbeat-timeout") != 1000 ||
        mct_param(p->pri, "mc-delay") != 100)
        mct_fail("a refused set changed mc-heartbeat-timeout (%lld) or "
                 "mc-delay (%lld)", mct_param(p->pri, "mc-heartbeat-timeout"),
                 mct_param(p->pri, "mc-delay"));
    /* mc-delay alone is live. */
    mct_set_params(p->pri, "{\"mc-delay\": 77}");
    if (mct_param(p->pri, "mc-delay") != 77)
        mct_fail("mc-delay 77 not applied while checkpointing");
    if (strcmp(mct_status(p->pri), "checkpointing") != 0)
        mct_fail("the refused set disturbed checkpointing");
    mct_pair_finish(p);
}

/* ---- a guest faster than the link -------------------------------------- */

typedef struct mc_flag {
    lmh_daemon *d;
    const char *path;
    long long want;      /* the member equals it (bool as 0/1) ... */
    bool above;          /* ... or is above it */
} mc_flag;

static bool flag_is(void *opaque)
{
    mc_flag *w = opaque;
    json_object *qm = mct_qm(w->d);
    json_object *v = lmh_get(qm, w->path);
    long long n = !v ? -1 : json_object_is_type(v, json_type_boolean)
                                ? json_object_get_boolean(v)
                                : json_object_get_int64(v);
    json_object_put(qm);
    return w->above ? n > w->want : n == w->want;
}

static void wait_flag(lmh_daemon *d, const char *path, long long want,
                      bool above, const char *why)
{
    mc_flag w = { d, path, want, above };
    if (!lmh_wait_for(flag_is, &w, 30000, 50)) {
        json_object *qm = mct_qm(d);
        char shown[3000];
        snprintf(shown, sizeof(shown), "%s", json_object_to_json_string(qm));
        json_object_put(qm);
        mct_fail("%s: %s did not become %s%lld within 30 s: %s", why, path,
                 above ? "more than " : "", want, shown);
    }
}

static bool pool_shrunk(void *opaque)
{
    json_object *qm = mct_qm(opaque);
    long long now = lmh_get_int(qm, "mc.shadow-bytes");
    long long peak = lmh_get_int(qm, "mc.shadow-peak-bytes");
    json_object_put(qm);
    return now > 0 && now * 2 < peak;
}

static void wait_pool_shrunk(lmh_daemon *d)
{
    if (!lmh_wait_for(pool_shrunk, d, 30000, 50)) {
        json_object *qm = mct_qm(d);
        char shown[3000];
        snprintf(shown, sizeof(shown), "%s", json_object_to_json_string(qm));
        json_object_put(qm);
        mct_fail("the checkpoint pool did not shrink below half its peak "
                 "within 30 s of smaller epochs: %s", shown);
    }
}

/* A guest that dirties all its RAM every epoch over a 64 MiB/s link:
 * checkpoints take far longer than mc-delay.  It says so (falling-behind,
 * MC_FALLING_BEHIND with the figures); mc-throttle, set live, slows the
 * guest until they fit again, and lifts the throttle when cleared. */
static void falling_behind(void **state)
{
    (void)state;
    const long long delay = 100;
    /* Paced at 512 MB/s: 8x what the link sends, so it falls behind, and
     * a throttle within max-cpu-throttle (99 %) can bring it under.  An
     * unpaced guest at 1 % of its speed may still outrun the link on a
     * fast machine, which says nothing about the throttle. */
    mct_conf c = { 64, "512M", delay, 1000 };
    mct_pair *p = mct_pair_start(&c);
    mct_set_params(p->pri, "{\"max-bandwidth\": 67108864}");
    mct_protect(p, 60000);
    json_object *ev = mct_wait_event(p->pri, "MC_FALLING_BEHIND", 30000);
    if (!ev)
        mct_fail("no MC_FALLING_BEHIND within 30 s for a guest that "
                 "dirties faster than the link sends");
    printf("falling behind: %s\n", json_object_to_json_string(ev));
    if (lmh_get_int(ev, "data.dirty-bytes") <= lmh_get_int(ev, "data.link-bytes")
        || lmh_get_int(ev, "data.epoch-ms") <= delay ||
        lmh_get_int(ev, "data.mc-delay") != delay)
        mct_fail("MC_FALLING_BEHIND should show more dirty bytes than the "
                 "link sends in mc-delay, and epochs longer than it: %s",
                 json_object_to_json_string(ev));
    json_object_put(ev);
    wait_flag(p->pri, "mc.falling-behind", 1, false, "behind");

    mct_set_params(p->pri, "{\"mc-throttle\": true}");
    wait_flag(p->pri, "mc.throttle-percentage", 0, true, "mc-throttle on");
    wait_flag(p->pri, "mc.falling-behind", 0, false, "mc-throttle on");
    json_object *qm = mct_qm(p->pri);
    printf("throttled: %lld %%, epoch %lld ms, ack p50 %lld us, commit p50 "
           "%lld us\n", lmh_get_int(qm, "mc.throttle-percentage"),
           lmh_get_int(qm, "mc.epoch-ms"), lmh_get_int(qm, "mc.ack-us.p50"),
           lmh_get_int(qm, "mc.commit-us.p50"));
    json_object_put(qm);
    mct_verify_ok(p->pri, "primary");
    /* The checkpoint pool shrinks back to what the slower epochs need. */
    wait_pool_shrunk(p->pri);

    mct_set_params(p->pri, "{\"mc-throttle\": false}");
    wait_flag(p->pri, "mc.throttle-percentage", 0, false, "mc-throttle off");
    if (strcmp(mct_status(p->pri), "checkpointing") != 0)
        mct_fail("checkpointing ended while the throttle changed");
    mct_pair_finish(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(checkpointing_starts, mct_teardown),
        cmocka_unit_test_teardown(heartbeat_timeout_sigstop, mct_teardown),
        cmocka_unit_test_teardown(kill_backup, mct_teardown),
        cmocka_unit_test_teardown(hung_backup, mct_teardown),
        cmocka_unit_test_teardown(mc_delay_live, mct_teardown),
        cmocka_unit_test_teardown(failover_on_command, mct_teardown),
        cmocka_unit_test_teardown(failover_on_primary, mct_teardown),
        cmocka_unit_test_teardown(failover_without_mc, mct_teardown),
        cmocka_unit_test_teardown(heartbeat_setup_only, mct_teardown),
        cmocka_unit_test_teardown(falling_behind, mct_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
