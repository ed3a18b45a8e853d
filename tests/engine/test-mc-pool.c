/*
 * test-mc-pool.c - the checkpoint pool: memory backs what epochs use,
 * grows by half again, shrinks to the recent worst after a burst, never
 * passes its cap; filled front to back (the backup's staging area) as
 * well as slot by slot (the primary).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "engine/mc-pool.h"

#define HUGE_SLOTS 512u

static void test_take_grows_and_is_writable(void **state)
{
    (void)state;
    lm_mc_pool p;
    livemig_error err = { 0 };
    assert_true(lm_mc_pool_init(&p, 4096, &err));
    assert_int_equal(lm_mc_pool_bytes(&p), 0);
    for (uint32_t i = 0; i < 1000; i++) {
        uint32_t s = lm_mc_pool_take(&p);
        assert_int_equal(s, i);
        memset(lm_mc_pool_at(&p, s), (int)(i & 0xff), 4096);
    }
    assert_true(p.populated >= 1000);
    assert_true(p.populated % HUGE_SLOTS == 0);
    assert_int_equal(lm_mc_pool_at(&p, 999)[4095], 999 & 0xff);
    lm_mc_pool_destroy(&p);
}

static void test_cap(void **state)
{
    (void)state;
    lm_mc_pool p;
    livemig_error err = { 0 };
    assert_true(lm_mc_pool_init(&p, 600, &err));
    size_t cap = p.cap;   /* rounded up to huge pages */
    assert_int_equal(cap, 2 * HUGE_SLOTS);
    for (size_t i = 0; i < cap; i++)
        assert_int_not_equal(lm_mc_pool_take(&p), LM_MC_NO_SLOT);
    assert_int_equal(lm_mc_pool_take(&p), LM_MC_NO_SLOT);
    assert_false(lm_mc_pool_use(&p, cap + 1));
    assert_true(p.populated <= cap);
    lm_mc_pool_destroy(&p);
}

static void test_use_front_to_back_and_shrink(void **state)
{
    (void)state;
    lm_mc_pool p;
    livemig_error err = { 0 };
    assert_true(lm_mc_pool_init(&p, 1u << 18, &err));
    /* A burst: one epoch of 100k slots, filled in pieces as records
     * arrive, each piece writable at once. */
    for (size_t n = 256; n <= 100000; n += 256) {
        assert_true(lm_mc_pool_use(&p, n));
        lm_mc_pool_at(&p, (uint32_t)(n - 1))[0] = 1;
    }
    assert_true(lm_mc_pool_use(&p, 100000));
    assert_true(lm_mc_pool_use(&p, 50000));   /* never shrinks in an epoch */
    assert_int_equal(p.used, 100000);
    size_t burst = p.populated;
    assert_true(burst >= 100000);
    /* Growth is geometric: few calls, and not far beyond the need. */
    assert_true(burst <= 100000 + 100000 / 2 + HUGE_SLOTS);
    lm_mc_pool_epoch_end(&p);
    assert_int_equal(p.used, 0);
    /* Then 16 small epochs: the burst is forgotten and memory goes back
     * to a little more than the small epochs need. */
    for (int e = 0; e < 16; e++) {
        assert_true(lm_mc_pool_use(&p, 1000));
        lm_mc_pool_epoch_end(&p);
    }
    assert_true(p.populated >= 1000);
    assert_true(p.populated <= 2 * HUGE_SLOTS + 1000 + 1000 / 4);
    assert_true(lm_mc_pool_bytes(&p) < burst * 4096u / 10);
    /* The peak stays what it was. */
    assert_int_equal(p.peak, burst);
    lm_mc_pool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_grows_and_is_writable),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_use_front_to_back_and_shrink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
