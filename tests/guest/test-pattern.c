/*
 * test-pattern.c - unit tests of the pattern guest: spec parsing, page
 * format, verify catching every kind of damage, stop, pacing, throttle, and
 * its state section carried from one guest to another (a migration without
 * the stream: RAM copied, section saved and loaded by hand).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "common/buf.h"
#include "guest/pattern-int.h"
#include "guest/pattern.h"

#define PAGE LM_PATTERN_PAGE_SIZE

/* ---- helpers ---------------------------------------------------------- */

typedef struct guest {
    livemig *lm;
    lm_pattern *p;
} guest;

static guest *guest_new_tracker(const char *spec, bool incoming,
                                livemig_tracker_kind tracker)
{
    guest *g = calloc(1, sizeof(*g));
    livemig_error err = { 0 };
    assert_non_null(g);
    g->lm = livemig_new(&err);
    if (!g->lm)
        fail_msg("livemig_new: %s", err.desc);
    g->p = lm_pattern_new(spec, g->lm, incoming, tracker, &err);
    if (!g->p)
        fail_msg("lm_pattern_new(\"%s\"): %s", spec, err.desc);
    return g;
}

static guest *guest_new(const char *spec, bool incoming)
{
    return guest_new_tracker(spec, incoming, LIVEMIG_TRACKER_MANUAL);
}

