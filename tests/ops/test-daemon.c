/*
 * test-daemon.c - a daemon that says what it does, and the small tools
 * around it, as a new user meets them:
 *   - README.md's by-hand steps, taken from the README itself and typed
 *     with no pause (the daemons are not waited for except by the
 *     README's own wait-ready lines): every command succeeds, the
 *     migration completes and verifies, each daemon printed its ready
 *     line and logged the migration, and exits 0 on HMP quit;
 *   - livemig-ctl --help, wait-ready's bound, migrate -d, strict on/off,
 *     HMP help for every command (guest_verify, the legacy ones), --quiet.
 */
#include "itest.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- daemons started by hand (the README's '&' lines) ---------------- */

#define MAX_BG 4
static pid_t bg[MAX_BG];
static int nbg;
static char tmpdir[256];

static void stop_bg(void)
{
    for (int i = 0; i < nbg; i++) {
        if (bg[i] <= 0)
            continue;
        kill(bg[i], SIGTERM);
        int st;
        for (int k = 0; k < 500 && waitpid(bg[i], &st, WNOHANG) == 0; k++)
            it_sleep_ms(10);
        if (waitpid(bg[i], &st, WNOHANG) == 0) {
            kill(bg[i], SIGKILL);
            waitpid(bg[i], &st, 0);
        }
        bg[i] = 0;
    }
    nbg = 0;
}

static int teardown(void **state)
{
    stop_bg();
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
        tmpdir[0] = '\0';
    }
    return it_teardown(state);
}

static void make_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/livemig-ops-XXXXXX",
             t && t[0] && strlen(t) < 100 ? t : "/tmp");
    if (!mkdtemp(tmpdir))
        fail_msg("mkdtemp: %s", strerror(errno));
}

/* Start @argv in the background, stdout and stderr into files named
 * after @tag in tmpdir; returns the index in bg[]. */
