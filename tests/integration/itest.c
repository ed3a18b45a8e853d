/*
 * itest.c - see itest.h.
 */
#include "itest.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IT_MAX_DAEMONS 16

static lmh_daemon *daemons[IT_MAX_DAEMONS];

long long it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void it_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int it_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < IT_MAX_DAEMONS; i++) {
        if (daemons[i]) {
            lmh_free(daemons[i]);
            daemons[i] = NULL;
        }
    }
    return 0;
}

lmh_daemon *it_start(const char *spec, const char *incoming, ...)
{
    const char *args[32];
    int n = 0;
    args[n++] = "--guest";
    args[n++] = spec;
    if (incoming) {
        args[n++] = "--incoming";
        args[n++] = incoming;
    }
    va_list ap;
    va_start(ap, incoming);
    for (const char *a = va_arg(ap, const char *); a && n < 31;
         a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    int slot = -1;
    for (int i = 0; i < IT_MAX_DAEMONS && slot < 0; i++)
        if (!daemons[i])
            slot = i;
    if (slot < 0)
        fail_msg("test bug: more than %d daemons in one test",
                 IT_MAX_DAEMONS);
    /* Under scripts/two-hosts the source and the destination are two
     * hosts: each daemon runs in its namespace. */
    lmh_daemon *d = lmh_startv_netns(
        getenv(incoming ? "LM_NETNS_DST" : "LM_NETNS_SRC"), args);
    daemons[slot] = d;
    return d;
}

void it_stop(lmh_daemon *d)
{
    for (int i = 0; i < IT_MAX_DAEMONS; i++)
        if (daemons[i] == d)
            daemons[i] = NULL;
    lmh_free(d);
}

void it_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (int i = 0; i < IT_MAX_DAEMONS; i++) {
        lmh_daemon *d = daemons[i];
        if (!d)
            continue;
        fprintf(stderr, "==== daemon %d (pid %d, %s)\n", i, (int)d->pid,
                d->dir);
        if (d->pid > 0 && d->qmp) {
            livemig_error err = { 0 };
            json_object *r = livemig_qmp_execute(d->qmp, "query-migrate",
                                                 NULL, &err);
            fprintf(stderr, "query-migrate: %s\n",
                    r ? json_object_to_json_string_ext(
                            r, JSON_C_TO_STRING_PLAIN)
                      : err.desc);
            json_object_put(r);
        }
        lmh_dump_log(d);
    }
    fail_msg("%s", msg);
    abort();   /* not reached: fail_msg leaves the test */
}

char *it_tcp_uri(int port, char *buf, size_t len)
{
    const char *dst = getenv("LM_NETNS_DST_ADDR");
    snprintf(buf, len, "tcp:%s:%d", dst && dst[0] ? dst : "127.0.0.1",
             port);
    return buf;
}

bool it_two_hosts(void)
{
    const char *s = getenv("LM_NETNS_SRC");
    return s && s[0] && getenv("LM_TWO_HOSTS");
}

void it_link(const char *action, const char *arg)
{
    if (!it_two_hosts())
        fail_msg("test bug: it_link('%s') outside scripts/two-hosts run",
                 action);
    const char *argv[] = { getenv("LM_TWO_HOSTS"), action, arg, NULL };
    char *err = NULL;
    int rc = lmh_run(argv, NULL, NULL, &err, 20000);
    if (rc != 0)
        it_fail("two-hosts %s %s failed (%d): %s", action, arg ? arg : "",
                rc, err ? err : "");
    free(err);
}

json_object *it_qm(lmh_daemon *d)
{
    return lmh_ok(d->qmp, "query-migrate", NULL);
}

const char *it_status(lmh_daemon *d)
{
    return lmh_migration_status(d->qmp);
}

long long it_qm_int(lmh_daemon *d, const char *path, long long dflt)
{
    json_object *r = it_qm(d);
    json_object *v = lmh_get(r, path);
    long long x = v ? (long long)json_object_get_int64(v) : dflt;
    json_object_put(r);
    return x;
}

bool it_is_terminal(const char *s)
{
    return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
           strcmp(s, "cancelled") == 0;
}

