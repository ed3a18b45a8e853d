/*
 * test-kv-commands.c - every command of the kv store through redis-cli
 * (Debian's redis-tools), pipelining, expiry, Redis's error texts, and a
 * short redis-benchmark load.
 */
#include "kvtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One redis-cli call: its arguments and its --no-raw output. */
typedef struct cli_case {
    const char *args[12];
    const char *want;
} cli_case;

#define C(...) { { __VA_ARGS__, NULL }
static const cli_case cases[] = {
    /* connection and server */
    C("PING"), "PONG" },
    C("PING", "hello"), "\"hello\"" },
    C("ECHO", "a b"), "\"a b\"" },
    C("SELECT", "0"), "OK" },
    C("SELECT", "1"), "(error) ERR DB index is out of range" },
    C("CLIENT", "SETNAME", "me"), "OK" },
    C("CLIENT", "GETNAME"), "(nil)" },
    C("CLIENT", "SETNAME", "a b"), "(error) ERR Client names cannot contain "
      "spaces, newlines or special characters." },
    C("CONFIG", "GET", "appendonly"), "1) \"appendonly\"\n2) \"no\"" },
    C("CONFIG", "GET", "save"), "1) \"save\"\n2) \"\"" },
    C("COMMAND", "COUNT"), "(integer) 56" },
    C("DBSIZE"), "(integer) 0" },
    /* strings */
    C("SET", "s", "v1"), "OK" },
    C("GET", "s"), "\"v1\"" },
    C("SET", "s", "v2", "NX"), "(nil)" },
    C("SET", "s", "v2", "XX", "GET"), "\"v1\"" },
    C("SET", "nokey", "v", "XX"), "(nil)" },
    C("SET", "s", "v3", "EX", "100"), "OK" },
    C("TTL", "s"), "(integer) 100" },
    C("SET", "s", "v4", "KEEPTTL"), "OK" },
    C("TTL", "s"), "(integer) 100" },
    C("SET", "s", "v5", "PX", "100000"), "OK" },
    C("PTTL", "s"), NULL },   /* 99xxx-100000: checked below */
    C("SET", "s", "v", "EX", "0"), "(error) ERR invalid expire time in "
      "'set' command" },
    C("SET", "s", "v", "EX", "x"), "(error) ERR value is not an integer or "
      "out of range" },
    C("SET", "s", "v", "FOO"), "(error) ERR syntax error" },
    C("SET", "s", "plain"), "OK" },
    C("TTL", "s"), "(integer) -1" },
    C("SETNX", "s", "x"), "(integer) 0" },
    C("SETNX", "s2", "x"), "(integer) 1" },
    C("SETEX", "s3", "50", "y"), "OK" },
    C("TTL", "s3"), "(integer) 50" },
    C("GETSET", "s2", "z"), "\"x\"" },
    C("GETDEL", "s2"), "\"z\"" },
    C("GETDEL", "s2"), "(nil)" },
    C("MSET", "a", "1", "b", "2"), "OK" },
    C("MGET", "a", "b", "nokey"), "1) \"1\"\n2) \"2\"\n3) (nil)" },
    C("INCR", "a"), "(integer) 2" },
    C("DECR", "a"), "(integer) 1" },
    C("INCRBY", "a", "10"), "(integer) 11" },
    C("DECRBY", "a", "20"), "(integer) -9" },
    C("INCR", "s"), "(error) ERR value is not an integer or out of range" },
    C("SET", "big", "9223372036854775807"), "OK" },
    C("INCR", "big"), "(error) ERR increment or decrement would overflow" },
    C("APPEND", "ap", "hello"), "(integer) 5" },
    C("APPEND", "ap", " world"), "(integer) 11" },
    C("GET", "ap"), "\"hello world\"" },
    C("STRLEN", "ap"), "(integer) 11" },
    C("STRLEN", "nokey"), "(integer) 0" },
    /* keys */
    C("EXISTS", "a", "b", "nokey", "a"), "(integer) 3" },
    C("TYPE", "a"), "string" },
    C("TYPE", "nokey"), "none" },
    C("EXPIRE", "a", "100"), "(integer) 1" },
    C("TTL", "a"), "(integer) 100" },
    C("PERSIST", "a"), "(integer) 1" },
    C("PERSIST", "a"), "(integer) 0" },
    C("PEXPIRE", "a", "100000"), "(integer) 1" },
    C("EXPIRE", "a", "200", "GT"), "(integer) 1" },
    C("EXPIRE", "a", "100", "GT"), "(integer) 0" },
    C("TTL", "a"), "(integer) 200" },
    C("EXPIRE", "nokey", "10"), "(integer) 0" },
    C("TTL", "nokey"), "(integer) -2" },
    C("PTTL", "nokey"), "(integer) -2" },
    C("RENAME", "a", "a2"), "OK" },
    C("TTL", "a2"), "(integer) 200" },
    C("RENAME", "nokey", "x"), "(error) ERR no such key" },
    C("KEYS", "a[0-9]"), "1) \"a2\"" },
    C("KEYS", "a?x*"), "(empty array)" },
    C("DEL", "a2", "b", "nokey"), "(integer) 2" },
    C("EXPIRE", "ap", "-1"), "(integer) 1" },
    C("EXISTS", "ap"), "(integer) 0" },
    /* lists */
    C("LPUSH", "l", "b", "a"), "(integer) 2" },
    C("RPUSH", "l", "c", "d"), "(integer) 4" },
    C("LLEN", "l"), "(integer) 4" },
    C("LRANGE", "l", "0", "-1"), "1) \"a\"\n2) \"b\"\n3) \"c\"\n4) \"d\"" },
    C("LRANGE", "l", "1", "2"), "1) \"b\"\n2) \"c\"" },
    C("LRANGE", "l", "5", "9"), "(empty array)" },
    C("LINDEX", "l", "-1"), "\"d\"" },
    C("LINDEX", "l", "9"), "(nil)" },
    C("LPOP", "l"), "\"a\"" },
    C("RPOP", "l"), "\"d\"" },
    C("LPOP", "l", "5"), "1) \"b\"\n2) \"c\"" },
    C("EXISTS", "l"), "(integer) 0" },
    C("LPOP", "l"), "(nil)" },
    C("TYPE", "l"), "none" },
    C("LPUSH", "s", "x"), "(error) WRONGTYPE Operation against a key "
      "holding the wrong kind of value" },
    /* hashes */
    C("HSET", "h", "f1", "v1", "f2", "v2"), "(integer) 2" },
    C("HSET", "h", "f1", "w1"), "(integer) 0" },
    C("HGET", "h", "f1"), "\"w1\"" },
    C("HGET", "h", "nof"), "(nil)" },
    C("HMGET", "h", "f1", "nof", "f2"), "1) \"w1\"\n2) (nil)\n3) \"v2\"" },
    C("HLEN", "h"), "(integer) 2" },
    C("HINCRBY", "h", "n", "5"), "(integer) 5" },
    C("HINCRBY", "h", "n", "-7"), "(integer) -2" },
    C("HINCRBY", "h", "f1", "1"), "(error) ERR hash value is not an "
      "integer" },
    C("HDEL", "h", "f1", "f2", "nof"), "(integer) 2" },
    C("HGETALL", "h"), "1) \"n\"\n2) \"-2\"" },
    C("TYPE", "h"), "hash" },
    C("HSET", "h", "odd"), "(error) ERR wrong number of arguments for "
      "'hset' command" },
    /* sets */
    C("SADD", "st", "m1", "m2", "m1"), "(integer) 2" },
    C("SCARD", "st"), "(integer) 2" },
    C("SISMEMBER", "st", "m1"), "(integer) 1" },
    C("SISMEMBER", "st", "zz"), "(integer) 0" },
    C("SREM", "st", "m1", "zz"), "(integer) 1" },
    C("SMEMBERS", "st"), "1) \"m2\"" },
    C("SPOP", "st"), "\"m2\"" },
    C("SPOP", "st"), "(nil)" },
    C("TYPE", "st"), "none" },
    C("SADD", "h", "x"), "(error) WRONGTYPE Operation against a key "
      "holding the wrong kind of value" },
    /* errors */
    C("FOO", "a", "b"), "(error) ERR unknown command 'FOO', with args "
      "beginning with: 'a' 'b' " },
    C("GET"), "(error) ERR wrong number of arguments for 'get' command" },
    C("GET", "h"), "(error) WRONGTYPE Operation against a key holding the "
      "wrong kind of value" },
    /* the rest */
    C("DBSIZE"), "(integer) 4" },
    C("FLUSHDB"), "OK" },
    C("DBSIZE"), "(integer) 0" },
    C("SET", "x", "1"), "OK" },
    C("FLUSHALL"), "OK" },
    C("DBSIZE"), "(integer) 0" },
    C("QUIT"), "OK" },
};