static int start_bg(char **argv, const char *tag)
{
    if (nbg == MAX_BG)
        fail_msg("test bug: more than %d background daemons", MAX_BG);
    char out[320], err[320];
    snprintf(out, sizeof(out), "%s/%s.out", tmpdir, tag);
    snprintf(err, sizeof(err), "%s/%s.err", tmpdir, tag);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (o < 0 || e < 0 || nul < 0)
            _exit(127);
        dup2(nul, 0);
        dup2(o, 1);
        dup2(e, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    bg[nbg] = pid;
    return nbg++;
}

static char *slurp_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static char *bg_file(const char *tag, const char *ext)
{
    char p[320];
    snprintf(p, sizeof(p), "%s/%s.%s", tmpdir, tag, ext);
    return slurp_file(p);
}

/* Wait until background daemon @i exited by itself; its exit status. */
static int wait_bg_exit(int i, int timeout_ms)
{
    int st;
    long long end = it_now_ms() + timeout_ms;
    while (it_now_ms() < end) {
        pid_t r = waitpid(bg[i], &st, WNOHANG);
        if (r == bg[i]) {
            bg[i] = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        it_sleep_ms(10);
    }
    return -1;
}

/* ---- the README's by-hand block ---------------------------------------- */

/* Replace every @from in @s (malloc'd) by @to; returns the new string. */
static char *subst(char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (char *p = strstr(s, from); p; p = strstr(p + fl, from))
        n++;
    char *r = malloc(strlen(s) + n * (tl + 1) + 1), *w = r;
    for (char *p = s, *q; ; p = q + fl) {
        q = strstr(p, from);
        if (!q) {
            strcpy(w, p);
            break;
        }
        memcpy(w, p, (size_t)(q - p));
        w += q - p;
        memcpy(w, to, tl);
        w += tl;
    }
    free(s);
    return r;
}

/* Split a command line into words; single quotes group (no escapes, as
 * the README uses them). */
static int split(char *line, char **argv, int max)
{
    int n = 0;
    char *p = line;
    while (*p && n < max - 1) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        char *w = p, *o = p;
        while (*p && *p != ' ' && *p != '\t') {
            if (*p == '\'') {
                p++;
                while (*p && *p != '\'')
                    *o++ = *p++;
                if (*p)
                    p++;
            } else {
                *o++ = *p++;
            }
        }
        if (*p)
            p++;
        *o = '\0';
        argv[n++] = w;
    }
    argv[n] = NULL;
    return n;
}

static char *readme_block(void)
{
    const char *path = getenv("LIVEMIG_README");
    if (!path)
        skip();
    char *all = slurp_file(path);
    char *start = strstr(all, "By hand");
    if (!start || !(start = strstr(start, "```\n")))
        fail_msg("README.md has no by-hand block after 'By hand'");
    start += 4;
    char *end = strstr(start, "```");
    if (!end)
        fail_msg("README.md's by-hand block is not closed");
    *end = '\0';
    char *block = strdup(start);
    free(all);
    /* continuation lines */
    block = subst(block, "\\\n", " ");
    return block;
}

static void test_readme_by_hand(void **state)
{
    (void)state;
    make_tmpdir();
    char *b = readme_block();
    char src[300], dst[300], port[16], livemigd[600], ctl[600];
    snprintf(src, sizeof(src), "%s/src.sock", tmpdir);
    snprintf(dst, sizeof(dst), "%s/dst.sock", tmpdir);
    snprintf(port, sizeof(port), "%d", lmh_port());
    snprintf(livemigd, sizeof(livemigd), "%s", getenv("LIVEMIGD"));
    snprintf(ctl, sizeof(ctl), "%s", lmh_ctl_path());
    b = subst(b, "/tmp/src.sock", src);
    b = subst(b, "/tmp/dst.sock", dst);
    b = subst(b, "4444", port);
    b = subst(b, "size=1G", "size=64M");   /* small guests on this machine */
    b = subst(b, "build/src/daemon/livemigd", livemigd);
    b = subst(b, "build/src/ctl/livemig-ctl", ctl);

    int daemons = 0, commands = 0;
    bool migrated = false, verified = false;
    char *save = NULL;
    for (char *line = strtok_r(b, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *argv[32];
        size_t len = strlen(line);
        while (len && line[len - 1] == ' ')
            line[--len] = '\0';
        bool background = len && line[len - 1] == '&';
        if (background)
            line[--len] = '\0';
        char typed[1024];
        snprintf(typed, sizeof(typed), "%s", line);
        if (split(line, argv, 32) == 0)
            continue;
        line = typed;
        if (background) {
            char tag[16];
            snprintf(tag, sizeof(tag), "d%d", daemons++);
            start_bg(argv, tag);
            continue;
        }
        char *out = NULL, *err = NULL;
        int rc = lmh_run((const char *const *)argv, NULL, &out, &err, 120000);
        commands++;
        fprintf(stderr, "$ %s\n%s%s", line, out, err);
        if (rc != 0)
            it_fail("README step '%s' exited %d: %s%s", line, rc, out, err);
        if (strstr(line, " migrate ")) {
            if (!strstr(out, "status: completed"))
                it_fail("the README's migrate did not complete: %s", out);
            migrated = true;
        }
        if (strstr(line, "guest_verify") || strstr(line, "guest-verify")) {
            if (!strstr(out, "verified") && !strstr(out, "\"ok\": true") &&
                !strstr(out, "\"ok\":true"))
                it_fail("the README's guest verify did not pass: %s", out);
            verified = true;
        }
        free(out);
        free(err);
    }
    free(b);
    if (daemons != 2 || !migrated || !verified || commands < 4)
        fail_msg("the README's by-hand block changed shape: %d daemons, "
                 "%d commands, migrate %d, verify %d", daemons, commands,
                 migrated, verified);
    /* The block ends with quit for both: they exit 0 by themselves. */
    for (int i = 0; i < 2; i++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "d%d", i);
        int st = wait_bg_exit(i, 20000);
        char *o = bg_file(tag, "out"), *e = bg_file(tag, "err");
        fprintf(stderr, "daemon %d stdout:\n%sstderr:\n%s", i, o, e);
        if (st != 0)
            fail_msg("daemon %d exited %d after the README's quit", i, st);
        if (!strstr(o, "livemigd: ready: QMP on unix:"))
            fail_msg("daemon %d printed no ready line: %s", i, o);
        if (i == 0 && (!strstr(e, "migration to 'tcp:127.0.0.1:") ||
                       !strstr(e, "' started") ||
                       !strstr(e, "completed in")))
            fail_msg("the source did not log the migration: %s", e);
        if (i == 1 && (!strstr(e, "waiting for an incoming migration") ||
                       !strstr(e, "incoming migration completed")))
            fail_msg("the destination did not log the migration: %s", e);
        free(o);
        free(e);
    }
}

/* ---- small tools --------------------------------------------------------- */

static int ctl(lmh_daemon *d, char **out, const char *a1, const char *a2,
               const char *a3, const char *a4)
{
    const char *argv[] = { lmh_ctl_path(), "-s", d ? d->addr : "/nonexistent",
                           a1, a2, a3, a4, NULL };
    char *err = NULL, *o = NULL;
    int rc = lmh_run(argv, NULL, &o, &err, 60000);
    size_t n = strlen(o) + strlen(err) + 1;
    *out = malloc(n);
    snprintf(*out, n, "%s%s", o, err);
    free(o);
    free(err);
    return rc;
}

static void expect(bool ok, const char *what, const char *out)
{
    if (!ok)
        it_fail("%s: %s", what, out ? out : "");
}

static void test_ctl_and_hmp(void **state)
{
    (void)state;
    char *out;
    const char *help[] = { lmh_ctl_path(), "--help", NULL };
    char *o = NULL;
    int hrc = lmh_run(help, NULL, &o, NULL, 10000);
    expect(hrc == 0 && strstr(o, "wait-ready") &&
           strstr(o, "migrate [-d] [--plot FILE.svg] URI"),
           "livemig-ctl --help", o);
    free(o);

    /* wait-ready is bounded */
    long long t0 = it_now_ms();
    int rc = ctl(NULL, &out, "wait-ready", "-t", "0.5", NULL);
    expect(rc == 3 && it_now_ms() - t0 < 10000,
           "wait-ready on no daemon: exit 3 within the bound", out);
    free(out);

    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start("pattern,size=32M,dirty-rate=4M", NULL, NULL);
    lmh_daemon *dst = it_start("pattern,size=32M", uri, NULL);
    rc = ctl(src, &out, "wait-ready", NULL, NULL, NULL);
    expect(rc == 0,
           "wait-ready on a running daemon", out);
    free(out);

    /* strict on/off */
    rc = ctl(src, &out, "set", "events=yes", NULL, NULL);
    expect(rc == 1 && strstr(out, "use on or off"), "set events=yes refused",
           out);
    free(out);
    rc = ctl(src, &out, "set", "events=on", NULL, NULL);
    expect(rc == 0,
           "set events=on", out);
    free(out);

    /* help for every command */
    rc = ctl(src, &out, "hmp", "help", NULL, NULL);
    expect(rc == 0 &&
           strstr(out, "guest_verify") && strstr(out, "quit") &&
           strstr(out, "migrate_set_downtime") &&
           strstr(out, "migrate_set_speed") && strstr(out, "mc_failover"),
           "hmp help lists every command", out);
    free(out);
    const char *each[] = { "guest-verify", "guest_verify", "quit",
                           "migrate_set_downtime", "migrate_incoming",
                           "info", "migrate_set_cache_size" };
    for (size_t i = 0; i < sizeof(each) / sizeof(each[0]); i++) {
        rc = ctl(src, &out, "hmp", "help", each[i], NULL);
        expect(rc == 0 && strstr(out, " -- "), each[i], out);
        free(out);
    }
    rc = ctl(src, &out, "hmp", "help", "no_such_command", NULL);
    expect(rc == 1 && strstr(out, "'help' lists them"), "help of nothing",
           out);
    free(out);
    rc = ctl(src, &out, "hmp", "guest_verify", NULL, NULL);
    expect(rc == 0 &&
           strstr(out, "guest verified"), "hmp guest_verify", out);
    free(out);

    /* migrate -d returns at once; the migration goes on */
    rc = ctl(src, &out, "migrate", "-d", uri, NULL);
    expect(rc == 0,
           "livemig-ctl migrate -d", out);
    free(out);
    it_wait_status(src, "completed", 60000);
    it_wait_status(dst, "completed", 60000);
    it_verify_ok(dst, "destination");

    /* HMP quit ends the daemon, status 0 */
    rc = ctl(src, &out, "hmp", "quit", NULL, NULL);
    expect(rc == 0, "hmp quit", out);
    free(out);
    if (!lmh_wait_exit(src, 20000) || !WIFEXITED(src->status) ||
        WEXITSTATUS(src->status) != 0)
        it_fail("the daemon did not exit 0 after HMP quit");
}

static void test_quiet(void **state)
{
    (void)state;
    make_tmpdir();
    char sock[300], qmp[310];
    snprintf(sock, sizeof(sock), "%s/q.sock", tmpdir);
    snprintf(qmp, sizeof(qmp), "unix:%s", sock);
    char *argv[] = { getenv("LIVEMIGD"), "--guest", "pattern,size=16M",
                     "--qmp", qmp, "--quiet", NULL };
    int i = start_bg(argv, "quiet");
    const char *wr[] = { lmh_ctl_path(), "-s", sock, "wait-ready", NULL };
    const char *quit[] = { lmh_ctl_path(), "-s", sock, "hmp", "quit", NULL };
    if (lmh_run(wr, NULL, NULL, NULL, 60000) != 0 ||
        lmh_run(quit, NULL, NULL, NULL, 60000) != 0)
        fail_msg("the --quiet daemon did not answer");
    if (wait_bg_exit(i, 20000) != 0)
        fail_msg("the --quiet daemon did not exit 0");
    char *o = bg_file("quiet", "out"), *e = bg_file("quiet", "err");
    if (o[0] || e[0])
        fail_msg("--quiet printed: '%s' '%s'", o, e);
    free(o);
    free(e);
}

int main(void)
{
    atexit(stop_bg);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_readme_by_hand, teardown),
        cmocka_unit_test_teardown(test_ctl_and_hmp, teardown),
        cmocka_unit_test_teardown(test_quiet, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
