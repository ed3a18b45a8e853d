/* convergence.c - see convergence.h. */
#include "engine/convergence.h"

#include <math.h>
#include <stdio.h>

const char *lm_verdict_name(lm_verdict_kind k)
{
    switch (k) {
    case LM_VERDICT_CONVERGED: return "converged";
    case LM_VERDICT_STALLED: return "stalled";
    default: return "converging";
    }
}

/* An expected downtime that nothing measured yet (no page went out) is
 * huge; keep it finite for the ratios. */
static uint64_t clamp_ms(uint64_t ms)
{
    return ms > 1000000000u ? 1000000000u : ms;
}

static void hint(char *buf, size_t len, const lm_verdict_input *in)
{
    if (in->auto_converge)
        snprintf(buf, len, "auto-converge throttles the guest at %u %%; "
                 "raise max-cpu-throttle or downtime-limit, or give the "
                 "migration more bandwidth", in->throttle);
    else
        snprintf(buf, len, "switch to postcopy (migrate-start-postcopy), "
                 "enable auto-converge, raise downtime-limit, or give the "
                 "migration more bandwidth");
}

bool lm_verdict_update(lm_verdict *v, const lm_verdict_input *in)
{
    lm_verdict_kind was = v->kind;
    uint64_t e = clamp_ms(in->expected_ms);
    v->expected[v->passes % LM_VERDICT_WINDOW] = e;
    v->passes++;
    unsigned ratios = v->passes - 1 < LM_VERDICT_WINDOW - 1
                          ? (unsigned)(v->passes - 1) : LM_VERDICT_WINDOW - 1;
    uint64_t first = v->expected[(v->passes - 1 - ratios) % LM_VERDICT_WINDOW];
    if (!first)
        ratios = 0;   /* it fitted a pass ago: no trend to read */
    if (!ratios && v->passes == 1 && in->pass_ms) {
        first = clamp_ms(in->pass_ms);   /* pass 1 sent the whole guest */
        ratios = 1;
    }
    v->shrink = ratios && first
                    ? pow((double)e / (double)first, 1.0 / ratios) : 0;
    double mbs_dirty = (double)in->dirty_rate / 1e6;
    double mbs_link = (double)in->bandwidth / 1e6;

    if (in->expected_ms <= in->limit_ms) {
        v->kind = LM_VERDICT_CONVERGED;
        snprintf(v->reason, sizeof(v->reason), "the %llu bytes left fit: "
                 "expected downtime %llu ms within downtime-limit %llu ms "
                 "after pass %llu",
                 (unsigned long long)in->remaining,
                 (unsigned long long)in->expected_ms,
                 (unsigned long long)in->limit_ms,
                 (unsigned long long)in->pass);
    } else if (!ratios) {
        v->kind = LM_VERDICT_CONVERGING;
        snprintf(v->reason, sizeof(v->reason), "pass %llu sent the whole "
                 "guest; expected downtime %llu ms against downtime-limit "
                 "%llu ms, judged from the next pass on",
                 (unsigned long long)in->pass,
                 (unsigned long long)in->expected_ms,
                 (unsigned long long)in->limit_ms);
    } else if (v->shrink >= LM_VERDICT_FLAT) {
        char h[200];
        hint(h, sizeof(h), in);
        char span[40];
        if (ratios == 1)
            snprintf(span, sizeof(span), "the last pass");
        else
            snprintf(span, sizeof(span), "the last %u passes", ratios);
        v->kind = LM_VERDICT_STALLED;
        snprintf(v->reason, sizeof(v->reason), "the dirty set is not "
                 "shrinking: expected downtime went from %llu ms to %llu "
                 "ms over %s (x%.2f per pass) against "
                 "downtime-limit %llu ms; the guest dirtied %.1f MB/s and "
                 "the link carries %.1f MB/s; %s",
                 (unsigned long long)first, (unsigned long long)e, span,
                 v->shrink, (unsigned long long)in->limit_ms, mbs_dirty,
                 mbs_link, h);
    } else {
        double need = log((double)(in->limit_ms ? in->limit_ms : 1) /
                          (double)e) / log(v->shrink);
        if (need > LM_VERDICT_MAX_PASSES) {
            char h[200];
            hint(h, sizeof(h), in);
            v->kind = LM_VERDICT_STALLED;
            snprintf(v->reason, sizeof(v->reason), "the dirty set shrinks "
                     "too slowly: x%.2f per pass, about %.0f more passes "
                     "to bring the expected downtime from %llu ms to "
                     "downtime-limit %llu ms; the guest dirtied %.1f MB/s "
                     "and the link carries %.1f MB/s; %s", v->shrink, need,
                     (unsigned long long)e,
                     (unsigned long long)in->limit_ms, mbs_dirty, mbs_link,
                     h);
        } else {
            v->kind = LM_VERDICT_CONVERGING;
            snprintf(v->reason, sizeof(v->reason), "the dirty set shrinks "
                     "x%.2f per pass: about %.0f more passes to bring the "
                     "expected downtime from %llu ms to downtime-limit "
                     "%llu ms", v->shrink, ceil(need),
                     (unsigned long long)e,
                     (unsigned long long)in->limit_ms);
        }
    }
    return v->kind != was;
}
