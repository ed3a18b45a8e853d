/*
 * test-cancel-race.c - exactly one running copy, whatever the timing of
 * migrate_cancel (docs/cancel.md):
 *  - past the point of no return (the destination's answer held back by a
 *    proxy), a cancel is refused as too late and the source stays stopped;
 *    the answer then completes the migration;
 *  - the connection cut past that point: the source reports the outcome
 *    unknown and stays stopped, never resumes on its own;
 *  - a cancel on the destination: the source is told and resumes;
 *  - hundreds of cancels at random moments around completion, next to a
 *    CPU-bound process: in every run exactly one side runs, and the two
 *    sides' reports agree (source completed <=> destination completed).
 */
#include "itest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPEC "pattern,size=16M,threads=1,dirty-rate=4M,fill=random"
#define SIZE (16 * IT_MiB)

/* ---- a TCP proxy that can hold back or cut the return path ------------ */

typedef struct proxy {
    int lfd;                  /* listening on @port */
    int port, target;         /* target: the destination's port */
    pthread_t thread;
    atomic_bool hold_back;    /* don't forward destination -> source */
    atomic_bool cut;          /* close both sides and end */
    atomic_bool quit;
    atomic_llong back_bytes;  /* forwarded destination -> source */
} proxy;

static int tcp_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static bool pump(int from, int to)
{
    char buf[1 << 16];
    ssize_t n = read(from, buf, sizeof(buf));
    if (n <= 0)
        return false;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            return false;
        off += w;
    }
    return true;
}

static void *proxy_main(void *arg)
{
    proxy *p = arg;
    int a = -1, b = -1;
    while (a < 0 && !atomic_load(&p->quit)) {
        struct pollfd pf = { .fd = p->lfd, .events = POLLIN };
        if (poll(&pf, 1, 50) > 0)
            a = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
    }
    if (a >= 0)
        b = tcp_to(p->target);
    while (a >= 0 && b >= 0 && !atomic_load(&p->quit) &&
           !atomic_load(&p->cut)) {
        struct pollfd pf[2] = { { .fd = a, .events = POLLIN },
                                { .fd = b, .events = POLLIN } };
        bool back = !atomic_load(&p->hold_back);
        if (poll(pf, back ? 2 : 1, 20) <= 0)
            continue;
        if ((pf[0].revents & (POLLIN | POLLHUP | POLLERR)) && !pump(a, b))
            break;
        if (back && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (!pump(b, a))
                break;
            atomic_fetch_add(&p->back_bytes, 1);
        }
    }
    if (a >= 0)
        close(a);
    if (b >= 0)
        close(b);
    return NULL;
}

static proxy *proxy_start(int target)
{
    proxy *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->target = target;
    p->port = lmh_port();
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)p->port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(p->lfd, 4), 0);
    atomic_store(&p->hold_back, true);
    assert_int_equal(pthread_create(&p->thread, NULL, proxy_main, p), 0);
    return p;
}

static void proxy_stop(proxy *p)
{
    atomic_store(&p->quit, true);
    pthread_join(p->thread, NULL);
    close(p->lfd);
    free(p);
}

/* ---- helpers ----------------------------------------------------------- */

static const char *error_desc(lmh_daemon *d, char *buf, size_t len)
{
    json_object *r = it_qm(d);
    const char *e = lmh_get_str(r, "error-desc");
    snprintf(buf, len, "%s", e ? e : "");
    json_object_put(r);
    return buf;
}

/* migrate_cancel: true if accepted, false if refused as too late (any
 * other refusal fails the test). */
static bool try_cancel(lmh_daemon *d)
{
    livemig_error e = { 0 };
    json_object *r = livemig_qmp_execute(d->qmp, "migrate_cancel", NULL, &e);
    if (r) {
        json_object_put(r);
        return true;
    }
    if (!strstr(e.desc, "too late"))
        it_fail("migrate_cancel was refused for another reason: %s", e.desc);
    return false;
}

static void incoming(lmh_daemon *d, const char *uri)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(d->qmp, "migrate-incoming", a));
}

/* ---- past the point of no return -------------------------------------- */

/* Source and destination through a proxy that holds the destination's
 * answer: the source waits past its point of no return. */
static proxy *held_migration(lmh_daemon **src, lmh_daemon **dst)
{
    int port = lmh_port();
    char uri[64];
    *dst = it_start(SPEC, it_tcp_uri(port, uri, sizeof(uri)), NULL);
    *src = it_start(SPEC, NULL, NULL);
    proxy *p = proxy_start(port);
    it_migrate(*src, it_tcp_uri(p->port, uri, sizeof(uri)));
    /* The destination loaded everything and runs: it answered, and the
     * answer waits in the proxy. */
    it_wait_status(*dst, "completed", 30000);
    if (!it_running(*dst, NULL, 0))
        it_fail("the destination completed but does not run");
    assert_string_equal(it_status(*src), "device");
    return p;
}

