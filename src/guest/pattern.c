/*
 * pattern.c - the pattern guest: RAM, workers, guest ops, state section,
 * query-guest and guest-verify.  The page format is in pattern-page.c, the
 * spec parser in pattern-spec.c.
 *
 * Threads and what they own:
 *   - workers (threads=N, none with dirty-rate=0): worker w alone writes the
 *     pages of its slice and its (generation, cursor, written); it publishes
 *     them with relaxed atomics for query-guest.  It checks p->pause_req
 *     before every page and parks on p->wake when it is set.
 *   - fill / verify helpers: short-lived threads over page ranges, started
 *     while no worker writes.
 *   - everything else (engine threads calling ops and sections, the monitor
 *     calling query / verify): take p->lock for the control state.
 *
 * Control state (protected by p->lock): engine_stopped (guest op stop/cont),
 * holds (guest-verify holding the workers), quit (lm_pattern_halt), retire
 * (a reshape).  parked (atomic) counts the workers that write nothing
 * until released: waiting on p->wake, spinning in worker_park(), or in a
 * pacing / throttle sleep.  pause_req mirrors
 * "engine_stopped || holds || quit || retire" for the workers' lock-free
 * check.
 * Stopping = set the flag, then wait until every worker parked (spinning
 * first, then on p->parked_cv).  A worker in a pacing or throttle sleep
 * counts as parked: it wrote nothing since it counted itself, and the
 * pause keeps it asleep.  Releasing broadcasts p->wake.  The parked count's
 * release/acquire orders every store of a worker before the stopper
 * returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "guest/pattern-int.h"

#define PAGE LM_PATTERN_PAGE_SIZE
#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull
#define NS_PER_US 1000ull
#define PACE_SLEEP_NS NS_PER_MS        /* sleep granularity of pacing */
#define PACE_BURST_NS (10 * NS_PER_MS) /* catch-up allowed after a stall */
#define PARK_SPIN_NS NS_PER_MS        /* a parked worker spins this long */
#define THROTTLE_SLICE_NS NS_PER_MS    /* run this long, then sleep */
#define MAX_HELPERS 8                  /* fill / verify threads */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static struct timespec ns_to_ts(uint64_t ns)
{
    struct timespec ts = { .tv_sec = (time_t)(ns / NS_PER_S),
                           .tv_nsec = (long)(ns % NS_PER_S) };
    return ts;
}

/* ---- control ------------------------------------------------------------ */

static bool paused_locked(const lm_pattern *p)
{
    return p->engine_stopped || p->holds || p->quit || p->retire;
}

static void update_pause_locked(lm_pattern *p)
{
    bool paused = paused_locked(p);
    atomic_store_explicit(&p->pause_req, paused, memory_order_release);
    /* The request before the stopper reads the parked count: see
     * worker_park(). */
    atomic_thread_fence(memory_order_seq_cst);
    /* A pause needs no wake-up: a worker notices it within a page, and a
     * sleeping one counts as parked already.  A release wakes the parked
     * workers only: a pacing or throttle sleep goes on to its deadline.
     * Waking a thread costs the waker an IPI to an idle CPU here, tens of
     * us, and a checkpoint pauses and releases the guest ten times a
     * second. */
    if (!paused)
        pthread_cond_broadcast(&p->wake);
    if (p->quit || p->retire) {
        pthread_cond_broadcast(&p->wake);
        pthread_cond_broadcast(&p->sleep_cv);
    }
}

/* Wait until every worker parked.  Called with p->lock held and the pause
 * requested. */
