/* test-suggest.c - "did you mean": the distance and the choice. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/suggest.h"

static void test_distance(void **state)
{
    (void)state;
    assert_int_equal(lm_edit_distance("xbzrle", "xbzrle"), 0);
    assert_int_equal(lm_edit_distance("downtime_limit", "downtime-limit"), 0);
    assert_int_equal(lm_edit_distance("downtime-limt", "downtime-limit"), 1);
    assert_int_equal(lm_edit_distance("xbzlre", "xbzrle"), 1);   /* swap */
    assert_int_equal(lm_edit_distance("", "abc"), 3);
    assert_int_equal(lm_edit_distance("kitten", "sitting"), 3);
}

static void test_best(void **state)
{
    (void)state;
    const char *names[] = { "events", "xbzrle", "auto-converge", "multifd" };
    lm_suggest s;
    lm_suggest_init(&s, "evnets");
    for (size_t i = 0; i < 4; i++)
        lm_suggest_add(&s, names[i]);
    assert_string_equal(lm_suggest_best(&s), "events");
    lm_suggest_init(&s, "qwertyuiop");
    for (size_t i = 0; i < 4; i++)
        lm_suggest_add(&s, names[i]);
    assert_null(lm_suggest_best(&s));
    /* short words: one edit at most */
    const char *cmds[] = { "stop", "cont", "c" };
    lm_suggest_init(&s, "sotp");
    for (size_t i = 0; i < 3; i++)
        lm_suggest_add(&s, cmds[i]);
    assert_string_equal(lm_suggest_best(&s), "stop");
    lm_suggest_init(&s, "xy");
    for (size_t i = 0; i < 3; i++)
        lm_suggest_add(&s, cmds[i]);
    assert_null(lm_suggest_best(&s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distance),
        cmocka_unit_test(test_best),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
