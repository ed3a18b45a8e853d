/*
 * kvtest.h - helpers for the kv store's tests: start kv daemons (through
 * tests/integration's it_start, so teardown stops them by PID), talk RESP
 * to them, run redis-cli, and the checker client.
 *
 * Replies are rendered as compact text for assertions:
 *   +OK -> "+OK", -ERR x -> "-ERR x", :5 -> ":5", bulk -> "$bytes" (bytes
 *   outside printable ASCII as \xHH), nil -> "$nil", nil array -> "*nil",
 *   arrays -> "*[a,b,...]" with each element rendered the same way.
 */
#ifndef LM_KVTEST_H
#define LM_KVTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "itest.h"

/* Skip the test (with the reason printed) when redis-cli is missing. */
void kvt_need_redis_cli(void);

/* Skip the test (saying why) when this kernel lacks the tracker @name. */
void kvt_need_tracker(const char *name);

/* Start "livemigd --guest kv,size=64M,port=PORT<extra>" (incoming may be
 * NULL).  Remembered until kvt_teardown (every test's cmocka teardown),
 * which stops each by PID through the harness. */
lmh_daemon *kvt_start(int port, const char *extra, const char *incoming);
/* Free one daemon now (e.g. after it was killed) and forget it. */
void kvt_forget(lmh_daemon *d);
int kvt_teardown(void **state);
/* The end of a test that passed: every live daemon must exit with status
 * 0 on quit (so a sanitizer report fails the test); then forget them. */
void kvt_finish(void);
/* Print the logs of the live kv daemons, then fail the test. */
void kvt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                   noreturn));
/* Wait until a PING on @port gets +PONG. */
void kvt_wait_serving(int port, int timeout_ms);
/* True if something accepts connections on @port now. */
bool kvt_port_open(int port);

typedef struct kvt_conn {
    int fd;
    char *buf;
    size_t len, cap;
} kvt_conn;

/* Connect (blocking, fails the test after @timeout_ms). */
kvt_conn *kvt_open(int port, int timeout_ms);
void kvt_close(kvt_conn *c);
bool kvt_send(kvt_conn *c, const void *data, size_t len);
/* Send one command as a multibulk (binary-safe). */
bool kvt_send_argv(kvt_conn *c, int argc, const char *const *argv,
                   const size_t *lens);
/* Read one reply, rendered (malloc'd); NULL on EOF, error or timeout. */
char *kvt_reply(kvt_conn *c, int timeout_ms);
/* Send the space-separated words of @line as a command and read the reply
 * (fails the test on no reply). */
char *kvt_cmd(kvt_conn *c, const char *line);
/* kvt_cmd and compare with @want; fails naming the command otherwise. */
void kvt_expect(kvt_conn *c, const char *line, const char *want);
/* True if the server closed the connection within @timeout_ms (replies
 * before the close are skipped). */
bool kvt_wait_closed(kvt_conn *c, int timeout_ms);

/* Run redis-cli -p PORT --no-raw ARGS...; its stdout (malloc'd), the
 * trailing newline removed.  Fails if it does not exit 0 within 30 s. */
char *kvt_cli(int port, const char *const *args);
/* Run a shell command line; exit status; stdout into *out (malloc'd). */
int kvt_sh(const char *cmd, char **out, int timeout_ms);

/* An INFO field of the server on @c as an integer (-1 if absent). */
long long kvt_info_int(kvt_conn *c, const char *field);

/*
 * The checker: @nconn connections, each writing unique keys
 * (SET ck:<conn>:<seq> <seq>) and incrementing its counter (INCR
 * cnt:<conn>), one command at a time per connection, recording what was
 * acknowledged.  A broken connection reconnects to whichever of the
 * candidate ports serves.  It runs on its own thread until stopped.
 */
typedef struct kvt_checker kvt_checker;

kvt_checker *kvt_checker_start(int nconn);
/* The ports it may connect to (replaces the list; up to 4). */
void kvt_checker_ports(kvt_checker *k, const int *ports, int n);
/* Acknowledged writes so far (SETs + INCRs). */
uint64_t kvt_checker_acked(kvt_checker *k);
/* Wait until @more further writes were acknowledged (fails on timeout). */
void kvt_checker_wait_progress(kvt_checker *k, uint64_t more, int timeout_ms);
/* Stop the thread (connections closed; in-flight become unknown). */
void kvt_checker_stop(kvt_checker *k);
/* Check the store on @port: every acknowledged key present with its
 * value, every counter >= its last acknowledged value and <= that plus
 * the INCRs sent after it.  Fails the test naming the first violation.
 * Returns the number of keys checked. */
uint64_t kvt_checker_verify(kvt_checker *k, int port);
/* Totals for the report: acked, unknown outcomes, reconnects. */
void kvt_checker_stats(kvt_checker *k, uint64_t *acked, uint64_t *unknown,
                       uint64_t *reconnects);
void kvt_checker_free(kvt_checker *k);

#endif
