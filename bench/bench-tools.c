/*
 * bench-tools - the tools that make a migration go fast or converge:
 * multifd 2 channels vs 1 vs none on a random 1 GiB guest; zstd-1 and lz4
 * on fill=text; xbzrle on a guest whose rewrites change a few bytes of a
 * page; auto-converge with a link slower than the guest dirties.
 * Loopback TCP throughput is measured in the same run for the ratios.
 * Prints JSON.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench-util.h"

/* Loopback limit, measured the same way as bench-precopy (a migration of
 * an idle random guest without any tool is the reference point). */
static json_object *migrate_once(const char *spec, const char *caps,
                                 const char *params, double *wall)
{
    bu_pair p;
    bu_pair_start(&p, spec, LIVEMIG_TRACKER_MANUAL);
    if (caps)
        bu_caps(p.src, caps);
    if (params)
        bu_params(p.src, params);
    double t0 = bu_now();
    bu_migrate(&p);
    bool ok = bu_wait_status(p.src, LIVEMIG_STATUS_COMPLETED, 120);
    *wall = bu_now() - t0;
    bu_wait_status(p.dst, LIVEMIG_STATUS_COMPLETED, 5);
    livemig_error err = { 0 };
    json_object *v = lm_pattern_verify(p.pdst, &err);
    json_object *q = livemig_query_migrate(p.src);
    json_object_object_add(q, "verify-ok", json_object_new_boolean(
        ok && v && json_object_get_boolean(bu_get(v, "ok"))));
    json_object_put(v);
    bu_pair_free(&p);
    return q;
}

static json_object *summary(json_object *q, double wall, uint64_t guest)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_get(bu_get(q, "status")));
    json_object_object_add(o, "verify-ok", json_object_get(bu_get(q, "verify-ok")));
    json_object_object_add(o, "wall-s", json_object_new_double(wall));
    json_object_object_add(o, "wire-bytes", json_object_new_uint64(
        bu_u64(q, "ram.transferred")));
    json_object_object_add(o, "effective-GBps",
                           json_object_new_double((double)guest / wall / 1e9));
    json_object *mf = bu_get(q, "multifd.compression-ratio");
    if (mf)
        json_object_object_add(o, "compression-ratio", json_object_get(mf));
    return o;
}