static void guest_free(guest *g)
{
    lm_pattern_halt(g->p);     /* no writer left while the engine goes */
    livemig_free(g->lm);
    lm_pattern_free(g->p);     /* the guest's RAM last */
    free(g);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000,
                           .tv_nsec = (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t qint(lm_pattern *p, const char *key)
{
    struct json_object *q = lm_pattern_query(p), *v;
    if (!json_object_object_get_ex(q, key, &v))
        fail_msg("query-guest has no '%s': %s", key,
                 json_object_to_json_string(q));
    int64_t r = json_object_get_int64(v);
    json_object_put(q);
    return r;
}

static bool qbool(lm_pattern *p, const char *key)
{
    struct json_object *q = lm_pattern_query(p), *v;
    if (!json_object_object_get_ex(q, key, &v))
        fail_msg("query-guest has no '%s'", key);
    bool r = json_object_get_boolean(v);
    json_object_put(q);
    return r;
}

/* Element @i of the array @key of query-guest. */
static int64_t qidx(lm_pattern *p, const char *key, size_t i)
{
    struct json_object *q = lm_pattern_query(p), *v;
    if (!json_object_object_get_ex(q, key, &v))
        fail_msg("query-guest has no '%s'", key);
    int64_t r = json_object_get_int64(json_object_array_get_idx(v, i));
    json_object_put(q);
    return r;
}

static bool qhas(lm_pattern *p, const char *key)
{
    struct json_object *q = lm_pattern_query(p);
    bool r = json_object_object_get_ex(q, key, NULL);
    json_object_put(q);
    return r;
}

/* Bounded waits, generous because a busy machine can starve the guest's
 * threads for seconds: a test waits for what it needs, not for a time. */
#define WAIT_MS 30000

/* Wait until the guest wrote at least @n more pages. */
static void wait_written(lm_pattern *p, int64_t n)
{
    int64_t start = qint(p, "pages-written");
    for (int i = 0; i < WAIT_MS; i++) {
        if (qint(p, "pages-written") >= start + n)
            return;
        sleep_ms(1);
    }
    fail_msg("guest wrote fewer than %lld pages in %d ms", (long long)n,
             WAIT_MS);
}

/* Wait until every worker reached generation @g (the slowest worker
 * decides: "generation" is the minimum over workers). */
static void wait_generation(lm_pattern *p, int64_t g)
{
    for (int i = 0; i < WAIT_MS; i++) {
        if (qint(p, "generation") >= g)
            return;
        sleep_ms(1);
    }
    fail_msg("the guest did not reach generation %lld in %d ms",
             (long long)g, WAIT_MS);
}

/* guest-verify; returns the result (caller puts it). */
static struct json_object *verify(lm_pattern *p)
{
    livemig_error err = { 0 };
    struct json_object *v = lm_pattern_verify(p, &err);
    if (!v)
        fail_msg("guest-verify could not run: %s", err.desc);
    return v;
}

static void assert_verify_ok(lm_pattern *p)
{
    struct json_object *v = verify(p), *ok;
    assert_true(json_object_object_get_ex(v, "ok", &ok));
    if (!json_object_get_boolean(ok))
        fail_msg("guest-verify failed: %s", json_object_to_json_string(v));
    json_object_put(v);
}

/* Verify must fail on @page with a reason containing @what. */
static void assert_verify_bad(lm_pattern *p, uint64_t page, const char *what)
{
    struct json_object *v = verify(p), *ok, *bad, *reason;
    assert_true(json_object_object_get_ex(v, "ok", &ok));
    if (json_object_get_boolean(ok))
        fail_msg("guest-verify passed, expected page %llu to be bad (%s)",
                 (unsigned long long)page, what);
    assert_true(json_object_object_get_ex(v, "bad-page", &bad));
    assert_true(json_object_object_get_ex(v, "reason", &reason));
    const char *r = json_object_get_string(reason);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "page %llu: ", (unsigned long long)page);
    if ((uint64_t)json_object_get_int64(bad) != page || !strstr(r, prefix) ||
        !strstr(r, what))
        fail_msg("expected page %llu bad with '%s', got %s",
                 (unsigned long long)page, what,
                 json_object_to_json_string(v));
    json_object_put(v);
}

static uint8_t *page_at(lm_pattern *p, uint64_t i)
{
    return (uint8_t *)lm_pattern_ram(p, NULL) + i * PAGE;
}

/* ---- spec ------------------------------------------------------------- */

static void test_spec_defaults(void **state)
{
    (void)state;
    lm_pattern_spec s;
    livemig_error err = { 0 };
    assert_true(lm_pattern_spec_parse("pattern", &s, &err));
    assert_int_equal(s.size, 1ull << 30);
    assert_int_equal(s.threads, 1);
    assert_int_equal(s.dirty_rate, 0);
    assert_int_equal(s.fill, LM_PATTERN_FILL_RANDOM);
    assert_null(s.outputs);
    lm_pattern_spec_clear(&s);
}

static void test_spec_good(void **state)
{
    (void)state;
    lm_pattern_spec s;
    livemig_error err = { 0 };
    assert_true(lm_pattern_spec_parse(
        "pattern,size=16M,threads=2,dirty-rate=50M,fill=text", &s, &err));
    assert_int_equal(s.size, 16ull << 20);
    assert_int_equal(s.threads, 2);
    assert_int_equal(s.dirty_rate, 50ull << 20);
    assert_int_equal(s.fill, LM_PATTERN_FILL_TEXT);
    lm_pattern_spec_clear(&s);

    /* any order, no leading name, max, outputs, plain byte counts */
    assert_true(lm_pattern_spec_parse(
        "fill=zero,outputs=/tmp/out.jsonl,dirty-rate=max,size=40960,"
        "threads=10", &s, &err));
    assert_int_equal(s.size, 40960);
    assert_int_equal(s.threads, 10);
    assert_int_equal(s.dirty_rate, LM_PATTERN_RATE_MAX);
    assert_int_equal(s.fill, LM_PATTERN_FILL_ZERO);
    assert_string_equal(s.outputs, "/tmp/out.jsonl");
    lm_pattern_spec_clear(&s);

    assert_true(lm_pattern_spec_parse("pattern,size=1g,dirty-rate=0,"
                                      "fill=random", &s, &err));
    assert_int_equal(s.size, 1ull << 30);
    assert_int_equal(s.dirty_rate, 0);
    lm_pattern_spec_clear(&s);
    assert_true(lm_pattern_spec_parse("size=64KB,dirty-rate=1k", &s, &err));
    assert_int_equal(s.size, 64 * 1024);
    assert_int_equal(s.dirty_rate, 1024);
    lm_pattern_spec_clear(&s);
}

static void test_spec_bad(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *msg;
    } cases[] = {
        { "pattern,size=0", "size '0' is not a positive multiple" },
        { "pattern,size=4097", "size '4097' is not a positive multiple" },
        { "pattern,size=1X", "invalid size '1X'" },
        { "pattern,size=-4K", "invalid size '-4K'" },
        { "pattern,size=99999999999999999999", "invalid size" },
        { "pattern,size=2T", "larger than the maximum" },
        { "pattern,threads=0", "invalid threads '0'" },
        { "pattern,threads=65", "invalid threads '65'" },
        { "pattern,threads=two", "invalid threads 'two'" },
        { "pattern,threads=2K", "invalid threads '2K'" },
        { "pattern,dirty-rate=fast", "invalid dirty-rate 'fast'" },
        { "pattern,fill=blue", "invalid fill 'blue': use random, text or zero" },
        { "pattern,colour=red", "unknown option 'colour'" },
        { "pattern,size=16M,size=32M", "option 'size' given twice" },
        { "vm,size=16M", "unknown guest 'vm'" },
        { "pattern,size", "option 'size' needs a value" },
        { "pattern,fill=", "option 'fill' has an empty value" },
        { "pattern,outputs=", "outputs needs a file path" },
        { "pattern,size=8K,threads=4", "4 threads need at least 4 pages" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lm_pattern_spec s;
        livemig_error err = { 0 };
        if (lm_pattern_spec_parse(cases[i].spec, &s, &err))
            fail_msg("spec '%s' was accepted", cases[i].spec);
        if (!strstr(err.desc, cases[i].msg))
            fail_msg("spec '%s': error '%s' lacks '%s'", cases[i].spec,
                     err.desc, cases[i].msg);
    }
    /* lm_pattern_new refuses it the same way, before allocating anything */
    livemig_error err = { 0 };
    assert_null(lm_pattern_new("pattern,fill=blue", NULL, false,
                               LIVEMIG_TRACKER_AUTO, &err));
    assert_non_null(strstr(err.desc, "invalid fill 'blue'"));
}

/* ---- page format ------------------------------------------------------ */

static void test_page_format(void **state)
{
    (void)state;
    static uint64_t a[PAGE / 8], b[PAGE / 8];
    char why[256];
    for (int f = 0; f < 3; f++) {
        lm_pattern_page_write(f, a, 7, 3, 1234);
        assert_int_equal(lm_pattern_page_check(f, a, 7, 3, why, sizeof(why)),
                         LM_PATTERN_GOOD);
        /* deterministic */
        lm_pattern_page_write(f, b, 7, 3, 1234);
        assert_memory_equal(a, b, PAGE);
        /* another generation, another index: another body */
        lm_pattern_page_write(f, b, 7, 4, 1234);
        assert_memory_not_equal(a + 4, b + 4, LM_PATTERN_BODY_SIZE);
        lm_pattern_page_write(f, b, 8, 3, 1234);
        assert_memory_not_equal(a + 4, b + 4, LM_PATTERN_BODY_SIZE);
        assert_int_equal(lm_pattern_page_check(f, a, 7, 4, why, sizeof(why)),
                         LM_PATTERN_BAD_GENERATION);
        assert_int_equal(lm_pattern_page_check(f, a, 8, 3, why, sizeof(why)),
                         LM_PATTERN_BAD_OTHER);
    }
    /* text is text: letters and spaces only */
    lm_pattern_page_write(LM_PATTERN_FILL_TEXT, a, 1, 1, 1);
    const char *t = (const char *)(a + 4);
    for (size_t i = 0; i < LM_PATTERN_BODY_SIZE; i++)
        if (!(t[i] == ' ' || (t[i] >= 'a' && t[i] <= 'z')))
            fail_msg("text body byte %zu is 0x%02x", i, (unsigned char)t[i]);
    /* zero starts as all-zero pages (generation 1), and rewritten pages
     * are mostly zero */
    lm_pattern_page_write(LM_PATTERN_FILL_ZERO, a, 1, 1, 1);
    for (size_t i = 0; i < PAGE / 8; i++)
        assert_int_equal(a[i], 0);
    assert_int_equal(lm_pattern_page_check(LM_PATTERN_FILL_ZERO, a, 1, 1,
                                           why, sizeof(why)),
                     LM_PATTERN_GOOD);
    lm_pattern_page_write(LM_PATTERN_FILL_ZERO, a, 1, 2, 1);
    size_t nz = 0;
    for (size_t i = 4; i < PAGE / 8; i++)
        nz += a[i] != 0;
    assert_true(nz >= 1 && nz <= 2);
    assert_int_equal(lm_pattern_page_check(LM_PATTERN_FILL_ZERO, a, 1, 1,
                                           why, sizeof(why)),
                     LM_PATTERN_BAD_OTHER);
}

/* ---- run and verify ----------------------------------------------------- */

static void run_and_verify(const char *spec)
{
    guest *g = guest_new(spec, false);
    assert_verify_ok(g->p);                 /* right after the fill */
    wait_generation(g->p, 2);
    for (int i = 0; i < 3; i++)
        assert_verify_ok(g->p);             /* while it runs */
    lm_pattern_guest_ops()->stop(g->p);
    assert_verify_ok(g->p);
    lm_pattern_guest_ops()->cont(g->p);
    wait_written(g->p, 100);
    assert_verify_ok(g->p);
    guest_free(g);
}

static void test_run_verify_random(void **state)
{
    (void)state;
    run_and_verify("pattern,size=16M,threads=2,dirty-rate=max,fill=random");
}

static void test_run_verify_text(void **state)
{
    (void)state;
    run_and_verify("pattern,size=16M,threads=1,dirty-rate=max,fill=text");
}

static void test_run_verify_zero(void **state)
{
    (void)state;
    run_and_verify("pattern,size=16M,threads=3,dirty-rate=max,fill=zero");
}

/* ---- verify catches damage -------------------------------------------- */

static void test_corrupt_body(void **state)
{
    (void)state;
    guest *g = guest_new("pattern,size=16M,dirty-rate=0", false);
    assert_int_equal(qint(g->p, "generation"), 1);
    assert_int_equal(qidx(g->p, "cursors", 0), 4096);
    uint8_t *pg = page_at(g->p, 1234);
    pg[1000] ^= 0x01;
    assert_verify_bad(g->p, 1234, "checksum");
    pg[1000] ^= 0x01;
    assert_verify_ok(g->p);

    /* a body that is self-consistent but not the pattern: fix the checksum */
    lm_pattern_hdr *h = (lm_pattern_hdr *)pg;
    uint64_t saved = h->checksum;
    pg[2000] ^= 0x80;
    h->checksum = lm_pattern_body_checksum(h + 1);
    assert_verify_bad(g->p, 1234, "differs from the pattern of generation 1 "
                                  "at byte 2000");
    pg[2000] ^= 0x80;
    h->checksum = saved;
    assert_verify_ok(g->p);
    guest_free(g);
}

static void test_corrupt_generation(void **state)
{
    (void)state;
    guest *g = guest_new("pattern,size=16M,dirty-rate=0,fill=text", false);
    lm_pattern_hdr *h = (lm_pattern_hdr *)page_at(g->p, 4000);
    h->generation = 7;
    assert_verify_bad(g->p, 4000, "generation 7, expected 1 (cursor");
    h->generation = 1;
    assert_verify_ok(g->p);
    guest_free(g);
}

static void test_swap_pages(void **state)
{
    (void)state;
    guest *g = guest_new("pattern,size=16M,dirty-rate=0", false);
    static uint8_t tmp[PAGE];
    memcpy(tmp, page_at(g->p, 100), PAGE);
    memcpy(page_at(g->p, 100), page_at(g->p, 3000), PAGE);
    memcpy(page_at(g->p, 3000), tmp, PAGE);
    assert_verify_bad(g->p, 100, "header says page 3000");
    struct json_object *v = verify(g->p), *n;
    assert_true(json_object_object_get_ex(v, "bad-pages", &n));
    assert_int_equal(json_object_get_int64(n), 2);
    json_object_put(v);
    guest_free(g);
}

static void test_lost_page_while_running(void **state)
{
    (void)state;
    /* A running guest stopped by the engine, one page rolled back to its
     * previous generation (a page the migration "lost"). */
    guest *g = guest_new("pattern,size=16M,threads=2,dirty-rate=max", false);
    wait_generation(g->p, 2);
    lm_pattern_guest_ops()->stop(g->p);
    uint64_t c = (uint64_t)qidx(g->p, "cursors", 0);
    /* Stopped right at a generation's start, worker 0 has no newest page
     * in this generation yet: let it write some more. */
    for (int i = 0; i < 100 && c == 0; i++) {
        lm_pattern_guest_ops()->cont(g->p);
        wait_written(g->p, 64);
        lm_pattern_guest_ops()->stop(g->p);
        c = (uint64_t)qidx(g->p, "cursors", 0);
    }
    assert_true(c >= 1);
    uint64_t page = c - 1;                  /* the newest page of worker 0 */
    lm_pattern_hdr *h = (lm_pattern_hdr *)page_at(g->p, page);
    uint64_t gen = h->generation;
    static uint8_t saved[PAGE];
    memcpy(saved, h, PAGE);
    lm_pattern_page_write(LM_PATTERN_FILL_RANDOM, h, page, gen - 1, 1);
    char what[128];
    snprintf(what, sizeof(what), "generation %llu, expected %llu (cursor %llu "
             "of worker 0", (unsigned long long)(gen - 1),
             (unsigned long long)gen, (unsigned long long)c);
    assert_verify_bad(g->p, page, what);
    memcpy(h, saved, PAGE);
    assert_verify_ok(g->p);
    lm_pattern_guest_ops()->cont(g->p);
    guest_free(g);
}

/* ---- stop / pacing / throttle ------------------------------------------- */

static void test_stop_stops(void **state)
{
    (void)state;
    guest *g = guest_new("pattern,size=16M,threads=2,dirty-rate=max", false);
    size_t size;
    uint8_t *ram = lm_pattern_ram(g->p, &size);
    uint8_t *snap = malloc(size);
    assert_non_null(snap);
    for (int round = 0; round < 3; round++) {
        wait_written(g->p, 1000);
        lm_pattern_guest_ops()->stop(g->p);
        assert_false(qbool(g->p, "running"));
        int64_t w0 = qint(g->p, "pages-written");
        memcpy(snap, ram, size);
        sleep_ms(50);
        assert_int_equal(qint(g->p, "pages-written"), w0);
        if (memcmp(snap, ram, size))
            fail_msg("guest RAM changed after stop returned (round %d)",
                     round);
        lm_pattern_guest_ops()->cont(g->p);
        assert_true(qbool(g->p, "running"));
    }
    wait_written(g->p, 1000);
    free(snap);
    guest_free(g);
}

/* One worker on a machine with a CPU to spare parks by spinning and
 * leaves the spin without the lock: a stop that comes right after a cont,
 * while the worker is leaving, must still find it parked before it
 * returns.  Thousands of cont/stop pairs, each checked for a write after
 * stop returned. */
static void test_stop_right_after_cont(void **state)
{
    (void)state;
    guest *g = guest_new("pattern,size=1M,threads=1,dirty-rate=max", false);
    size_t size;
    uint8_t *ram = lm_pattern_ram(g->p, &size);
    uint8_t *snap = malloc(size);
    assert_non_null(snap);
    wait_written(g->p, 1000);
    const livemig_guest_ops *ops = lm_pattern_guest_ops();
    double t0 = now_s();
    for (int i = 0; i < 4000 && now_s() - t0 < 20; i++) {
        ops->stop(g->p);
        int64_t w0 = qint(g->p, "pages-written");
        memcpy(snap, ram, size);
        int64_t w1 = qint(g->p, "pages-written");
        if (w1 != w0 || memcmp(snap, ram, size))
            fail_msg("the worker wrote after stop returned (pair %d)", i);
        ops->cont(g->p);
        /* Vary where the next stop lands: at once, or after a few
         * pages. */
        for (int k = i % 7 * 50; k > 0; k--)
            __asm__ volatile("" ::: "memory");
    }
    wait_written(g->p, 1000);
    free(snap);
    guest_free(g);
}

static double measure_rate(lm_pattern *p, unsigned ms)
{
    int64_t w0 = qint(p, "pages-written");
    double t0 = now_s();
    sleep_ms(ms);
    int64_t w1 = qint(p, "pages-written");
    return (double)(w1 - w0) * PAGE / (now_s() - t0);
}

static void test_pacing(void **state)
{
    (void)state;
    /* 8 MiB/s over two workers */
    guest *g = guest_new("pattern,size=16M,threads=2,dirty-rate=8M", false);
    sleep_ms(100);
    double r = measure_rate(g->p, 1000);
    double want = 8.0 * 1024 * 1024;
    if (r < 0.6 * want || r > 1.3 * want)
        fail_msg("dirty-rate=8M wrote %.2f MiB/s", r / 1048576);
    assert_verify_ok(g->p);
    guest_free(g);

    /* 0: nothing is written after the fill */
    g = guest_new("pattern,size=16M,threads=2,dirty-rate=0", false);
    int64_t w0 = qint(g->p, "pages-written");
    assert_int_equal(w0, 4096);
    sleep_ms(100);
    assert_int_equal(qint(g->p, "pages-written"), w0);
    guest_free(g);
}

static void test_throttle(void **state)
{
    (void)state;
    guest *g = guest_new("pattern,size=16M,threads=1,dirty-rate=max", false);
    double full = measure_rate(g->p, 300);
    lm_pattern_guest_ops()->throttle(g->p, 90);
    assert_int_equal(qint(g->p, "throttle-percentage"), 90);
    sleep_ms(20);
    double slow = measure_rate(g->p, 300);
    if (slow > 0.35 * full)
        fail_msg("throttle 90%%: %.0f MB/s vs %.0f MB/s unthrottled",
                 slow / 1e6, full / 1e6);
    lm_pattern_guest_ops()->throttle(g->p, 0);
    assert_verify_ok(g->p);
    guest_free(g);
}

/* A worker kept from running (here: blocked writing an output to a full
 * FIFO) did no work: once it runs again, a 99 % throttle must slow it to
 * about 1 %, not put it to sleep for 99 times the wall time it lost.
 * The drain's state is static: a failing assertion leaves this frame
 * while the thread may still run. */
static struct {
    int fd;
    atomic_int stop;
} drain;

static void *drain_main(void *arg)
{
    (void)arg;
    char buf[4096];
    while (!atomic_load(&drain.stop))
        if (read(drain.fd, buf, sizeof(buf)) <= 0)
            sleep_ms(1);
    return NULL;
}

static void test_throttle_after_blocked(void **state)
{
    (void)state;
    char fifo[64], spec[160];
    snprintf(fifo, sizeof(fifo), "/tmp/livemig-test-outputs-%d", getpid());
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    int pipe_size = fcntl(rfd, F_GETPIPE_SZ);
    assert_true(pipe_size > 0);
    snprintf(spec, sizeof(spec), "pattern,size=16M,threads=1,dirty-rate=max,"
             "outputs=%s", fifo);
    guest *g = guest_new(spec, false);
    unlink(fifo);   /* both ends are open */
    /* Nobody reads: the FIFO fills and the worker blocks in write (a
     * pipe's pages take whole lines, so "full" leaves up to a line of
     * room in each of them) and writes no more pages. */
    int queued = 0;
    int64_t before = -1, now = 0;
    for (int i = 0; i < WAIT_MS / 20; i++) {
        sleep_ms(20);
        assert_int_equal(ioctl(rfd, FIONREAD, &queued), 0);
        now = qint(g->p, "pages-written");
        if (queued >= pipe_size - 4096 && now == before)
            break;
        before = now;
    }
    assert_true(queued >= pipe_size - 4096 && now == before);
    lm_pattern_guest_ops()->throttle(g->p, 99);
    sleep_ms(1000);   /* the wall time the worker loses, blocked */
    int64_t w0 = qint(g->p, "pages-written");
    drain.fd = rfd;
    atomic_store(&drain.stop, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain_main, NULL), 0);
    /* At 1 % of its speed it still writes thousands of pages a second;
     * charged for the blocked second it would sleep 99 s. */
    int64_t w = w0;
    for (int i = 0; i < WAIT_MS && w < w0 + 2000; i++) {
        sleep_ms(1);
        w = qint(g->p, "pages-written");
    }
    lm_pattern_guest_ops()->throttle(g->p, 0);
    lm_pattern_halt(g->p);
    atomic_store(&drain.stop, 1);
    pthread_join(t, NULL);
    guest_free(g);
    close(rfd);
    if (w < w0 + 2000)
        fail_msg("throttled to 99 %% after being blocked for 1 s, the "
                 "guest wrote %lld pages in %d ms (at 1 %% of its speed it "
                 "writes thousands a second)", (long long)(w - w0), WAIT_MS);
}

