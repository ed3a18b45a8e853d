/*
 * lat-hist.h - a fine histogram of latencies over a whole run, for
 * percentiles that mean something at the millisecond: log-linear
 * buckets, exact below 16 us, then 16 per power of two (each at most
 * 1/16 = 6.25 % of its lower bound wide), up to 2^26 us (67 s; larger
 * values count in the last bucket); plus the exact count and maximum.
 * QEMU's log2 postcopy-latency-dist stays as it is beside it: this one
 * is what "p99 at most 2 ms" can be checked against.  Not thread-safe:
 * the owner's lock guards it.
 */
#ifndef LM_LAT_HIST_H
#define LM_LAT_HIST_H

#include <stdint.h>

struct json_object;

#define LM_LAT_SUB 16u                          /* buckets per octave */
#define LM_LAT_TOP 26u                          /* 2^26 us */
/* exact ones, 16 per octave from 2^4 to 2^26, one for the rest */
#define LM_LAT_NBUCKETS (LM_LAT_SUB + (LM_LAT_TOP - 4u) * LM_LAT_SUB + 1u)

typedef struct lm_lat_hist {
    uint64_t b[LM_LAT_NBUCKETS];
    uint64_t n, max;
} lm_lat_hist;

void lm_lat_hist_add(lm_lat_hist *h, uint64_t us);
void lm_lat_hist_merge(lm_lat_hist *into, const lm_lat_hist *from);
/* The bucket of @us, and the largest value that bucket holds. */
unsigned lm_lat_hist_index(uint64_t us);
uint64_t lm_lat_hist_upper(unsigned idx);
/* The @p-th percentile (0 < p <= 100), nearest rank: the upper bound of
 * the bucket holding the smallest sample with at least p % of the samples
 * at or below it, but never above the maximum seen, so it overstates by
 * less than 6.25 % (exact below 16 us).  0 when empty. */
uint64_t lm_lat_hist_pct(const lm_lat_hist *h, double p);
/* {"count", "p50", "p90", "p99", "p999" (99.9th), "max"} in microseconds. */
struct json_object *lm_lat_hist_json(const lm_lat_hist *h);

#endif
