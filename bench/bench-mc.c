/*
 * bench-mc - micro-checkpointing on this machine, per dirty tracker
 * (manual, uffd-wp-async):
 *   - the guest pause per checkpoint at about 1k, 10k and 100k dirty pages
 *     per epoch, next to the floor measured in the same run (one sync of
 *     the tracker plus one copy of that many scattered pages);
 *   - guest throughput (pages written per second, dirty-rate=max) under
 *     MC at mc-delay 10, 100 and 1000 ms as a ratio to the same guest
 *     with no migration;
 *   - checkpoint bytes per second and acknowledgement latency.
 * Prints JSON.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench-util.h"
#include "ram/tracker.h"

#define GUEST "1G"
#define GUEST_BYTES (1ull << 30)
#define PAGE 4096u

/* One sync + copy of @n scattered dirty pages of a 1 GiB region. */
static double floor_us(livemig_tracker_kind kind, unsigned n)
{
    livemig_error err = { 0 };
    uint8_t *mem = livemig_ram_alloc(GUEST_BYTES, &err);
    uint8_t *stage = livemig_ram_alloc(GUEST_BYTES, &err);
    size_t pages = GUEST_BYTES / PAGE, words = pages / 64;
    uint64_t *dirty = calloc(words, 8);
    lm_tracker *t = lm_tracker_new(kind, mem, GUEST_BYTES, PAGE, &err);
    if (!mem || !stage || !dirty || !t || !lm_tracker_start(t, &err)) {
        fprintf(stderr, "bench: tracker: %s\n", err.desc);
        exit(1);
    }
    uint64_t *bm = lm_tracker_manual_bitmap(t);
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        size_t stride = pages / n;
        for (size_t i = 0; i < n; i++) {
            size_t pg = i * stride + (size_t)rep;
            mem[pg * PAGE] = (uint8_t)rep;
            if (bm)
                livemig_dirty_mark(bm, pg);
        }
        memset(dirty, 0, words * 8);
        double t0 = bu_now();
        size_t cnt;
        lm_tracker_sync(t, dirty, &cnt, &err);
        for (size_t w = 0; w < words; w++) {
            for (uint64_t x = dirty[w]; x; x &= x - 1) {
                size_t pg = w * 64 + (size_t)__builtin_ctzll(x);
                memcpy(stage + pg * PAGE, mem + pg * PAGE, PAGE);
            }
        }
        double us = (bu_now() - t0) * 1e6;
        if (us < best)
            best = us;
    }
    lm_tracker_free(t);
    livemig_ram_free(mem, GUEST_BYTES);
    livemig_ram_free(stage, GUEST_BYTES);
    free(dirty);
    return best;
}

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
    lm_pattern *p = lm_pattern_new("pattern,size=" GUEST ",dirty-rate=max",
                                   lm, false, kind, &err);
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

/* Run MC with @rate ("max" or bytes/s) and @delay_ms for @secs once
 * checkpointing; report the MC stats and the guest's page rate. */
