/* bench-util.h - shared pieces of the benchmarks: clocks, a source and a
 * destination engine with pattern guests in this process, JSON access. */
#ifndef LM_BENCH_UTIL_H
#define LM_BENCH_UTIL_H

#include <json-c/json.h>
#include <stdbool.h>

#include "guest/pattern.h"
#include "livemig/livemig.h"

double bu_now(void);
/* qsort comparator for doubles, ascending. */
int bu_cmp_double(const void *a, const void *b);
/* A loopback TCP port free now (the kernel's pick). */
int bu_free_port(void);
/* Member by path "a.b.c", NULL if absent. */
json_object *bu_get(json_object *o, const char *path);
uint64_t bu_u64(json_object *o, const char *path);

/* A source and a destination engine with the same pattern guest. */
typedef struct bu_pair {
    livemig *src, *dst;
    lm_pattern *psrc, *pdst;
    char uri[64];
} bu_pair;

void bu_pair_start(bu_pair *p, const char *spec, livemig_tracker_kind tracker);
void bu_pair_free(bu_pair *p);
/* Apply QMP-shaped parameters and capabilities to the source (exit on
 * error: a benchmark with a wrong setting measures nothing). */
void bu_params(livemig *lm, const char *json);
void bu_caps(livemig *lm, const char *json);
/* Start the migration; wait (bounded by @timeout_s) for one of the
 * statuses in @until ("completed", "checkpointing"). */
void bu_migrate(bu_pair *p);
bool bu_wait_status(livemig *lm, livemig_status want, double timeout_s);
#endif