/* ---- state section: a migration by hand --------------------------------- */

static void save_state(lm_pattern *p, livemig_buf *out)
{
    livemig_error err = { 0 };
    if (!lm_pattern_section_ops()->save(p, out, &err))
        fail_msg("save: %s", err.desc);
}

static bool load_state(lm_pattern *p, uint32_t version, const livemig_buf *b,
                       size_t len, livemig_error *err)
{
    livemig_cursor c = { b->p, len, 0 };
    return lm_pattern_section_ops()->load(p, version, &c, err);
}

static void copy_ram(lm_pattern *dst, lm_pattern *src)
{
    size_t ds, ss;
    void *d = lm_pattern_ram(dst, &ds), *s = lm_pattern_ram(src, &ss);
    assert_int_equal(ds, ss);
    memcpy(d, s, ss);
}

static void test_section_migrate(void **state)
{
    (void)state;
    const char *spec = "pattern,size=16M,threads=2,dirty-rate=32M";
    guest *src = guest_new(spec, false);
    guest *dst = guest_new(spec, true);
    assert_false(qhas(dst->p, "resumed-from"));
    assert_false(qbool(dst->p, "running"));

    wait_generation(src->p, 2);
    lm_pattern_guest_ops()->stop(src->p);   /* switchover */
    livemig_buf b = LM_BUF_INIT;
    save_state(src->p, &b);
    copy_ram(dst->p, src->p);
    int64_t src_written = qint(src->p, "pages-written");
    int64_t src_gen = qint(src->p, "generation");
    int64_t src_gen0 = qidx(src->p, "generations", 0);
    int64_t src_cur0 = qidx(src->p, "cursors", 0);
    assert_true(src_gen >= 2);
    livemig_error err = { 0 };
    if (!load_state(dst->p, LM_PATTERN_SECTION_VERSION, &b, b.len, &err))
        fail_msg("load: %s", err.desc);
    assert_verify_ok(dst->p);
    assert_int_equal(qint(dst->p, "pages-written"), src_written);
    assert_int_equal(qint(dst->p, "generation"), src_gen);
    sleep_ms(20);                           /* the "downtime" */
    lm_pattern_guest_ops()->cont(dst->p);
    wait_written(dst->p, 200);
    assert_verify_ok(dst->p);
    assert_true(qint(dst->p, "pages-written") > src_written);

    assert_true(qbool(dst->p, "running"));
    struct json_object *q = lm_pattern_query(dst->p), *r, *gap;
    assert_true(json_object_object_get_ex(q, "resumed-from", &r));
    assert_int_equal(json_object_get_int64(
                         json_object_object_get(r, "generation")), src_gen0);
    assert_int_equal(json_object_get_int64(
                         json_object_object_get(r, "cursor")), src_cur0);
    assert_true(json_object_object_get_ex(q, "migration-write-gap-us", &gap));
    int64_t gap_us = json_object_get_int64(gap);
    if (gap_us < 20000 || gap_us > 5000000)
        fail_msg("migration-write-gap-us %lld, expected >= 20 ms",
                 (long long)gap_us);
    assert_true(qint(dst->p, "max-write-gap-us") >= gap_us);
    json_object_put(q);

    /* the source, resumed (a failed migration), is fine too */
    lm_pattern_guest_ops()->cont(src->p);
    wait_written(src->p, 200);
    assert_verify_ok(src->p);
    lm_buf_release(&b);
    guest_free(src);
    guest_free(dst);
}