static void wait_parked_locked(lm_pattern *p)
{
    while (__atomic_load_n(&p->parked, __ATOMIC_ACQUIRE) < p->nworkers_started)
        pthread_cond_wait(&p->parked_cv, &p->lock);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spin (unlocked) for at most @ns until every worker parked: a worker
 * notices the request within one page write, and sleeping to be woken
 * costs the stopper tens of us here (a checkpoint pause is a few).  The
 * acquire pairs with the worker's release of its parked count, which
 * orders its stores before ours. */
static bool spin_parked(lm_pattern *p, uint64_t ns)
{
    uint64_t end = now_ns() + ns;
    do {
        for (int i = 0; i < 64; i++) {
            if (__atomic_load_n(&p->parked, __ATOMIC_ACQUIRE) >=
                p->nworkers_started)
                return true;
            cpu_relax();
        }
    } while (now_ns() < end);
    return false;
}

/* Park until released.  Returns false when the worker must exit.
 * With @spin, it first spins through a checkpoint's pause (up to a
 * millisecond), so neither side makes a system call for it.  Leaving the
 * spin is lock-free: our decrement and a stopper's request are ordered as
 * in Dekker's algorithm (seq_cst on both sides), so a stopper that still
 * counted us parked made a request that our caller's next check of
 * pause_req sees; the caller checks again before it writes a page. */
static bool worker_park(lm_pattern *p, bool spin)
{
    pthread_mutex_lock(&p->lock);
    __atomic_add_fetch(&p->parked, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->parked_cv);
    if (spin) {
        pthread_mutex_unlock(&p->lock);
        uint64_t end = now_ns() + PARK_SPIN_NS;
        do {
            for (int i = 0; i < 64; i++) {
                if (!atomic_load_explicit(&p->pause_req,
                                          memory_order_acquire)) {
                    __atomic_sub_fetch(&p->parked, 1, __ATOMIC_SEQ_CST);
                    atomic_thread_fence(memory_order_seq_cst);
                    return true;
                }
                cpu_relax();
            }
        } while (now_ns() < end);
        pthread_mutex_lock(&p->lock);
    }
    while (paused_locked(p) && !p->quit && !p->retire)
        pthread_cond_wait(&p->wake, &p->lock);
    __atomic_sub_fetch(&p->parked, 1, __ATOMIC_RELAXED);
    bool quit = p->quit || p->retire;
    pthread_mutex_unlock(&p->lock);
    return !quit;
}

/* Sleep until @deadline (CLOCK_MONOTONIC ns).  A sleeping worker writes
 * nothing, so it counts as parked: a stopper need not wake it and wait
 * for it to be scheduled (tens of us on this VM).  A pause that comes
 * meanwhile keeps it here until released. */
static void worker_sleep_until(lm_pattern *p, uint64_t deadline)
{
    struct timespec ts = ns_to_ts(deadline);
    pthread_mutex_lock(&p->lock);
    __atomic_add_fetch(&p->parked, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->parked_cv);
    while (!p->quit && !p->retire) {
        if (paused_locked(p))
            pthread_cond_wait(&p->wake, &p->lock);
        else if (now_ns() >= deadline ||
                 pthread_cond_timedwait(&p->sleep_cv, &p->lock, &ts) ==
                     ETIMEDOUT)
            if (!paused_locked(p))
                break;
    }
    __atomic_sub_fetch(&p->parked, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&p->lock);
}

static void op_stop(void *opaque)
{
    lm_pattern *p = opaque;
    pthread_mutex_lock(&p->lock);
    p->engine_stopped = true;
    update_pause_locked(p);
    pthread_mutex_unlock(&p->lock);
    if (spin_parked(p, 200 * 1000))
        return;
    /* A worker that sleeps (pacing, throttle) takes longer: block. */
    pthread_mutex_lock(&p->lock);
    wait_parked_locked(p);
    pthread_mutex_unlock(&p->lock);
}

static void op_cont(void *opaque)
{
    lm_pattern *p = opaque;
    pthread_mutex_lock(&p->lock);
    p->engine_stopped = false;
    update_pause_locked(p);
    pthread_mutex_unlock(&p->lock);
}

static void op_throttle(void *opaque, unsigned percent)
{
    lm_pattern *p = opaque;
    atomic_store(&p->throttle, percent > 99 ? 99 : percent);
}

static const livemig_guest_ops pattern_guest_ops = {
    .stop = op_stop, .cont = op_cont, .throttle = op_throttle,
};

const livemig_guest_ops *lm_pattern_guest_ops(void)
{
    return &pattern_guest_ops;
}

/* Hold the workers (guest-verify).  Returns whether the guest was running
 * (so the hold is a pause the workload should not be charged for). */
static bool hold_begin(lm_pattern *p)
{
    pthread_mutex_lock(&p->lock);
    bool running = !p->engine_stopped;
    p->holds++;
    update_pause_locked(p);
    wait_parked_locked(p);
    pthread_mutex_unlock(&p->lock);
    return running;
}

static void hold_end(lm_pattern *p, bool was_running, uint64_t held_ns)
{
    pthread_mutex_lock(&p->lock);
    p->holds--;
    /* Do not count the verify's own pause as a gap of the workload. */
    if (was_running && !p->engine_stopped)
        atomic_fetch_add(&p->last_write_ns, held_ns);
    update_pause_locked(p);
    pthread_mutex_unlock(&p->lock);
}

/* ---- workers -------------------------------------------------------------- */

/* Account one page write at @now: the gap since the guest's previous write
 * (of any worker), and the gap across an incoming migration. */
static void note_write(lm_pattern *p, uint64_t now)
{
    uint64_t prev = atomic_exchange_explicit(&p->last_write_ns, now,
                                             memory_order_relaxed);
    uint64_t gap = now > prev ? now - prev : 0;
    uint64_t max = atomic_load_explicit(&p->max_gap_ns, memory_order_relaxed);
    while (gap > max &&
           !atomic_compare_exchange_weak_explicit(&p->max_gap_ns, &max, gap,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    if (atomic_load_explicit(&p->gap_pending, memory_order_relaxed) &&
        atomic_exchange(&p->gap_pending, false))
        atomic_store(&p->migration_gap_ns, gap);
}

/* Every OUTPUT_EVERY pages a worker tells the outside world where it is,
 * through the engine's output commit: the line reaches the outputs file
 * only once the state behind it is safe on the backup. */
#define OUTPUT_EVERY 256

static void emit_output(lm_pattern *p, pattern_worker *w, uint64_t gen,
                        uint64_t cursor)
{
    char line[128];
    int n = p->spec.threads > 1
        ? snprintf(line, sizeof(line), "{\"worker\": %u, \"generation\": "
                   "%llu, \"cursor\": %llu}\n", w->idx,
                   (unsigned long long)gen, (unsigned long long)cursor)
        : snprintf(line, sizeof(line), "{\"generation\": %llu, "
                   "\"cursor\": %llu}\n", (unsigned long long)gen,
                   (unsigned long long)cursor);
    if (p->lm)
        livemig_output_write(p->lm, p->outputs_fd, line, (size_t)n, NULL);
    else if (write(p->outputs_fd, line, (size_t)n) < 0)
        return;   /* the outside world is gone; the guest runs on */
}

static void *worker_main(void *arg)
{
    pattern_worker *w = arg;
    lm_pattern *p = w->p;
    lm_pattern_fill fill = p->spec.fill;
    uint64_t rate = p->spec.dirty_rate;
    bool paced = rate != LM_PATTERN_RATE_MAX;
    uint64_t cost = 1;                 /* ns per page at this worker's rate */
    if (paced) {
        double per_worker = (double)rate / p->spec.threads;
        double c = (double)PAGE * (double)NS_PER_S / per_worker;
        cost = c < 1 ? 1 : c > 1e15 ? (uint64_t)1e15 : (uint64_t)c;
    }
    uint64_t start = now_ns();
    uint64_t next = start, busy_start = start, busy_cpu = thread_cpu_ns();
    uint64_t written = atomic_load(&w->written);
    /* Spin when parked only if that leaves the stopper a CPU, and only
     * with the manual tracker: the others re-protect pages in the pause,
     * and a CPU that runs a spinning worker must take the TLB-flush IPIs
     * (DESIGN.md: block the workload there). */
    cpu_set_t cpus;
    int ncpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0
                   ? CPU_COUNT(&cpus) : 1;
    bool spin = p->bitmap && p->spec.threads < (unsigned)ncpu;

    for (;;) {
        if (atomic_load_explicit(&p->pause_req, memory_order_acquire)) {
            if (!worker_park(p, spin))
                break;
            next = busy_start = now_ns();
            busy_cpu = thread_cpu_ns();
            continue;   /* check again before writing: see worker_park() */
        }
        uint64_t now = now_ns();
        if (paced) {
            if (next > now + PACE_SLEEP_NS) {
                worker_sleep_until(p, next);
                busy_start = now_ns();
                continue;
            }
            if (next + PACE_BURST_NS < now)
                next = now - PACE_BURST_NS;
        }

        uint64_t c = atomic_load_explicit(&w->cursor, memory_order_relaxed);
        uint64_t g = atomic_load_explicit(&w->generation,
                                          memory_order_relaxed);
        if (c >= w->npages) {
            c = 0;
            g++;
        }
        uint64_t page = w->first + c;
        lm_pattern_page_write(fill, p->host + page * PAGE, page, g, now);
        if (p->bitmap)
            livemig_dirty_mark(p->bitmap, page);
        atomic_store_explicit(&w->generation, g, memory_order_relaxed);
        atomic_store_explicit(&w->cursor, c + 1, memory_order_relaxed);
        atomic_store_explicit(&w->written, ++written, memory_order_relaxed);
        note_write(p, now);
        if (p->outputs_fd >= 0 && written % OUTPUT_EVERY == 0)
            emit_output(p, w, g, c + 1);
        /* Throttled to (100 - t) % of its speed: a paced guest's speed is
         * its dirty-rate, so each page costs 100 / (100 - t) times as
         * long; an unpaced one sleeps t/(100-t) of the time it worked. */
        unsigned t = atomic_load_explicit(&p->throttle, memory_order_relaxed);
        next += t && paced ? cost * 100 / (100 - t) : cost;
        if (!paced) {
            /* The sleep weighs the CPU time this slice took, not the
             * wall time: a worker preempted or blocked for a while (a
             * busy machine, a long checkpoint) did no work meanwhile,
             * and counting it made a 99 % throttle sleep for minutes. */
            if (now - busy_start >= THROTTLE_SLICE_NS) {
                uint64_t cpu = thread_cpu_ns();
                if (t)
                    worker_sleep_until(p, now_ns() + (cpu - busy_cpu) * t /
                                                         (100 - t));
                busy_start = t ? now_ns() : now;
                busy_cpu = t ? thread_cpu_ns() : cpu;
            }
        }
    }
    return NULL;
}

/* ---- helpers over page ranges (fill, verify) ------------------------------ */

/* Worker state as guest-verify sees it, taken with the workers parked. */
typedef struct worker_snap {
    uint64_t first, npages, generation, cursor;
} worker_snap;

typedef struct range_job {
    lm_pattern *p;
    uint64_t begin, end;
    const worker_snap *snap;           /* verify */
    lm_pattern_fill fill;
    uint64_t first_bad;                /* verify: UINT64_MAX if none */
    uint64_t bad;
    char why[320];
} range_job;

static unsigned helper_count(uint64_t npages)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned k = n < 1 ? 1 : n > MAX_HELPERS ? MAX_HELPERS : (unsigned)n;
    uint64_t by_size = npages / 4096 + 1;   /* 16 MiB or more per helper */
    return by_size < k ? (unsigned)by_size : k;
}

/* Run @fn over [0, npages) split across helper threads; the calling thread
 * takes the first range.  @jobs has MAX_HELPERS entries. */
static unsigned run_ranges(lm_pattern *p, void *(*fn)(void *),
                           range_job *jobs, const worker_snap *snap,
                           lm_pattern_fill fill)
{
    unsigned k = helper_count(p->npages);
    pthread_t tids[MAX_HELPERS];
    bool started[MAX_HELPERS] = { false };
    for (unsigned i = 0; i < k; i++) {
        jobs[i] = (range_job){ .p = p, .begin = p->npages * i / k,
                               .end = p->npages * (i + 1) / k,
                               .snap = snap, .fill = fill,
                               .first_bad = UINT64_MAX };
    }
    for (unsigned i = 1; i < k; i++)
        started[i] = pthread_create(&tids[i], NULL, fn, &jobs[i]) == 0;
    fn(&jobs[0]);
    for (unsigned i = 1; i < k; i++) {
        if (started[i])
            pthread_join(tids[i], NULL);
        else
            fn(&jobs[i]);              /* could not start one: do it here */
    }
    return k;
}

static void *fill_range(void *arg)
{
    range_job *j = arg;
    lm_pattern *p = j->p;
    for (uint64_t i = j->begin; i < j->end; i++) {
        lm_pattern_page_write(j->fill, p->host + i * PAGE, i, 1,
                              now_ns());
        if (p->bitmap)
            livemig_dirty_mark(p->bitmap, i);
    }
    return NULL;
}

static void *verify_range(void *arg)
{
    range_job *j = arg;
    lm_pattern *p = j->p;
    unsigned w = 0;
    char why[256];
    for (uint64_t i = j->begin; i < j->end; i++) {
        while (i >= j->snap[w].first + j->snap[w].npages)
            w++;
        const worker_snap *s = &j->snap[w];
        uint64_t off = i - s->first;
        uint64_t gen = off < s->cursor ? s->generation : s->generation - 1;
        int r = lm_pattern_page_check(j->fill, p->host + i * PAGE, i,
                                      gen, why, sizeof(why));
        if (r == LM_PATTERN_GOOD)
            continue;
        if (!j->bad++) {
            j->first_bad = i;
            if (r == LM_PATTERN_BAD_GENERATION)
                snprintf(j->why, sizeof(j->why), "%s (cursor %" PRIu64
                         " of worker %u, generation %" PRIu64 ")", why,
                         s->first + s->cursor, w, s->generation);
            else
                snprintf(j->why, sizeof(j->why), "%s", why);
        }
    }
    return NULL;
}

/* ---- query and verify ----------------------------------------------------- */

/* The workers' positions and the guest's shape, consistent with a
 * reshape by an incoming state (which changes them under p->lock).
 * Returns the number of workers. */
static unsigned take_snap(lm_pattern *p, worker_snap *snap,
                          lm_pattern_fill *fill)
{
    pthread_mutex_lock(&p->lock);
    unsigned n = p->spec.threads;
    if (fill)
        *fill = p->spec.fill;
    for (unsigned i = 0; i < n; i++) {
        pattern_worker *w = &p->workers[i];
        snap[i] = (worker_snap){
            .first = w->first, .npages = w->npages,
            .generation = atomic_load(&w->generation),
            .cursor = atomic_load(&w->cursor),
        };
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

static uint64_t min_generation(const worker_snap *snap, unsigned n)
{
    uint64_t g = UINT64_MAX;
    for (unsigned i = 0; i < n; i++)
        if (snap[i].generation < g)
            g = snap[i].generation;
    return g;
}

uint64_t lm_pattern_pages_written(lm_pattern *p)
{
    uint64_t n = atomic_load(&p->base_written);
    /* Every slot: a reshape zeroes the counters it moves into base. */
    for (unsigned i = 0; i < LM_PATTERN_MAX_THREADS; i++)
        n += atomic_load_explicit(&p->workers[i].written,
                                  memory_order_relaxed);
    return n;
}

static struct json_object *jint(uint64_t v)
{
    return json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

struct json_object *lm_pattern_query(lm_pattern *p)
{
    worker_snap snap[LM_PATTERN_MAX_THREADS];
    lm_pattern_fill fill;
    unsigned nw = take_snap(p, snap, &fill);
    pthread_mutex_lock(&p->lock);
    bool running = !p->engine_stopped;
    uint64_t rate = p->spec.dirty_rate;
    pthread_mutex_unlock(&p->lock);

    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "size", jint(p->spec.size));
    json_object_object_add(o, "page-size", jint(PAGE));
    json_object_object_add(o, "pages", jint(p->npages));
    json_object_object_add(o, "threads", jint(nw));
    json_object_object_add(o, "fill", json_object_new_string(
                               lm_pattern_fill_name(fill)));
    json_object_object_add(o, "dirty-rate",
                           rate == LM_PATTERN_RATE_MAX
                               ? json_object_new_string("max")
                               : jint(rate));
    json_object_object_add(o, "running", json_object_new_boolean(running));
    json_object_object_add(o, "throttle-percentage",
                           jint(atomic_load(&p->throttle)));
    json_object_object_add(o, "pages-written", jint(lm_pattern_pages_written(p)));
    json_object_object_add(o, "generation", jint(min_generation(snap, nw)));
    struct json_object *cur = json_object_new_array();
    struct json_object *gens = json_object_new_array();
    for (unsigned i = 0; i < nw; i++) {
        json_object_array_add(cur, jint(snap[i].first + snap[i].cursor));
        json_object_array_add(gens, jint(snap[i].generation));
    }
    json_object_object_add(o, "cursors", cur);
    json_object_object_add(o, "generations", gens);
    json_object_object_add(o, "max-write-gap-us",
                           jint(atomic_load(&p->max_gap_ns) / 1000));
    json_object_object_add(o, "last-write-ns",
                           jint(atomic_load(&p->last_write_ns)));
    if (atomic_load_explicit(&p->migrated, memory_order_acquire)) {
        struct json_object *r = json_object_new_object();
        json_object_object_add(r, "generation", jint(p->resumed_generation));
        json_object_object_add(r, "cursor", jint(p->resumed_cursor));
        json_object_object_add(o, "resumed-from", r);
        if (!atomic_load(&p->gap_pending))
            json_object_object_add(o, "migration-write-gap-us",
                                   jint(atomic_load(&p->migration_gap_ns) /
                                        1000));
    }
    if (p->spec.outputs)
        json_object_object_add(o, "outputs",
                               json_object_new_string(p->spec.outputs));
    return o;
}

struct json_object *lm_pattern_verify(lm_pattern *p, livemig_error *err)
{
    if (!p) {
        livemig_error_set(err, "guest-verify: no pattern guest");
        return NULL;
    }
    uint64_t t0 = now_ns();
    bool was_running = hold_begin(p);
    uint64_t held = now_ns();

    worker_snap snap[LM_PATTERN_MAX_THREADS];
    lm_pattern_fill fill;
    unsigned nw = take_snap(p, snap, &fill);
    range_job jobs[MAX_HELPERS];
    unsigned k = run_ranges(p, verify_range, jobs, snap, fill);

    hold_end(p, was_running, now_ns() - held);
    uint64_t t1 = now_ns();

    const range_job *first = NULL;
    uint64_t bad = 0;
    for (unsigned i = 0; i < k; i++) {
        bad += jobs[i].bad;
        if (jobs[i].bad && !first)
            first = &jobs[i];          /* ranges are in page order */
    }
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(bad == 0));
    if (first) {
        json_object_object_add(o, "bad-page", jint(first->first_bad));
        json_object_object_add(o, "bad-pages", jint(bad));
        json_object_object_add(o, "reason", json_object_new_string(first->why));
    }
    json_object_object_add(o, "pages", jint(p->npages));
    json_object_object_add(o, "generation", jint(min_generation(snap, nw)));
    json_object_object_add(o, "time-us", jint((t1 - t0) / 1000));
    return o;
}

/* ---- lifetime ------------------------------------------------------------- */

void *lm_pattern_ram(lm_pattern *p, size_t *size)
{
    if (size)
        *size = p->spec.size;
    return p->host;
}

livemig_ram *lm_pattern_block(lm_pattern *p)
{
    return p->ram;
}

static bool init_sync(lm_pattern *p, livemig_error *err)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ||
        pthread_cond_init(&p->wake, &ca) ||
        pthread_cond_init(&p->sleep_cv, &ca)) {
        livemig_error_set(err, "pattern guest: cannot create a condition "
                          "variable");
        return false;
    }
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->parked_cv, NULL);
    return true;
}