void it_wait_status(lmh_daemon *d, const char *want, int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms;
    for (;;) {
        json_object *r = it_qm(d);
        char s[64], e[600];
        snprintf(s, sizeof(s), "%s", lmh_get_str(r, "status"));
        const char *ed = lmh_get_str(r, "error-desc");
        snprintf(e, sizeof(e), "%s", ed ? ed : "");
        json_object_put(r);
        if (strcmp(s, want) == 0)
            return;
        if (it_is_terminal(s) && !it_is_terminal(want))
            it_fail("waiting for status '%s', the migration ended '%s' "
                    "(error-desc: %s)", want, s, e);
        if (it_is_terminal(s) && strcmp(s, want) != 0)
            it_fail("expected the migration to end '%s', it ended '%s' "
                    "(error-desc: %s)", want, s, e);
        if (it_now_ms() > end)
            it_fail("status still '%s' after %d ms, waiting for '%s'", s,
                    timeout_ms, want);
        it_sleep_ms(10);
    }
}

const char *it_wait_end(lmh_daemon *d, int timeout_ms)
{
    static char s[64];
    long long end = it_now_ms() + timeout_ms;
    for (;;) {
        snprintf(s, sizeof(s), "%s", it_status(d));
        if (it_is_terminal(s))
            return s;
        if (it_now_ms() > end)
            it_fail("migration still '%s' after %d ms", s, timeout_ms);
        it_sleep_ms(10);
    }
}

const char *it_wait_dst_end(lmh_daemon *dst, int timeout_ms)
{
    static char s[64];
    long long end = it_now_ms() + timeout_ms, idle = it_now_ms() + 2000;
    for (;;) {
        snprintf(s, sizeof(s), "%s", it_status(dst));
        if (it_is_terminal(s))
            return s;
        if (strcmp(s, "setup") == 0 && it_now_ms() > idle) {
            json_object_put(lmh_ok(dst->qmp, "migrate_cancel", NULL));
            return it_wait_end(dst, timeout_ms);
        }
        if (it_now_ms() > end)
            it_fail("destination migration still '%s' after %d ms", s,
                    timeout_ms);
        it_sleep_ms(10);
    }
}

long long it_wait_qm_above(lmh_daemon *d, const char *path, long long min,
                           int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms;
    for (;;) {
        json_object *r = it_qm(d);
        char s[64];
        snprintf(s, sizeof(s), "%s", lmh_get_str(r, "status"));
        json_object *v = lmh_get(r, path);
        long long x = v ? (long long)json_object_get_int64(v) : -1;
        json_object_put(r);
        if (x > min)
            return x;
        if (it_is_terminal(s))
            it_fail("waiting for %s > %lld, the migration ended '%s'", path,
                    min, s);
        if (it_now_ms() > end)
            it_fail("%s still %lld after %d ms (status '%s'), waiting for "
                    "> %lld", path, x, timeout_ms, s, min);
        it_sleep_ms(10);
    }
}

bool it_running(lmh_daemon *d, char *state, size_t len)
{
    json_object *r = lmh_ok(d->qmp, "query-status", NULL);
    json_object *v = lmh_get(r, "running");
    if (!v || !json_object_is_type(v, json_type_boolean))
        it_fail("query-status has no boolean 'running': %s",
                json_object_to_json_string(r));
    bool running = json_object_get_boolean(v);
    if (state) {
        const char *s = lmh_get_str(r, "status");
        snprintf(state, len, "%s", s ? s : "");
    }
    json_object_put(r);
    return running;
}

void it_verify_ok(lmh_daemon *d, const char *who)
{
    json_object *r = lmh_ok(d->qmp, "guest-verify", NULL);
    json_object *ok = lmh_get(r, "ok");
    if (!ok || !json_object_get_boolean(ok)) {
        char buf[1024];
        snprintf(buf, sizeof(buf), "%s", json_object_to_json_string(r));
        json_object_put(r);
        it_fail("guest-verify on the %s failed: %s", who, buf);
    }
    json_object_put(r);
}

long long it_guest_int(lmh_daemon *d, const char *path)
{
    json_object *r = lmh_ok(d->qmp, "query-guest", NULL);
    long long v = lmh_get_int(r, path);
    json_object_put(r);
    return v;
}