static void expect_load_error(lm_pattern *p, uint32_t version,
                              const livemig_buf *b, size_t len,
                              const char *msg)
{
    livemig_error err = { 0 };
    if (load_state(p, version, b, len, &err))
        fail_msg("load accepted a bad state (expected '%s')", msg);
    if (!strstr(err.desc, msg))
        fail_msg("load error '%s' lacks '%s'", err.desc, msg);
}

static void test_section_mismatch(void **state)
{
    (void)state;
    guest *src = guest_new("pattern,size=16M,threads=2,dirty-rate=0", false);
    livemig_buf b = LM_BUF_INIT;
    save_state(src->p, &b);

    guest *d = guest_new("pattern,size=32M,threads=2", true);
    expect_load_error(d->p, 2, &b, b.len, "the source has 4096 pages "
                      "(size=16M), this guest 8192 pages (size=32M)");
    guest_free(d);

    d = guest_new("pattern,size=16M,threads=2", true);
    expect_load_error(d->p, 3, &b, b.len, "state version 3 is not supported");
    for (size_t len = 0; len < b.len; len += 7)
        expect_load_error(d->p, 2, &b, len, "truncated");
    livemig_buf_put_u32(&b, 0);
    expect_load_error(d->p, 2, &b, b.len, "4 unexpected bytes");
    /* a cursor beyond the slice (the last worker's, before the rate) */
    b.len -= 4;
    uint8_t saved[8];
    memcpy(saved, b.p + b.len - 16, 8);
    lm_put_be64(b.p + b.len - 16, 5000);
    expect_load_error(d->p, 2, &b, b.len, "invalid state of worker 1");
    memcpy(b.p + b.len - 16, saved, 8);
    /* a worker count this guest cannot run */
    lm_put_be32(b.p + 16, 65);
    expect_load_error(d->p, 2, &b, b.len, "the source runs threads=65");
    lm_put_be32(b.p + 16, 2);
    assert_false(qhas(d->p, "resumed-from"));
    guest_free(d);
    lm_buf_release(&b);
    guest_free(src);
}

