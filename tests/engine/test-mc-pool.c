/*
 * test-mc-pool.c - the checkpoint pool: memory backs what epochs use,
 * grows by half again keeping what it holds, shrinks to the recent worst
 * after a burst, never passes its cap; filled front to back (the backup's
 * staging area) as well as slot by slot (the primary).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "engine/mc-pool.h"

#define HUGE_SLOTS 512u

/* Slots keep their bytes while the pool grows behind them. */
static void test_take_grows_and_keeps_data(void **state)
{
    (void)state;
    lm_mc_pool p;
    livemig_error err = { 0 };
    assert_true(lm_mc_pool_init(&p, 4096, &err));
    assert_int_equal(lm_mc_pool_bytes(&p), 0);
    for (uint32_t i = 0; i < 2000; i++) {
        uint32_t s = lm_mc_pool_take(&p);
        assert_int_equal(s, i);
        assert_true(p.populated > i);   /* backed before it is handed out */
        memset(lm_mc_pool_at(&p, s), (int)(i & 0xff), 4096);
    }
    assert_true(p.populated % HUGE_SLOTS == 0);
    assert_int_equal(lm_mc_pool_bytes(&p), p.populated * 4096u);
    for (uint32_t i = 0; i < 2000; i++) {
        const uint8_t *b = lm_mc_pool_at(&p, i);
        assert_int_equal(b[0], i & 0xff);
        assert_int_equal(b[4095], i & 0xff);
    }
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
        assert_int_equal(lm_mc_pool_take(&p), i);
    assert_int_equal(lm_mc_pool_take(&p), LM_MC_NO_SLOT);
    assert_int_equal(p.populated, cap);
    lm_mc_pool_epoch_end(&p);
    assert_true(lm_mc_pool_use(&p, cap));
    assert_false(lm_mc_pool_use(&p, cap + 1));
    assert_int_equal(p.used, cap);
    assert_int_equal(p.populated, cap);
    lm_mc_pool_destroy(&p);
}

/* The backup's way: filled front to back as records arrive. */
static void test_use_front_to_back_and_shrink(void **state)
{
    (void)state;
    enum { BURST = 20000, SMALL = 1000 };
    lm_mc_pool p;
    livemig_error err = { 0 };
    assert_true(lm_mc_pool_init(&p, 1u << 18, &err));
    size_t calls_that_grew = 0;
    for (size_t n = 256; n <= BURST; n += 256) {
        size_t before = p.populated;
        assert_true(lm_mc_pool_use(&p, n));
        assert_true(p.populated >= n);
        calls_that_grew += p.populated != before;
        lm_mc_pool_at(&p, (uint32_t)(n - 1))[0] = (uint8_t)(n / 256);
    }
    assert_true(lm_mc_pool_use(&p, BURST));
    assert_true(lm_mc_pool_use(&p, BURST / 2));   /* never shrinks in use */
    assert_int_equal(p.used, BURST);
    for (size_t n = 256; n <= BURST; n += 256)
        assert_int_equal(lm_mc_pool_at(&p, (uint32_t)(n - 1))[0],
                         (uint8_t)(n / 256));
    /* Geometric: a handful of populate calls, not one per record, and
     * not far beyond the need. */
    assert_true(calls_that_grew <= 12);   /* of 78 records */
    size_t burst = p.populated;
    assert_true(burst <= BURST + BURST / 2 + HUGE_SLOTS);
    lm_mc_pool_epoch_end(&p);
    assert_int_equal(p.used, 0);
    /* The next epochs are small: memory stays while the burst is among
     * the last 16, then goes back to a little more than they need. */
    assert_true(lm_mc_pool_use(&p, SMALL));
    lm_mc_pool_epoch_end(&p);
    assert_int_equal(p.populated, burst);
    for (int e = 0; e < 16; e++) {
        assert_true(lm_mc_pool_use(&p, SMALL));
        lm_mc_pool_epoch_end(&p);
    }
    assert_true(p.populated >= SMALL);
    assert_true(p.populated <= 2 * HUGE_SLOTS + SMALL + SMALL / 4);
    assert_int_equal(p.peak, burst);
    lm_mc_pool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_grows_and_keeps_data),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_use_front_to_back_and_shrink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
