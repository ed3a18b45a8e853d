/* test-framing.c - unit tests of the QMP input framing (no sockets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "monitor/qmp-framing.h"

#define MAXV 16

typedef struct seen {
    json_object *vals[MAXV];
    char errs[MAXV][256];
    int n;            /* callbacks in order: values and errors */
    int nerr;
    bool oversize;
} seen;

static void on_value(void *opaque, json_object *v, const char *error,
                     bool oversize)
{
    seen *s = opaque;
    assert_true(s->n < MAXV);
    s->vals[s->n] = v;
    s->errs[s->n][0] = '\0';
    if (error) {
        snprintf(s->errs[s->n], sizeof(s->errs[0]), "%s", error);
        s->nerr++;
    }
    if (oversize)
        s->oversize = true;
    s->n++;
}

static void seen_free(seen *s)
{
    for (int i = 0; i < s->n; i++)
        json_object_put(s->vals[i]);
}

static bool feed(lm_qmp_parser *p, const char *str, seen *s)
{
    return lm_qmp_parser_feed(p, str, strlen(str), on_value, s);
}

static const char *member_str(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return json_object_get_string(v);
}

static void test_one_object(void **state)
{
    (void)state;
    seen s = {0};
    lm_qmp_parser *p = lm_qmp_parser_new(LM_QMP_MAX_INPUT);
    assert_true(feed(p, "{\"execute\": \"query-status\"}\n", &s));
    assert_int_equal(s.n, 1);
    assert_string_equal(member_str(s.vals[0], "execute"), "query-status");
    assert_false(lm_qmp_parser_pending(p));
    seen_free(&s);
    lm_qmp_parser_free(p);
}

static void test_split_across_reads(void **state)
{
    (void)state;
    seen s = {0};
    lm_qmp_parser *p = lm_qmp_parser_new(LM_QMP_MAX_INPUT);
    const char *msg = "{\"execute\": \"migrate\", \"arguments\": "
                      "{\"uri\": \"tcp:127.0.0.1:4444\"}, \"id\": 7}\n";
    /* One byte at a time. */
    for (size_t i = 0; msg[i]; i++)
        assert_true(lm_qmp_parser_feed(p, msg + i, 1, on_value, &s));
    assert_int_equal(s.n, 1);
    assert_int_equal(s.nerr, 0);
    assert_string_equal(member_str(s.vals[0], "execute"), "migrate");
    json_object *args;
    assert_true(json_object_object_get_ex(s.vals[0], "arguments", &args));
    assert_string_equal(member_str(args, "uri"), "tcp:127.0.0.1:4444");
    seen_free(&s);
    lm_qmp_parser_free(p);
}

static void test_several_in_one_read(void **state)
{
    (void)state;
    seen s = {0};
    lm_qmp_parser *p = lm_qmp_parser_new(LM_QMP_MAX_INPUT);
    assert_true(feed(p, "{\"execute\":\"a\"}{\"execute\":\"b\"}\n"
                        "  {\"execute\":\"c\"}\r\n{\"exec", &s));
    assert_int_equal(s.n, 3);
    assert_string_equal(member_str(s.vals[0], "execute"), "a");
    assert_string_equal(member_str(s.vals[1], "execute"), "b");
    assert_string_equal(member_str(s.vals[2], "execute"), "c");
    assert_true(lm_qmp_parser_pending(p));
    assert_true(feed(p, "ute\":\"d\"}", &s));
    assert_int_equal(s.n, 4);
    assert_string_equal(member_str(s.vals[3], "execute"), "d");
    seen_free(&s);
    lm_qmp_parser_free(p);
}

static void test_non_object_values_pass_through(void **state)
{
    (void)state;
    seen s = {0};
    lm_qmp_parser *p = lm_qmp_parser_new(LM_QMP_MAX_INPUT);
    /* Framing accepts any JSON value; the monitor rejects non-objects. */
    assert_true(feed(p, "[1,2] \"str\" 42\n", &s));
    assert_int_equal(s.n, 3);
    assert_int_equal(s.nerr, 0);
    assert_true(json_object_is_type(s.vals[0], json_type_array));
    assert_true(json_object_is_type(s.vals[1], json_type_string));
    assert_true(json_object_is_type(s.vals[2], json_type_int));
    seen_free(&s);
    lm_qmp_parser_free(p);
}