/* The state must belong to the RAM that arrived: a generation, cursor or
 * pages-written count the pages do not bear out is refused. */
static void test_section_checked_against_ram(void **state)
{
    (void)state;
    const char *spec = "pattern,size=16M,threads=2,dirty-rate=32M";
    guest *src = guest_new(spec, false);
    wait_generation(src->p, 2);
    lm_pattern_guest_ops()->stop(src->p);
    livemig_buf b = LM_BUF_INIT;
    save_state(src->p, &b);
    guest *d = guest_new(spec, true);
    /* Layout: page size, pages, threads|fill, written, last, max gap,
     * then (generation, cursor) per worker. */
    const size_t written = 24, gen0 = 48, cur0 = 56;
    uint64_t slice0 = 16u * 1024 * 1024 / 4096 / 2;

    /* RAM never arrived: the pages around the cursor are not there. */
    expect_load_error(d->p, LM_PATTERN_SECTION_VERSION, &b, b.len, "does not match the RAM that "
                      "arrived");
    copy_ram(d->p, src->p);

    livemig_buf e = LM_BUF_INIT;
    livemig_buf_put(&e, b.p, b.len);
    lm_put_be64(e.p + written, lm_get_be64(b.p + written) + 1);
    expect_load_error(d->p, LM_PATTERN_SECTION_VERSION, &e, e.len, "pages written, but its workers' "
                      "generations and cursors mean");
    /* One generation on, pages-written to match: only RAM can tell. */
    memcpy(e.p, b.p, b.len);
    lm_put_be64(e.p + gen0, lm_get_be64(b.p + gen0) + 1);
    lm_put_be64(e.p + written, lm_get_be64(b.p + written) + slice0);
    expect_load_error(d->p, LM_PATTERN_SECTION_VERSION, &e, e.len, "worker 0's state in the stream");
    /* The cursor moved back by one page. */
    memcpy(e.p, b.p, b.len);
    uint64_t c = lm_get_be64(b.p + cur0);
    if (c >= 2) {
        lm_put_be64(e.p + cur0, c - 1);
        lm_put_be64(e.p + written, lm_get_be64(b.p + written) - 1);
        expect_load_error(d->p, LM_PATTERN_SECTION_VERSION, &e, e.len, "does not match the RAM");
    }
    /* A generation that overflows the count. */
    memcpy(e.p, b.p, b.len);
    lm_put_be64(e.p + gen0, UINT64_MAX);
    expect_load_error(d->p, LM_PATTERN_SECTION_VERSION, &e, e.len, "the state section 'pattern' is "
                      "corrupt");
    assert_false(qhas(d->p, "resumed-from"));

    livemig_error err = { 0 };
    if (!load_state(d->p, LM_PATTERN_SECTION_VERSION, &b, b.len, &err))
        fail_msg("the untouched state did not load: %s", err.desc);
    assert_verify_ok(d->p);
    lm_buf_release(&e);
    lm_buf_release(&b);
    guest_free(d);
    guest_free(src);
}

