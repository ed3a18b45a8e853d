/*
 * test-failures.c - issue 3, "Failures: nothing lost", each with real
 * livemigd processes:
 *  - destination SIGKILLed mid-migration: source 'failed' with a reason,
 *    its guest runs and verifies, a second migration completes;
 *  - random bytes and an HTTP request into the destination's --incoming
 *    port: destination 'failed' naming the stream, keeps serving QMP, a
 *    later migrate-incoming + real migration works;
 *  - a saved stream truncated to half into --incoming file:: 'failed' with
 *    a clear error, the daemon alive, the whole file then loads;
 *  - source SIGKILLed mid-migration: destination 'failed', serving QMP,
 *    guest not running, its resident memory given back;
 *  - unreachable URIs, a port in use, different guest sizes: clear errors
 *    naming the address or both sizes; everything survives.
 */
#include "itest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPEC64 "pattern,size=64M,threads=1,dirty-rate=20M,fill=random"
#define SPEC128 "pattern,size=128M,threads=1,dirty-rate=20M,fill=random"

/* Source alive, guest running and intact after a failed migration. */
static void check_source_intact(lmh_daemon *src)
{
    char st[64];
    if (!it_running(src, st, sizeof(st)))
        it_fail("the source guest does not run after a failed migration "
                "(query-status '%s')", st);
    it_verify_ok(src, "source");
    it_wait_guest_writes(src, "source", 30000);
}

static char *error_desc(lmh_daemon *d, char *buf, size_t len)
{
    json_object *r = it_qm(d);
    const char *e = lmh_get_str(r, "error-desc");
    snprintf(buf, len, "%s", e ? e : "");
    json_object_put(r);
    return buf;
}

static void test_destination_killed(void **state)
{
    (void)state;
    char uri[64], uri2[64], err[600];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC128, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC128, uri, NULL);
    it_set_params(src, "{\"max-bandwidth\": 20971520}");   /* 20 MiB/s */
    it_migrate(src, uri);
    it_wait_qm_above(src, "ram.transferred", 0, 30000);
    assert_string_equal(it_status(src), "active");
    it_kill9(dst);

    const char *end = it_wait_end(src, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("source ended '%s' after its destination was killed, "
                "expected 'failed'", end);
    if (!error_desc(src, err, sizeof(err))[0])
        it_fail("source 'failed' without an error-desc");
    check_source_intact(src);

    /* A second migration, to a new destination, completes. */
    it_set_params(src, "{\"max-bandwidth\": 0}");
    it_tcp_uri(lmh_port(), uri2, sizeof(uri2));
    lmh_daemon *dst2 = it_start(SPEC128, uri2, NULL);
    it_migrate(src, uri2);
    it_check_completed(src, dst2, 128 * IT_MiB, true);
}

static int connect_tcp(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        it_fail("cannot connect to the destination's port %d: %s", port,
                strerror(errno));
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;   /* the destination may close early: fine */
        c += k;
        n -= (size_t)k;
    }
}

/* After garbage: 'failed', error about the stream, QMP alive, guest not
 * running, and a real migration through migrate-incoming then works. */
