/*
 * bench-precopy - precopy migration against this machine's own limits.
 *
 * Measures, in one run: loopback TCP throughput (one stream, 1 MiB
 * writes) and memcpy bandwidth; then migrates pattern guests between two
 * engines of this process over loopback TCP (the engine is the same one
 * livemigd runs; in one process the benchmark needs no QMP plumbing):
 * random fill idle, zero fill idle, random fill dirtying at 50 MB/s.
 * Prints JSON with each run and its ratio to the limits.
 *
 *   bench-precopy [--size 1G] [--runs 3]
 */
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

static double now_s(void) { return bu_now(); }

/* ---- machine limits ---------------------------------------------------- */

static double memcpy_gbps(void)
{
    size_t n = 256u << 20;
    char *a = malloc(n), *b = malloc(n);
    memset(a, 1, n);
    memset(b, 2, n);
    double best = 0;
    for (int i = 0; i < 5; i++) {
        double t = now_s();
        memcpy(b, a, n);
        t = now_s() - t;
        if (n / t / 1e9 > best)
            best = (double)n / t / 1e9;
        a[i] = b[n - 1 - (size_t)i];   /* keep the copy observable */
    }
    free(a);
    free(b);
    return best;
}

typedef struct { int fd; size_t total; } sink_arg;

static void *sink(void *p)
{
    sink_arg *a = p;
    char *buf = malloc(1 << 20);
    size_t got = 0;
    while (got < a->total) {
        ssize_t n = read(a->fd, buf, 1 << 20);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    free(buf);
    return NULL;
}

static double tcp_gbps(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1, sz = 4 << 20;
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bind(l, (struct sockaddr *)&sa, sizeof(sa));
    listen(l, 1);
    getsockname(l, (struct sockaddr *)&sa, &sl);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    connect(c, (struct sockaddr *)&sa, sizeof(sa));
    int s = accept(l, NULL, NULL);
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    size_t total = 2ull << 30;
    sink_arg a = { s, total };
    pthread_t t;
    pthread_create(&t, NULL, sink, &a);
    char *buf = malloc(1 << 20);
    memset(buf, 0x5a, 1 << 20);
    double t0 = now_s();
    for (size_t sent = 0; sent < total;) {
        ssize_t n = write(c, buf, 1 << 20);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    pthread_join(t, NULL);
    double dt = now_s() - t0;
    free(buf);
    close(c);
    close(s);
    close(l);
    return (double)total / dt / 1e9;
}

/* ---- one migration ----------------------------------------------------- */

static json_object *run_one(const char *spec)
{
    bu_pair p;
    livemig_error err = { 0 };
    bu_pair_start(&p, spec, LIVEMIG_TRACKER_MANUAL);
    usleep(300000);   /* let the guest dirty for a moment */
    double t0 = now_s();
    bu_migrate(&p);
    bu_wait_status(p.src, LIVEMIG_STATUS_COMPLETED, 60);
    double wall = now_s() - t0;
    bu_wait_status(p.dst, LIVEMIG_STATUS_COMPLETED, 5);
    usleep(100000);  /* destination guest writes: its first write measures the gap */
    json_object *q = livemig_query_migrate(p.src);
    json_object *g = lm_pattern_query(p.pdst);
    json_object *v = lm_pattern_verify(p.pdst, &err);
    json_object *r = json_object_new_object();
    json_object_object_add(r, "status", json_object_get(bu_get(q, "status")));
    json_object_object_add(r, "wall-s", json_object_new_double(wall));
    json_object_object_add(r, "total-time-ms", json_object_get(bu_get(q, "total-time")));
    json_object_object_add(r, "downtime-ms", json_object_get(bu_get(q, "downtime")));
    json_object_object_add(r, "guest-gap-us", json_object_get(bu_get(g, "migration-write-gap-us")));
    json_object_object_add(r, "transferred", json_object_get(bu_get(q, "ram.transferred")));
    json_object_object_add(r, "passes", json_object_get(bu_get(q, "ram.dirty-sync-count")));
    json_object_object_add(r, "verify-ok", json_object_get(v ? bu_get(v, "ok") : NULL));
    json_object_put(q);
    json_object_put(g);
    json_object_put(v);
    bu_pair_free(&p);
    return r;
}

int main(int argc, char **argv)
{
    const char *size = "1G";
    int runs = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size"))
            size = argv[i + 1];
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
    }
    if (runs < 1 || runs > 20)
        runs = 3;
    double mc = memcpy_gbps(), tcp = tcp_gbps();
    json_object *out = json_object_new_object();
    json_object *lim = json_object_new_object();
    json_object_object_add(lim, "memcpy-GBps", json_object_new_double(mc));
    json_object_object_add(lim, "loopback-tcp-GBps", json_object_new_double(tcp));
    json_object_object_add(out, "limits", lim);

    struct { const char *name, *extra; } sc[] = {
        { "random-idle", "fill=random,dirty-rate=0" },
        { "zero-idle", "fill=zero,dirty-rate=0" },
        { "random-dirty-50M", "fill=random,dirty-rate=50M" },
    };
    json_object *scen = json_object_new_object();
    double med_time[3] = { 0 };
    bool all_ok = true;
    for (int s = 0; s < 3; s++) {
        char spec[160];
        snprintf(spec, sizeof(spec), "pattern,size=%s,threads=1,%s", size,
                 sc[s].extra);
        json_object *arr = json_object_new_array();
        double t[20];
        for (int r = 0; r < runs; r++) {
            json_object *o = run_one(spec);
            t[r] = json_object_get_double(bu_get(o, "wall-s"));
            json_object *tr = bu_get(o, "transferred");
            double gbps = tr ? (double)json_object_get_uint64(tr) / t[r] / 1e9 : 0;
            json_object_object_add(o, "GBps", json_object_new_double(gbps));
            json_object_object_add(o, "ratio-to-tcp", json_object_new_double(gbps / tcp));
            json_object *dt = bu_get(o, "downtime-ms"), *gg = bu_get(o, "guest-gap-us");
            if (dt && gg)
                json_object_object_add(o, "guest-minus-engine-ms", json_object_new_double(
                    (double)json_object_get_int64(gg) / 1000.0 -
                    (double)json_object_get_int64(dt)));
            if (strcmp(json_object_get_string(bu_get(o, "status")), "completed") ||
                !json_object_get_boolean(bu_get(o, "verify-ok")))
                all_ok = false;
            json_object_array_add(arr, o);
        }
        qsort(t, (size_t)runs, sizeof(double), bu_cmp_double);
        med_time[s] = t[runs / 2];
        json_object *so = json_object_new_object();
        json_object_object_add(so, "median-wall-s", json_object_new_double(med_time[s]));
        json_object_object_add(so, "runs", arr);
        json_object_object_add(scen, sc[s].name, so);
    }
    json_object_object_add(out, "scenarios", scen);
    json_object *tg = json_object_new_object();
    json_object_object_add(tg, "zero-speedup-vs-random",
                           json_object_new_double(med_time[0] / med_time[1]));
    json_object_object_add(tg, "all-completed-and-verified", json_object_new_boolean(all_ok));
    json_object_object_add(out, "targets", tg);
    printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY));
    json_object_put(out);
    return all_ok ? 0 : 1;
}