static const char *qstr(lm_pattern *p, const char *key, char *buf, size_t len)
{
    struct json_object *q = lm_pattern_query(p), *v;
    if (!json_object_object_get_ex(q, key, &v))
        fail_msg("query-guest has no '%s'", key);
    snprintf(buf, len, "%s", json_object_get_string(v));
    json_object_put(q);
    return buf;
}

/* The workload is the source's: a destination started with other threads,
 * fill and dirty rate runs on as the source did, and verifies. */
static void test_section_takes_over_workload(void **state)
{
    (void)state;
    guest *src = guest_new("pattern,size=16M,threads=2,dirty-rate=32M,"
                           "fill=text", false);
    guest *dst = guest_new("pattern,size=16M,threads=3,dirty-rate=0,"
                           "fill=zero", true);
    wait_generation(src->p, 2);
    lm_pattern_guest_ops()->stop(src->p);
    livemig_buf b = LM_BUF_INIT;
    save_state(src->p, &b);
    copy_ram(dst->p, src->p);
    int64_t written = qint(src->p, "pages-written");
    livemig_error err = { 0 };
    if (!load_state(dst->p, LM_PATTERN_SECTION_VERSION, &b, b.len, &err))
        fail_msg("load: %s", err.desc);
    char buf[64];
    assert_int_equal(qint(dst->p, "threads"), 2);
    assert_string_equal(qstr(dst->p, "fill", buf, sizeof(buf)), "text");
    assert_int_equal(qint(dst->p, "dirty-rate"), 32 << 20);
    assert_int_equal(qint(dst->p, "pages-written"), written);
    assert_verify_ok(dst->p);
    lm_pattern_guest_ops()->cont(dst->p);
    wait_written(dst->p, 500);
    assert_verify_ok(dst->p);

    /* a version 1 state (no rate) keeps the destination's own rate */
    guest *old = guest_new("pattern,size=16M,threads=2,dirty-rate=0,"
                           "fill=text", true);
    copy_ram(old->p, src->p);
    if (!load_state(old->p, 1, &b, b.len - 8, &err))
        fail_msg("load of a version 1 state: %s", err.desc);
    assert_int_equal(qint(old->p, "dirty-rate"), 0);
    assert_verify_ok(old->p);
    guest_free(old);
    lm_buf_release(&b);
    guest_free(src);
    guest_free(dst);
}