int main(int argc, char **argv)
{
    const char *size = argc > 1 ? argv[1] : "1G";
    uint64_t guest = 1ull << 30;
    if (!strcmp(size, "256M"))
        guest = 256ull << 20;
    json_object *out = json_object_new_object();
    char spec[160];
    double wall;
    json_object *q;

    /* multifd: none / 1 / 2 channels, random idle */
    json_object *mf = json_object_new_object();
    snprintf(spec, sizeof(spec), "pattern,size=%s,fill=random,dirty-rate=0", size);
    q = migrate_once(spec, NULL, NULL, &wall);
    json_object_object_add(mf, "no-multifd", summary(q, wall, guest));
    json_object_put(q);
    double base = wall;
    for (int ch = 1; ch <= 2; ch++) {
        char params[96];
        snprintf(params, sizeof(params), "{\"multifd-channels\": %d}", ch);
        q = migrate_once(spec, "{\"capabilities\": [{\"capability\": "
                         "\"multifd\", \"state\": true}]}", params, &wall);
        json_object *s = summary(q, wall, guest);
        json_object_object_add(s, "speedup-vs-no-multifd",
                               json_object_new_double(base / wall));
        json_object_object_add(mf, ch == 1 ? "channels-1" : "channels-2", s);
        json_object_put(q);
    }
    json_object_object_add(out, "multifd-random", mf);

    /* compression on fill=text */
    json_object *cz = json_object_new_object();
    snprintf(spec, sizeof(spec), "pattern,size=%s,fill=text,dirty-rate=0", size);
    q = migrate_once(spec, NULL, NULL, &wall);
    json_object_object_add(cz, "none", summary(q, wall, guest));
    json_object_put(q);
    const char *methods[] = { "zstd", "lz4" };
    for (int i = 0; i < 2; i++) {
        char params[128];
        snprintf(params, sizeof(params), "{\"multifd-channels\": 2, "
                 "\"multifd-compression\": \"%s\", \"multifd-zstd-level\": 1}",
                 methods[i]);
        q = migrate_once(spec, "{\"capabilities\": [{\"capability\": "
                         "\"multifd\", \"state\": true}]}", params, &wall);
        json_object_object_add(cz, methods[i], summary(q, wall, guest));
        json_object_put(q);
    }
    json_object_object_add(out, "compression-text", cz);

    /* xbzrle: fill=zero rewrites change the 32-byte header and one word
     * of a page; hold for 2 s of passes, then release. */
    json_object *xb = json_object_new_object();
    for (int on = 0; on <= 1; on++) {
        bu_pair p;
        bu_pair_start(&p, "pattern,size=256M,fill=zero,dirty-rate=400M",
                      LIVEMIG_TRACKER_MANUAL);
        if (on)
            bu_caps(p.src, "{\"capabilities\": [{\"capability\": \"xbzrle\", "
                           "\"state\": true}]}");
        bu_params(p.src, "{\"switchover-hold\": true, \"xbzrle-cache-size\": "
                         "268435456}");
        bu_migrate(&p);
        usleep(2000000);
        q = livemig_query_migrate(p.src);
        uint64_t bytes = bu_u64(q, "ram.transferred");
        uint64_t passes = bu_u64(q, "ram.dirty-sync-count");
        json_object *o = json_object_new_object();
        json_object_object_add(o, "passes", json_object_new_uint64(passes));
        json_object_object_add(o, "wire-bytes-2s", json_object_new_uint64(bytes));
        json_object *x = bu_get(q, "xbzrle-cache");
        if (x) {
            json_object_object_add(o, "xbzrle-cache", json_object_get(x));
        }
        json_object_put(q);
        bu_params(p.src, "{\"switchover-hold\": false}");
        bool ok = bu_wait_status(p.src, LIVEMIG_STATUS_COMPLETED, 60);
        json_object_object_add(o, "completed", json_object_new_boolean(ok));
        json_object_object_add(xb, on ? "xbzrle" : "raw", o);
        bu_pair_free(&p);
    }
    json_object_object_add(out, "xbzrle-few-bytes", xb);

    /* auto-converge: a 64 MiB guest dirties 160 MB/s, the link is limited
     * to 64 MiB/s: without a throttle it cannot converge. */
    json_object *ac = json_object_new_object();
    for (int on = 0; on <= 1; on++) {
        bu_pair p;
        bu_pair_start(&p, "pattern,size=64M,fill=random,dirty-rate=160M",
                      LIVEMIG_TRACKER_MANUAL);
        if (on)
            bu_caps(p.src, "{\"capabilities\": [{\"capability\": "
                           "\"auto-converge\", \"state\": true}]}");
        bu_params(p.src, "{\"max-bandwidth\": 67108864, \"downtime-limit\": 100, "
                         "\"cpu-throttle-initial\": 30, "
                         "\"cpu-throttle-increment\": 20}");
        double t0 = bu_now();
        bu_migrate(&p);
        uint64_t max_throttle = 0;
        bool ok = false;
        while (bu_now() - t0 < 30) {
            livemig_status st = livemig_get_status(p.src);
            if (st == LIVEMIG_STATUS_COMPLETED) {
                ok = true;
                break;
            }
            q = livemig_query_migrate(p.src);
            uint64_t t = bu_u64(q, "cpu-throttle-percentage");
            if (t > max_throttle)
                max_throttle = t;
            json_object_put(q);
            usleep(20000);
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "converged", json_object_new_boolean(ok));
        json_object_object_add(o, "time-s", json_object_new_double(bu_now() - t0));
        json_object_object_add(o, "final-throttle-percent",
                               json_object_new_uint64(max_throttle));
        if (!ok) {
            livemig_error err = { 0 };
            livemig_cancel(p.src, &err);
            bu_wait_status(p.src, LIVEMIG_STATUS_CANCELLED, 10);
        }
        json_object_object_add(ac, on ? "auto-converge" : "without", o);
        bu_pair_free(&p);
    }
    json_object_object_add(out, "auto-converge-64M-guest-160MBps-over-64MiBps", ac);

    printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY));
    json_object_put(out);
    return 0;
}
