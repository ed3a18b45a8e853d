/*
 * bench-mc-latency - the distribution of what micro-checkpointing costs:
 * the guest's pause per checkpoint and the output-commit latency (from
 * livemig_output_submit to the release, i.e. until the checkpoint that
 * holds the state behind the output is acknowledged), on a 256 MiB guest
 * dirtying 40 MB/s, mc-delay 100 ms, over loopback.
 *
 *   bench-mc-latency [DIR]
 *
 * Prints JSON: count, p50, p90, p99 and max of each, and their ratio to
 * mc-delay (an output waits for the end of its epoch and the ack: about
 * half an epoch plus the ack on average).  With DIR, writes the sorted
 * samples as "value cumulative-fraction" lines to DIR/mc-pause.cdf and
 * DIR/mc-commit.cdf for bench/plot.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define GUEST "256M"
#define RATE "40M"
#define DELAY_MS 100
#define SECS 5.0
#define MAXS 200000

typedef struct samples {
    pthread_mutex_t lock;
    double *v;
    size_t n;
} samples;

static void add(samples *s, double v)
{
    pthread_mutex_lock(&s->lock);
    if (s->n < MAXS)
        s->v[s->n++] = v;
    pthread_mutex_unlock(&s->lock);
}

static samples pause_s, commit_s;
static atomic_bool recording, stop_outputs;

static void released(void *opaque, const void *data, size_t len)
{
    (void)opaque;
    double t0;
    if (len != sizeof(t0) || !atomic_load(&recording))
        return;
    memcpy(&t0, data, sizeof(t0));
    add(&commit_s, (bu_now() - t0) * 1e6);
}

/* An output every millisecond, as a busy service would answer. */
static void *outputs(void *arg)
{
    livemig *lm = arg;
    while (!atomic_load(&stop_outputs)) {
        double t = bu_now();
        livemig_error err = { 0 };
        livemig_output_submit(lm, &t, sizeof(t), released, NULL, &err);
        usleep(1000);
    }
    return NULL;
}

static json_object *summary(samples *s, const char *dir, const char *file)
{
    qsort(s->v, s->n, sizeof(double), bu_cmp_double);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "count", json_object_new_uint64(s->n));
    if (!s->n)
        return o;
    const struct { const char *k; double q; } qs[] = {
        { "p50-us", 0.50 }, { "p90-us", 0.90 }, { "p99-us", 0.99 },
    };
    for (size_t i = 0; i < 3; i++) {
        double v = s->v[(size_t)(qs[i].q * (double)(s->n - 1))];
        json_object_object_add(o, qs[i].k, json_object_new_double(v));
    }
    json_object_object_add(o, "max-us", json_object_new_double(s->v[s->n - 1]));
    json_object_object_add(o, "p50-to-mc-delay", json_object_new_double(
        s->v[(s->n - 1) / 2] / (DELAY_MS * 1000.0)));
    if (dir) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        FILE *f = fopen(path, "w");
        if (f) {
            for (size_t i = 0; i < s->n; i++)
                fprintf(f, "%.1f %.6f\n", s->v[i],
                        (double)(i + 1) / (double)s->n);
            fclose(f);
        }
    }
    return o;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : NULL;
    pthread_mutex_init(&pause_s.lock, NULL);
    pthread_mutex_init(&commit_s.lock, NULL);
    pause_s.v = calloc(MAXS, sizeof(double));
    commit_s.v = calloc(MAXS, sizeof(double));

    bu_pair p;
    bu_pair_start(&p, "pattern,size=" GUEST ",dirty-rate=" RATE,
                  LIVEMIG_TRACKER_MANUAL);
    bu_caps(p.src, "{\"capabilities\": [{\"capability\": "
                   "\"micro-checkpointing\", \"state\": true}]}");
    char params[128];
    snprintf(params, sizeof(params), "{\"mc-delay\": %d, "
             "\"mc-heartbeat-timeout\": 5000}", DELAY_MS);
    bu_params(p.src, params);
    bu_migrate(&p);
    if (!bu_wait_status(p.src, LIVEMIG_STATUS_CHECKPOINTING, 60)) {
        fprintf(stderr, "bench-mc-latency: did not reach checkpointing\n");
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, outputs, p.src);
    usleep(300000);   /* past the first, catch-up checkpoint */
    atomic_store(&recording, true);
    uint64_t last = 0;
    double end = bu_now() + SECS;
    while (bu_now() < end) {
        /* one pause per acknowledged checkpoint */
        json_object *q = livemig_query_migrate(p.src);
        uint64_t n = bu_u64(q, "mc.checkpoints");
        if (last && n != last)
            add(&pause_s, (double)bu_u64(q, "mc.pause-last-us"));
        last = n;
        json_object_put(q);
        usleep(2000);
    }
    atomic_store(&recording, false);
    atomic_store(&stop_outputs, true);
    pthread_join(th, NULL);
    bu_pair_free(&p);

    json_object *out = json_object_new_object();
    json_object_object_add(out, "guest", json_object_new_string(
        "pattern,size=" GUEST ",dirty-rate=" RATE ", manual tracking"));
    json_object_object_add(out, "mc-delay-ms", json_object_new_int(DELAY_MS));
    json_object_object_add(out, "pause", summary(&pause_s, dir,
                                                 "mc-pause.cdf"));
    json_object_object_add(out, "output-commit", summary(&commit_s, dir,
                                                         "mc-commit.cdf"));
    printf("%s\n", json_object_to_json_string_ext(out,
                                                  JSON_C_TO_STRING_PRETTY));
    json_object_put(out);
    return 0;
}
