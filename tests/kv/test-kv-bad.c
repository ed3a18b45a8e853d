/*
 * test-kv-bad.c - bad input gets an error, never a crash or a lost key:
 * malformed RESP, a 512 MiB bulk length, 1 M-argument commands, binary
 * keys, a client that never reads its replies, a full block; and 10,000
 * clients at once.  Each case checks that a key stored before is still
 * there and that other clients are served.
 */
#include "kvtest.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Start a store with @extra, put a canary key in it; return the port. */
static int start_with_canary(const char *extra)
{
    int port = lmh_port();
    kvt_start(port, extra, NULL);
    kvt_wait_serving(port, 30000);
    kvt_conn *c = kvt_open(port, 5000);
    kvt_expect(c, "SET canary alive", "+OK");
    kvt_close(c);
    return port;
}

/* The store still serves and still has the canary. */
static void still_fine(int port)
{
    kvt_conn *c = kvt_open(port, 5000);
    kvt_expect(c, "PING", "+PONG");
    kvt_expect(c, "GET canary", "$alive");
    kvt_close(c);
}

/* Send @bad on a fresh connection: the reply is @want, then the server
 * closes the connection. */
static void protocol_error(int port, const char *bad, size_t len,
                           const char *want)
{
    kvt_conn *c = kvt_open(port, 5000);
    assert_true(kvt_send(c, bad, len));
    char *r = kvt_reply(c, 10000);
    if (!r || strcmp(r, want))
        kvt_fail("sent %.40s...: got '%s', expected '%s'", bad,
                r ? r : "(nothing)", want);
    free(r);
    if (!kvt_wait_closed(c, 10000))
        kvt_fail("the connection stayed open after '%s'", want);
    kvt_close(c);
}

