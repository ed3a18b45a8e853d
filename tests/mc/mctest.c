/*
 * mctest.c - see mctest.h.
 */
#include "mctest.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 4

static mct_pair *pairs[MAX_PAIRS];

long long mct_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long mct_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void mct_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- failure ------------------------------------------------------------- */

static void dump_daemon(lmh_daemon *d, const char *who)
{
    if (!d)
        return;
    fprintf(stderr, "==== %s (pid %d) ====\n", who, (int)d->pid);
    lmh_dump_log(d);
    if (d->pid > 0 && d->qmp) {
        livemig_error err = {0};
        json_object *r = livemig_qmp_execute(d->qmp, "query-migrate", NULL,
                                             &err);
        fprintf(stderr, "query-migrate: %s\n",
                r ? json_object_to_json_string(r) : err.desc);
        json_object_put(r);
    }
}

void mct_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (int i = 0; i < MAX_PAIRS; i++) {
        if (!pairs[i])
            continue;
        /* A daemon frozen by the test would not answer. */
        if (pairs[i]->pri && pairs[i]->pri->pid > 0)
            kill(pairs[i]->pri->pid, SIGCONT);
        if (pairs[i]->bak && pairs[i]->bak->pid > 0)
            kill(pairs[i]->bak->pid, SIGCONT);
        dump_daemon(pairs[i]->pri, "primary");
        dump_daemon(pairs[i]->bak, "backup");
    }
    fail_msg("%s", msg);
    abort();   /* not reached */
}

/* ---- pairs -------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

void mct_drop(mct_pair *p, lmh_daemon **d)
{
    (void)p;
    if (!*d)
        return;
    if ((*d)->pid > 0)
        kill((*d)->pid, SIGCONT);
    lmh_free(*d);
    *d = NULL;
}

static char *spec(char *buf, size_t len, const mct_conf *c,
                  const char *outputs)
{
    snprintf(buf, len, "pattern,size=%dM,threads=1,dirty-rate=%s,"
             "fill=random%s%s", c->size_mib, c->rate,
             outputs ? ",outputs=" : "", outputs ? outputs : "");
    return buf;
}

void mct_new_backup(mct_pair *p, const mct_conf *c)
{
    char s[512], inc[64];
    snprintf(p->uri, sizeof(p->uri), "tcp:127.0.0.1:%d", lmh_port());
    snprintf(inc, sizeof(inc), "%s", p->uri);
    p->bak = lmh_start("--guest", spec(s, sizeof(s), c, NULL),
                       "--incoming", inc, NULL);
}

mct_pair *mct_pair_start(const mct_conf *c)
{
    mct_pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    int slot = -1;
    for (int i = 0; i < MAX_PAIRS && slot < 0; i++)
        if (!pairs[i])
            slot = i;
    if (slot < 0)
        fail_msg("test bug: more than %d pairs at once", MAX_PAIRS);
    pairs[slot] = p;
    const char *tmp = getenv("TMPDIR");
    snprintf(p->dir, sizeof(p->dir), "%s/livemig-mc-XXXXXX",
             tmp && tmp[0] && strlen(tmp) < 60 ? tmp : "/tmp");
    if (!mkdtemp(p->dir))
        fail_msg("cannot create a temporary directory: %s", strerror(errno));
    snprintf(p->outputs, sizeof(p->outputs), "%s/outputs.jsonl", p->dir);

    mct_new_backup(p, c);
    char s[640];
    p->pri = lmh_start("--guest", spec(s, sizeof(s), c, p->outputs), NULL);
    json_object_put(lmh_ok(p->pri->qmp, "migrate-set-capabilities",
        "{\"capabilities\": [{\"capability\": \"micro-checkpointing\", "
        "\"state\": true}, {\"capability\": \"events\", "
        "\"state\": true}]}"));
    json_object *a = lmh_json("{\"mc-delay\": %lld, "
                              "\"mc-heartbeat-timeout\": %lld}",
                              c->mc_delay, c->heartbeat);
    json_object_put(lmh_ok_obj(p->pri->qmp, "migrate-set-parameters", a));
    return p;
}

void mct_protect(mct_pair *p, int timeout_ms)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(p->uri));
    json_object_put(lmh_ok_obj(p->pri->qmp, "migrate", a));
    mct_wait_status(p->pri, "checkpointing", timeout_ms);
    mct_wait_status(p->bak, "checkpointing", timeout_ms);
}

static void stop_clean(lmh_daemon *d, const char *who)
{
    if (!d || d->pid <= 0)
        return;
    kill(d->pid, SIGCONT);
    if (!lmh_stop(d)) {
        lmh_dump_log(d);
        fail_msg("the %s did not exit cleanly on quit (wait status 0x%x)",
                 who, (unsigned)d->status);
    }
}

void mct_pair_finish(mct_pair *p)
{
    stop_clean(p->pri, "primary");
    stop_clean(p->bak, "backup");
    mct_pair_free(p);
}

void mct_pair_free(mct_pair *p)
{
    if (!p)
        return;
    mct_drop(p, &p->pri);
    mct_drop(p, &p->bak);
    if (p->dir[0])
        nftw(p->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    for (int i = 0; i < MAX_PAIRS; i++)
        if (pairs[i] == p)
            pairs[i] = NULL;
    free(p);
}

int mct_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_PAIRS; i++)
        if (pairs[i])
            mct_pair_free(pairs[i]);
    return 0;
}

long long mct_kill(lmh_daemon *d)
{
    assert_true(d->pid > 0);
    long long t = mct_wall_us();
    kill(d->pid, SIGKILL);
    if (!lmh_wait_exit(d, 30000))
        fail_msg("pid %d did not die after SIGKILL", (int)d->pid);
    return t;
}

/* ---- queries ------------------------------------------------------------ */

