/* test-framing.c - unit tests of the QMP input framing (no sockets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/utf8.h"
#include "monitor/qmp-framing.h"
#include "monitor/qmp-strict.h"

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

/* Strict mode: a value split across reads is checked whole; values
 * that fail are reported as errors and the next one still parses. */
static void test_strict_split_and_errors(void **state)
{
    (void)state;
    lm_qmp_parser *p = lm_qmp_parser_new(1 << 16);
    lm_qmp_parser_set_strict(p, true);
    seen s = { 0 };
    assert_true(feed(p, "{\"execute\": \"a\", \"id\": 1234567890123", &s));
    assert_int_equal(s.n, 0);
    assert_true(feed(p, "4567890123456789 }\n{\"a\":1,\"a\":2}\n"
                        "{\"b\":\"x\\u0000\"}{\"c\":true}", &s));
    assert_int_equal(s.n, 4);
    json_object *id = json_object_object_get(s.vals[0], "id");
    assert_string_equal(json_object_to_json_string(id),
                        "12345678901234567890123456789");
    assert_null(s.vals[1]);
    assert_non_null(strstr(s.errs[1], "member 'a' twice"));
    assert_null(s.vals[2]);
    assert_non_null(strstr(s.errs[2], "NUL"));
    assert_non_null(s.vals[3]);
    seen_free(&s);
    lm_qmp_parser_free(p);
}

static void strict_ok(const char *text, json_object **out)
{
    json_object *v = json_tokener_parse(text);
    char why[256];
    if (!lm_qmp_strict_check(text, strlen(text), v, why, sizeof(why)))
        fail_msg("'%s' refused: %s", text, why);
    if (out)
        *out = v;
    else
        json_object_put(v);
}

static void strict_bad(const char *text, const char *part)
{
    json_object *v = json_tokener_parse(text);
    char why[256];
    if (lm_qmp_strict_check(text, strlen(text), v, why, sizeof(why)))
        fail_msg("'%s' accepted, expected '%s'", text, part);
    if (!strstr(why, part))
        fail_msg("'%s': '%s' lacks '%s'", text, why, part);
    json_object_put(v);
}

static void test_strict_rules(void **state)
{
    (void)state;
    strict_ok("{\"a\": [1, -0.5e+3, \"\\ud83d\\ude00\", true, null]}", NULL);
    strict_ok(" {\"k\":{\"k\":1}} ", NULL);     /* same name, two objects */
    strict_ok("{\"id\":\"\\u0000\"}", NULL);        /* NUL only in the id */
    strict_bad("{\"a\":1,\"\\u0061\":2}", "member 'a' twice");
    strict_bad("{\"a\":\"\\ud800\"}", "lone UTF-16 surrogate");
    strict_bad("{\"a\":\"\\udc00x\"}", "lone UTF-16 surrogate");
    strict_bad("{\"a\":\"\xe2\x82\"}", "not valid UTF-8");
    strict_bad("{\"a\":\"\xf4\x90\x80\x80\"}", "not valid UTF-8");
    strict_bad("{\"a\":1.}", "digits must follow '.'");
    strict_bad("{\"a\":'x'}", "unexpected character");
    strict_bad("{\"a\":[1,2,]}", "unexpected character");
    strict_bad("{\"id\":{\"x\\u0000\":1}}", "NUL");  /* keys never */

    json_object *v;
    strict_ok("{\"n\":-99999999999999999999,\"m\":42,\"d\":1e400}", &v);
    assert_string_equal(json_object_to_json_string_ext(
        json_object_object_get(v, "n"), JSON_C_TO_STRING_PLAIN),
        "-99999999999999999999");
    assert_string_equal(json_object_to_json_string_ext(
        json_object_object_get(v, "m"), JSON_C_TO_STRING_PLAIN), "42");
    assert_string_equal(json_object_to_json_string_ext(
        json_object_object_get(v, "d"), JSON_C_TO_STRING_PLAIN), "1e400");
    json_object_put(v);
    strict_ok("{\"id\" : { \"a\" : [ 1 , \"b c\\/\" ] } }", &v);
    assert_string_equal(json_object_to_json_string_ext(
        json_object_object_get(v, "id"), JSON_C_TO_STRING_PLAIN),
        "{\"a\":[1,\"b c\\/\"]}");
    json_object_put(v);
}

static void test_utf8(void **state)
{
    (void)state;
    size_t bad = 0;
    assert_true(lm_utf8_valid("d\xc3\xa9j\xc3\xa0 \xf0\x9f\x98\x80", 11, NULL));
    assert_false(lm_utf8_valid("ab\xff", 3, &bad));
    assert_int_equal(bad, 2);
    assert_false(lm_utf8_valid("\xc0\xaf", 2, NULL));          /* overlong */
    assert_false(lm_utf8_valid("\xed\xa0\x80", 3, NULL));      /* surrogate */
    assert_false(lm_utf8_valid("\xf4\x90\x80\x80", 4, NULL));  /* > U+10FFFF */
    assert_false(lm_utf8_valid("\xe2\x82", 2, NULL));          /* cut short */
    const char *in = "{\"a\":\"\xff\xc3\xa9\xc3\"}";
    char *r = lm_utf8_replace_invalid(in, strlen(in),
                                      "\\ufffd");
    assert_string_equal(r, "{\"a\":\"\\ufffd\xc3\xa9\\ufffd\"}");
    free(r);
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
        cmocka_unit_test(test_strict_split_and_errors),
        cmocka_unit_test(test_strict_rules),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