static void test_malformed_resp(void **state)
{
    (void)state;
    int port = start_with_canary(NULL);
    static const struct { const char *in, *want; } cases[] = {
        { "*abc\r\n", "-ERR Protocol error: invalid multibulk length" },
        { "*-\r\n", "-ERR Protocol error: invalid multibulk length" },
        { "*99999999999\r\n", "-ERR Protocol error: invalid multibulk "
                              "length" },
        { "*2\r\n+foo\r\n", "-ERR Protocol error: expected '$', got '+'" },
        { "*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length" },
        { "*1\r\n$x\r\n", "-ERR Protocol error: invalid bulk length" },
        { "*1\r\n$01\r\n", "-ERR Protocol error: invalid bulk length" },
        { "SET \"a b\"c\r\n", "-ERR Protocol error: unbalanced quotes in "
                              "request" },
        { "GET 'unterminated\r\n", "-ERR Protocol error: unbalanced quotes "
                                   "in request" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* Good commands before the bad bytes are answered first. */
        char buf[256];
        int n = snprintf(buf, sizeof(buf), "PING\r\n%s", cases[i].in);
        kvt_conn *c = kvt_open(port, 5000);
        assert_true(kvt_send(c, buf, (size_t)n));
        char *r = kvt_reply(c, 10000);
        assert_non_null(r);
        assert_string_equal(r, "+PONG");
        free(r);
        r = kvt_reply(c, 10000);
        if (!r || strcmp(r, cases[i].want))
            kvt_fail("'%s': got '%s', expected '%s'", cases[i].in,
                    r ? r : "(nothing)", cases[i].want);
        free(r);
        assert_true(kvt_wait_closed(c, 10000));
        kvt_close(c);
    }
    /* An inline line longer than 64 KiB with no end. */
    size_t big = 100 * 1024;
    char *b = malloc(big);
    memset(b, 'x', big);
    protocol_error(port, b, big, "-ERR Protocol error: too big inline "
                                 "request");
    /* A count line with no end. */
    b[0] = '*';
    memset(b + 1, '1', big - 1);
    protocol_error(port, b, big, "-ERR Protocol error: too big mbulk count "
                                 "string");
    free(b);
    /* Random garbage never crashes it. */
    srand(42);
    for (int round = 0; round < 200; round++) {
        char g[512];
        size_t n = (size_t)(rand() % 512) + 1;
        for (size_t i = 0; i < n; i++)
            g[i] = (char)(rand() % 8 == 0 ? "*$\r\n-0:+"[rand() % 9]
                                          : rand());
        kvt_conn *c = kvt_open(port, 5000);
        kvt_send(c, g, n);
        kvt_send(c, "\r\nPING\r\n", 8);
        kvt_close(c);
    }
    still_fine(port);
    kvt_finish();
}

static void test_huge_bulk_length(void **state)
{
    (void)state;
    int port = start_with_canary(NULL);
    /* 512 MiB announced for a 64 MiB store: refused when the header
     * arrives, before anything is buffered for it. */
    const char *hdr = "*3\r\n$3\r\nSET\r\n$6\r\ncanary\r\n$536870912\r\n";
    protocol_error(port, hdr, strlen(hdr),
                   "-ERR Protocol error: invalid bulk length");
    /* Larger than Redis's own limit (proto-max-bulk-len). */
    hdr = "*2\r\n$3\r\nGET\r\n$536870913\r\n";
    protocol_error(port, hdr, strlen(hdr),
                   "-ERR Protocol error: invalid bulk length");
    still_fine(port);
    kvt_finish();
}

static void test_million_arguments(void **state)
{
    (void)state;
    int port = start_with_canary(NULL);
    kvt_conn *c = kvt_open(port, 5000);
    const size_t n = 1000000;
    /* EXISTS canary x 1M: one command of 1M + 1 arguments, 17 MB. */
    size_t cap = 32 + n * 20;
    char *b = malloc(cap);
    assert_non_null(b);
    size_t len = (size_t)sprintf(b, "*%zu\r\n$6\r\nEXISTS\r\n", n + 1);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(b + len, "$6\r\ncanary\r\n");
    assert_true(kvt_send(c, b, len));
    char *r = kvt_reply(c, 60000);
    assert_non_null(r);
    assert_string_equal(r, ":1000000");
    free(r);
    /* DEL of 1M keys that do not exist, then SADD of 200,000 members. */
    len = (size_t)sprintf(b, "*%zu\r\n$3\r\nDEL\r\n", n + 1);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(b + len, "$7\r\nk%06zu\r\n", i);
    assert_true(kvt_send(c, b, len));
    r = kvt_reply(c, 60000);
    assert_non_null(r);
    assert_string_equal(r, ":0");
    free(r);
    len = (size_t)sprintf(b, "*%d\r\n$4\r\nSADD\r\n$3\r\nbig\r\n", 200002);
    for (int i = 0; i < 200000; i++)
        len += (size_t)sprintf(b + len, "$7\r\nm%06d\r\n", i);
    assert_true(kvt_send(c, b, len));
    r = kvt_reply(c, 60000);
    assert_non_null(r);
    assert_string_equal(r, ":200000");
    free(r);
    kvt_expect(c, "SCARD big", ":200000");
    kvt_expect(c, "SISMEMBER big m123456", ":1");
    /* An unknown command of 1M arguments: Redis's message, clipped. */
    len = (size_t)sprintf(b, "*%zu\r\n$4\r\nNOPE\r\n", n + 1);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(b + len, "$1\r\nx\r\n");
    assert_true(kvt_send(c, b, len));
    r = kvt_reply(c, 60000);
    assert_non_null(r);
    assert_true(!strncmp(r, "-ERR unknown command 'NOPE', with args "
                            "beginning with: 'x' 'x' ", 60));
    assert_true(strlen(r) < 300);
    free(r);
    free(b);
    kvt_expect(c, "DEL big", ":1");
    kvt_close(c);
    still_fine(port);
    kvt_finish();
}

static void test_binary_keys(void **state)
{
    (void)state;
    int port = start_with_canary(NULL);
    kvt_conn *c = kvt_open(port, 5000);
    static const char key[] = "k\0\r\n\xff *?[";
    static const char val[] = "\0\0v\r\n\xfe";
    const char *set[] = { "SET", key, val };
    size_t setl[] = { 3, sizeof(key) - 1, sizeof(val) - 1 };
    assert_true(kvt_send_argv(c, 3, set, setl));
    char *r = kvt_reply(c, 10000);
    assert_string_equal(r, "+OK");
    free(r);
    const char *get[] = { "GET", key };
    size_t getl[] = { 3, sizeof(key) - 1 };
    assert_true(kvt_send_argv(c, 2, get, getl));
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "$\\x00\\x00v\\x0d\\x0a\\xfe");
    free(r);
    /* A key that is a prefix of it is another key. */
    getl[1] = 1;
    assert_true(kvt_send_argv(c, 2, get, getl));
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "$nil");
    free(r);
    /* The glob characters in it are plain bytes to GET, but match in
     * KEYS; the empty key is a key too. */
    r = kvt_cmd(c, "KEYS k*");
    assert_string_equal(r, "*[$k\\x00\\x0d\\x0a\\xff *?[]");
    free(r);
    const char *empty[] = { "SET", "", "e" };
    size_t emptyl[] = { 3, 0, 1 };
    assert_true(kvt_send_argv(c, 3, empty, emptyl));
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "+OK");
    free(r);
    const char *hset[] = { "HSET", key, key, val };
    size_t hsetl[] = { 4, sizeof(key) - 1, sizeof(key) - 1, sizeof(val) - 1 };
    assert_true(kvt_send_argv(c, 4, hset, hsetl));
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "-WRONGTYPE Operation against a key holding "
                           "the wrong kind of value");
    free(r);
    hset[1] = "h";
    hsetl[1] = 1;
    assert_true(kvt_send_argv(c, 4, hset, hsetl));
    r = kvt_reply(c, 10000);
    assert_string_equal(r, ":1");
    free(r);
    r = kvt_cmd(c, "HGETALL h");
    assert_string_equal(r, "*[$k\\x00\\x0d\\x0a\\xff *?[,"
                           "$\\x00\\x00v\\x0d\\x0a\\xfe]");
    free(r);
    kvt_expect(c, "DBSIZE", ":4");
    kvt_close(c);
    still_fine(port);
    kvt_finish();
}

