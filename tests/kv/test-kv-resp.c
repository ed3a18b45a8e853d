/*
 * test-kv-resp.c - unit tests of the RESP2 parser and writer
 * (src/guest/kv/kv-resp.h): every way a command can arrive, every
 * protocol error, and that a command arriving in pieces is scanned once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "guest/kv/kv-resp.h"

/* Parse @in (fed @chunk bytes at a time; 0 = all at once) and render the
 * commands as "a|b|c;" (or "!error;"). */
static char *run(const char *in, size_t len, size_t chunk)
{
    kv_resp_parser p;
    kv_resp_init(&p, NULL);
    char *buf = malloc(len + 1);
    size_t have = 0;
    static char out[65536];
    size_t o = 0;
    out[0] = '\0';
    if (!chunk)
        chunk = len;
    while (have < len || p.pos < have) {
        if (have < len) {
            size_t n = len - have < chunk ? len - have : chunk;
            memcpy(buf + have, in + have, n);
            have += n;
        }
        for (;;) {
            kv_resp_result r = kv_resp_parse(&p, buf, have);
            if (r == KV_RESP_NEED_MORE)
                break;
            if (r == KV_RESP_ERROR) {
                o += (size_t)snprintf(out + o, sizeof(out) - o, "!%s;",
                                      p.error);
                goto done;
            }
            assert_int_equal(r, KV_RESP_COMMAND);
            for (size_t i = 0; i < p.argc; i++)
                o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%.*s",
                                      i ? "|" : "", (int)p.argv[i].len,
                                      buf + p.argv[i].off);
            o += (size_t)snprintf(out + o, sizeof(out) - o, ";");
            kv_resp_next(&p);
        }
        if (have == len)
            break;
    }
done:
    kv_resp_free(&p);
    free(buf);
    return out;
}

static void check(const char *in, const char *want)
{
    size_t len = strlen(in);
    /* The same result whole, byte by byte, and in odd pieces. */
    size_t chunks[] = { 0, 1, 2, 3, 7 };
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        const char *got = run(in, len, chunks[i]);
        if (strcmp(got, want))
            fail_msg("input '%s' in chunks of %zu: got '%s', want '%s'", in,
                     chunks[i], got, want);
    }
}

static void test_multibulk(void **state)
{
    (void)state;
    check("*1\r\n$4\r\nPING\r\n", "PING;");
    check("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", "SET|k|;");
    check("*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n",
          "GET|a;PING;");
    check("*0\r\n*-1\r\n*1\r\n$1\r\nx\r\n", "x;");
}

static void test_inline(void **state)
{
    (void)state;
    check("PING\r\n", "PING;");
    check("PING\n", "PING;");
    check("\r\n\n  SET   a  b \r\nGET a\n", "SET|a|b;GET|a;");
    check("SET \"a b\" 'c d'\r\n", "SET|a b|c d;");
    check("ECHO \"\\x41\\t\"\n", "ECHO|A\t;");
    check("ECHO 'it\\'s'\n", "ECHO|it's;");
    check("SET \"a\"b\n", "!Protocol error: unbalanced quotes in request;");
    check("SET 'a\n", "!Protocol error: unbalanced quotes in request;");
}

static void test_errors(void **state)
{
    (void)state;
    check("*x\r\n", "!Protocol error: invalid multibulk length;");
    check("*3000000000\r\n", "!Protocol error: invalid multibulk length;");
    check("*1\r\n+x\r\n", "!Protocol error: expected '$', got '+';");
    check("*1\r\n$-1\r\n", "!Protocol error: invalid bulk length;");
    check("*1\r\n$1x\r\n", "!Protocol error: invalid bulk length;");
    check("*1\r\n$536870913\r\n", "!Protocol error: invalid bulk length;");
    /* Good commands before the error are returned first. */
    check("PING\r\n*1\r\n$-1\r\n", "PING;!Protocol error: invalid bulk "
                                   "length;");
    /* Limits from the caller. */
    kv_resp_limits lim = { .max_bulk = 4, .max_inline = 8, .max_args = 2 };
    kv_resp_parser p;
    char b1[] = "*1\r\n$5\r\n";
    kv_resp_init(&p, &lim);
    assert_int_equal(kv_resp_parse(&p, b1, strlen(b1)), KV_RESP_ERROR);
    kv_resp_free(&p);
    char b2[] = "*3\r\n";
    kv_resp_init(&p, &lim);
    assert_int_equal(kv_resp_parse(&p, b2, strlen(b2)), KV_RESP_ERROR);
    kv_resp_free(&p);
    char b3[] = "123456789";
    kv_resp_init(&p, &lim);
    assert_int_equal(kv_resp_parse(&p, b3, strlen(b3)), KV_RESP_ERROR);
    assert_string_equal(p.error, "Protocol error: too big inline request");
    kv_resp_free(&p);
}

/* A 1 M-argument command fed 64 KiB at a time parses in linear time. */
static void test_huge_command_resumes(void **state)
{
    (void)state;
    size_t n = 1000000, cap = n * 12 + 64;
    char *in = malloc(cap);
    size_t len = (size_t)sprintf(in, "*%zu\r\n", n);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(in + len, "$2\r\nab\r\n");
    kv_resp_parser p;
    kv_resp_init(&p, NULL);
    clock_t t0 = clock();
    size_t have = 0, calls = 0;
    kv_resp_result r = KV_RESP_NEED_MORE;
    while (r == KV_RESP_NEED_MORE && have < len) {
        have = have + 65536 < len ? have + 65536 : len;
        r = kv_resp_parse(&p, in, have);
        calls++;
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_int_equal(r, KV_RESP_COMMAND);
    assert_int_equal(p.argc, n);
    assert_int_equal(p.argv[n - 1].len, 2);
    assert_memory_equal(in + p.argv[n - 1].off, "ab", 2);
    /* Quadratic rescanning would take minutes; linear takes well under
     * one second even under sanitizers. */
    if (secs > 20)
        fail_msg("parsing 1M arguments in %zu reads took %.1f s", calls,
                 secs);
    kv_resp_next(&p);
    assert_true(kv_resp_pending_bytes(&p, have) < 1024);
    kv_resp_free(&p);
    free(in);
}

static void test_writer(void **state)
{
    (void)state;
    kv_out o = { 0 };
    kv_out_status(&o, "OK");
    kv_out_error(&o, "ERR bad\r\nthing %d", 7);
    kv_out_int(&o, -42);
    kv_out_bulk(&o, "a\0b", 3);
    kv_out_null(&o);
    kv_out_array(&o, 2);
    kv_out_bulk_int(&o, 5);
    kv_out_null_array(&o);
    const char want[] = "+OK\r\n-ERR bad  thing 7\r\n:-42\r\n$3\r\na\0b\r\n"
                        "$-1\r\n*2\r\n$1\r\n5\r\n*-1\r\n";
    assert_int_equal(o.len, sizeof(want) - 1);
    assert_memory_equal(o.p, want, sizeof(want) - 1);
    assert_false(o.oom);
    kv_out_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_huge_command_resumes),
        cmocka_unit_test(test_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