/* ---- engine integration -------------------------------------------------- */

static void test_manual_tracker_marks(void **state)
{
    (void)state;
    guest *g = guest_new_tracker("pattern,size=16M,threads=2,dirty-rate=max",
                                 false, LIVEMIG_TRACKER_MANUAL);
    livemig_ram *block = lm_pattern_block(g->p);
    assert_non_null(block);
    assert_int_equal(livemig_ram_tracker(block), LIVEMIG_TRACKER_MANUAL);
    uint64_t *bm = livemig_ram_manual_bitmap(block);
    assert_non_null(bm);
    wait_written(g->p, 5000);
    lm_pattern_guest_ops()->stop(g->p);
    /* every page was written (fill, then the workers): all marked */
    size_t pages = (size_t)qint(g->p, "pages");
    for (size_t i = 0; i < pages; i++)
        if (!(bm[i / 64] >> (i % 64) & 1))
            fail_msg("page %zu was written but is not marked dirty", i);
    lm_pattern_guest_ops()->cont(g->p);
    guest_free(g);
}

static bool wait_status(livemig *lm, livemig_status want, int ms)
{
    for (int i = 0; i < ms / 10 && livemig_get_status(lm) != want; i++)
        sleep_ms(10);
    return livemig_get_status(lm) == want;
}

