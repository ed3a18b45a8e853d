/*
 * test-incomplete.c - a destination runs its guest only on a complete
 * stream of its own migration, with real livemigd processes:
 *  - a header and an end-of-stream marker, nothing else (file:): 'failed',
 *    naming the pages that never arrived, guest stopped;
 *  - every page as a zero run but no state section (tcp): 'failed',
 *    naming the section 'pattern';
 *  - a real saved stream with one page taken out (file:): 'failed',
 *    naming the page; the untouched stream then loads;
 *  - a real source whose stream loses one page on the way (a proxy
 *    between the daemons): both sides 'failed' with that reason, the
 *    source guest runs and verifies, and a direct migration completes;
 *  - a real saved stream whose 'pattern' section claims another
 *    generation than its RAM: 'failed', the loader names the mismatch;
 *  - a multifd channel whose hello carries another migration's UUID:
 *    'failed', naming the UUID;
 *  - a real source with multifd whose channels a proxy gives another
 *    UUID: both sides 'failed' naming it, the source guest runs and
 *    verifies, a direct migration then completes;
 *  - micro-checkpointing: a first sync without one page, and a
 *    checkpoint without the guest's section: 'failed', naming them.
 * Streams are crafted and edited here by hand, record by record, from
 * the documented format (docs/stream.md), not with the engine's writer.
 */
#include "itest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SIZE (64 * IT_MiB)
#define PAGES (SIZE / 4096)
#define SPEC "pattern,size=64M,threads=1,dirty-rate=1M,fill=random"
#define IDLE "pattern,size=64M,threads=1,dirty-rate=0,fill=random"

static char *error_desc(lmh_daemon *d, char *buf, size_t len)
{
    json_object *r = it_qm(d);
    const char *e = lmh_get_str(r, "error-desc");
    snprintf(buf, len, "%s", e ? e : "");
    json_object_put(r);
    return buf;
}

/* The destination failed with an error containing @must, its guest does
 * not run, and it still serves QMP. */
static void expect_refused(lmh_daemon *dst, const char *what,
                           const char *must)
{
    char err[600], st[64];
    const char *end = it_wait_end(dst, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("destination ended '%s' after %s, expected 'failed'", end,
                what);
    error_desc(dst, err, sizeof(err));
    if (!strstr(err, must))
        it_fail("destination's error-desc after %s lacks '%s': '%s'", what,
                must, err);
    if (it_running(dst, st, sizeof(st)))
        it_fail("destination guest runs after %s (query-status '%s')", what,
                st);
    json_object_put(lmh_ok(dst->qmp, "query-guest", NULL));
}

/* ---- writing streams by hand ------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;   /* the destination may close early: fine */
        c += k;
        n -= (size_t)k;
    }
}

/* The hello of one connection: block 'pattern' of SIZE bytes. */
static size_t hello(uint8_t *b, uint8_t role, uint8_t index, uint8_t uuid0)
{
    memset(b, 0, 64);
    memcpy(b, "LVMG", 4);
    put32(b + 4, 1);
    put32(b + 8, 4096);
    b[12] = role;
    b[13] = index;
    b[15] = 1;                         /* UUID present */
    memset(b + 16, uuid0, 16);
    put32(b + 32, 1);
    b[36] = 7;
    memcpy(b + 37, "pattern", 7);
    put64(b + 44, SIZE);
    return 52;
}

static int connect_tcp(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        it_fail("cannot connect to port %d: %s", port, strerror(errno));
    return fd;
}

