/*
 * harness.h - integration-test harness: start real livemigd processes,
 * drive them over QMP with the project's client library, stop them.
 *
 * For cmocka tests.  Every helper that can fail fails the current test
 * (cmocka fail_msg) with what went wrong, after printing the daemon's log;
 * none returns an error to check.
 *
 * Processes: lmh_start() forks $LIVEMIGD (set by tests/meson.build) with
 *   --qmp unix:<dir>/qmp.sock and the caller's arguments, in a fresh
 *   temporary directory <dir> ($TMPDIR or /tmp, "livemig-test-XXXXXX"),
 *   stdout and stderr to <dir>/livemigd.log.  It waits (bounded: 20 s) for
 *   the socket and connects a client (d->qmp).  lmh_stop() ends it by PID:
 *   "quit" over QMP, then SIGTERM, then SIGKILL, each after a bounded wait,
 *   and always reaps it with waitpid().  lmh_free() stops it if needed and
 *   removes the directory.  A test that fails half-way (cmocka longjmps
 *   out) leaves its daemons to an atexit() handler that kills and reaps
 *   them by PID and removes their directories, so no process outlives the
 *   test program.
 *
 * Waiting: never sleep to synchronise; use lmh_wait_for(), which polls a
 *   condition every few ms until it holds or a timeout passes.
 *
 * Subprocesses (livemig-ctl): lmh_run() runs a program with a time limit,
 *   captures its output and reaps it; on timeout it is killed by PID.
 */
#ifndef LM_TEST_HARNESS_H
#define LM_TEST_HARNESS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <json-c/json.h>

#include "livemig/livemig.h"
#include "livemig/qmp-client.h"

#define LMH_REPLY_TIMEOUT_MS 15000   /* each QMP reply */
#define LMH_START_TIMEOUT_MS 20000   /* daemon up and serving */
#define LMH_STOP_TIMEOUT_MS 15000    /* each step of lmh_stop */

typedef struct lmh_daemon {
    pid_t pid;              /* 0 once reaped */
    int status;             /* waitpid status once reaped */
    char dir[256];          /* temporary directory, removed by lmh_free */
    char sock[320];         /* QMP socket path */
    char addr[336];         /* "unix:" + sock */
    char log[320];          /* daemon stdout + stderr */
    livemig_qmp *qmp;       /* a negotiated client, closed by lmh_stop */
} lmh_daemon;

/* Start livemigd with the extra arguments (NULL-terminated list, e.g.
 * lmh_start("--guest", "pattern,size=64M", NULL)). */
lmh_daemon *lmh_start(const char *arg, ...);
lmh_daemon *lmh_startv(const char *const *args);   /* NULL-terminated */
/* The same inside network namespace @netns (ip netns exec; NULL: this
 * one).  The QMP socket is a path, so it works across namespaces. */
lmh_daemon *lmh_startv_netns(const char *netns, const char *const *args);

/* A path inside the daemon's directory (static buffer per call site is
 * not needed: writes into @buf of @len bytes and returns it). */
char *lmh_path(const lmh_daemon *d, const char *name, char *buf, size_t len);

/* A further client (negotiated); close with livemig_qmp_close. */
livemig_qmp *lmh_connect(lmh_daemon *d);

/* Stop the daemon (quit, SIGTERM, SIGKILL) and reap it.  Returns true if
 * it exited by itself with status 0 after "quit".  Idempotent. */
bool lmh_stop(lmh_daemon *d);

/* Stop if running, remove the directory, free.  NULL is fine. */
void lmh_free(lmh_daemon *d);

/* Print the daemon's log (to stderr, for failure diagnosis). */
void lmh_dump_log(const lmh_daemon *d);

/* Build a JSON value from a printf format ("{'a': %d}" style is NOT
 * accepted: write real JSON).  Fails the test if it does not parse. */