static void test_invalid_json_resets(void **state)
{
    (void)state;
    seen s = {0};
    lm_qmp_parser *p = lm_qmp_parser_new(LM_QMP_MAX_INPUT);
    assert_true(feed(p, "{\"execute\": nonsense, more garbage}\n"
                        "{\"execute\": \"ok\"}\n", &s));
    assert_int_equal(s.n, 2);
    assert_int_equal(s.nerr, 1);
    assert_null(s.vals[0]);
    assert_non_null(strstr(s.errs[0], "JSON parse error, "));
    assert_string_equal(member_str(s.vals[1], "execute"), "ok");
    /* Garbage split over reads: skipped until the newline arrives. */
    assert_true(feed(p, "}}}", &s));
    assert_int_equal(s.n, 3);
    assert_true(feed(p, "still garbage", &s));
    assert_true(feed(p, " more\n{\"execute\": \"after\"}", &s));
    assert_int_equal(s.n, 4);
    assert_string_equal(member_str(s.vals[3], "execute"), "after");
    assert_false(s.oversize);
    seen_free(&s);
    lm_qmp_parser_free(p);
}

static void test_error_at_newline(void **state)
{
    (void)state;
    seen s = {0};
    lm_qmp_parser *p = lm_qmp_parser_new(LM_QMP_MAX_INPUT);
    /* The newline itself is the bad byte: the next line must still parse. */
    assert_true(feed(p, "{\"a\": tru\n{\"execute\": \"x\"}\n", &s));
    assert_int_equal(s.nerr, 1);
    assert_int_equal(s.n, 2);
    assert_string_equal(member_str(s.vals[1], "execute"), "x");
    seen_free(&s);
    lm_qmp_parser_free(p);
}

static void test_oversize(void **state)
{
    (void)state;
    seen s = {0};
    const size_t limit = 4096;
    lm_qmp_parser *p = lm_qmp_parser_new(limit);
    assert_true(feed(p, "{\"execute\": \"small\"}\n", &s));
    char *big = malloc(1024);
    memset(big, 'a', 1023);
    big[1023] = '\0';
    assert_true(feed(p, "{\"execute\": \"", &s));
    bool ok = true;
    int rounds = 0;
    while (ok && rounds < 100) {
        ok = feed(p, big, &s);
        rounds++;
    }
    assert_false(ok);
    assert_true(rounds <= 5);
    assert_true(s.oversize);
    assert_int_equal(s.nerr, 1);
    assert_non_null(strstr(s.errs[1], "longer than 4096 bytes"));
    /* Dead from now on. */
    assert_false(feed(p, "{}\n", &s));
    assert_int_equal(s.n, 2);
    free(big);
    seen_free(&s);
    lm_qmp_parser_free(p);
}

static void test_oversize_single_read(void **state)
{
    (void)state;
    seen s = {0};
    const size_t limit = 1000;
    lm_qmp_parser *p = lm_qmp_parser_new(limit);
    char *big = malloc(5000);
    big[0] = '[';
    for (int i = 1; i < 4998; i++)
        big[i] = i % 2 ? '1' : ',';
    big[4998] = ']';
    big[4999] = '\0';
    assert_false(feed(p, big, &s));
    assert_true(s.oversize);
    assert_int_equal(s.n, 1);
    /* Exactly at the limit is fine. */
    lm_qmp_parser *q = lm_qmp_parser_new(10);
    seen t = {0};
    assert_true(feed(q, "[1,2,3,45]", &t));
    assert_int_equal(t.n, 1);
    assert_false(t.oversize);
    seen_free(&t);
    lm_qmp_parser_free(q);
    free(big);
    seen_free(&s);
    lm_qmp_parser_free(p);
}

static void test_oversize_garbage_line(void **state)
{
    (void)state;
    seen s = {0};
    lm_qmp_parser *p = lm_qmp_parser_new(100);
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_true(feed(p, "x", &s));       /* error, then skipping */
    assert_int_equal(s.nerr, 1);
    assert_false(feed(p, big, &s));      /* an endless bad line */
    assert_true(s.oversize);
    seen_free(&s);
    lm_qmp_parser_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_object),
        cmocka_unit_test(test_split_across_reads),
        cmocka_unit_test(test_several_in_one_read),
        cmocka_unit_test(test_non_object_values_pass_through),
        cmocka_unit_test(test_invalid_json_resets),
        cmocka_unit_test(test_error_at_newline),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_oversize_single_read),
        cmocka_unit_test(test_oversize_garbage_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