static void test_header_and_end_only(void **state)
{
    (void)state;
    lmh_daemon *dst = it_start(IDLE, "defer", NULL);
    char path[300], uri[320];
    lmh_path(dst, "empty.bin", path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    uint8_t b[64];
    size_t n = hello(b, 0, 0, 0x42);
    b[n++] = 5;                        /* END_STREAM */
    send_all(fd, b, n);
    close(fd);
    snprintf(uri, sizeof(uri), "file:%s", path);
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
    char must[128];
    snprintf(must, sizeof(must), "%lld pages of block 'pattern' never "
             "arrived (first: page 0)", (long long)PAGES);
    expect_refused(dst, "a stream of a header and an end marker", must);
}

static void test_ram_without_sections(void **state)
{
    (void)state;
    char uri[64];
    int port = lmh_port();
    it_tcp_uri(port, uri, sizeof(uri));
    lmh_daemon *dst = it_start(IDLE, uri, NULL);
    int fd = connect_tcp(port);
    uint8_t b[64];
    send_all(fd, b, hello(b, 0, 0, 0x42));
    for (uint64_t p = 0; p < PAGES; p += 4096) {
        b[0] = 2;                      /* RAM_ZERO, 4096 pages */
        put32(b + 1, 0);
        put64(b + 5, p);
        put32(b + 13, 4096);
        send_all(fd, b, 17);
    }
    b[0] = 4;                          /* END_PASS 1 */
    put64(b + 1, 1);
    b[9] = 5;                          /* END_STREAM */
    send_all(fd, b, 10);
    expect_refused(dst, "RAM without state sections",
                   "state section 'pattern' was not sent");
    close(fd);
}

static void test_multifd_wrong_uuid(void **state)
{
    (void)state;
    char uri[64];
    int port = lmh_port();
    it_tcp_uri(port, uri, sizeof(uri));
    lmh_daemon *dst = it_start(IDLE, uri, NULL);
    uint8_t b[64];
    int main_fd = connect_tcp(port);
    send_all(main_fd, b, hello(b, 0, 1, 0x42));       /* 1 channel */
    int ch = connect_tcp(port);
    send_all(ch, b, hello(b, 1, 0, 0x43));            /* other UUID */
    expect_refused(dst, "a multifd channel of another migration",
                   "belongs to another migration (UUID differs)");
    close(ch);
    close(main_fd);
}

/* Every page but @skip as zero runs (page @skip is left out when it is
 * below PAGES), then END_PASS 1. */
static void send_zero_pages(int fd, uint64_t skip)
{
    uint8_t b[32];
    for (uint64_t p = 0; p < PAGES;) {
        uint64_t end = p + 4096 < PAGES ? p + 4096 : PAGES;
        if (skip >= p && skip < end)
            end = skip;
        if (end > p) {
            b[0] = 2;                  /* RAM_ZERO */
            put32(b + 1, 0);
            put64(b + 5, p);
            put32(b + 13, (uint32_t)(end - p));
            send_all(fd, b, 17);
        }
        p = end == skip ? skip + 1 : end;
    }
    b[0] = 4;
    put64(b + 1, 1);
    send_all(fd, b, 9);
}

/* Micro-checkpointing: the first sync must be complete before the
 * destination becomes a backup. */
static void test_mc_first_sync_incomplete(void **state)
{
    (void)state;
    char uri[64];
    int port = lmh_port();
    it_tcp_uri(port, uri, sizeof(uri));
    lmh_daemon *dst = it_start(IDLE, uri, NULL);
    int fd = connect_tcp(port);
    uint8_t b[64];
    send_all(fd, b, hello(b, 0, 0, 0x42));
    send_zero_pages(fd, 77);
    b[0] = 6;                          /* MC_START, heartbeat 1 s */
    put32(b + 1, 1000);
    send_all(fd, b, 5);
    expect_refused(dst, "an MC stream whose first sync lacks a page",
                   "1 page of block 'pattern' never arrived (first: page "
                   "77)");
    close(fd);
}

/* A checkpoint without the guest's section is never applied: the backup
 * has nothing to take over from. */
static void test_mc_checkpoint_without_section(void **state)
{
    (void)state;
    char uri[64];
    int port = lmh_port();
    it_tcp_uri(port, uri, sizeof(uri));
    lmh_daemon *dst = it_start(IDLE, uri, NULL);
    int fd = connect_tcp(port);
    uint8_t b[64];
    send_all(fd, b, hello(b, 0, 0, 0x42));
    send_zero_pages(fd, UINT64_MAX);
    size_t n = 0;
    b[n++] = 6;                        /* MC_START */
    put32(b + n, 1000);
    n += 4;
    b[n++] = 7;                        /* CKPT_BEGIN 1 */
    put64(b + n, 1);
    n += 8;
    b[n++] = 8;                        /* CKPT_END 1 */
    put64(b + n, 1);
    n += 8;
    send_all(fd, b, n);
    expect_refused(dst, "a checkpoint without state sections",
                   "a checkpoint lacks state section 'pattern'");
    close(fd);
}

/* ---- editing real streams ---------------------------------------------- */

enum edit { DROP_FIRST_PAGE, BUMP_GENERATION };

typedef struct filt {
    int in, out;
    enum edit edit;
    bool done;                         /* the edit was made */
    bool ok;                           /* the stream parsed to its end */
} filt;

static bool rd_exact(int fd, void *p, size_t n)
{
    uint8_t *c = p;
    while (n) {
        ssize_t k = read(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        c += k;
        n -= (size_t)k;
    }
    return true;
}

/* Copy @n bytes from in to out. */
static bool pass_on(filt *f, uint64_t n, bool drop)
{
    static __thread uint8_t buf[1 << 16];
    while (n) {
        size_t k = n < sizeof(buf) ? (size_t)n : sizeof(buf);
        if (!rd_exact(f->in, buf, k))
            return false;
        if (!drop)
            send_all(f->out, buf, k);
        n -= k;
    }
    return true;
}

/* Forward a livemig stream record by record, making one edit; after
 * END_STREAM forward whatever follows as it is. */
static void *filter(void *arg)
{
    filt *f = arg;
    uint8_t b[300];
    if (!rd_exact(f->in, b, 36))
        return NULL;
    uint32_t nblocks = get32(b + 32);
    send_all(f->out, b, 36);
    for (uint32_t i = 0; i < nblocks; i++) {
        if (!rd_exact(f->in, b, 1) || !rd_exact(f->in, b + 1, b[0] + 8u))
            return NULL;
        send_all(f->out, b, 1 + b[0] + 8u);
    }
    for (;;) {
        if (!rd_exact(f->in, b, 1))
            return NULL;
        switch (b[0]) {
        case 1:                         /* RAM_RAW */
        case 2: {                       /* RAM_ZERO */
            if (!rd_exact(f->in, b + 1, 16))
                return NULL;
            uint32_t np = get32(b + 13);
            bool raw = b[0] == 1;
            if (f->edit == DROP_FIRST_PAGE && !f->done && raw && np > 1) {
                put64(b + 5, get64(b + 5) + 1);
                put32(b + 13, np - 1);
                send_all(f->out, b, 17);
                if (!pass_on(f, 4096, true) ||
                    !pass_on(f, (uint64_t)(np - 1) * 4096, false))
                    return NULL;
                f->done = true;
                break;
            }
            send_all(f->out, b, 17);
            if (raw && !pass_on(f, (uint64_t)np * 4096, false))
                return NULL;
            break;
        }
        case 3: {                       /* SECTION */
            if (!rd_exact(f->in, b + 1, 1) ||
                !rd_exact(f->in, b + 2, b[1] + 8u))
                return NULL;
            size_t h = 2 + b[1] + 8u;
            uint32_t len = get32(b + h - 4);
            uint8_t *d = malloc(len ? len : 1);
            assert_non_null(d);
            if (!rd_exact(f->in, d, len)) {
                free(d);
                return NULL;
            }
            if (f->edit == BUMP_GENERATION && b[1] == 7 &&
                !memcmp(b + 2, "pattern", 7) && len >= 64) {
                /* Worker 0 one generation further, and pages-written to
                 * match, so only the RAM can tell. */
                put64(d + 48, get64(d + 48) + 1);
                put64(d + 24, get64(d + 24) + get64(d + 8));
                f->done = true;
            }
            send_all(f->out, b, h);
            send_all(f->out, d, len);
            free(d);
            break;
        }
        case 4:                         /* END_PASS */
            if (!rd_exact(f->in, b + 1, 8))
                return NULL;
            send_all(f->out, b, 9);
            break;
        case 5:                         /* END_STREAM */
            send_all(f->out, b, 1);
            f->ok = true;
            for (;;) {
                ssize_t k = read(f->in, b, sizeof(b));
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0)
                    return NULL;
                send_all(f->out, b, (size_t)k);
            }
        default:
            fprintf(stderr, "filter: record type %u not handled\n", b[0]);
            return NULL;
        }
    }
}

/* A real stream of an idle guest, saved by a real source. */
static void save_stream(lmh_daemon *src, char *path, size_t len)
{
    char uri[320];
    lmh_path(src, "full.bin", path, len);
    snprintf(uri, sizeof(uri), "file:%s", path);
    it_migrate(src, uri);
    it_wait_status(src, "completed", 30000);
}

static void edit_file(const char *from, const char *to, enum edit e)
{
    filt f = { .edit = e };
    f.in = open(from, O_RDONLY | O_CLOEXEC);
    f.out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(f.in >= 0 && f.out >= 0);
    filter(&f);
    close(f.in);
    close(f.out);
    if (!f.done || !f.ok)
        it_fail("could not edit the saved stream %s (edit made: %d, "
                "parsed to its end: %d)", from, f.done, f.ok);
}

static void load_file(lmh_daemon *dst, const char *path)
{
    char uri[320];
    snprintf(uri, sizeof(uri), "file:%s", path);
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
}

static void test_saved_stream_one_page_missing(void **state)
{
    (void)state;
    char full[300], cut[300];
    lmh_daemon *src = it_start(IDLE, NULL, NULL);
    save_stream(src, full, sizeof(full));
    lmh_path(src, "cut.bin", cut, sizeof(cut));
    edit_file(full, cut, DROP_FIRST_PAGE);

    lmh_daemon *dst = it_start(IDLE, "defer", NULL);
    load_file(dst, cut);
    /* pass 1 sends the block from page 0 in order: page 0 is the one */
    expect_refused(dst, "a saved stream without one page",
                   "1 page of block 'pattern' never arrived (first: page 0)");
    load_file(dst, full);
    it_wait_status(dst, "completed", 30000);
    it_verify_ok(dst, "destination");
}

static void test_saved_stream_wrong_generation(void **state)
{
    (void)state;
    char full[300], bad[300];
    lmh_daemon *src = it_start(IDLE, NULL, NULL);
    save_stream(src, full, sizeof(full));
    lmh_path(src, "bad.bin", bad, sizeof(bad));
    edit_file(full, bad, BUMP_GENERATION);
    lmh_daemon *dst = it_start(IDLE, "defer", NULL);
    load_file(dst, bad);
    expect_refused(dst, "a state section that does not match RAM",
                   "does not match the RAM that arrived");
}

/* ---- a proxy between two real daemons ---------------------------------- */

typedef struct proxy {
    int lfd, port;
    int a, b;                          /* source side, destination side */
    filt down;                         /* source -> destination, edited */
    pthread_t t_acc, t_down, t_up;
    bool up_started, down_started;
    int dst_port;
} proxy;

static void *pump_up(void *arg)
{
    proxy *p = arg;
    uint8_t buf[4096];
    for (;;) {
        ssize_t k = read(p->b, buf, sizeof(buf));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        send_all(p->a, buf, (size_t)k);
    }
    shutdown(p->a, SHUT_WR);
    return NULL;
}

static void *proxy_accept(void *arg)
{
    proxy *p = arg;
    p->a = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (p->a < 0)
        return NULL;
    /* Not connect_tcp(): no test failure off the main thread. */
    p->b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)p->dst_port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (p->b < 0 || connect(p->b, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return NULL;
    p->down = (filt){ .in = p->a, .out = p->b, .edit = DROP_FIRST_PAGE };
    p->up_started = pthread_create(&p->t_up, NULL, pump_up, p) == 0;
    filter(&p->down);
    shutdown(p->b, SHUT_WR);
    return NULL;
}

static void proxy_start(proxy *p, int dst_port)
{
    memset(p, 0, sizeof(*p));
    p->a = p->b = -1;
    p->dst_port = dst_port;
    p->port = lmh_port();
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)p->port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(p->lfd, 4), 0);
    assert_int_equal(pthread_create(&p->t_acc, NULL, proxy_accept, p), 0);
}

