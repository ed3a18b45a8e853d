/*
 * convergence.h - the convergence verdict of a precopy migration, judged
 * from the trend of the last passes rather than from one comparison.
 *
 * A precopy converges when the expected downtime (what is left to send
 * over the rate pages go out at) shrinks pass after pass until it fits
 * downtime-limit.  Comparing the dirty rate with the bandwidth misses the
 * case where the two are equal to a hair, so the verdict looks at how the
 * expected downtime moved over the last passes instead:
 *
 *   converged   the expected downtime fits downtime-limit now;
 *   converging  it shrinks fast enough to fit within LM_VERDICT_MAX_PASSES
 *               more passes;
 *   stalled     it does not shrink (at least LM_VERDICT_FLAT per pass,
 *               geometric mean over the window), or so slowly that more
 *               than LM_VERDICT_MAX_PASSES passes would be needed.
 *
 * After pass 1 there is no earlier expected downtime: the time pass 1
 * took stands for it (sending the whole guest), so a guest that dirtied
 * nearly all of it again is stalled after one pass.
 * Every verdict carries a reason in words with the figures behind it.
 * Owned by whoever holds lm->lock (it lives in lm_stats).
 */
#ifndef LM_CONVERGENCE_H
#define LM_CONVERGENCE_H

#include <stdbool.h>
#include <stdint.h>

#define LM_VERDICT_WINDOW 4        /* passes compared (3 ratios) */
#define LM_VERDICT_FLAT 0.9        /* per-pass ratio that is not shrinking */
#define LM_VERDICT_MAX_PASSES 20   /* more passes than this is a stall */

typedef enum lm_verdict_kind {
    LM_VERDICT_CONVERGING,
    LM_VERDICT_CONVERGED,
    LM_VERDICT_STALLED,
} lm_verdict_kind;

/* What the end of a pass measured. */
typedef struct lm_verdict_input {
    uint64_t pass;              /* 1, 2, ... */
    uint64_t remaining;         /* bytes of dirty pages left */
    uint64_t expected_ms;       /* expected downtime of switching now */
    uint64_t pass_ms;           /* how long this pass took to send what
                                   it sent (0: unknown) */
    uint64_t limit_ms;          /* downtime-limit */
    uint64_t dirty_rate;        /* bytes/s dirtied during the pass */
    uint64_t bandwidth;         /* bytes/s sent during the pass */
    unsigned throttle;          /* auto-converge percent now */
    bool auto_converge;
} lm_verdict_input;

typedef struct lm_verdict {
    uint64_t expected[LM_VERDICT_WINDOW];   /* ring, by pass */
    uint64_t passes;                        /* passes recorded */
    lm_verdict_kind kind;
    double shrink;              /* per pass over the window; 0 = unknown */
    char reason[512];
} lm_verdict;

/* Record the end of a pass; returns true if the verdict changed. */
bool lm_verdict_update(lm_verdict *v, const lm_verdict_input *in);

/* "converging", "converged", "stalled". */
const char *lm_verdict_name(lm_verdict_kind k);

#endif