json_object *lmh_json(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Execute @cmd with arguments parsed from @args_json (NULL = none) and
 * require success; returns the "return" value (new reference). */
json_object *lmh_ok(livemig_qmp *q, const char *cmd, const char *args_json);
/* Same, but arguments as an object (stolen). */
json_object *lmh_ok_obj(livemig_qmp *q, const char *cmd, json_object *args);

/* Execute and require an error of class @cls whose desc contains
 * @desc_part (NULL = any); returns nothing. */
void lmh_err(livemig_qmp *q, const char *cmd, const char *args_json,
             const char *cls, const char *desc_part);
void lmh_err_obj(livemig_qmp *q, const char *cmd, json_object *args,
                 const char *cls, const char *desc_part);

/* Run HMP @line through human-monitor-command; returns its text
 * (malloc'd). */
char *lmh_hmp(livemig_qmp *q, const char *line);

/* Member lookup by path "a.b.c" (objects only); NULL if absent. */
json_object *lmh_get(json_object *o, const char *path);
const char *lmh_get_str(json_object *o, const char *path);  /* or NULL */
/* The integer at @path; fails the test if absent. */
long long lmh_get_int(json_object *o, const char *path);

/* Poll @cond(@opaque) every @interval_ms (<= 0: 10) until it returns true
 * (returns true) or @timeout_ms passes (returns false). */
bool lmh_wait_for(bool (*cond)(void *opaque), void *opaque, int timeout_ms,
                  int interval_ms);

/* The migration status of @q's daemon ("none", "active", ...; static
 * storage of the harness, valid until the next call). */
const char *lmh_migration_status(livemig_qmp *q);
/* Wait until the migration status is @status (true) or @timeout_ms. */
bool lmh_wait_status(livemig_qmp *q, const char *status, int timeout_ms);

/* A TCP port on 127.0.0.1 that a listener can take now.  Each process
 * starts in its own range of 100 (by PID) in 20000..32767, below the
 * kernel's ephemeral ports (other connections' ports are taken there
 * between the probe and the listen), and moves on to the next ports when
 * those are taken.  The probe binds as a daemon's listener does, with
 * SO_REUSEADDR: TIME_WAIT left by earlier migrations does not stop a
 * listener, only a live socket does. */
int lmh_port(void);

/* Run @argv[0] (a path) with @argv and environment @envp_extra entries
 * ("NAME=VALUE", NULL-terminated, may be NULL) added; stdin is /dev/null.
 * Captures stdout into *@out and stderr into *@err (malloc'd, may pass
 * NULL to discard).  Kills it (by PID) after @timeout_ms.  Returns its
 * exit status, or -1 if it was killed or did not exit normally. */
int lmh_run(const char *const *argv, const char *const *envp_extra,
            char **out, char **err, int timeout_ms);

/* Wait up to @timeout_ms for the daemon to exit by itself (after "quit"
 * or a crash) and reap it; true if it did. */
bool lmh_wait_exit(lmh_daemon *d, int timeout_ms);

/*
 * Raw connections, for tests of the wire protocol itself: a plain UNIX
 * stream socket to the daemon, no greeting read, no negotiation.
 */
int lmh_raw_connect(const lmh_daemon *d);
/* Write all of @data (MSG_NOSIGNAL); false if the peer is gone. */
bool lmh_raw_send(int fd, const char *data, size_t len);
/* Read one line (without its newline) within @timeout_ms and parse it as
 * JSON; NULL on timeout, EOF or a line that is not JSON.  Bytes after the
 * line stay buffered per fd (up to 16 fds at once; lmh_raw_close frees). */
json_object *lmh_raw_read(int fd, int timeout_ms);
/* True if the peer closed the connection within @timeout_ms (pending
 * input is discarded). */
bool lmh_raw_wait_eof(int fd, int timeout_ms);
void lmh_raw_close(int fd);

/* $LIVEMIG_CTL, or skip the test if unset. */
const char *lmh_ctl_path(void);

#endif
