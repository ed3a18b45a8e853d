/*
 * test-strict.c - the monitor reads requests strictly and answers in valid
 * UTF-8 JSON, against a real livemigd, byte for byte on the wire:
 *  - requests with bytes that are not UTF-8 are refused, never echoed;
 *  - a NUL inside a command name, an argument name or an HMP line is an
 *    error (nothing runs: the daemon keeps serving);
 *  - a key twice in one object is an error (nothing runs);
 *  - numbers too large to hold are reported as written;
 *  - an id is echoed exactly as sent, whatever its type or size;
 *  - an error about a RAM block name byte 0xff from a migration stream
 *    reaches query-migrate as valid UTF-8.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <locale.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "harness.h"

#define T_MS 10000

static int setup(void **state)
{
    *state = lmh_start("--guest", "pattern,size=16M,dirty-rate=0", NULL);
    return 0;
}

static int teardown(void **state)
{
    lmh_daemon *d = *state;
    bool clean = lmh_stop(d);
    lmh_free(d);
    assert_true(clean);
    return 0;
}

/* ---- raw lines ---------------------------------------------------------- */

typedef struct conn {
    int fd;
    char buf[1 << 16];
    size_t len;
} conn;

/* One line from the daemon (without the newline), malloc'd. */
static char *read_line(conn *c)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            char *line = strndup(c->buf, n);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return line;
        }
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        if (poll(&p, 1, T_MS) <= 0)
            fail_msg("no reply from the monitor within %d ms", T_MS);
        if (c->len == sizeof(c->buf))
            fail_msg("a reply line longer than %zu bytes", sizeof(c->buf));
        ssize_t k = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (k <= 0)
            fail_msg("the monitor closed the connection");
        c->len += (size_t)k;
    }
}

/* Valid UTF-8, judged by the C library (not by livemig's own code). */
static bool utf8_ok(const char *s)
{
    mbstate_t st;
    memset(&st, 0, sizeof(st));
    size_t n = strlen(s);
    while (n) {
        size_t k = mbrtowc(NULL, s, n, &st);
        if (k == (size_t)-1 || k == (size_t)-2)
            return false;
        if (k == 0)
            k = 1;
        s += k;
        n -= k;
    }
    return true;
}

/* Send @req (a newline added); the reply line, checked to be valid UTF-8
 * and strict JSON of one object. */
static char *ask(conn *c, const char *req, size_t len)
{
    assert_true(lmh_raw_send(c->fd, req, len));
    assert_true(lmh_raw_send(c->fd, "\n", 1));
    for (;;) {
        char *line = read_line(c);
        if (!utf8_ok(line))
            fail_msg("a reply that is not valid UTF-8: %s", line);
        json_object *o = json_tokener_parse(line);
        if (!o || !json_object_is_type(o, json_type_object))
            fail_msg("a reply that is not a JSON object: %s", line);
        bool event = json_object_object_get_ex(o, "event", NULL);
        json_object_put(o);
        if (!event)
            return line;
        free(line);
    }
}

static char *asks(conn *c, const char *req)
{
    return ask(c, req, strlen(req));
}

static conn *open_conn(lmh_daemon *d)
{
    conn *c = calloc(1, sizeof(*c));
    c->fd = lmh_raw_connect(d);
    free(read_line(c));                       /* greeting */
    char *r = asks(c, "{\"execute\":\"qmp_capabilities\"}");
    assert_non_null(strstr(r, "\"return\""));
    free(r);
    return c;
}

static void close_conn(conn *c)
{
    close(c->fd);
    free(c);
}

static void expect_error(conn *c, const char *req, size_t len,
                         const char *part)
{
    char *r = ask(c, req, len);
    if (!strstr(r, "\"error\"") || !strstr(r, part))
        fail_msg("request %.*s: expected an error mentioning '%s', got %s",
                 (int)len, req, part, r);
    free(r);
}

/* The daemon still serves and its guest was not told to do anything. */
static void still_serving(conn *c)
{
    char *r = asks(c, "{\"execute\":\"query-status\"}");
    if (!strstr(r, "\"running\":true"))
        fail_msg("after a refused request, query-status says %s", r);
    free(r);
}

/* ---- the cases ------------------------------------------------------------ */

