/*
 * mc-hist.h - a sliding-window distribution for micro-checkpointing
 * stats: the last LM_HIST_WINDOW samples of one quantity (a pause in us,
 * a checkpoint in bytes, ...), reported as p50 / p99 / max / count and
 * log2 buckets.  Not thread-safe: the owner's lock guards it.
 */
#ifndef LM_MC_HIST_H
#define LM_MC_HIST_H

#include <stdint.h>

struct json_object;

#define LM_HIST_WINDOW 1024u

typedef struct lm_hist {
    uint64_t v[LM_HIST_WINDOW];  /* ring of the last samples */
    uint64_t n;                  /* samples ever added */
} lm_hist;

void lm_hist_reset(lm_hist *h);
void lm_hist_add(lm_hist *h, uint64_t v);
/* {"p50", "p99", "max", "count", "buckets"} over the window.  count is
 * the number of samples in the window; buckets[i] counts the samples v
 * with 2^i <= v < 2^(i+1) (v = 0 counts in bucket 0), up to the highest
 * non-empty bucket.  Percentiles are nearest-rank; all 0 when empty. */
struct json_object *lm_hist_json(const lm_hist *h);
/* The p-th percentile (0..100) over the window, nearest-rank. */
uint64_t lm_hist_pct(const lm_hist *h, unsigned p);

#endif