static void test_client_never_reads(void **state)
{
    (void)state;
    int port = start_with_canary(",out-limit=1M");
    kvt_conn *c = kvt_open(port, 5000);
    /* A 64 KiB value, then GETs of it that the client never reads. */
    char *v = malloc(65536);
    memset(v, 'v', 65536);
    const char *set[] = { "SET", "fat", v };
    size_t setl[] = { 3, 3, 65536 };
    assert_true(kvt_send_argv(c, 3, set, setl));
    char *r = kvt_reply(c, 10000);
    assert_string_equal(r, "+OK");
    free(r);
    free(v);
    static const char get[] = "*2\r\n$3\r\nGET\r\n$3\r\nfat\r\n";
    kvt_conn *o = kvt_open(port, 5000);
    long long end = it_now_ms() + 30000;
    /* Keep asking until the server gives up on this client. */
    while (kvt_info_int(o, "clients_dropped_for_output") < 1) {
        if (it_now_ms() > end)
            kvt_fail("a client that never reads was not dropped within 30 s "
                    "(out-limit=1M)");
        for (int i = 0; i < 64; i++) {
            struct pollfd p = { c->fd, POLLOUT, 0 };
            if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLOUT))
                break;
            if (send(c->fd, get, sizeof(get) - 1,
                     MSG_NOSIGNAL | MSG_DONTWAIT) <= 0)
                break;
        }
        it_sleep_ms(10);
    }
    /* The others never noticed. */
    kvt_expect(o, "GET canary", "$alive");
    assert_true(kvt_info_int(o, "connected_clients") == 1);
    kvt_close(o);
    assert_true(kvt_wait_closed(c, 30000));
    kvt_close(c);
    still_fine(port);
    kvt_finish();
}