static void test_every_command(void **state)
{
    (void)state;
    kvt_need_redis_cli();
    int port = lmh_port();
    kvt_start(port, NULL, NULL);
    kvt_wait_serving(port, 30000);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = kvt_cli(port, cases[i].args);
        if (!cases[i].want) {
            /* PTTL right after PX 100000 */
            long long v = strtoll(got + strlen("(integer) "), NULL, 10);
            if (strncmp(got, "(integer) ", 10) || v <= 90000 || v > 100000)
                kvt_fail("PTTL after PX 100000 replied '%s'", got);
        } else if (strcmp(got, cases[i].want) != 0) {
            kvt_fail("redis-cli %s %s %s: got\n%s\nexpected\n%s",
                    cases[i].args[0], cases[i].args[1] ? cases[i].args[1] : "",
                    cases[i].args[1] && cases[i].args[2] ? cases[i].args[2]
                                                         : "",
                    got, cases[i].want);
        }
        free(got);
    }
    /* INFO has the sections a user asks for, livemig's included. */
    const char *info[] = { "INFO", NULL };
    char *got = kvt_cli(port, info);
    static const char *const sections[] = { "# Server", "# Clients",
        "# Memory", "# Keyspace", "# Livemig", "role:", "migration_status:",
        "mc_epoch:", "connected_clients:", "used_memory:" };
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
        if (!strstr(got, sections[i]))
            kvt_fail("INFO lacks '%s':\n%s", sections[i], got);
    free(got);
    /* SCAN walks every key exactly as KEYS lists them. */
    kvt_conn *c = kvt_open(port, 5000);
    for (int i = 0; i < 300; i++) {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "SET scan:%d %d", i, i);
        kvt_expect(c, cmd, "+OK");
    }
    char seen[300] = { 0 };
    char cursor[32] = "0";
    int rounds = 0;
    do {
        char cmd[96];
        snprintf(cmd, sizeof(cmd), "SCAN %s MATCH scan:* COUNT 50", cursor);
        char *r = kvt_cmd(c, cmd);
        /* "*[$CURSOR,*[$scan:1,...]]" */
        char *p = r + 3;
        size_t n = strcspn(p, ",");
        snprintf(cursor, sizeof(cursor), "%.*s", (int)n, p);
        for (char *k = strstr(p, "$scan:"); k; k = strstr(k + 1, "$scan:"))
            seen[atoi(k + 6)] = 1;
        free(r);
        assert_true(++rounds < 1000);
    } while (strcmp(cursor, "0") != 0);
    for (int i = 0; i < 300; i++)
        if (!seen[i])
            kvt_fail("SCAN never returned scan:%d", i);
    kvt_close(c);
    kvt_finish();
}