static void test_invalid_utf8_refused(void **state)
{
    conn *c = open_conn(*state);
    static const char id[] = "{\"execute\":\"query-status\",\"id\":\"a\xff\"}";
    char *r = ask(c, id, sizeof(id) - 1);
    if (!strstr(r, "not valid UTF-8") || strchr(r, '\xff') ||
        strstr(r, "\"return\""))
        fail_msg("an id with byte 0xff: %s", r);
    free(r);
    static const char arg[] = "{\"execute\":\"human-monitor-command\","
                              "\"arguments\":{\"command-line\":\"info \xc3\"}}";
    expect_error(c, arg, sizeof(arg) - 1, "not valid UTF-8");
    /* An overlong '/' and an encoded surrogate are not UTF-8 either. */
    static const char ov[] = "{\"execute\":\"query-status\",\"id\":\"\xc0\xaf\"}";
    expect_error(c, ov, sizeof(ov) - 1, "not valid UTF-8");
    static const char sur[] = "{\"execute\":\"query-status\",\"id\":\"\xed\xa0\x80\"}";
    expect_error(c, sur, sizeof(sur) - 1, "not valid UTF-8");
    /* Real UTF-8 is fine and comes back as it was sent. */
    r = asks(c, "{\"execute\":\"query-status\",\"id\":\"d\xc3\xa9j\xc3\xa0\"}");
    if (!strstr(r, "\"id\":\"d\xc3\xa9j\xc3\xa0\""))
        fail_msg("a UTF-8 id did not come back as sent: %s", r);
    free(r);
    still_serving(c);
    close_conn(c);
}

static void test_nul_in_names(void **state)
{
    conn *c = open_conn(*state);
    const char *const reqs[] = {
        "{\"execute\":\"quit\\u0000-harmless\"}",
        "{\"execute\":\"query-status\\u0000xyz\"}",
        "{\"execute\":\"stop\\u0000\"}",
        "{\"execute\":\"query-status\",\"arguments\":{\"a\\u0000b\":1}}",
        "{\"execute\\u0000x\":\"query-status\"}",
        "{\"execute\":\"human-monitor-command\",\"arguments\":"
        "{\"command-line\":\"info status\\u0000 foo\"}}",
        "{\"execute\":\"human-monitor-command\",\"arguments\":"
        "{\"command-line\":\"stop\\u0000\"}}",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        expect_error(c, reqs[i], strlen(reqs[i]), "NUL");
        still_serving(c);
    }
    close_conn(c);
}

static void test_duplicate_keys(void **state)
{
    conn *c = open_conn(*state);
    const char *dup = "{\"execute\":\"query-status\",\"execute\":\"quit\"}";
    expect_error(c, dup, strlen(dup), "member 'execute' twice");
    still_serving(c);
    const char *set = "{\"execute\":\"migrate-set-parameters\",\"arguments\":"
                      "{\"downtime-limit\":100,\"downtime-limit\":200}}";
    expect_error(c, set, strlen(set), "member 'downtime-limit' twice");
    /* Equal after unescaping is equal. */
    const char *esc = "{\"execute\":\"stop\",\"execut\\u0065\":\"quit\"}";
    expect_error(c, esc, strlen(esc), "twice");
    still_serving(c);
    char *r = asks(c, "{\"execute\":\"query-migrate-parameters\"}");
    if (!strstr(r, "\"downtime-limit\":300"))
        fail_msg("a refused set changed downtime-limit: %s", r);
    free(r);
    close_conn(c);
}

static void test_numbers_as_written(void **state)
{
    conn *c = open_conn(*state);
    struct { const char *num, *want; } cases[] = {
        { "99999999999999999999999999", "got 99999999999999999999999999" },
        { "-99999999999999999999999999", "got -99999999999999999999999999" },
        { "18446744073709551616", "got 18446744073709551616" },
        { "1e400", "got 1e400" },
        { "1.5", "got 1.5" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "{\"execute\":\"migrate-set-parameters\","
                 "\"arguments\":{\"downtime-limit\":%s}}", cases[i].num);
        char *r = asks(c, req);
        if (!strstr(r, "\"error\"") || !strstr(r, cases[i].want) ||
            strstr(r, "fraction") || strstr(r, "18446744073709551615"))
            fail_msg("downtime-limit %s: expected '%s', got %s",
                     cases[i].num, cases[i].want, r);
        free(r);
    }
    /* HMP's value goes through the same table. */
    char *r = asks(c, "{\"execute\":\"human-monitor-command\",\"arguments\":"
                      "{\"command-line\":\"migrate_set_parameter "
                      "downtime-limit 99999999999999999999999999\"}}");
    if (strstr(r, "18446744073709551615"))
        fail_msg("HMP reports a clamped number: %s", r);
    free(r);
    /* Lenient forms json-c would take are not JSON. */
    const char *const lenient[][2] = {
        { "{\"execute\":\"query-status\",\"id\":01}", "leading zero" },
        { "{\"execute\":\"query-status\",\"id\":NaN}", "unexpected" },
        { "{'execute':'query-status'}", "quoted name" },
    };
    for (size_t i = 0; i < 3; i++)
        expect_error(c, lenient[i][0], strlen(lenient[i][0]), lenient[i][1]);
    r = asks(c, "{\"execute\":\"query-migrate-parameters\"}");
    if (!strstr(r, "\"downtime-limit\":300"))
        fail_msg("a refused set changed downtime-limit: %s", r);
    free(r);
    close_conn(c);
}

