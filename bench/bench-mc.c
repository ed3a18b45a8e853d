/*
 * bench-mc - micro-checkpointing on this machine, 1 GiB guests, mc-delay
 * 100 ms, against the targets of docs/micro-checkpointing.md:
 *   - per tracker (manual, uffd-wp-async) and about 1k, 10k and 100k dirty
 *     pages per epoch: pause, ack and output-commit latency as
 *     p50 / p99 / max (query-migrate's sliding windows, and for the pause
 *     also over the checkpoints after the first second, which the pause
 *     targets are judged on), the pause's parts,
 *     checkpoint size, ack latency as a ratio to the time loopback TCP
 *     needs for the checkpoint's bytes (measured in this run, as a long
 *     stream: the target; and as a burst after mc-delay idle, which is
 *     how checkpoints travel: for information), and the primary's memory
 *     overhead (mc.shadow-peak-bytes vs guest size);
 *   - dirty-rate=max with and without mc-throttle: output-commit p99 vs
 *     3x mc-delay, and guest throughput relative to the same guest
 *     unprotected.
 * Prints JSON.  `bench-mc pause` runs the first part only.
 * `bench-mc trace TRACKER RATE [SECS [throttle]]` prints one JSON line per
 * checkpoint of one run instead (bytes, pause, ack, pool, throttle,
 * commit p99): how the first epochs after precopy settle.
 */
#include <arpa/inet.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-util.h"
#include "ram/tracker.h"

#define GUEST "1G"
#define GUEST_BYTES (1ull << 30)
#define DELAY_MS 100u

/* ---- the link's limit ---------------------------------------------------- */

typedef struct { int fd; size_t total; } sink_arg;

static void *sink(void *p)
{
    sink_arg *a = p;
    char *buf = malloc(1 << 20);
    size_t got = 0;
    while (buf && got < a->total) {
        ssize_t n = read(a->fd, buf, 1 << 20);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    free(buf);
    return NULL;
}

/* A connected loopback TCP pair: *c the sending end, *s the other. */
static void tcp_pair(int *c, int *s)
{
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&sa, &sl)) {
        perror("bench-mc: loopback");
        exit(1);
    }
    *c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*c, (struct sockaddr *)&sa, sizeof(sa))) {
        perror("bench-mc: connect");
        exit(1);
    }
    *s = accept(l, NULL, NULL);
    close(l);
}

/* One loopback TCP stream, 1 MiB writes: bytes per second. */
static double tcp_Bps(void)
{
    int c, s;
    tcp_pair(&c, &s);
    size_t total = 2ull << 30;
    sink_arg a = { s, total };
    pthread_t t;
    pthread_create(&t, NULL, sink, &a);
    char *buf = malloc(1 << 20);
    memset(buf, 0x5a, 1 << 20);
    double t0 = bu_now();
    for (size_t sent = 0; sent < total;) {
        ssize_t n = write(c, buf, 1 << 20);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    pthread_join(t, NULL);
    double dt = bu_now() - t0;
    free(buf);
    close(c);
    close(s);
    return (double)total / dt;
}

/* Checkpoint-shaped traffic with no engine: @bytes at once after mc-delay
 * of silence, from one large area into another, and a one-byte answer
 * once all arrived.  On this VM a burst after 100 ms idle moves at about
 * half the rate of a long stream (vCPUs that halted wake slowly); this is
 * the wire time a checkpoint of that size can hope for. */
typedef struct { int fd; size_t bytes; int n; uint8_t *area; } burst_arg;

static void *burst_sink(void *p)
{
    burst_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        for (size_t got = 0; got < a->bytes;) {
            ssize_t n = read(a->fd, a->area + got, a->bytes - got);
            if (n <= 0)
                return NULL;
            got += (size_t)n;
        }
        char one = 1;
        if (write(a->fd, &one, 1) != 1)
            return NULL;
    }
    return NULL;
}