static void test_pipelining(void **state)
{
    (void)state;
    kvt_need_redis_cli();
    int port = lmh_port();
    lmh_daemon *d = kvt_start(port, NULL, NULL);
    kvt_wait_serving(port, 30000);
    /* redis-cli --pipe: 10,000 inline and multibulk commands in a stream. */
    char path[400], cmd[600];
    lmh_path(d, "pipe.txt", path, sizeof(path));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 5000; i++) {
        fprintf(f, "SET p:%d %d\r\n", i, i);
        fprintf(f, "*2\r\n$4\r\nINCR\r\n$3\r\nctr\r\n");
    }
    fclose(f);
    snprintf(cmd, sizeof(cmd), "/usr/bin/redis-cli -p %d --pipe < %s", port,
             path);
    char *out = NULL;
    if (kvt_sh(cmd, &out, 60000) != 0)
        kvt_fail("redis-cli --pipe failed: %s", out);
    if (!strstr(out, "errors: 0, replies: 10000"))
        kvt_fail("redis-cli --pipe said: %s", out);
    free(out);
    kvt_conn *c = kvt_open(port, 5000);
    kvt_expect(c, "GET ctr", "$5000");
    kvt_expect(c, "GET p:4999", "$4999");
    /* Many commands in one write, replies in order. */
    char *b = malloc(1 << 20);
    size_t n = 0;
    for (int i = 0; i < 2000; i++)
        n += (size_t)sprintf(b + n, "*2\r\n$4\r\nINCR\r\n$2\r\npc\r\n");
    assert_true(kvt_send(c, b, n));
    for (int i = 1; i <= 2000; i++) {
        char *r = kvt_reply(c, 30000);
        char want[32];
        snprintf(want, sizeof(want), ":%d", i);
        if (!r || strcmp(r, want))
            kvt_fail("pipelined reply %d was '%s'", i, r ? r : "(none)");
        free(r);
    }
    /* A command split across writes, byte by byte. */
    const char *split = "*3\r\n$3\r\nSET\r\n$5\r\nsplit\r\n$2\r\nok\r\n";
    for (size_t i = 0; split[i]; i++)
        assert_true(kvt_send(c, split + i, 1));
    char *r = kvt_reply(c, 10000);
    assert_string_equal(r, "+OK");
    free(r);
    /* Inline commands with quotes, as telnet users type them. */
    const char *inl = "SET \"in line\" 'it''s'\r\nGET \"in line\"\r\n"
                      "ECHO \"a\\x41\\n\"\r\n";
    assert_true(kvt_send(c, inl, strlen(inl)));
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "-ERR Protocol error: unbalanced quotes in "
                           "request");
    free(r);
    assert_true(kvt_wait_closed(c, 10000));
    kvt_close(c);
    c = kvt_open(port, 5000);
    inl = "SET \"in line\" 'it\\'s'\r\nGET \"in line\"\r\nECHO \"a\\x41\\n\"\n";
    assert_true(kvt_send(c, inl, strlen(inl)));
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "+OK");
    free(r);
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "$it's");
    free(r);
    r = kvt_reply(c, 10000);
    assert_string_equal(r, "$aA\\x0a");
    free(r);
    free(b);
    kvt_close(c);
    kvt_finish();
}