static void proxy_stop(proxy *p)
{
    shutdown(p->lfd, SHUT_RDWR);
    if (p->a >= 0)
        shutdown(p->a, SHUT_RDWR);
    if (p->b >= 0)
        shutdown(p->b, SHUT_RDWR);
    pthread_join(p->t_acc, NULL);
    if (p->up_started)
        pthread_join(p->t_up, NULL);
    close(p->lfd);
    if (p->a >= 0)
        close(p->a);
    if (p->b >= 0)
        close(p->b);
}

static void test_live_stream_loses_a_page(void **state)
{
    (void)state;
    char uri[64], via[64], err[600], st[64];
    int port = lmh_port();
    it_tcp_uri(port, uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    /* At 1 MB/s the worker takes a minute to come back to page 0, the
     * page the proxy drops from pass 1: no later pass re-sends it. */
    proxy px;
    proxy_start(&px, port);
    it_tcp_uri(px.port, via, sizeof(via));
    it_migrate(src, via);

    const char *must = "1 page of block 'pattern' never arrived";
    expect_refused(dst, "a live stream that lost a page", must);
    const char *end = it_wait_end(src, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("source ended '%s' when its stream lost a page", end);
    error_desc(src, err, sizeof(err));
    if (!strstr(err, must))
        it_fail("source's error-desc lacks the destination's reason '%s': "
                "'%s'", must, err);
    proxy_stop(&px);
    if (!it_running(src, st, sizeof(st)))
        it_fail("source guest does not run after the failed migration "
                "('%s')", st);
    it_verify_ok(src, "source");
    it_wait_guest_writes(src, "source", 10000);

    /* Nothing lost: the same destination, straight, completes. */
    char uri2[64];
    it_tcp_uri(lmh_port(), uri2, sizeof(uri2));
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri2));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
    it_migrate(src, uri2);
    it_check_completed(src, dst, SIZE, true);
}