/* Median microseconds of 9 such bursts (after one to warm up). */
static double tcp_burst_us(size_t bytes)
{
    enum { N = 10 };
    if (bytes == 0)
        return 0;
    uint8_t *src = malloc(bytes), *dst = malloc(bytes);
    if (!src || !dst) {
        free(src);
        free(dst);
        return 0;
    }
    memset(src, 0x5a, bytes);
    memset(dst, 0, bytes);
    int c, s;
    tcp_pair(&c, &s);
    burst_arg a = { s, bytes, N, dst };
    pthread_t t;
    pthread_create(&t, NULL, burst_sink, &a);
    double us[N];
    int done = 0;
    for (; done < N; done++) {
        usleep(DELAY_MS * 1000u);
        double t0 = bu_now();
        size_t sent = 0;
        while (sent < bytes) {
            size_t w = bytes - sent < (1u << 20) ? bytes - sent : 1u << 20;
            ssize_t n = write(c, src + sent, w);
            if (n <= 0)
                break;
            sent += (size_t)n;
        }
        char one;
        if (sent < bytes || read(c, &one, 1) != 1)
            break;
        us[done] = (bu_now() - t0) * 1e6;
    }
    close(c);
    pthread_join(t, NULL);
    close(s);
    free(src);
    free(dst);
    if (done < 2)
        return 0;
    qsort(us + 1, (size_t)done - 1, sizeof(double), bu_cmp_double);
    return us[1 + (done - 1) / 2];
}

/* ---- runs ---------------------------------------------------------------- */

static uint64_t written(lm_pattern *p)
{
    json_object *q = lm_pattern_query(p);
    uint64_t w = bu_u64(q, "pages-written");
    json_object_put(q);
    return w;
}

/* Pages/s of a dirty-rate=max guest over @secs with no migration. */
static double baseline_rate(livemig_tracker_kind kind, double secs)
{
    livemig_error err = { 0 };
    livemig *lm = livemig_new(&err);
    lm_pattern *p = lm_pattern_new("pattern,size=" GUEST ",dirty-rate=max,"
                                   "outputs=/dev/null", lm, false, kind, &err);
    if (!p) {
        fprintf(stderr, "bench: %s\n", err.desc);
        exit(1);
    }
    usleep(200000);
    uint64_t w0 = written(p);
    double t0 = bu_now();
    usleep((useconds_t)(secs * 1e6));
    double rate = (double)(written(p) - w0) / (bu_now() - t0);
    lm_pattern_halt(p);
    livemig_free(lm);
    lm_pattern_free(p);
    return rate;
}

static void add_d(json_object *o, const char *k, double v)
{
    json_object_object_add(o, k, json_object_new_double(v));
}

/* p50/p99/max (and count) of query-migrate's mc.@name. */
static json_object *dist(json_object *q, const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "mc.%s", name);
    json_object *h = bu_get(q, path), *o = json_object_new_object();
    const char *k[] = { "p50", "p99", "max", "count" };
    for (int i = 0; i < 4; i++)
        json_object_object_add(o, k[i], json_object_new_uint64(
            bu_u64(h, k[i])));
    return o;
}

/* Each checkpoint's pause once the first second of checkpointing is
 * over: query-migrate's windows hold every checkpoint from the start,
 * and on this VM the first ones after precopy grow both checkpoint pools
 * into memory the host has not backed yet (6 us per 4 KiB page), which
 * can stretch the first epochs to several times their size for about a
 * second.  Polled every 10 ms (checkpoints are 100 ms apart); one that
 * was missed is counted, not guessed. */
typedef struct { double *v; size_t n, cap, missed; } samples;

static void sample_pauses(bu_pair *p, double secs, samples *sm)
{
    json_object *q = livemig_query_migrate(p->src);
    uint64_t seen = bu_u64(q, "mc.checkpoints");
    json_object_put(q);
    double end = bu_now() + secs;
    while (bu_now() < end) {
        usleep(10000);
        q = livemig_query_migrate(p->src);
        uint64_t n = bu_u64(q, "mc.checkpoints");
        if (n == seen + 1 && sm->n < sm->cap)
            sm->v[sm->n++] = (double)bu_u64(q, "mc.pause-last-us");
        else if (n > seen)
            sm->missed += n - seen;
        seen = n;
        json_object_put(q);
    }
}