void it_wait_guest_writes(lmh_daemon *d, const char *who, int timeout_ms)
{
    long long first = it_guest_int(d, "pages-written");
    long long end = it_now_ms() + timeout_ms;
    while (it_guest_int(d, "pages-written") <= first) {
        if (it_now_ms() > end)
            it_fail("the %s guest wrote no page in %d ms (pages-written "
                    "stays %lld)", who, timeout_ms, first);
        it_sleep_ms(10);
    }
}

void it_set_params(lmh_daemon *d, const char *json)
{
    json_object_put(lmh_ok(d->qmp, "migrate-set-parameters", json));
}

void it_set_cap(lmh_daemon *d, const char *cap, bool on)
{
    json_object *a = lmh_json("{\"capabilities\": [{\"capability\": \"%s\", "
                              "\"state\": %s}]}", cap,
                              on ? "true" : "false");
    json_object_put(lmh_ok_obj(d->qmp, "migrate-set-capabilities", a));
}

void it_migrate(lmh_daemon *src, const char *uri)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(src->qmp, "migrate", a));
}

void it_kill9(lmh_daemon *d)
{
    assert_true(d->pid > 0);
    assert_int_equal(kill(d->pid, SIGKILL), 0);
    int st;
    assert_int_equal(waitpid(d->pid, &st, 0), d->pid);
    d->status = st;
    d->pid = 0;
}

long long it_vmrss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %lld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

long long it_cpu_ticks(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name (which may hold spaces): state is
     * field 3; utime and stime are fields 14 and 15. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

json_object *it_drain_events(livemig_qmp *q, int wait_ms)
{
    json_object *list = json_object_new_array();
    json_object *ev;
    while ((ev = livemig_qmp_next_event(q, wait_ms)) != NULL)
        json_object_array_add(list, ev);
    return list;
}

void it_check_completed(lmh_daemon *src, lmh_daemon *dst,
                        long long guest_bytes, bool dirtying)
{
    char state[64];
    it_wait_status(src, "completed", 30000);
    it_wait_status(dst, "completed", 30000);

    if (it_running(src, state, sizeof(state)))
        it_fail("the source guest still runs after a completed migration "
                "(query-status '%s')", state);
    if (strcmp(state, "postmigrate") != 0)
        it_fail("source query-status is '%s', expected 'postmigrate'",
                state);
    if (!it_running(dst, state, sizeof(state)))
        it_fail("the destination guest does not run after a completed "
                "migration (query-status '%s')", state);
    assert_string_equal(state, "running");

    it_verify_ok(dst, "destination");
    if (dirtying)
        it_wait_guest_writes(dst, "destination", 30000);

    json_object *p = lmh_ok(src->qmp, "query-migrate-parameters", NULL);
    long long limit = lmh_get_int(p, "downtime-limit");
    json_object_put(p);

    json_object *r = it_qm(src);
    json_object *dt = lmh_get(r, "downtime");
    if (!dt)
        it_fail("query-migrate of a completed migration has no downtime: "
                "%s", json_object_to_json_string(r));
    long long downtime = json_object_get_int64(dt);
    if (downtime > limit)
        it_fail("downtime %lld ms is above downtime-limit %lld ms", downtime,
                limit);
    long long total = lmh_get_int(r, "ram.total");
    if (total != guest_bytes)
        it_fail("ram.total is %lld, the guest has %lld bytes", total,
                guest_bytes);
    json_object *bd = lmh_get(r, "downtime-breakdown");
    if (!bd || !json_object_is_type(bd, json_type_object) ||
        !lmh_get(bd, "stop-us") || !lmh_get(bd, "final-send-us") ||
        !lmh_get(bd, "destination-load-us"))
        it_fail("query-migrate has no complete downtime-breakdown: %s",
                json_object_to_json_string(r));
    if (lmh_get_int(r, "ram.transferred") < guest_bytes / 2 &&
        lmh_get_int(r, "ram.duplicate") == 0)
        it_fail("only %lld bytes transferred for a %lld-byte random guest",
                lmh_get_int(r, "ram.transferred"), guest_bytes);
    json_object_put(r);
}
