/*
 * test-lat-hist.c - the fine latency histogram behind query-migrate's
 * postcopy-latency-us: bucket bounds (exact below 16 us, then at most
 * 6.25 % wide), nearest-rank percentiles that overstate by less than a
 * bucket and never exceed the maximum, merging, huge values.
 */
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "engine/lat-hist.h"

static void test_buckets(void **state)
{
    (void)state;
    /* exact below 16 */
    for (uint64_t v = 0; v < 16; v++) {
        assert_int_equal(lm_lat_hist_index(v), v);
        assert_int_equal(lm_lat_hist_upper(lm_lat_hist_index(v)), v);
    }
    /* every value lies in its bucket, each bucket at most 1/16 of its
     * lower bound wide, and buckets are contiguous and ordered */
    unsigned prev = 15;
    for (uint64_t v = 16; v < (1u << 22); v += 1 + v / 97) {
        unsigned i = lm_lat_hist_index(v);
        assert_true(i >= prev);
        prev = i;
        uint64_t hi = lm_lat_hist_upper(i), lo = lm_lat_hist_upper(i - 1) + 1;
        assert_true(lo <= v && v <= hi);
        assert_true((hi - lo + 1) * 16 <= lo);
    }
    /* the bounds the bench cares about */
    assert_int_equal(lm_lat_hist_upper(lm_lat_hist_index(2000)), 2047);
    assert_int_equal(lm_lat_hist_upper(lm_lat_hist_index(2048)), 2175);
    assert_int_equal(lm_lat_hist_upper(lm_lat_hist_index(1900)), 1919);
    /* beyond the top: the last bucket */
    assert_int_equal(lm_lat_hist_index(UINT64_MAX), LM_LAT_NBUCKETS - 1);
    assert_int_equal(lm_lat_hist_index(1ull << 26), LM_LAT_NBUCKETS - 1);
    assert_int_equal(lm_lat_hist_index((1ull << 26) - 1),
                     LM_LAT_NBUCKETS - 2);
}

static void test_percentiles(void **state)
{
    (void)state;
    lm_lat_hist *h = calloc(1, sizeof(*h));
    assert_int_equal(lm_lat_hist_pct(h, 99), 0);
    /* 1000 samples: 1..990 us, then ten of 5000 us */
    for (uint64_t v = 1; v <= 990; v++)
        lm_lat_hist_add(h, v);
    for (int i = 0; i < 10; i++)
        lm_lat_hist_add(h, 5000);
    assert_int_equal(h->n, 1000);
    assert_int_equal(h->max, 5000);
    /* p50 = 500 exactly, reported as its bucket's top: 480..511 */
    uint64_t p50 = lm_lat_hist_pct(h, 50);
    assert_true(p50 >= 500 && p50 <= 511);
    /* p99 = the 990th sample, 990 us: within its bucket, not 5000 */
    uint64_t p99 = lm_lat_hist_pct(h, 99);
    assert_true(p99 >= 990 && p99 <= 1023);
    /* p99.9 = the 999th sample: 5000, capped at the max (not 5119) */
    assert_int_equal(lm_lat_hist_pct(h, 99.9), 5000);
    assert_int_equal(lm_lat_hist_pct(h, 100), 5000);
    /* a single sample: every percentile is it */
    lm_lat_hist *one = calloc(1, sizeof(*one));
    lm_lat_hist_add(one, 1900);
    assert_int_equal(lm_lat_hist_pct(one, 1), 1900);
    assert_int_equal(lm_lat_hist_pct(one, 99), 1900);
    free(one);
    free(h);
}

static void test_merge_and_json(void **state)
{
    (void)state;
    lm_lat_hist *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    for (int i = 0; i < 98; i++)
        lm_lat_hist_add(a, 1000);
    lm_lat_hist_add(b, 3000);
    lm_lat_hist_add(b, 1ull << 40);   /* absurd: counted, max exact */
    lm_lat_hist_merge(a, b);
    assert_int_equal(a->n, 100);
    assert_int_equal(a->max, 1ull << 40);
    json_object *o = lm_lat_hist_json(a);
    assert_int_equal(json_object_get_uint64(json_object_object_get(o,
                     "count")), 100);
    uint64_t p50 = json_object_get_uint64(json_object_object_get(o, "p50"));
    assert_true(p50 >= 1000 && p50 <= 1023);
    uint64_t p99 = json_object_get_uint64(json_object_object_get(o, "p99"));
    assert_true(p99 >= 3000 && p99 <= 3071);
    assert_int_equal(json_object_get_uint64(json_object_object_get(o,
                     "max")), 1ull << 40);
    assert_non_null(json_object_object_get(o, "p90"));
    assert_non_null(json_object_object_get(o, "p999"));
    json_object_put(o);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_merge_and_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