static void test_cancel_past_return(void **state)
{
    (void)state;
    lmh_daemon *src, *dst;
    proxy *p = held_migration(&src, &dst);
    char st[64];
    for (int i = 0; i < 3; i++) {
        if (try_cancel(src))
            it_fail("migrate_cancel accepted after the end of the stream "
                    "was sent");
        if (it_running(src, st, sizeof(st)))
            it_fail("the source runs while the destination runs");
        assert_string_equal(st, "postmigrate");
        assert_string_equal(it_status(src), "device");
    }
    /* The answer arrives: completed on both sides, one copy runs. */
    atomic_store(&p->hold_back, false);
    it_wait_status(src, "completed", 30000);
    if (it_running(src, st, sizeof(st)))
        it_fail("the source runs after completing");
    assert_string_equal(st, "postmigrate");
    if (!it_running(dst, NULL, 0))
        it_fail("the destination does not run after completing");
    it_verify_ok(dst, "destination");
    it_wait_guest_writes(dst, "destination", 5000);
    assert_int_equal(it_qm_int(src, "ram.total", 0), SIZE);
    proxy_stop(p);
}

static void test_unknown_outcome(void **state)
{
    (void)state;
    lmh_daemon *src, *dst;
    proxy *p = held_migration(&src, &dst);
    /* The connection breaks before the answer: the source cannot know. */
    atomic_store(&p->cut, true);
    const char *end = it_wait_end(src, 30000);
    char err[600], st[64];
    error_desc(src, err, sizeof(err));
    if (strcmp(end, "failed") != 0 || !strstr(err, "unknown"))
        it_fail("source ended '%s' (error-desc '%s'), expected failed with "
                "the outcome unknown", end, err);
    if (it_running(src, st, sizeof(st)))
        it_fail("the source resumed on its own with the outcome unknown");
    assert_string_equal(st, "postmigrate");
    if (!it_running(dst, NULL, 0))
        it_fail("the destination stopped running");
    it_verify_ok(dst, "destination");
    /* Still stopped a while later, and still serving. */
    it_wait_guest_writes(dst, "destination", 5000);
    if (it_running(src, st, sizeof(st)))
        it_fail("the source resumed on its own with the outcome unknown");
    proxy_stop(p);
}

/* ---- a cancel on the destination --------------------------------------- */

static void test_cancel_on_destination(void **state)
{
    (void)state;
    int port = lmh_port();
    char uri[64], err[600], st[64];
    lmh_daemon *dst = it_start(SPEC, it_tcp_uri(port, uri, sizeof(uri)),
                               NULL);
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    it_set_params(src, "{\"max-bandwidth\": 4194304}");
    it_migrate(src, uri);
    it_wait_qm_above(dst, "ram.transferred", 1 << 20, 20000);
    assert_true(try_cancel(dst));
    const char *end = it_wait_end(dst, 10000);
    if (strcmp(end, "cancelled") != 0)
        it_fail("the destination ended '%s' after its cancel", end);
    end = it_wait_end(src, 10000);
    error_desc(src, err, sizeof(err));
    if (strcmp(end, "failed") != 0 || !strstr(err, "cancelled on the "
                                                   "destination"))
        it_fail("the source ended '%s' (error-desc '%s'), expected failed "
                "naming the destination's cancel", end, err);
    if (!it_running(src, st, sizeof(st)))
        it_fail("the source does not run after the destination cancelled "
                "(query-status '%s')", st);
    if (it_running(dst, st, sizeof(st)))
        it_fail("the destination runs after its own cancel");
    it_verify_ok(src, "source");
}

/* ---- the race loop ---------------------------------------------------- */

static pid_t hog = -1;

static int kill_hog(void **state)
{
    (void)state;
    if (hog > 0) {
        kill(hog, SIGKILL);
        waitpid(hog, NULL, 0);
        hog = -1;
    }
    return it_teardown(state);
}

