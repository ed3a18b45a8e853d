/*
 * test-stuck.c - transports that hang never freeze the monitor, and a
 * cancel ends what the migration started:
 *  - migrate to a file: FIFO nobody reads, or whose reader stops reading:
 *    other clients are answered at once, and migrate_cancel ends it;
 *    the same on a destination whose incoming FIFO's writer stalls;
 *  - migrate to exec: with a command that never reads (a shell waiting on
 *    a child): migrate_cancel ends the whole process group, reaps it and
 *    is done in under a second; so does quit;
 *  - exec: failures, outgoing and incoming, name the command's exit
 *    status or signal.
 */
#include "itest.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPEC "pattern,size=32M,threads=1,dirty-rate=4M,fill=random"

static const char *error_desc(lmh_daemon *d, char *buf, size_t len)
{
    json_object *r = it_qm(d);
    const char *e = lmh_get_str(r, "error-desc");
    snprintf(buf, len, "%s", e ? e : "");
    json_object_put(r);
    return buf;
}

/* Processes of process group @pgid that are alive (zombies don't count:
 * whoever reaps orphans here may take its time). */
static int group_alive(pid_t pgid)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *p = strrchr(buf, ')');
        char state;
        int ppid, pgrp;
        if (p && sscanf(p + 2, "%c %d %d", &state, &ppid, &pgrp) == 3 &&
            pgrp == pgid && state != 'Z')
            n++;
    }
    closedir(d);
    return n;
}

static pid_t read_pid(const char *path, int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms;
    for (;;) {
        FILE *f = fopen(path, "r");
        int pid = 0;
        if (f) {
            if (fscanf(f, "%d", &pid) != 1)
                pid = 0;
            fclose(f);
        }
        if (pid > 0)
            return pid;
        if (it_now_ms() > end)
            it_fail("the exec: command did not write its PID to '%s'", path);
        it_sleep_ms(10);
    }
}

static void check_source_runs(lmh_daemon *src)
{
    char st[64];
    if (!it_running(src, st, sizeof(st)))
        it_fail("the source guest does not run (query-status '%s')", st);
    it_verify_ok(src, "source");
    it_wait_guest_writes(src, "source", 5000);
}

/* Another client is answered within @bound_ms while @d's migration
 * hangs. */
static void check_monitor_free(lmh_daemon *d, int bound_ms)
{
    livemig_qmp *q = lmh_connect(d);
    for (int i = 0; i < 5; i++) {
        long long t0 = it_now_ms();
        json_object_put(lmh_ok(q, "query-status", NULL));
        json_object_put(lmh_ok(q, "query-migrate", NULL));
        long long took = it_now_ms() - t0;
        if (took > bound_ms)
            it_fail("query-status took %lld ms while the migration hangs",
                    took);
    }
    livemig_qmp_close(q);
}

static void cancel_within(lmh_daemon *d, int bound_ms, const char *what)
{
    long long t0 = it_now_ms();
    json_object_put(lmh_ok(d->qmp, "migrate_cancel", NULL));
    it_wait_status(d, "cancelled", 10000);
    long long took = it_now_ms() - t0;
    fprintf(stderr, "cancel %s: cancelled after %lld ms\n", what, took);
    if (took > bound_ms)
        it_fail("migrate_cancel %s took %lld ms, more than %d", what, took,
                bound_ms);
}

static void test_fifo_without_reader(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    char fifo[320], uri[340];
    lmh_path(src, "stream.fifo", fifo, sizeof(fifo));
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(uri, sizeof(uri), "file:%s", fifo);
    it_migrate(src, uri);   /* answered: the open waits elsewhere */
    check_monitor_free(src, 2000);
    assert_string_equal(it_status(src), "setup");
    cancel_within(src, 2000, "of a FIFO without a reader");
    check_source_runs(src);

    /* A reader that comes later gets the whole stream. */
    char out[320];
    lmh_path(src, "from-fifo.bin", out, sizeof(out));
    pid_t cat = fork();
    assert_true(cat >= 0);
    if (cat == 0) {
        execlp("sh", "sh", "-c", "cat \"$0\" > \"$1\"", fifo, out,
               (char *)NULL);
        _exit(127);
    }
    it_migrate(src, uri);
    it_wait_status(src, "completed", 30000);
    int st;
    assert_int_equal(waitpid(cat, &st, 0), cat);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct stat sb;
    assert_int_equal(stat(out, &sb), 0);
    if (sb.st_size < 32 * IT_MiB)
        it_fail("the FIFO's reader got %lld bytes of a 32 MiB guest",
                (long long)sb.st_size);
}

/* A FIFO whose reader opens it and then never reads: the writes wait,
 * and a cancel still ends the migration. */
static void test_fifo_reader_stops(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    char fifo[320], uri[340];
    lmh_path(src, "stalled.fifo", fifo, sizeof(fifo));
    assert_int_equal(mkfifo(fifo, 0600), 0);
    pid_t reader = fork();
    assert_true(reader >= 0);
    if (reader == 0) {
        execlp("sh", "sh", "-c", "exec sleep 30 < \"$0\"", fifo,
               (char *)NULL);
        _exit(127);
    }
    snprintf(uri, sizeof(uri), "file:%s", fifo);
    it_migrate(src, uri);
    it_wait_status(src, "active", 10000);
    it_wait_qm_above(src, "ram.transferred", 0, 10000);
    check_monitor_free(src, 2000);
    cancel_within(src, 2000, "of a FIFO whose reader stopped");
    check_source_runs(src);
    kill(reader, SIGKILL);
    int st;
    assert_int_equal(waitpid(reader, &st, 0), reader);
}

