/* test-convergence.c - the convergence verdict from the trend of passes:
 * flat, shrinking, shrinking too slowly, fitting, and the case of a dirty
 * rate equal to the bandwidth within a hair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "engine/convergence.h"

static bool pass(lm_verdict *v, uint64_t n, uint64_t expected_ms)
{
    lm_verdict_input in = { .pass = n, .remaining = expected_ms * 100000,
                            .expected_ms = expected_ms, .limit_ms = 300,
                            .dirty_rate = 2039271424ull,
                            .bandwidth = 2039304811ull };
    return lm_verdict_update(v, &in);
}

static void test_flat_stalls_at_pass_2(void **state)
{
    (void)state;
    lm_verdict v = { 0 };
    assert_false(pass(&v, 1, 2200));   /* converging, as before */
    assert_int_equal(v.kind, LM_VERDICT_CONVERGING);
    assert_true(pass(&v, 2, 2200));
    assert_int_equal(v.kind, LM_VERDICT_STALLED);
    assert_non_null(strstr(v.reason, "not shrinking"));
    assert_non_null(strstr(v.reason, "2200 ms"));
    assert_non_null(strstr(v.reason, "downtime-limit 300 ms"));
    assert_non_null(strstr(v.reason, "2039.3 MB/s"));
    assert_false(pass(&v, 3, 2190));   /* no change, no event */
    assert_int_equal(v.kind, LM_VERDICT_STALLED);
}

static void test_shrinking_converges(void **state)
{
    (void)state;
    lm_verdict v = { 0 };
    pass(&v, 1, 4000);
    assert_false(pass(&v, 2, 2000));
    assert_int_equal(v.kind, LM_VERDICT_CONVERGING);
    assert_non_null(strstr(v.reason, "x0.50 per pass"));
    pass(&v, 3, 1000);
    assert_int_equal(v.kind, LM_VERDICT_CONVERGING);
    assert_true(pass(&v, 4, 250));
    assert_int_equal(v.kind, LM_VERDICT_CONVERGED);
    assert_non_null(strstr(v.reason, "within downtime-limit 300 ms"));
}

static void test_too_slow_stalls(void **state)
{
    (void)state;
    lm_verdict v = { 0 };
    /* x0.85 per pass from 30 s: about 29 passes to reach 300 ms. */
    pass(&v, 1, 30000);
    assert_true(pass(&v, 2, 25500));
    assert_int_equal(v.kind, LM_VERDICT_STALLED);
    assert_non_null(strstr(v.reason, "too slowly"));
}

/* Pass 1 took as long as sending the whole guest; a dirty set about as
 * large again is a stall at once, a small one is not. */
static void test_pass_1_against_its_own_length(void **state)
{
    (void)state;
    lm_verdict v = { 0 };
    lm_verdict_input in = { .pass = 1, .remaining = 1u << 30,
                            .expected_ms = 9100, .pass_ms = 9200,
                            .limit_ms = 300, .dirty_rate = 113000000,
                            .bandwidth = 113000000 };
    assert_true(lm_verdict_update(&v, &in));
    assert_int_equal(v.kind, LM_VERDICT_STALLED);
    assert_non_null(strstr(v.reason, "from 9200 ms to 9100 ms over the "
                                     "last pass "));
    lm_verdict w = { 0 };
    in.expected_ms = 2000;   /* 50 MB/s against 113: shrinks x0.22 */
    assert_false(lm_verdict_update(&w, &in));
    assert_int_equal(w.kind, LM_VERDICT_CONVERGING);
}

static void test_window_forgets_old_passes(void **state)
{
    (void)state;
    lm_verdict v = { 0 };
    pass(&v, 1, 8000);
    pass(&v, 2, 4000);
    pass(&v, 3, 2000);
    assert_int_equal(v.kind, LM_VERDICT_CONVERGING);
    /* Then it stops shrinking: 3 flat passes fill the window. */
    pass(&v, 4, 2000);
    pass(&v, 5, 2000);
    pass(&v, 6, 2000);
    assert_int_equal(v.kind, LM_VERDICT_STALLED);
    assert_true(v.shrink > 0.99 && v.shrink < 1.01);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_stalls_at_pass_2),
        cmocka_unit_test(test_shrinking_converges),
        cmocka_unit_test(test_too_slow_stalls),
        cmocka_unit_test(test_window_forgets_old_passes),
        cmocka_unit_test(test_pass_1_against_its_own_length),
    };
    return cmocka_run_group_tests_name("convergence", tests, NULL, NULL);
}