/* p50 / p99 / max (nearest rank) and count of @sm. */
static json_object *sample_dist(samples *sm)
{
    json_object *o = json_object_new_object();
    if (!sm->n)
        return o;
    qsort(sm->v, sm->n, sizeof(double), bu_cmp_double);
    size_t i50 = (sm->n * 50 + 99) / 100, i99 = (sm->n * 99 + 99) / 100;
    json_object_object_add(o, "p50",
                           json_object_new_uint64((uint64_t)sm->v[i50 - 1]));
    json_object_object_add(o, "p99",
                           json_object_new_uint64((uint64_t)sm->v[i99 - 1]));
    json_object_object_add(o, "max",
                           json_object_new_uint64((uint64_t)sm->v[sm->n - 1]));
    json_object_object_add(o, "count", json_object_new_uint64(sm->n));
    json_object_object_add(o, "missed", json_object_new_uint64(sm->missed));
    return o;
}

/* Two engines with a pattern guest at @rate, micro-checkpointing at
 * mc-delay 100 ms once migrate is run. */
static void mc_pair(bu_pair *p, livemig_tracker_kind kind, const char *rate,
                    bool throttle)
{
    char spec[160];
    snprintf(spec, sizeof(spec), "pattern,size=" GUEST ",dirty-rate=%s,"
             "outputs=/dev/null", rate);
    bu_pair_start(p, spec, kind);
    bu_caps(p->src, "{\"capabilities\": [{\"capability\": "
                    "\"micro-checkpointing\", \"state\": true}]}");
    char params[128];
    snprintf(params, sizeof(params), "{\"mc-delay\": %u, "
             "\"mc-heartbeat-timeout\": 5000, \"mc-throttle\": %s}",
             DELAY_MS, throttle ? "true" : "false");
    bu_params(p->src, params);
}

/* MC at @rate with mc-delay 100 for @secs once checkpointing. */
static json_object *mc_run(livemig_tracker_kind kind, const char *rate,
                           bool throttle, double secs, double tcp,
                           bool with_burst)
{
    bu_pair p;
    mc_pair(&p, kind, rate, throttle);
    bu_migrate(&p);
    json_object *o = json_object_new_object();
    if (!bu_wait_status(p.src, LIVEMIG_STATUS_CHECKPOINTING, 60)) {
        json_object_object_add(o, "error", json_object_new_string(
            "did not reach checkpointing"));
        bu_pair_free(&p);
        return o;
    }
    usleep(300000);
    json_object *q0 = livemig_query_migrate(p.src);
    uint64_t w0 = written(p.psrc);
    double t0 = bu_now();
    double pause_v[1024];
    samples sm = { pause_v, 0, 1024, 0 };
    usleep(700000);
    sample_pauses(&p, secs - 0.7, &sm);
    double dt = bu_now() - t0;
    uint64_t w1 = written(p.psrc);
    json_object *q = livemig_query_migrate(p.src);
    uint64_t n = bu_u64(q, "mc.checkpoints") - bu_u64(q0, "mc.checkpoints");
    uint64_t pages = bu_u64(q, "mc.pages-avg") * bu_u64(q, "mc.checkpoints") -
                     bu_u64(q0, "mc.pages-avg") * bu_u64(q0, "mc.checkpoints");
    add_d(o, "pages-per-epoch", n ? (double)pages / (double)n : 0);
    add_d(o, "guest-pages-per-s", (double)(w1 - w0) / dt);
    add_d(o, "checkpoints-per-s", (double)n / dt);
    json_object_object_add(o, "pause-us", dist(q, "pause-us"));
    json_object_object_add(o, "pause-us-after-1s", sample_dist(&sm));
    json_object_object_add(o, "pause-parts-us",
                           json_object_get(bu_get(q, "mc.pause-parts-us")));
    json_object_object_add(o, "pause-max-parts-us", json_object_get(
        bu_get(q, "mc.pause-max-parts-us")));
    json_object_object_add(o, "ack-us", dist(q, "ack-us"));
    json_object_object_add(o, "commit-us", dist(q, "commit-us"));
    json_object_object_add(o, "checkpoint-bytes", dist(q, "checkpoint-bytes"));
    /* Wire speed: the median ack against what loopback TCP needs to
     * carry the median checkpoint. */
    double bytes = (double)bu_u64(q, "mc.checkpoint-bytes.p50");
    double wire_us = bytes / tcp * 1e6;
    double ack = (double)bu_u64(q, "mc.ack-us.p50");
    add_d(o, "checkpoint-GBps", ack > 0 ? bytes / ack / 1e3 : 0);
    add_d(o, "ack-over-wire-time", wire_us > 0 ? ack / wire_us : 0);
    uint64_t shadow = bu_u64(q, "mc.shadow-peak-bytes");
    json_object_object_add(o, "shadow-peak-bytes",
                           json_object_new_uint64(shadow));
    add_d(o, "shadow-over-guest", (double)shadow / (double)GUEST_BYTES);
    json_object *thr = bu_get(q, "mc.throttle-percentage");
    if (thr)
        json_object_object_add(o, "throttle-percentage",
                               json_object_get(thr));
    json_object_put(q0);
    json_object_put(q);
    bu_pair_free(&p);
    /* The same against plain TCP moving a burst of that size after
     * mc-delay idle, measured once the engine stopped. */
    if (with_burst) {
        double burst = tcp_burst_us((size_t)bytes);
        add_d(o, "burst-wire-us", burst);
        add_d(o, "ack-over-burst-wire-time", burst > 0 ? ack / burst : 0);
    }
    return o;
}