/* ---- a proxy that gives multifd channels another UUID ------------------ */

#define PX_MAX 8

typedef struct pump {
    int from, to;
    pthread_t t;
    bool started;
} pump;

typedef struct uuid_proxy {
    int lfd, port, dst_port;
    pthread_t t_acc;
    pthread_mutex_t mu;
    int fds[2 * PX_MAX];
    pump pumps[2 * PX_MAX];
    int nconn;
    int channels_edited;
} uuid_proxy;

static void *pump_main(void *arg)
{
    pump *p = arg;
    uint8_t buf[65536];
    for (;;) {
        ssize_t k = read(p->from, buf, sizeof(buf));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        send_all(p->to, buf, (size_t)k);
    }
    shutdown(p->to, SHUT_WR);
    return NULL;
}

static void *uuid_accept(void *arg)
{
    uuid_proxy *x = arg;
    for (;;) {
        int a = accept4(x->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (a < 0)
            return NULL;
        /* Not connect_tcp(): no test failure off the main thread; the
         * destination may have closed its port after refusing one. */
        int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)x->dst_port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        uint8_t h[36];
        if (b < 0 || connect(b, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            !rd_exact(a, h, sizeof(h))) {
            close(a);
            close(b);
            continue;
        }
        pthread_mutex_lock(&x->mu);
        if (h[12] == 1) {              /* a multifd channel's hello */
            h[16] ^= 0xff;
            x->channels_edited++;
        }
        send_all(b, h, sizeof(h));
        int i = x->nconn++;
        x->fds[2 * i] = a;
        x->fds[2 * i + 1] = b;
        pump *down = &x->pumps[2 * i], *up = &x->pumps[2 * i + 1];
        *down = (pump){ .from = a, .to = b };
        *up = (pump){ .from = b, .to = a };
        down->started = pthread_create(&down->t, NULL, pump_main, down) == 0;
        up->started = pthread_create(&up->t, NULL, pump_main, up) == 0;
        bool full = x->nconn == PX_MAX;
        pthread_mutex_unlock(&x->mu);
        if (full)
            return NULL;
    }
}

static void uuid_proxy_start(uuid_proxy *x, int dst_port)
{
    memset(x, 0, sizeof(*x));
    pthread_mutex_init(&x->mu, NULL);
    x->dst_port = dst_port;
    x->port = lmh_port();
    x->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(x->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)x->port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(x->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(x->lfd, 16), 0);
    assert_int_equal(pthread_create(&x->t_acc, NULL, uuid_accept, x), 0);
}

static void uuid_proxy_stop(uuid_proxy *x)
{
    shutdown(x->lfd, SHUT_RDWR);
    pthread_join(x->t_acc, NULL);
    for (int i = 0; i < 2 * x->nconn; i++)
        shutdown(x->fds[i], SHUT_RDWR);
    for (int i = 0; i < 2 * x->nconn; i++)
        if (x->pumps[i].started)
            pthread_join(x->pumps[i].t, NULL);
    for (int i = 0; i < 2 * x->nconn; i++)
        close(x->fds[i]);
    close(x->lfd);
    pthread_mutex_destroy(&x->mu);
}

/* A real source with multifd whose page channels arrive with another
 * UUID: the destination refuses them, the source fails with that reason
 * and its guest runs on, intact; then a direct migration completes. */
static void test_live_multifd_wrong_uuid(void **state)
{
    (void)state;
    char uri[64], via[64], err[600], st[64];
    int port = lmh_port();
    it_tcp_uri(port, uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_cap(src, "multifd", true);
    it_set_params(src, "{\"multifd-channels\": 2}");
    uuid_proxy px;
    uuid_proxy_start(&px, port);
    it_tcp_uri(px.port, via, sizeof(via));
    it_migrate(src, via);

    const char *must = "belongs to another migration (UUID differs)";
    expect_refused(dst, "multifd channels of another migration", must);
    const char *end = it_wait_end(src, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("source ended '%s' when its channels were refused", end);
    error_desc(src, err, sizeof(err));
    if (!strstr(err, must))
        it_fail("source's error-desc lacks '%s': '%s'", must, err);
    uuid_proxy_stop(&px);
    if (px.channels_edited == 0)
        it_fail("the proxy saw no multifd channel");
    if (!it_running(src, st, sizeof(st)))
        it_fail("source guest does not run after the failed migration "
                "('%s')", st);
    it_verify_ok(src, "source");
    it_wait_guest_writes(src, "source", 10000);

    char uri2[64];
    it_tcp_uri(lmh_port(), uri2, sizeof(uri2));
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri2));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
    it_migrate(src, uri2);
    it_check_completed(src, dst, SIZE, true);
}

/* A destination that refuses with bytes that are not text: the source's
 * error-desc carries its reason readably (found by fuzz-mc). */
static void test_refusal_not_utf8(void **state)
{
    (void)state;
    int port = lmh_port();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    char uri[64], err[600];
    it_tcp_uri(port, uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    it_migrate(src, uri);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    uint8_t h[36];
    assert_true(rd_exact(fd, h, sizeof(h)));
    static const uint8_t no[] = { 0x82, 0, 10, 'b', 'a', 'd', ' ', 0xff,
                                  0xfe, '\n', 'x', 0xc3, '!' };
    send_all(fd, no, sizeof(no));
    /* Take what the source sends until it gives up: it reads the refusal
     * when it waits for the confirmation (or when a write fails). */
    long long t0 = it_now_ms();
    static uint8_t sink[1 << 16];
    while (it_now_ms() - t0 < 30000) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        if (poll(&pf, 1, 100) > 0 && read(fd, sink, sizeof(sink)) <= 0)
            break;
    }
    const char *end = it_wait_end(src, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("source ended '%s' after a refusal", end);
    error_desc(src, err, sizeof(err));
    if (!strstr(err, "the destination refused the migration: bad ???x?!"))
        it_fail("the refusal reached error-desc as '%s'", err);
    close(fd);
    close(lfd);
    it_verify_ok(src, "source");
}

int main(void)
{
    /* The proxies write to peers that may have hung up. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_header_and_end_only, it_teardown),
        cmocka_unit_test_teardown(test_ram_without_sections, it_teardown),
        cmocka_unit_test_teardown(test_multifd_wrong_uuid, it_teardown),
        cmocka_unit_test_teardown(test_mc_first_sync_incomplete,
                                  it_teardown),
        cmocka_unit_test_teardown(test_mc_checkpoint_without_section,
                                  it_teardown),
        cmocka_unit_test_teardown(test_saved_stream_one_page_missing,
                                  it_teardown),
        cmocka_unit_test_teardown(test_saved_stream_wrong_generation,
                                  it_teardown),
        cmocka_unit_test_teardown(test_live_stream_loses_a_page, it_teardown),
        cmocka_unit_test_teardown(test_live_multifd_wrong_uuid, it_teardown),
        cmocka_unit_test_teardown(test_refusal_not_utf8, it_teardown),
    };
    return cmocka_run_group_tests_name("integration-incomplete", tests, NULL,
                                       NULL);
}