static void test_expiry(void **state)
{
    (void)state;
    int port = lmh_port();
    kvt_start(port, NULL, NULL);
    kvt_wait_serving(port, 30000);
    kvt_conn *c = kvt_open(port, 5000);
    kvt_expect(c, "SET gone v PX 200", "+OK");
    kvt_expect(c, "SET stays v", "+OK");
    for (int i = 0; i < 100; i++) {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "SET quiet:%d v PX 100", i);
        kvt_expect(c, cmd, "+OK");
    }
    /* Expired keys go without being touched (active expiry): DBSIZE
     * counts what is in the table. */
    long long end = it_now_ms() + 30000;
    for (;;) {
        char *r = kvt_cmd(c, "DBSIZE");
        bool done = !strcmp(r, ":1");
        free(r);
        if (done)
            break;
        if (it_now_ms() > end)
            kvt_fail("expired keys still counted after 30 s");
        it_sleep_ms(20);
    }
    kvt_expect(c, "GET gone", "$nil");
    kvt_expect(c, "GET stays", "$v");
    assert_true(kvt_info_int(c, "expired_keys") >= 101);
    kvt_close(c);
    kvt_finish();
}

static void test_benchmark_load(void **state)
{
    (void)state;
    kvt_need_redis_cli();
    if (access("/usr/bin/redis-benchmark", X_OK) != 0) {
        printf("SKIP: /usr/bin/redis-benchmark is missing (redis-tools)\n");
        skip();
    }
    int port = lmh_port();
    kvt_start(port, NULL, NULL);
    kvt_wait_serving(port, 30000);
    char cmd[256], *out = NULL;
    snprintf(cmd, sizeof(cmd), "/usr/bin/redis-benchmark -p %d -n 20000 "
             "-r 1000 -c 20 -P 16 -t set,get,incr,lpush,rpush,lpop,rpop,"
             "sadd,hset,spop,lrange,mset --csv", port);
    if (kvt_sh(cmd, &out, 120000) != 0)
        kvt_fail("redis-benchmark failed: %s", out);
    static const char *const tests[] = { "\"SET\"", "\"GET\"", "\"INCR\"",
        "\"LPUSH\"", "\"RPUSH\"", "\"LPOP\"", "\"RPOP\"", "\"SADD\"",
        "\"HSET\"", "\"SPOP\"", "\"LRANGE_100 (first 100 elements)\"",
        "\"MSET (10 keys)\"" };
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        char *l = strstr(out, tests[i]);
        if (!l)
            kvt_fail("redis-benchmark did not report %s:\n%s", tests[i], out);
        double rps = atof(l + strlen(tests[i]) + 2);
        if (rps <= 0)
            kvt_fail("redis-benchmark %s: %.0f requests/s", tests[i], rps);
    }
    free(out);
    kvt_conn *c = kvt_open(port, 5000);
    char *r = kvt_cmd(c, "DBSIZE");
    assert_true(r[0] == ':' && atoll(r + 1) > 0);
    free(r);
    assert_true(kvt_info_int(c, "total_commands_processed") >= 12 * 20000);
    kvt_close(c);
    kvt_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_every_command, kvt_teardown),
        cmocka_unit_test_teardown(test_pipelining, kvt_teardown),
        cmocka_unit_test_teardown(test_expiry, kvt_teardown),
        cmocka_unit_test_teardown(test_benchmark_load, kvt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