static void check_refused_then_recovers(lmh_daemon *dst, const char *what)
{
    char err[600], st[64];
    const char *end = it_wait_end(dst, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("destination ended '%s' after %s, expected 'failed'", end,
                what);
    error_desc(dst, err, sizeof(err));
    if (!strstr(err, "stream"))
        it_fail("destination's error-desc after %s does not mention the "
                "stream: '%s'", what, err);
    if (it_running(dst, st, sizeof(st)))
        it_fail("destination guest runs after %s (query-status '%s')",
                what, st);
    if (kill(dst->pid, 0) != 0)
        it_fail("destination process gone after %s", what);

    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
    lmh_daemon *src = it_start(SPEC64, NULL, NULL);
    it_migrate(src, uri);
    it_check_completed(src, dst, 64 * IT_MiB, true);
}

static void test_garbage_random(void **state)
{
    (void)state;
    char uri[64];
    int port = lmh_port();
    it_tcp_uri(port, uri, sizeof(uri));
    lmh_daemon *dst = it_start(SPEC64, uri, NULL);
    static unsigned char junk[256 * 1024];
    for (size_t off = 0; off < sizeof(junk);) {
        ssize_t k = getrandom(junk + off, sizeof(junk) - off, 0);
        assert_true(k > 0);
        off += (size_t)k;
    }
    int fd = connect_tcp(port);
    send_all(fd, junk, sizeof(junk));
    close(fd);
    check_refused_then_recovers(dst, "random bytes");
}

static void test_garbage_http(void **state)
{
    (void)state;
    char uri[64];
    int port = lmh_port();
    it_tcp_uri(port, uri, sizeof(uri));
    lmh_daemon *dst = it_start(SPEC64, uri, NULL);
    /* What curl sends; it then waits for an answer with the connection
     * open, so the destination must judge by what it got. */
    char req[256];
    snprintf(req, sizeof(req),
             "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
             "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n", port);
    int fd = connect_tcp(port);
    send_all(fd, req, strlen(req));
    check_refused_then_recovers(dst, "an HTTP request");
    /* The destination dropped the connection. */
    char b[64];
    struct timeval tv = { 2, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t n;
    while ((n = recv(fd, b, sizeof(b), 0)) > 0)
        ;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        it_fail("the destination kept the HTTP client's connection open");
    close(fd);
}

static void copy_prefix(const char *from, const char *to, off_t len)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(in >= 0 && out >= 0);
    static char buf[1 << 16];
    while (len > 0) {
        ssize_t n = read(in, buf, len < (off_t)sizeof(buf) ? (size_t)len
                                                           : sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(write(out, buf, (size_t)n), n);
        len -= n;
    }
    close(in);
    close(out);
}

static void test_truncated_stream(void **state)
{
    (void)state;
    char full[300], half[300], uri[320], err[600], st[64];
    lmh_daemon *src = it_start(SPEC64, NULL, NULL);
    lmh_path(src, "full.bin", full, sizeof(full));
    lmh_path(src, "half.bin", half, sizeof(half));
    snprintf(uri, sizeof(uri), "file:%s", full);
    it_migrate(src, uri);
    it_wait_status(src, "completed", 30000);
    struct stat sb;
    assert_int_equal(stat(full, &sb), 0);
    copy_prefix(full, half, sb.st_size / 2);

    snprintf(uri, sizeof(uri), "file:%s", half);
    lmh_daemon *dst = it_start(SPEC64, uri, NULL);
    const char *end = it_wait_end(dst, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("a half stream loaded with status '%s'", end);
    error_desc(dst, err, sizeof(err));
    /* It must say the stream stopped early (ended / closed / truncated). */
    if (!strstr(err, "stream") ||
        !(strstr(err, "ended") || strstr(err, "closed") ||
          strstr(err, "truncat")))
        it_fail("error-desc for a truncated stream is not clear: '%s'", err);
    if (it_running(dst, st, sizeof(st)))
        it_fail("destination guest runs after a truncated stream");

    /* Alive and usable: the whole file then loads. */
    snprintf(uri, sizeof(uri), "file:%s", full);
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
    it_check_completed(src, dst, 64 * IT_MiB, true);
}

/*
 * Source killed: what the destination's memory must do.  The destination
 * populates all guest RAM when it starts (DESIGN.md, "Destination memory"),
 * so received pages land in memory it already holds and need not raise its
 * RSS.  What it holds for the guest is max(RSS at start, RSS when the
 * source dies); after the failure it must give guest RAM back to the
 * kernel, so RSS must drop from that by at least half the bytes received
 * (the pages it loaded).  In practice it drops by the whole guest.
 */
static void test_source_killed(void **state)
{
    (void)state;
    char uri[64], err[600], st[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC128, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC128, uri, NULL);
    long long rss_start = it_vmrss_kib(dst->pid);
    assert_true(rss_start > 0);
    it_set_params(src, "{\"max-bandwidth\": 20971520}");
    it_migrate(src, uri);
    /* Mid-flight: the source reports bytes sent (pass 1 of 128M at 20M/s
     * takes ~6 s; a 20M/s dirty rate keeps it from converging). */
    it_wait_qm_above(src, "ram.transferred", 0, 30000);
    assert_string_equal(it_status(src), "active");
    long long rss_kill = it_vmrss_kib(dst->pid);
    it_kill9(src);

    const char *end = it_wait_end(dst, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("destination ended '%s' after its source was killed", end);
    if (!error_desc(dst, err, sizeof(err))[0])
        it_fail("destination 'failed' without an error-desc");
    if (it_running(dst, st, sizeof(st)))
        it_fail("destination guest runs from a half-received state "
                "(query-status '%s')", st);
    long long received = it_qm_int(dst, "ram.transferred", 0);
    long long rss_after = it_vmrss_kib(dst->pid);
    long long held = rss_start > rss_kill ? rss_start : rss_kill;
    fprintf(stderr, "destination VmRSS: start %lld KiB, at kill %lld KiB, "
            "after failure %lld KiB; received %lld KiB\n", rss_start,
            rss_kill, rss_after, received / 1024);
    if (held - rss_after < received / 1024 / 2)
        it_fail("destination keeps its memory after the failure: VmRSS "
                "%lld KiB at start, %lld KiB when the source died, %lld KiB "
                "after; %lld KiB were received", rss_start, rss_kill,
                rss_after, received / 1024);
    /* Still serving QMP. */
    json_object_put(lmh_ok(dst->qmp, "query-status", NULL));
    json_object_put(lmh_ok(dst->qmp, "query-guest", NULL));
}

static void check_unreachable(lmh_daemon *src, const char *uri,
                              const char *must_name)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    livemig_error e = { 0 };
    json_object *r = livemig_qmp_execute(src->qmp, "migrate", a, &e);
    char msg[600];
    if (r) {
        json_object_put(r);
        const char *end = it_wait_end(src, 30000);
        if (strcmp(end, "failed") != 0)
            it_fail("migrate to unreachable '%s' ended '%s'", uri, end);
        error_desc(src, msg, sizeof(msg));
    } else {
        snprintf(msg, sizeof(msg), "%s", e.desc);
    }
    if (!strstr(msg, must_name))
        it_fail("the error for unreachable '%s' does not name '%s': '%s'",
                uri, must_name, msg);
    check_source_intact(src);
}

static void test_unreachable(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC64, NULL, NULL);
    check_unreachable(src, "tcp:127.0.0.1:1", "127.0.0.1:1");
    check_unreachable(src, "unix:/nonexistent/livemig.sock",
                      "/nonexistent/livemig.sock");
    /* Nothing wedged: a real migration still works. */
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *dst = it_start(SPEC64, uri, NULL);
    it_migrate(src, uri);
    it_check_completed(src, dst, 64 * IT_MiB, true);
}

static void test_port_in_use(void **state)
{
    (void)state;
    int port = lmh_port();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    char uri[64], addr[64];
    it_tcp_uri(port, uri, sizeof(uri));
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);

    /* --incoming on the taken port: the daemon exits non-zero naming it. */
    char dir[] = "/tmp/livemig-itest-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char qmp[128];
    snprintf(qmp, sizeof(qmp), "unix:%s/qmp.sock", dir);
    const char *bin = getenv("LIVEMIGD");
    assert_non_null(bin);
    const char *argv[] = { bin, "--qmp", qmp, "--guest",
                           "pattern,size=32M,dirty-rate=0", "--incoming",
                           uri, NULL };
    char *out = NULL, *err = NULL;
    int rc = lmh_run(argv, NULL, &out, &err, 20000);
    char sock[160];
    snprintf(sock, sizeof(sock), "%s/qmp.sock", dir);
    unlink(sock);
    rmdir(dir);
    if (rc <= 0)
        it_fail("livemigd --incoming %s on a port in use: exit status %d "
                "(expected a non-zero exit); stderr: %s", uri, rc, err);
    if (!strstr(err, addr))
        it_fail("livemigd's error for a port in use does not name '%s': %s",
                addr, err);
    free(out);
    free(err);

    /* migrate-incoming on the taken port: an error naming it, alive. */
    lmh_daemon *dst = it_start("pattern,size=32M,dirty-rate=0", "defer",
                               NULL);
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    lmh_err_obj(dst->qmp, "migrate-incoming", a, "GenericError", addr);
    json_object_put(lmh_ok(dst->qmp, "query-status", NULL));
    close(lfd);
}

static void test_size_mismatch(void **state)
{
    (void)state;
    char uri[64], err[600], st[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC64, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC128, uri, NULL);
    it_migrate(src, uri);
    const char *end = it_wait_end(src, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("64M -> 128M migration ended '%s'", end);
    error_desc(src, err, sizeof(err));
    /* Both sizes, in bytes (67108864, 134217728) or as 64M / 128M. */
    bool has64 = strstr(err, "67108864") || strstr(err, "64M") ||
                 strstr(err, "64 M");
    bool has128 = strstr(err, "134217728") || strstr(err, "128M") ||
                  strstr(err, "128 M");
    if (!has64 || !has128)
        it_fail("source's error-desc does not name both sizes: '%s'", err);
    check_source_intact(src);
    end = it_wait_end(dst, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("destination ended '%s' after a size mismatch", end);
    if (it_running(dst, st, sizeof(st)))
        it_fail("destination guest runs after a size mismatch");
    json_object_put(lmh_ok(dst->qmp, "query-guest", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_destination_killed, it_teardown),
        cmocka_unit_test_teardown(test_garbage_random, it_teardown),
        cmocka_unit_test_teardown(test_garbage_http, it_teardown),
        cmocka_unit_test_teardown(test_truncated_stream, it_teardown),
        cmocka_unit_test_teardown(test_source_killed, it_teardown),
        cmocka_unit_test_teardown(test_unreachable, it_teardown),
        cmocka_unit_test_teardown(test_port_in_use, it_teardown),
        cmocka_unit_test_teardown(test_size_mismatch, it_teardown),
    };
    return cmocka_run_group_tests_name("integration-failures", tests, NULL,
                                       NULL);
}
