/* mc-hist.c - see mc-hist.h. */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "engine/mc-hist.h"

void lm_hist_reset(lm_hist *h)
{
    h->n = 0;
}

void lm_hist_add(lm_hist *h, uint64_t v)
{
    h->v[h->n % LM_HIST_WINDOW] = v;
    h->n++;
}

static size_t count(const lm_hist *h)
{
    return h->n < LM_HIST_WINDOW ? (size_t)h->n : LM_HIST_WINDOW;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank on a sorted copy: the smallest value with at least p % of
 * the samples at or below it. */
static uint64_t rank(const uint64_t *sorted, size_t n, unsigned p)
{
    if (!n)
        return 0;
    size_t r = ((size_t)p * n + 99) / 100;
    return sorted[r ? r - 1 : 0];
}

static uint64_t *sorted_copy(const lm_hist *h, size_t n)
{
    uint64_t *s = malloc((n ? n : 1) * sizeof(*s));
    if (!s)
        return NULL;
    memcpy(s, h->v, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_u64);
    return s;
}

uint64_t lm_hist_pct(const lm_hist *h, unsigned p)
{
    size_t n = count(h);
    uint64_t *s = sorted_copy(h, n);
    uint64_t v = s ? rank(s, n, p) : 0;
    free(s);
    return v;
}

json_object *lm_hist_json(const lm_hist *h)
{
    size_t n = count(h);
    uint64_t *s = sorted_copy(h, n);
    json_object *o = json_object_new_object();
    if (!s)
        n = 0;
    json_object_object_add(o, "p50", json_object_new_uint64(rank(s, n, 50)));
    json_object_object_add(o, "p99", json_object_new_uint64(rank(s, n, 99)));
    json_object_object_add(o, "max", json_object_new_uint64(n ? s[n - 1]
                                                              : 0));
    json_object_object_add(o, "count", json_object_new_uint64(n));
    uint64_t b[64] = { 0 };
    int top = -1;
    for (size_t i = 0; i < n; i++) {
        int k = s[i] ? 63 - __builtin_clzll(s[i]) : 0;
        b[k]++;
        if (k > top)
            top = k;
    }
    json_object *a = json_object_new_array();
    for (int k = 0; k <= top; k++)
        json_object_array_add(a, json_object_new_uint64(b[k]));
    json_object_object_add(o, "buckets", a);
    free(s);
    return o;
}