/* An incoming FIFO whose writer sends part of a stream and stalls: the
 * destination's monitor answers and its migrate_cancel ends the load. */
static void test_incoming_fifo_stalls(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    char full[320], fifo[320], uri[340], cmd[800];
    lmh_path(src, "full.bin", full, sizeof(full));
    lmh_path(src, "in.fifo", fifo, sizeof(fifo));
    snprintf(uri, sizeof(uri), "file:%s", full);
    it_migrate(src, uri);
    it_wait_status(src, "completed", 30000);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(uri, sizeof(uri), "file:%s", fifo);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    pid_t writer = fork();
    assert_true(writer >= 0);
    if (writer == 0) {
        snprintf(cmd, sizeof(cmd), "exec > '%s'; head -c 1000000 '%s'; "
                 "exec sleep 30", fifo, full);
        execlp("sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* Active: the header came; the first 1 MiB record never completes. */
    it_wait_status(dst, "active", 20000);
    check_monitor_free(dst, 2000);
    assert_string_equal(it_status(dst), "active");
    cancel_within(dst, 2000, "of an incoming FIFO whose writer stalled");
    if (it_running(dst, NULL, 0))
        it_fail("the destination runs after its cancel");
    kill(writer, SIGKILL);
    int st;
    assert_int_equal(waitpid(writer, &st, 0), writer);
}

/* exec: a shell that waits on a child and never reads its input. */
static pid_t start_stuck_exec(lmh_daemon *src, char *pidfile, size_t len)
{
    char uri[800];
    lmh_path(src, "exec.pid", pidfile, len);
    snprintf(uri, sizeof(uri), "exec:echo $$ > %s; sleep 30; true", pidfile);
    it_migrate(src, uri);
    pid_t pgid = read_pid(pidfile, 10000);
    if (group_alive(pgid) < 2)
        it_fail("the exec: command's group has %d live processes, expected "
                "the shell and its sleep", group_alive(pgid));
    it_wait_status(src, "active", 10000);
    return pgid;
}

static void wait_group_gone(pid_t pgid, int timeout_ms, const char *after)
{
    long long end = it_now_ms() + timeout_ms;
    while (group_alive(pgid) > 0) {
        if (it_now_ms() > end)
            it_fail("%d processes of the exec: command (group %d) still "
                    "run %d ms after %s", group_alive(pgid), (int)pgid,
                    timeout_ms, after);
        it_sleep_ms(10);
    }
}

static void test_exec_cancel(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    char pidfile[320];
    pid_t pgid = start_stuck_exec(src, pidfile, sizeof(pidfile));
    check_monitor_free(src, 2000);
    cancel_within(src, 1000, "of exec:sleep 30");
    wait_group_gone(pgid, 1000, "the cancel");
    /* Reaped: the daemon has no child left (a zombie would show). */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", (int)pgid);
    if (access(path, F_OK) == 0)
        it_fail("the exec: shell (PID %d) was not reaped", (int)pgid);
    check_source_runs(src);
}

static void test_exec_quit(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    char pidfile[320];
    pid_t pgid = start_stuck_exec(src, pidfile, sizeof(pidfile));
    long long t0 = it_now_ms();
    bool clean = lmh_stop(src);
    long long took = it_now_ms() - t0;
    fprintf(stderr, "quit during exec:sleep 30: exited after %lld ms\n",
            took);
    if (!clean)
        it_fail("livemigd did not exit cleanly on quit during an exec: "
                "migration");
    if (took > 1000)
        it_fail("quit during an exec: migration took %lld ms", took);
    wait_group_gone(pgid, 1000, "quit");
}

static void check_exec_error(const char *cmd, const char *must)
{
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    char uri[200], err[600];
    snprintf(uri, sizeof(uri), "exec:%s", cmd);
    it_migrate(src, uri);
    const char *end = it_wait_end(src, 10000);
    error_desc(src, err, sizeof(err));
    if (strcmp(end, "failed") != 0 || !strstr(err, must) ||
        !strstr(err, cmd))
        it_fail("migrate to '%s' ended '%s' with error-desc '%s'; expected "
                "failed naming the command and '%s'", uri, end, err, must);
    check_source_runs(src);
    it_stop(src);
}

static void test_exec_errors(void **state)
{
    (void)state;
    check_exec_error("exit 3", "exited with status 3");
    check_exec_error("head -c 100 > /dev/null", "exited with status 0 "
                                                "before");
    check_exec_error("kill -9 $$", "killed by signal 9");
}

static void test_exec_incoming_error(void **state)
{
    (void)state;
    char err[600];
    lmh_daemon *dst = it_start(SPEC, "exec:echo garbage; exit 4", NULL);
    const char *end = it_wait_end(dst, 10000);
    error_desc(dst, err, sizeof(err));
    if (strcmp(end, "failed") != 0 || !strstr(err, "exited with status 4"))
        it_fail("--incoming exec: that exits 4 ended '%s' with error-desc "
                "'%s'", end, err);
    if (it_running(dst, NULL, 0))
        it_fail("the destination runs after a failed exec: source");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fifo_without_reader, it_teardown),
        cmocka_unit_test_teardown(test_fifo_reader_stops, it_teardown),
        cmocka_unit_test_teardown(test_incoming_fifo_stalls, it_teardown),
        cmocka_unit_test_teardown(test_exec_cancel, it_teardown),
        cmocka_unit_test_teardown(test_exec_quit, it_teardown),
        cmocka_unit_test_teardown(test_exec_errors, it_teardown),
        cmocka_unit_test_teardown(test_exec_incoming_error, it_teardown),
    };
    return cmocka_run_group_tests_name("integration-stuck", tests, NULL,
                                       NULL);
}