static void test_full_block(void **state)
{
    (void)state;
    int port = start_with_canary(",size=4M");
    kvt_conn *c = kvt_open(port, 5000);
    char *v = malloc(16384);
    memset(v, 'f', 16384);
    int stored = 0;
    char *r = NULL;
    for (int i = 0; i < 10000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "fill:%d", i);
        const char *set[] = { "SET", key, v };
        size_t setl[] = { 3, strlen(key), 16384 };
        assert_true(kvt_send_argv(c, 3, set, setl));
        r = kvt_reply(c, 10000);
        assert_non_null(r);
        if (strcmp(r, "+OK"))
            break;
        stored++;
        free(r);
        r = NULL;
    }
    assert_non_null(r);
    assert_string_equal(r, "-OOM command not allowed when used memory > "
                           "'maxmemory'.");
    free(r);
    /* Most of the 4 MiB held data before it said so. */
    if (stored < 150)
        kvt_fail("only %d values of 16 KiB fit in a 4 MiB store", stored);
    /* Small values still fit; fill those up too. */
    int small = 0;
    for (int i = 0; i < 100000; i++) {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "SET small:%d 0123456789abcdef", i);
        r = kvt_cmd(c, cmd);
        bool ok = !strcmp(r, "+OK");
        if (!ok)
            assert_string_equal(r, "-OOM command not allowed when used "
                                   "memory > 'maxmemory'.");
        free(r);
        if (!ok)
            break;
        small++;
    }
    stored += small;
    /* Writes that grow are refused; reads and deletes are served. */
    const char *push[] = { "LPUSH", "newlist", v };
    size_t pushl[] = { 5, 7, 1024 };
    assert_true(kvt_send_argv(c, 3, push, pushl));
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "-OOM command not allowed when used memory > "
                           "'maxmemory'.");
    free(r);
    kvt_expect(c, "GET canary", "$alive");
    char *got = kvt_cmd(c, "STRLEN fill:0");
    assert_string_equal(got, ":16384");
    free(got);
    char dbsize[32];
    snprintf(dbsize, sizeof(dbsize), ":%d", stored + 1);
    kvt_expect(c, "DBSIZE", dbsize);
    kvt_expect(c, "INCR canary", "-ERR value is not an integer or out of "
                                 "range");
    char *info = kvt_cmd(c, "INFO memory");
    assert_non_null(strstr(info, "used_memory:"));
    free(info);
    for (int i = 0; i < 20; i++) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "DEL fill:%d", i);
        kvt_expect(c, cmd, ":1");
    }
    /* The room deletes made is used again. */
    const char *set[] = { "SET", "again", v };
    size_t setl[] = { 3, 5, 16384 };
    assert_true(kvt_send_argv(c, 3, set, setl));
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "+OK");
    free(r);
    free(v);
    assert_true(kvt_info_int(c, "rejected_oom") >= 2);
    kvt_close(c);
    still_fine(port);
    kvt_finish();
}

static void test_ten_thousand_clients(void **state)
{
    (void)state;
    const int n = 10000;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max < (rlim_t)n + 200) {
        printf("SKIP: the open-files hard limit is %llu, 10,000 clients "
               "need %d\n", (unsigned long long)rl.rlim_max, n + 200);
        skip();
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int port = start_with_canary(NULL);
    kvt_conn **cs = calloc((size_t)n, sizeof(*cs));
    for (int i = 0; i < n; i++)
        cs[i] = kvt_open(port, 30000);
    /* Every one of them is served, in any order. */
    static const char ping[] = "*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
    for (int i = 0; i < n; i++)
        assert_true(kvt_send(cs[i], ping, sizeof(ping) - 1));
    for (int i = 0; i < n; i++) {
        char *r = kvt_reply(cs[i], 30000);
        if (!r || strcmp(r, "$hi"))
            kvt_fail("client %d of %d got '%s'", i, n, r ? r : "(nothing)");
        free(r);
    }
    long long clients = kvt_info_int(cs[0], "connected_clients");
    if (clients < n)
        kvt_fail("INFO says %lld clients, %d are connected", clients, n);
    for (int i = 0; i < n; i++)
        kvt_close(cs[i]);
    free(cs);
    still_fine(port);
    kvt_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_malformed_resp, kvt_teardown),
        cmocka_unit_test_teardown(test_huge_bulk_length, kvt_teardown),
        cmocka_unit_test_teardown(test_million_arguments, kvt_teardown),
        cmocka_unit_test_teardown(test_binary_keys, kvt_teardown),
        cmocka_unit_test_teardown(test_client_never_reads, kvt_teardown),
        cmocka_unit_test_teardown(test_full_block, kvt_teardown),
        cmocka_unit_test_teardown(test_ten_thousand_clients, kvt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