static json_object *mc_run(livemig_tracker_kind kind, const char *rate,
                           unsigned delay_ms, double secs)
{
    char spec[128], params[128];
    snprintf(spec, sizeof(spec), "pattern,size=" GUEST ",dirty-rate=%s", rate);
    bu_pair p;
    bu_pair_start(&p, spec, kind);
    bu_caps(p.src, "{\"capabilities\": [{\"capability\": "
                   "\"micro-checkpointing\", \"state\": true}]}");
    snprintf(params, sizeof(params), "{\"mc-delay\": %u, "
             "\"mc-heartbeat-timeout\": 5000}", delay_ms);
    bu_params(p.src, params);
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
    usleep((useconds_t)(secs * 1e6));
    double dt = bu_now() - t0;
    uint64_t w1 = written(p.psrc);
    json_object *q1 = livemig_query_migrate(p.src);
    uint64_t n = bu_u64(q1, "mc.checkpoints") - bu_u64(q0, "mc.checkpoints");
    json_object_object_add(o, "guest-pages-per-s",
                           json_object_new_double((double)(w1 - w0) / dt));
    json_object_object_add(o, "checkpoints-per-s",
                           json_object_new_double((double)n / dt));
    uint64_t bytes = bu_u64(q1, "ram.transferred") - bu_u64(q0, "ram.transferred");
    json_object_object_add(o, "checkpoint-bytes-per-s",
                           json_object_new_double((double)bytes / dt));
    /* Averages over the measured window only (query-migrate's include
     * the first, catch-up checkpoint): avg1*n1 - avg0*n0 over n. */
    const char *avgs[] = { "pause-avg-us", "pages-avg", "paused-pages-avg",
                           "ack-latency-avg-us", "checkpoint-bytes-avg" };
    uint64_t n0 = bu_u64(q0, "mc.checkpoints"), n1 = bu_u64(q1, "mc.checkpoints");
    for (size_t i = 0; i < sizeof(avgs) / sizeof(avgs[0]); i++) {
        char path[64];
        snprintf(path, sizeof(path), "mc.%s", avgs[i]);
        double tot = (double)bu_u64(q1, path) * (double)n1 -
                     (double)bu_u64(q0, path) * (double)n0;
        json_object_object_add(o, avgs[i], json_object_new_double(
            n ? tot / (double)n : 0));
    }
    json_object_object_add(o, "pause-max-us-since-start",
                           json_object_get(bu_get(q1, "mc.pause-max-us")));
    json_object_put(q0);
    json_object_put(q1);
    bu_pair_free(&p);
    return o;
}

int main(void)
{
    json_object *out = json_object_new_object();
    livemig_tracker_kind kinds[] = { LIVEMIG_TRACKER_MANUAL,
                                     LIVEMIG_TRACKER_UFFD_WP_ASYNC };
    for (int k = 0; k < 2; k++) {
        livemig_error why = { 0 };
        if (!lm_tracker_available(kinds[k], &why)) {
            json_object_object_add(out, livemig_tracker_name(kinds[k]),
                                   json_object_new_string(why.desc));
            continue;
        }
        json_object *t = json_object_new_object();
        /* pause vs dirty pages per epoch at mc-delay 100 ms */
        struct { unsigned pages; const char *rate; } pts[] = {
            { 1000, "40M" }, { 10000, "400M" }, { 100000, "max" },
        };
        json_object *pause = json_object_new_object();
        for (int i = 0; i < 3; i++) {
            json_object *r = mc_run(kinds[k], pts[i].rate, 100, 2.0);
            json_object_object_add(r, "floor-us", json_object_new_double(
                floor_us(kinds[k], pts[i].pages)));
            char name[32];
            snprintf(name, sizeof(name), "%u-pages", pts[i].pages);
            json_object_object_add(pause, name, r);
        }
        json_object_object_add(t, "pause-by-dirty-pages", pause);
        /* throughput vs mc-delay */
        double base = baseline_rate(kinds[k], 2.0);
        json_object *thr = json_object_new_object();
        json_object_object_add(thr, "unprotected-pages-per-s",
                               json_object_new_double(base));
        unsigned delays[] = { 10, 100, 1000 };
        for (int i = 0; i < 3; i++) {
            json_object *r = mc_run(kinds[k], "max", delays[i], 3.0);
            double rate = json_object_get_double(bu_get(r, "guest-pages-per-s"));
            json_object_object_add(r, "ratio-to-unprotected",
                                   json_object_new_double(rate / base));
            char name[32];
            snprintf(name, sizeof(name), "mc-delay-%u", delays[i]);
            json_object_object_add(thr, name, r);
        }
        json_object_object_add(t, "throughput", thr);
        json_object_object_add(out, livemig_tracker_name(kinds[k]), t);
    }
    printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY));
    json_object_put(out);
    return 0;
}