/* Split the pages among @n workers, each at the end of the fill: the
 * whole slice "before the cursor" at generation 1. */
static void slice(lm_pattern *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        pattern_worker *w = &p->workers[i];
        w->p = p;
        w->idx = i;
        lm_pattern_slice(p->npages, n, i, &w->first, &w->npages);
        atomic_store(&w->generation, 1);
        atomic_store(&w->cursor, w->npages);
    }
}

/* Start the workers of spec (none when idle); they park at once while
 * the guest is stopped. */
static bool start_workers(lm_pattern *p, livemig_error *err)
{
    if (!p->spec.dirty_rate)
        return true;
    for (unsigned i = 0; i < p->spec.threads; i++) {
        pthread_mutex_lock(&p->lock);
        bool quit = p->quit;
        pthread_mutex_unlock(&p->lock);
        if (quit)
            return true;
        int e = pthread_create(&p->workers[i].tid, NULL, worker_main,
                               &p->workers[i]);
        if (e) {
            livemig_error_set(err, "pattern guest: cannot start worker "
                              "thread %u: %s", i, strerror(e));
            return false;
        }
        pthread_mutex_lock(&p->lock);
        p->nworkers_started++;
        pthread_mutex_unlock(&p->lock);
    }
    return true;
}

bool lm_pattern_reshape(lm_pattern *p, unsigned threads, lm_pattern_fill fill,
                        uint64_t dirty_rate, livemig_error *err)
{
    pthread_mutex_lock(&p->lock);
    bool same = threads == p->spec.threads && fill == p->spec.fill &&
                dirty_rate == p->spec.dirty_rate;
    unsigned n = same ? 0 : p->nworkers_started;
    if (!same) {
        p->nworkers_started = 0;
        p->retire = true;
        update_pause_locked(p);
    }
    pthread_mutex_unlock(&p->lock);
    if (same)
        return true;
    for (unsigned i = 0; i < n; i++)
        pthread_join(p->workers[i].tid, NULL);

    pthread_mutex_lock(&p->lock);
    p->retire = false;
    update_pause_locked(p);
    uint64_t moved = 0;
    for (unsigned i = 0; i < LM_PATTERN_MAX_THREADS; i++)
        moved += atomic_exchange(&p->workers[i].written, 0);
    atomic_fetch_add(&p->base_written, moved);
    p->spec.threads = threads;
    p->spec.fill = fill;
    p->spec.dirty_rate = dirty_rate;
    slice(p, threads);
    pthread_mutex_unlock(&p->lock);
    return start_workers(p, err);
}