/* One line per checkpoint for @secs (polled every ms: a checkpoint takes
 * longer than that at any rate worth tracing). */
static int trace(const char *tracker, const char *rate, double secs,
                 bool throttle)
{
    livemig_tracker_kind kind = LIVEMIG_TRACKER_MANUAL;
    livemig_error err = { 0 };
    if (!livemig_tracker_parse(tracker, &kind, &err)) {
        fprintf(stderr, "bench-mc trace: %s\n", err.desc);
        return 2;
    }
    bu_pair p;
    mc_pair(&p, kind, rate, throttle);
    double t0 = bu_now();
    bu_migrate(&p);
    uint64_t seen = 0;
    while (bu_now() - t0 < secs) {
        json_object *q = livemig_query_migrate(p.src);
        uint64_t n = bu_u64(q, "mc.checkpoints");
        if (n != seen) {
            seen = n;
            printf("{\"t-ms\": %.0f, \"checkpoints\": %llu, "
                   "\"bytes\": %llu, \"pause-us\": %llu, \"ack-us\": %llu, "
                   "\"pool-bytes\": %llu, \"passes\": %llu, "
                   "\"throttle\": %llu, \"commit-p99-us\": %llu, "
                   "\"guest-pages-written\": %llu, \"paused-pages\": %llu, "
                   "\"pause-parts-us\": %s}\n",
                   (bu_now() - t0) * 1e3, (unsigned long long)n,
                   (unsigned long long)bu_u64(q, "mc.checkpoint-bytes-last"),
                   (unsigned long long)bu_u64(q, "mc.pause-last-us"),
                   (unsigned long long)bu_u64(q, "mc.ack-latency-last-us"),
                   (unsigned long long)bu_u64(q, "mc.shadow-bytes"),
                   (unsigned long long)bu_u64(q, "ram.dirty-sync-count"),
                   (unsigned long long)bu_u64(q, "mc.throttle-percentage"),
                   (unsigned long long)bu_u64(q, "mc.commit-us.p99"),
                   (unsigned long long)written(p.psrc),
                   (unsigned long long)bu_u64(q, "mc.paused-pages-last"),
                   json_object_to_json_string_ext(
                       bu_get(q, "mc.pause-parts-us"), JSON_C_TO_STRING_PLAIN));
            fflush(stdout);
        }
        json_object_put(q);
        usleep(1000);
    }
    bu_pair_free(&p);
    return 0;
}

/* ---- targets ------------------------------------------------------------- */