/* The real thing, in one process: the engine migrates a dirtying pattern
 * guest over a UNIX socket; the destination verifies, measured the gap,
 * and keeps running. */
static void test_engine_migrate(void **state)
{
    (void)state;
    const char *spec = "pattern,size=16M,threads=2,dirty-rate=16M";
    guest *src = guest_new(spec, false);
    guest *dst = guest_new(spec, true);
    assert_int_equal(livemig_vm_runstate(dst->lm), LIVEMIG_RUN_INMIGRATE);
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:/tmp/lm-test-pattern-%d.sock",
             (int)getpid());
    livemig_error err = { 0 };
    if (!livemig_incoming(dst->lm, uri, &err))
        fail_msg("incoming: %s", err.desc);
    wait_written(src->p, 1000);
    if (!livemig_migrate(src->lm, uri, &err))
        fail_msg("migrate: %s", err.desc);
    if (!wait_status(src->lm, LIVEMIG_STATUS_COMPLETED, 30000) ||
        !wait_status(dst->lm, LIVEMIG_STATUS_COMPLETED, 30000)) {
        struct json_object *q = livemig_query_migrate(src->lm);
        fail_msg("migration did not complete: %s",
                 json_object_to_json_string(q));
    }
    assert_int_equal(livemig_vm_runstate(dst->lm), LIVEMIG_RUN_RUNNING);
    assert_verify_ok(src->p);               /* stopped source: final state */
    assert_verify_ok(dst->p);
    int64_t src_written = qint(src->p, "pages-written");
    wait_written(dst->p, 500);
    assert_verify_ok(dst->p);
    assert_true(qint(dst->p, "pages-written") > src_written);
    assert_true(qhas(dst->p, "resumed-from"));
    assert_true(qhas(dst->p, "migration-write-gap-us"));
    guest_free(src);
    guest_free(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_defaults),
        cmocka_unit_test(test_spec_good),
        cmocka_unit_test(test_spec_bad),
        cmocka_unit_test(test_page_format),
        cmocka_unit_test(test_run_verify_random),
        cmocka_unit_test(test_run_verify_text),
        cmocka_unit_test(test_run_verify_zero),
        cmocka_unit_test(test_corrupt_body),
        cmocka_unit_test(test_corrupt_generation),
        cmocka_unit_test(test_swap_pages),
        cmocka_unit_test(test_lost_page_while_running),
        cmocka_unit_test(test_stop_stops),
        cmocka_unit_test(test_stop_right_after_cont),
        cmocka_unit_test(test_pacing),
        cmocka_unit_test(test_throttle),
        cmocka_unit_test(test_throttle_after_blocked),
        cmocka_unit_test(test_section_migrate),
        cmocka_unit_test(test_section_mismatch),
        cmocka_unit_test(test_section_checked_against_ram),
        cmocka_unit_test(test_section_takes_over_workload),
        cmocka_unit_test(test_manual_tracker_marks),
        cmocka_unit_test(test_engine_migrate),
    };
    return cmocka_run_group_tests_name("guest-pattern", tests, NULL, NULL);
}