json_object *mct_qm(lmh_daemon *d)
{
    return lmh_ok(d->qmp, "query-migrate", NULL);
}

const char *mct_status(lmh_daemon *d)
{
    return lmh_migration_status(d->qmp);
}

long long mct_qm_int(lmh_daemon *d, const char *path, long long dflt)
{
    json_object *r = mct_qm(d);
    json_object *v = lmh_get(r, path);
    long long n = v ? (long long)json_object_get_int64(v) : dflt;
    json_object_put(r);
    return n;
}

void mct_wait_status(lmh_daemon *d, const char *want, int timeout_ms)
{
    if (!lmh_wait_status(d->qmp, want, timeout_ms))
        mct_fail("status did not become '%s' within %d ms (it is '%s')",
                 want, timeout_ms, mct_status(d));
}

json_object *mct_guest(lmh_daemon *d)
{
    return lmh_ok(d->qmp, "query-guest", NULL);
}

long long mct_guest_int(lmh_daemon *d, const char *path)
{
    json_object *g = mct_guest(d);
    long long v = lmh_get_int(g, path);
    json_object_put(g);
    return v;
}

typedef struct writes_wait {
    lmh_daemon *d;
    long long from;
} writes_wait;

static bool wrote_more(void *opaque)
{
    writes_wait *w = opaque;
    return mct_guest_int(w->d, "pages-written") > w->from;
}

void mct_wait_writes(lmh_daemon *d, const char *who, int timeout_ms)
{
    writes_wait w = { d, mct_guest_int(d, "pages-written") };
    if (!lmh_wait_for(wrote_more, &w, timeout_ms, 10))
        mct_fail("the %s guest wrote no page in %d ms (pages-written stays "
                 "%lld)", who, timeout_ms, w.from);
}

bool mct_running(lmh_daemon *d)
{
    json_object *r = lmh_ok(d->qmp, "query-status", NULL);
    json_object *v = lmh_get(r, "running");
    bool running = v && json_object_get_boolean(v);
    json_object_put(r);
    return running;
}