static void target(json_object *t, const char *name, double v, double limit)
{
    json_object *o = json_object_new_object();
    add_d(o, "value", v);
    add_d(o, "limit", limit);
    json_object_object_add(o, "met", json_object_new_boolean(v <= limit));
    json_object_object_add(t, name, o);
}

static double get_d(json_object *o, const char *path)
{
    json_object *v = bu_get(o, path);
    return v ? json_object_get_double(v) : -1;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "trace") == 0)
        return trace(argv[2], argv[3], argc > 4 ? atof(argv[4]) : 5.0,
                     argc > 5 && strcmp(argv[5], "throttle") == 0);
    bool pause_only = argc > 1 && strcmp(argv[1], "pause") == 0;
    json_object *out = json_object_new_object(), *targets =
        json_object_new_object();
    double tcp = tcp_Bps();
    add_d(out, "loopback-tcp-GBps", tcp / 1e9);
    livemig_tracker_kind kinds[] = { LIVEMIG_TRACKER_MANUAL,
                                     LIVEMIG_TRACKER_UFFD_WP_ASYNC };
    for (int k = 0; k < 2; k++) {
        const char *kn = livemig_tracker_name(kinds[k]);
        livemig_error why = { 0 };
        if (!lm_tracker_available(kinds[k], &why)) {
            json_object_object_add(out, kn, json_object_new_string(why.desc));
            continue;
        }
        json_object *t = json_object_new_object();
        struct { unsigned pages; const char *rate; } pts[] = {
            { 1000, "40M" }, { 10000, "400M" }, { 100000, "4000M" },
        };
        /* 12 s: over 100 checkpoints after the first second, so that
         * p99 (nearest rank) is not just the largest sample. */
        for (int i = 0; i < 3; i++) {
            json_object *r = mc_run(kinds[k], pts[i].rate, false, 12.0, tcp,
                                    pts[i].pages <= 10000);
            char name[64];
            snprintf(name, sizeof(name), "%u-pages", pts[i].pages);
            json_object_object_add(t, name, r);
            if (pts[i].pages <= 10000) {
                snprintf(name, sizeof(name), "%s %u pages: ack / wire time",
                         kn, pts[i].pages);
                target(targets, name, get_d(r, "ack-over-wire-time"), 1.3);
            }
            if (kinds[k] == LIVEMIG_TRACKER_MANUAL && pts[i].pages <= 10000) {
                snprintf(name, sizeof(name), "manual %u pages: pause p50 us "
                         "(after 1 s)", pts[i].pages);
                target(targets, name, get_d(r, "pause-us-after-1s.p50"), 20);
                snprintf(name, sizeof(name), "manual %u pages: pause p99 us "
                         "(after 1 s)", pts[i].pages);
                target(targets, name, get_d(r, "pause-us-after-1s.p99"), 100);
            }
            if (kinds[k] != LIVEMIG_TRACKER_MANUAL && pts[i].pages == 10000)
                target(targets, "uffd-wp-async 10000 pages: pause p99 us "
                       "(after 1 s)", get_d(r, "pause-us-after-1s.p99"), 500);
        }
        if (!pause_only) {
            double base = baseline_rate(kinds[k], 2.0);
            add_d(t, "unprotected-pages-per-s", base);
            for (int th = 0; th < 2; th++) {
                json_object *r = mc_run(kinds[k], "max", th == 1, 5.0, tcp,
                                    false);
                add_d(r, "guest-throughput-vs-unprotected",
                      get_d(r, "guest-pages-per-s") / base);
                json_object_object_add(t, th ? "max-rate-throttled"
                                             : "max-rate", r);
                if (th) {
                    char name[64];
                    snprintf(name, sizeof(name), "%s max rate throttled: "
                             "commit p99 us", kn);
                    target(targets, name, get_d(r, "commit-us.p99"),
                           3 * DELAY_MS * 1000.0);
                }
            }
        }
        json_object_object_add(out, kn, t);
    }
    json_object_object_add(out, "targets", targets);
    printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY));
    json_object_put(out);
    return 0;
}
