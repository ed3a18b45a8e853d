/*
 * mctest.h - helpers for the micro-checkpointing integration tests
 * (issue 5): a primary and a backup livemigd started by tests/harness,
 * driven over QMP, the primary's pattern guest writing its outputs file.
 *
 * A pair is remembered until mct_teardown() (every test's cmocka teardown)
 * or mct_pair_free(); both stop the daemons by PID through the harness
 * (SIGCONT first, so a test that stopped a daemon with SIGSTOP never
 * leaves it frozen) and remove the pair's temporary directory.  On
 * failure mct_fail() prints the logs and query-migrate of the live
 * daemons, then fails the test.
 *
 * Ports: lmh_port() of the harness.
 *
 * Every wait is bounded and polls; measurement windows (checkpoints per
 * second) are the only plain sleeps.
 */
#ifndef LM_MCTEST_H
#define LM_MCTEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "harness.h"

typedef struct mct_pair {
    lmh_daemon *pri, *bak;
    char dir[256];           /* the test's own temporary directory */
    char outputs[320];       /* the primary guest's outputs file */
    char uri[64];            /* the backup's tcp:127.0.0.1:PORT */
} mct_pair;

/* What a pair looks like: guest size in MiB, dirty rate ("20M"), mc-delay
 * and mc-heartbeat-timeout in ms. */
typedef struct mct_conf {
    int size_mib;
    const char *rate;
    long long mc_delay;
    long long heartbeat;
} mct_conf;

int mct_teardown(void **state);

long long mct_now_ms(void);
long long mct_wall_us(void);            /* CLOCK_REALTIME, as event stamps */
void mct_sleep_ms(int ms);


/* Dump the logs and query-migrate of every live daemon, then fail. */
void mct_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                   noreturn));

/* Start a backup (--incoming tcp) and a primary whose guest writes its
 * outputs to p->outputs; set the MC capability (and events) and the
 * parameters on the primary.  Does not migrate. */
mct_pair *mct_pair_start(const mct_conf *c);
/* Start another backup for @p (the old one must be gone: freed first). */
void mct_new_backup(mct_pair *p, const mct_conf *c);
/* migrate, then wait until both sides are in status checkpointing. */
void mct_protect(mct_pair *p, int timeout_ms);
void mct_pair_free(mct_pair *p);
/* The end of a test that passed: every daemon still alive must exit with
 * status 0 on "quit" (so a sanitizer report fails the test); then free. */
void mct_pair_finish(mct_pair *p);
/* Free one daemon of a pair (SIGCONT, stop, free) and forget it. */
void mct_drop(mct_pair *p, lmh_daemon **d);

/* SIGKILL @d and reap it; returns CLOCK_REALTIME µs just before the kill. */
long long mct_kill(lmh_daemon *d);

/* query-migrate (new reference), its status, an integer member or @dflt. */
json_object *mct_qm(lmh_daemon *d);
const char *mct_status(lmh_daemon *d);   /* static storage */
long long mct_qm_int(lmh_daemon *d, const char *path, long long dflt);
/* Wait until the status is @want; fails (with logs) on timeout. */
void mct_wait_status(lmh_daemon *d, const char *want, int timeout_ms);

/* query-guest (new reference) and members. */
json_object *mct_guest(lmh_daemon *d);
long long mct_guest_int(lmh_daemon *d, const char *path);
/* Wait until the guest wrote more pages than now (fails on timeout). */
void mct_wait_writes(lmh_daemon *d, const char *who, int timeout_ms);
/* query-status says running. */
bool mct_running(lmh_daemon *d);
/* guest-verify must say ok. */
void mct_verify_ok(lmh_daemon *d, const char *who);

/* The next event called @name on @d's client within @timeout_ms (others
 * are skipped); NULL on timeout.  New reference. */
json_object *mct_wait_event(lmh_daemon *d, const char *name, int timeout_ms);
/* An event's timestamp in µs since the epoch. */
long long mct_event_us(json_object *ev);

/* The outputs file: every line parsed (fails on a line that is not
 * {"generation": G, "cursor": C}); returns the count, the last position
 * in *gen / *cur (0, 0 if none). */
typedef struct mct_pos {
    long long gen, cur;
} mct_pos;
size_t mct_outputs(const char *path, mct_pos *last, mct_pos *max);
/* Every output line (the first @max_lines; 0 = all) is at or before
 * (@gen, @cur): fails naming the first that is ahead.  Returns the number
 * of lines checked. */
size_t mct_outputs_backed(const char *path, size_t max_lines, long long gen,
                          long long cur);

/* Migration parameters helpers. */
void mct_set_params(lmh_daemon *d, const char *json_members);
long long mct_param(lmh_daemon *d, const char *name);

#endif