void lm_pattern_halt(lm_pattern *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    update_pause_locked(p);
    unsigned n = p->nworkers_started;
    p->nworkers_started = 0;
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < n; i++)
        pthread_join(p->workers[i].tid, NULL);
}

lm_pattern *lm_pattern_new(const char *spec, livemig *lm, bool incoming,
                           livemig_tracker_kind tracker, livemig_error *err)
{
    lm_pattern *p = calloc(1, sizeof(*p));
    if (!p) {
        livemig_error_set(err, "pattern guest: out of memory");
        return NULL;
    }
    if (!lm_pattern_spec_parse(spec, &p->spec, err)) {
        free(p);
        return NULL;
    }
    p->outputs_fd = -1;
    if (p->spec.outputs &&
        (p->outputs_fd = open(p->spec.outputs,
                              O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                              0644)) < 0) {
        livemig_error_set(err, "pattern guest: cannot open outputs file "
                          "'%s': %s", p->spec.outputs, strerror(errno));
        lm_pattern_spec_clear(&p->spec);
        free(p);
        return NULL;
    }
    if (!init_sync(p, err)) {
        if (p->outputs_fd >= 0)
            close(p->outputs_fd);
        lm_pattern_spec_clear(&p->spec);
        free(p);
        return NULL;
    }
    p->lm = lm;
    p->incoming = incoming;
    p->npages = p->spec.size / PAGE;
    p->engine_stopped = incoming;
    atomic_store(&p->pause_req, incoming);

    /* Every slot: an incoming state may bring another thread count. */
    p->workers = calloc(LM_PATTERN_MAX_THREADS, sizeof(*p->workers));
    if (!p->workers) {
        livemig_error_set(err, "pattern guest: out of memory");
        goto fail;
    }
    slice(p, p->spec.threads);

    p->host = livemig_ram_alloc(p->spec.size, err);
    if (!p->host)
        goto fail;
    if (lm) {
        p->ram = livemig_ram_add(lm, "pattern", p->host, p->spec.size,
                                 tracker, err);
        if (!p->ram)
            goto fail;
        if (livemig_ram_tracker(p->ram) == LIVEMIG_TRACKER_MANUAL)
            p->bitmap = livemig_ram_manual_bitmap(p->ram);
        if (!livemig_section_add(lm, "pattern", LM_PATTERN_SECTION_VERSION,
                                 lm_pattern_section_ops(), p, err))
            goto fail;
    }

    if (!incoming) {
        range_job jobs[MAX_HELPERS];
        run_ranges(p, fill_range, jobs, NULL, p->spec.fill);
        atomic_store(&p->base_written, p->npages);
        atomic_store(&p->last_write_ns, now_ns());
    }
    if (!start_workers(p, err))
        goto fail;
    if (lm)
        livemig_set_guest_ops(lm, &pattern_guest_ops, p,
                              incoming ? LIVEMIG_RUN_INMIGRATE
                                       : LIVEMIG_RUN_RUNNING);
    return p;

fail:
    /* The engine keeps the block and section registered; the host frees
     * the engine on this failure (livemigd exits), before the memory. */
    lm_pattern_free(p);
    return NULL;
}

void lm_pattern_free(lm_pattern *p)
{
    if (!p)
        return;
    lm_pattern_halt(p);
    if (p->host)
        livemig_ram_free(p->host, p->spec.size);
    free(p->workers);
    if (p->outputs_fd >= 0)
        close(p->outputs_fd);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->sleep_cv);
    pthread_cond_destroy(&p->parked_cv);
    pthread_mutex_destroy(&p->lock);
    lm_pattern_spec_clear(&p->spec);
    free(p);
}