static void test_id_echoed_exactly(void **state)
{
    conn *c = open_conn(*state);
    /* 5000 digits. */
    size_t n = 5000;
    char *digits = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        digits[i] = (char)('1' + i % 9);
    digits[n] = '\0';
    char *req = malloc(n + 64), *want = malloc(n + 16);
    snprintf(req, n + 64, "{\"execute\":\"query-status\",\"id\":%s}", digits);
    snprintf(want, n + 16, "\"id\":%s}", digits);
    char *r = asks(c, req);
    if (!strstr(r, want))
        fail_msg("a 5000-digit id did not come back as sent: %.200s...", r);
    free(r);
    /* The same on an error reply. */
    snprintf(req, n + 64, "{\"execute\":\"no-such\",\"id\":-%s}", digits);
    snprintf(want, n + 16, "\"id\":-%s}", digits);
    r = asks(c, req);
    if (!strstr(r, "CommandNotFound") || !strstr(r, want))
        fail_msg("a negative 5000-digit id on an error: %.200s...", r);
    free(r);
    free(digits);
    free(req);
    free(want);

    struct { const char *id, *want; } cases[] = {
        { "1e400", "1e400" },
        { "-0", "-0" },
        { "1.50", "1.50" },
        { "\"a\\/b\\u00e9\\n\"", "\"a\\/b\\u00e9\\n\"" },
        { "\"\\u0000\"", "\"\\u0000\"" },
        { "{ \"x\" : [ 1 , 2.50 , \"y z\" ] , \"n\" : null }",
          "{\"x\":[1,2.50,\"y z\"],\"n\":null}" },
        { "[ ]", "[]" },
        { "true", "true" },
        { "null", "null" },
        { "18446744073709551616", "18446744073709551616" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char q[256], w[256];
        snprintf(q, sizeof(q), "{\"execute\":\"query-status\",\"id\":%s}",
                 cases[i].id);
        snprintf(w, sizeof(w), "\"id\":%s}", cases[i].want);
        r = asks(c, q);
        if (!strstr(r, w))
            fail_msg("id %s came back as %s (expected %s)", cases[i].id, r,
                     w);
        free(r);
    }
    close_conn(c);
}

static void test_stream_name_not_utf8(void **state)
{
    (void)state;
    char dir[] = "/tmp/livemig-strict-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64], uri[96];
    snprintf(path, sizeof(path), "%s/mig.sock", dir);
    snprintf(uri, sizeof(uri), "unix:%s", path);
    lmh_daemon *d = lmh_start("--guest", "pattern,size=16M,dirty-rate=0",
                              "--incoming", uri, NULL);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    /* A hello whose block name is "\xffattern". */
    uint8_t h[52] = { 'L', 'V', 'M', 'G', 0, 0, 0, 1, 0, 0, 0x10, 0,
                      0, 0, 0, 1 };
    h[35] = 1;
    h[36] = 7;
    memcpy(h + 37, "\xff" "attern", 7);
    h[48] = 0x01;                     /* size 16 MiB, big-endian */
    assert_true(lmh_raw_send(fd, (const char *)h, sizeof(h)));

    conn *c = open_conn(d);
    char *r = NULL;
    for (int i = 0; i < 500; i++) {
        free(r);
        r = asks(c, "{\"execute\":\"query-migrate\"}");
        if (strstr(r, "\"failed\""))
            break;
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (!strstr(r, "\"failed\"") || !strstr(r, "error-desc") ||
        !strstr(r, "not printable UTF-8"))
        fail_msg("query-migrate after a block name with byte 0xff: %s", r);
    free(r);
    close_conn(c);
    close(fd);
    bool clean = lmh_stop(d);
    lmh_free(d);
    unlink(path);
    rmdir(dir);
    assert_true(clean);
}

int main(void)
{
    setlocale(LC_ALL, "C.UTF-8");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_invalid_utf8_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numbers_as_written, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_id_echoed_exactly, setup,
                                        teardown),
        cmocka_unit_test(test_stream_name_not_utf8),
    };
    return cmocka_run_group_tests_name("monitor-strict", tests, NULL, NULL);
}
