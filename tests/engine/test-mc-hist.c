/*
 * test-mc-hist.c - the sliding-window distributions of query-migrate's
 * mc block: nearest-rank percentiles, the window forgetting old samples,
 * log2 buckets.
 */
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "engine/mc-hist.h"

static uint64_t get(json_object *o, const char *k)
{
    return json_object_get_uint64(json_object_object_get(o, k));
}

static void test_empty(void **state)
{
    (void)state;
    lm_hist *h = calloc(1, sizeof(*h));
    json_object *o = lm_hist_json(h);
    assert_int_equal(get(o, "count"), 0);
    assert_int_equal(get(o, "p50"), 0);
    assert_int_equal(get(o, "max"), 0);
    assert_int_equal(json_object_array_length(
                         json_object_object_get(o, "buckets")), 0);
    json_object_put(o);
    free(h);
}

static void test_percentiles_and_buckets(void **state)
{
    (void)state;
    lm_hist *h = calloc(1, sizeof(*h));
    /* 1..100, shuffled order does not matter */
    for (uint64_t v = 100; v >= 1; v--)
        lm_hist_add(h, v);
    json_object *o = lm_hist_json(h);
    assert_int_equal(get(o, "count"), 100);
    assert_int_equal(get(o, "p50"), 50);
    assert_int_equal(get(o, "p99"), 99);
    assert_int_equal(get(o, "max"), 100);
    json_object *b = json_object_object_get(o, "buckets");
    /* [1], [2,3], [4..7], [8..15], [16..31], [32..63], [64..100] */
    uint64_t want[] = { 1, 2, 4, 8, 16, 32, 37 };
    assert_int_equal(json_object_array_length(b), 7);
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(json_object_get_uint64(
                             json_object_array_get_idx(b, i)), want[i]);
    json_object_put(o);
    assert_int_equal(lm_hist_pct(h, 99), 99);
    free(h);
}

static void test_window_slides(void **state)
{
    (void)state;
    lm_hist *h = calloc(1, sizeof(*h));
    for (unsigned i = 0; i < LM_HIST_WINDOW; i++)
        lm_hist_add(h, 1000000);        /* an old burst */
    for (unsigned i = 0; i < LM_HIST_WINDOW; i++)
        lm_hist_add(h, 10);             /* then steady */
    json_object *o = lm_hist_json(h);
    assert_int_equal(get(o, "count"), LM_HIST_WINDOW);
    assert_int_equal(get(o, "max"), 10);
    assert_int_equal(get(o, "p99"), 10);
    json_object_put(o);
    lm_hist_add(h, 0);
    o = lm_hist_json(h);
    assert_int_equal(get(o, "count"), LM_HIST_WINDOW);
    /* zero counts in bucket 0 */
    assert_int_equal(json_object_get_uint64(json_object_array_get_idx(
                         json_object_object_get(o, "buckets"), 0)), 1);
    json_object_put(o);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_percentiles_and_buckets),
        cmocka_unit_test(test_window_slides),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
