/*
 * itest.h - helpers shared by the integration tests in this directory, on
 * top of tests/harness: real livemigd processes driven over QMP.
 *
 * Daemons started with it_start() are remembered and stopped (by PID, via
 * the harness) by it_teardown(), which every test registers as its cmocka
 * teardown, so a failed test never leaves a dirtying guest running into the
 * next one.  On failure, it_fail() prints every live daemon's log and its
 * query-migrate before failing the test.
 *
 * Ports: lmh_port() of the harness.
 *
 * Every wait is bounded (a timeout in ms) and polls; none sleeps to
 * synchronise.
 */
#ifndef LM_ITEST_H
#define LM_ITEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "harness.h"

#define IT_MiB (1024LL * 1024LL)

/* cmocka teardown: stop and free every daemon this test started. */
int it_teardown(void **state);

/* Start livemigd with --guest @spec and, if @incoming is not NULL,
 * --incoming @incoming; extra arguments may follow (NULL-terminated). */
lmh_daemon *it_start(const char *spec, const char *incoming, ...);

/* Stop @d now (by PID, via the harness), free it and forget it, so a test
 * can replace a daemon half-way. */
void it_stop(lmh_daemon *d);

/* Dump every live daemon's log and query-migrate, then fail the test. */
void it_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                  noreturn));

long long it_now_ms(void);
void it_sleep_ms(int ms);

/* A free TCP port on 127.0.0.1 from this process's range. */

/* "tcp:127.0.0.1:PORT" into @buf; under scripts/two-hosts the
 * destination's veth address instead. */
char *it_tcp_uri(int port, char *buf, size_t len);

/* Two hosts (scripts/two-hosts run): it_start() puts a daemon with
 * --incoming in the destination's namespace, the others in the source's,
 * and it_tcp_uri() names the destination's address. */
bool it_two_hosts(void);
/* Act on the link of the run: it_link("cut", "drop"), ("restore", NULL),
 * ("shape", "1gbit").  Fails the test if it cannot. */
void it_link(const char *action, const char *arg);

/* query-migrate of @d (new reference). */
json_object *it_qm(lmh_daemon *d);
/* Its status (static storage, valid until the next call). */
const char *it_status(lmh_daemon *d);
/* An integer member of query-migrate ("ram.transferred"), or @dflt. */
long long it_qm_int(lmh_daemon *d, const char *path, long long dflt);

/* Wait until the status of @d is @want; fails the test (with the logs) on
 * timeout or if the migration ends in another terminal status. */
void it_wait_status(lmh_daemon *d, const char *want, int timeout_ms);
/* Wait until the migration of @d ended (completed, failed, cancelled);
 * returns that status (static storage).  Fails on timeout. */
const char *it_wait_end(lmh_daemon *d, int timeout_ms);
/* A destination whose source was cancelled: wait until its migration
 * ended; if it still listens ('setup') after 2 s, the source never
 * connected (it connects on its migration thread, and a cancel can come
 * first): cancel it here.  Returns the final status (static storage). */
const char *it_wait_dst_end(lmh_daemon *dst, int timeout_ms);

/* Wait until query-migrate's integer at @path is > @min while the status
 * is not terminal; fails on timeout or if it ends first.  Returns it. */
long long it_wait_qm_above(lmh_daemon *d, const char *path, long long min,
                           int timeout_ms);

bool it_is_terminal(const char *status);

/* query-status: running, and the run state name into @state (may be NULL). */
bool it_running(lmh_daemon *d, char *state, size_t len);

/* guest-verify must return ok; fails with the guest's reason otherwise. */
void it_verify_ok(lmh_daemon *d, const char *who);

/* An integer member of query-guest. */
long long it_guest_int(lmh_daemon *d, const char *path);

/* Wait until the guest's pages-written grows (it runs and writes). */
void it_wait_guest_writes(lmh_daemon *d, const char *who, int timeout_ms);

/* migrate-set-parameters with a JSON object text. */
void it_set_params(lmh_daemon *d, const char *json);
/* migrate-set-capabilities for one capability. */
void it_set_cap(lmh_daemon *d, const char *cap, bool on);

/* migrate to @uri (must be accepted). */
void it_migrate(lmh_daemon *src, const char *uri);

/* SIGKILL @d by PID and reap it (the harness then only cleans up). */
void it_kill9(lmh_daemon *d);

/* VmRSS of @pid in KiB, or -1. */
long long it_vmrss_kib(pid_t pid);
/* utime + stime of @pid in clock ticks, or -1. */
long long it_cpu_ticks(pid_t pid);

/* Read every event queued or arriving on @q within @wait_ms (after the
 * last one) into a new JSON array. */
json_object *it_drain_events(livemig_qmp *q, int wait_ms);

/* The checks every completed migration must pass: source completed and
 * stopped in postmigrate, destination completed, running and writing,
 * guest-verify ok on the destination, query-migrate's downtime within
 * downtime-limit, ram.total = @guest_bytes, downtime-breakdown present. */
void it_check_completed(lmh_daemon *src, lmh_daemon *dst,
                        long long guest_bytes, bool dirtying);

#endif