static void start_hog(void)
{
    hog = fork();
    assert_true(hog >= 0);
    if (hog == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlives the test */
        for (volatile unsigned long x = 0;; x++)
            ;
    }
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* One migration of @src to @dst with a cancel @delay_ms after migrate.
 * Returns 1 completed, 0 cancelled; checks everything a user would. */
static int race_once(lmh_daemon *src, lmh_daemon *dst, int delay_ms,
                     int run, bool *refused)
{
    char uri[64], st[64], err[600];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    incoming(dst, uri);
    it_migrate(src, uri);
    if (delay_ms > 0)
        it_sleep_ms(delay_ms);
    *refused = !try_cancel(src);
    char send[64], dend[64];
    snprintf(send, sizeof(send), "%s", it_wait_end(src, 30000));
    snprintf(dend, sizeof(dend), "%s", it_wait_dst_end(dst, 30000));
    bool srun = it_running(src, st, sizeof(st));
    bool drun = it_running(dst, NULL, 0);
    if (srun && drun)
        it_fail("run %d (cancel at %d ms): both copies run (source %s, "
                "destination %s)", run, delay_ms, send, dend);
    if (!srun && !drun)
        it_fail("run %d (cancel at %d ms): no copy runs (source %s, "
                "destination %s, source error '%s')", run, delay_ms, send,
                dend, error_desc(src, err, sizeof(err)));
    bool scomp = strcmp(send, "completed") == 0;
    bool dcomp = strcmp(dend, "completed") == 0;
    if (scomp != dcomp)
        it_fail("run %d (cancel at %d ms): the source says '%s', the "
                "destination '%s'", run, delay_ms, send, dend);
    if (scomp != drun)
        it_fail("run %d: the destination %s but reports '%s'", run,
                drun ? "runs" : "does not run", dend);
    if (*refused && !scomp)
        it_fail("run %d: the cancel was refused as too late, yet the "
                "source ended '%s'", run, send);
    if (!scomp && strcmp(send, "cancelled") != 0)
        it_fail("run %d (cancel at %d ms): the source ended '%s': %s", run,
                delay_ms, send, error_desc(src, err, sizeof(err)));
    it_verify_ok(scomp ? dst : src, scomp ? "destination" : "source");
    return scomp;
}

static void test_cancel_race_loop(void **state)
{
    (void)state;
    int runs = env_int("LM_CANCEL_RACE_RUNS", 500);
    srand((unsigned)getpid());
    start_hog();
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, "defer", NULL);
    long long t0 = it_now_ms();

    /* Where completion lands: a few migrations without a cancel. */
    double center = 0;
    for (int i = 0; i < 3; i++) {
        char uri[64];
        it_tcp_uri(lmh_port(), uri, sizeof(uri));
        incoming(dst, uri);
        long long m0 = it_now_ms();
        it_migrate(src, uri);
        it_wait_status(src, "completed", 30000);
        center += (double)(it_now_ms() - m0) / 3;
        it_wait_status(dst, "completed", 30000);
        it_stop(src);
        src = dst;
        dst = it_start(SPEC, "defer", NULL);
    }

    int completed = 0, cancelled = 0, refused = 0;
    for (int run = 0; run < runs; run++) {
        /* 0..30 ms around where completion lands now. */
        int delay = (int)center - 15 + rand() % 31;
        if (delay < 0)
            delay = 0;
        bool ref;
        if (race_once(src, dst, delay, run, &ref)) {
            completed++;
            /* The copy that runs migrates next; a fresh destination. */
            it_stop(src);
            src = dst;
            dst = it_start(SPEC, "defer", NULL);
            center -= 0.5;   /* track the median completion time */
        } else {
            cancelled++;
            center += 0.5;
        }
        refused += ref;
        if (center < 0)
            center = 0;
    }
    long long took = it_now_ms() - t0;
    fprintf(stderr, "cancel race: %d runs in %lld ms: %d completed (%d of "
            "them with the cancel refused as too late), %d cancelled; "
            "completion centre now %.1f ms after migrate\n", runs, took,
            completed, refused, cancelled, center);
    printf("{\"runs\": %d, \"completed\": %d, \"refused\": %d, "
           "\"cancelled\": %d, \"ms\": %lld}\n", runs, completed, refused,
           cancelled, took);
    /* The window must straddle completion, or the race was not run. */
    if (runs >= 100 && (completed < runs / 20 || cancelled < runs / 20))
        it_fail("the cancels missed the race: %d completed, %d cancelled",
                completed, cancelled);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cancel_past_return, it_teardown),
        cmocka_unit_test_teardown(test_unknown_outcome, it_teardown),
        cmocka_unit_test_teardown(test_cancel_on_destination, it_teardown),
        cmocka_unit_test_teardown(test_cancel_race_loop, kill_hog),
    };
    return cmocka_run_group_tests_name("integration-cancel-race", tests,
                                       NULL, NULL);
}