void mct_verify_ok(lmh_daemon *d, const char *who)
{
    json_object *r = lmh_ok(d->qmp, "guest-verify", NULL);
    json_object *ok = lmh_get(r, "ok");
    if (!ok || !json_object_get_boolean(ok)) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", json_object_to_json_string(r));
        json_object_put(r);
        mct_fail("guest-verify on the %s failed: %s", who, msg);
    }
    json_object_put(r);
}

json_object *mct_wait_event(lmh_daemon *d, const char *name, int timeout_ms)
{
    long long end = mct_now_ms() + timeout_ms;
    for (int i = 0; i < 100000; i++) {
        long long left = end - mct_now_ms();
        json_object *ev = livemig_qmp_next_event(d->qmp,
                                                 left > 0 ? (int)left : 0);
        if (!ev)
            return NULL;
        const char *n = lmh_get_str(ev, "event");
        if (n && strcmp(n, name) == 0)
            return ev;
        json_object_put(ev);
    }
    return NULL;
}

long long mct_event_us(json_object *ev)
{
    return lmh_get_int(ev, "timestamp.seconds") * 1000000 +
           lmh_get_int(ev, "timestamp.microseconds");
}

/* ---- outputs ------------------------------------------------------------ */

static bool pos_after(mct_pos a, mct_pos b)
{
    return a.gen > b.gen || (a.gen == b.gen && a.cur > b.cur);
}

/* Parse every line; call @fn on each.  Returns the count. */
static size_t each_output(const char *path, size_t max_lines,
                          void (*fn)(void *, size_t, mct_pos, const char *),
                          void *opaque)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        mct_fail("cannot open the outputs file '%s': %s", path,
                 strerror(errno));
    }
    char line[256];
    size_t n = 0;
    while ((!max_lines || n < max_lines) && fgets(line, sizeof(line), f)) {
        json_object *o = json_tokener_parse(line);
        json_object *g = lmh_get(o, "generation"), *c = lmh_get(o, "cursor");
        if (!o || !g || !c || !json_object_is_type(g, json_type_int) ||
            !json_object_is_type(c, json_type_int)) {
            json_object_put(o);
            fclose(f);
            mct_fail("line %zu of the outputs file is not {\"generation\", "
                     "\"cursor\"}: %s", n + 1, line);
        }
        mct_pos p = { json_object_get_int64(g), json_object_get_int64(c) };
        json_object_put(o);
        fn(opaque, n, p, line);
        n++;
    }
    fclose(f);
    return n;
}

typedef struct scan {
    mct_pos last, max, limit;
    bool check;
} scan;

static void scan_one(void *opaque, size_t i, mct_pos p, const char *line)
{
    scan *s = opaque;
    if (s->check && pos_after(p, s->limit))
        mct_fail("output line %zu (%.*s) is not backed by the backup: it "
                 "is ahead of the state the backup resumed from "
                 "(generation %lld, cursor %lld)", i + 1,
                 (int)strcspn(line, "\n"), line, s->limit.gen,
                 s->limit.cur);
    s->last = p;
    if (pos_after(p, s->max))
        s->max = p;
}

size_t mct_outputs(const char *path, mct_pos *last, mct_pos *max)
{
    scan s = { { 0, 0 }, { 0, 0 }, { 0, 0 }, false };
    size_t n = each_output(path, 0, scan_one, &s);
    if (last)
        *last = s.last;
    if (max)
        *max = s.max;
    return n;
}

size_t mct_outputs_backed(const char *path, size_t max_lines, long long gen,
                          long long cur)
{
    scan s = { { 0, 0 }, { 0, 0 }, { gen, cur }, true };
    return each_output(path, max_lines, scan_one, &s);
}

/* ---- parameters --------------------------------------------------------- */

void mct_set_params(lmh_daemon *d, const char *json_members)
{
    json_object_put(lmh_ok(d->qmp, "migrate-set-parameters", json_members));
}

long long mct_param(lmh_daemon *d, const char *name)
{
    json_object *r = lmh_ok(d->qmp, "query-migrate-parameters", NULL);
    long long v = lmh_get_int(r, name);
    json_object_put(r);
    return v;
}
