/* lat-hist.c - see lat-hist.h. */
#include <json-c/json.h>

#include "engine/lat-hist.h"

unsigned lm_lat_hist_index(uint64_t us)
{
    if (us < LM_LAT_SUB)
        return (unsigned)us;
    unsigned k = 63u - (unsigned)__builtin_clzll(us);   /* 2^k <= us */
    if (k >= LM_LAT_TOP)
        return LM_LAT_NBUCKETS - 1;
    unsigned sub = (unsigned)(us >> (k - 4)) - LM_LAT_SUB;   /* 0..15 */
    return LM_LAT_SUB + (k - 4) * LM_LAT_SUB + sub;
}

uint64_t lm_lat_hist_upper(unsigned idx)
{
    if (idx < LM_LAT_SUB)
        return idx;
    if (idx >= LM_LAT_NBUCKETS - 1)
        return UINT64_MAX;
    unsigned k = 4 + (idx - LM_LAT_SUB) / LM_LAT_SUB;
    uint64_t sub = (idx - LM_LAT_SUB) % LM_LAT_SUB;
    return ((LM_LAT_SUB + sub + 1) << (k - 4)) - 1;
}

void lm_lat_hist_add(lm_lat_hist *h, uint64_t us)
{
    h->b[lm_lat_hist_index(us)]++;
    h->n++;
    if (us > h->max)
        h->max = us;
}

void lm_lat_hist_merge(lm_lat_hist *into, const lm_lat_hist *from)
{
    for (unsigned i = 0; i < LM_LAT_NBUCKETS; i++)
        into->b[i] += from->b[i];
    into->n += from->n;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t lm_lat_hist_pct(const lm_lat_hist *h, double p)
{
    if (!h->n)
        return 0;
    /* nearest rank: the r-th smallest sample, r = ceil(p/100 * n) */
    double want = p / 100.0 * (double)h->n;
    uint64_t r = (uint64_t)want;
    if ((double)r < want)
        r++;
    if (r < 1)
        r = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LM_LAT_NBUCKETS; i++) {
        seen += h->b[i];
        if (seen >= r) {
            uint64_t u = lm_lat_hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

json_object *lm_lat_hist_json(const lm_lat_hist *h)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "count", json_object_new_uint64(h->n));
    json_object_object_add(o, "p50", json_object_new_uint64(
        lm_lat_hist_pct(h, 50)));
    json_object_object_add(o, "p90", json_object_new_uint64(
        lm_lat_hist_pct(h, 90)));
    json_object_object_add(o, "p99", json_object_new_uint64(
        lm_lat_hist_pct(h, 99)));
    json_object_object_add(o, "p999", json_object_new_uint64(
        lm_lat_hist_pct(h, 99.9)));
    json_object_object_add(o, "max", json_object_new_uint64(h->max));
    return o;
}
