/*
 * kvtest.c - see kvtest.h.
 */
#include "kvtest.h"
#include "ram/tracker.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REDIS_CLI "/usr/bin/redis-cli"

void kvt_need_redis_cli(void)
{
    if (access(REDIS_CLI, X_OK) != 0) {
        printf("SKIP: %s is missing (Debian package redis-tools; "
               "scripts/install-deps installs it)\n", REDIS_CLI);
        skip();
    }
}

#define MAX_DAEMONS 64

static lmh_daemon *daemons[MAX_DAEMONS];

void kvt_need_tracker(const char *name)
{
    livemig_tracker_kind k;
    livemig_error why = { 0 };
    if (!livemig_tracker_parse(name, &k, &why) ||
        !lm_tracker_available(k, &why)) {
        printf("SKIP: the %s dirty tracker is not available here: %s\n", name,
               why.desc);
        skip();
    }
}

lmh_daemon *kvt_start(int port, const char *extra, const char *incoming)
{
    char spec[256];
    snprintf(spec, sizeof(spec), "kv,size=64M,port=%d%s", port,
             extra ? extra : "");
    const char *args[] = { "--guest", spec, incoming ? "--incoming" : NULL,
                           incoming, NULL };
    int slot = -1;
    for (int i = 0; i < MAX_DAEMONS && slot < 0; i++)
        if (!daemons[i])
            slot = i;
    if (slot < 0)
        fail_msg("test bug: more than %d kv daemons at once", MAX_DAEMONS);
    daemons[slot] = lmh_startv(args);
    return daemons[slot];
}

void kvt_forget(lmh_daemon *d)
{
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (daemons[i] == d)
            daemons[i] = NULL;
    lmh_free(d);
}

int kvt_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_DAEMONS; i++) {
        lmh_free(daemons[i]);
        daemons[i] = NULL;
    }
    return 0;
}

void kvt_finish(void)
{
    for (int i = 0; i < MAX_DAEMONS; i++) {
        lmh_daemon *d = daemons[i];
        if (!d || d->pid <= 0)
            continue;
        if (!lmh_stop(d)) {
            lmh_dump_log(d);
            fail_msg("kv daemon %d did not exit cleanly on quit (wait "
                     "status 0x%x)", i, (unsigned)d->status);
        }
    }
    kvt_teardown(NULL);
}

void kvt_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (daemons[i] && daemons[i]->pid > 0) {
            fprintf(stderr, "==== kv daemon %d (pid %d)\n", i,
                    (int)daemons[i]->pid);
            lmh_dump_log(daemons[i]);
        }
    }
    fail_msg("%s", msg);
    abort();
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

bool kvt_port_open(int port)
{
    int fd = connect_port(port);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

kvt_conn *kvt_open(int port, int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms;
    int fd;
    while ((fd = connect_port(port)) < 0) {
        if (it_now_ms() > end)
            kvt_fail("cannot connect to the kv store on port %d within %d ms",
                    port, timeout_ms);
        it_sleep_ms(10);
    }
    kvt_conn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = fd;
    return c;
}

void kvt_close(kvt_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
}

bool kvt_send(kvt_conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool kvt_send_argv(kvt_conn *c, int argc, const char *const *argv,
                   const size_t *lens)
{
    size_t cap = 64;
    for (int i = 0; i < argc; i++)
        cap += (lens ? lens[i] : strlen(argv[i])) + 32;
    char *b = malloc(cap);
    if (!b)
        kvt_fail("out of memory building a %zu-byte command", cap);
    size_t n = (size_t)sprintf(b, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        size_t l = lens ? lens[i] : strlen(argv[i]);
        n += (size_t)sprintf(b + n, "$%zu\r\n", l);
        memcpy(b + n, argv[i], l);
        n += l;
        memcpy(b + n, "\r\n", 2);
        n += 2;
    }
    bool ok = kvt_send(c, b, n);
    free(b);
    return ok;
}

/* Make sure @need bytes are buffered; false on EOF or timeout. */
static bool fill(kvt_conn *c, size_t need, long long end)
{
    while (c->len < need) {
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 131072;
            c->buf = realloc(c->buf, c->cap);
            assert_non_null(c->buf);
        }
        int left = (int)(end - it_now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = { c->fd, POLLIN, 0 };
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        c->len += (size_t)n;
    }
    return true;
}

typedef struct str {
    char *p;
    size_t len, cap;
} str;

static void put(str *s, const char *data, size_t len)
{
    if (s->len + len + 1 > s->cap) {
        s->cap = (s->len + len + 1) * 2;
        s->p = realloc(s->p, s->cap);
        assert_non_null(s->p);
    }
    memcpy(s->p + s->len, data, len);
    s->len += len;
    s->p[s->len] = '\0';
}

static void put_escaped(str *s, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            put(s, (const char *)&ch, 1);
        } else {
            char t[8];
            snprintf(t, sizeof(t), "\\x%02x", ch);
            put(s, t, 4);
        }
    }
}

/* Parse one reply at *pos into @s; 1 done, 0 need more, -1 bad. */
static int parse(kvt_conn *c, size_t *pos, str *s, long long end)
{
    for (;;) {
        char *nl = memchr(c->buf + *pos, '\n', c->len - *pos);
        if (nl)
            break;
        if (!fill(c, c->len + 1, end))
            return -1;
    }
    char *line = c->buf + *pos;
    char *nl = memchr(line, '\n', c->len - *pos);
    size_t ll = (size_t)(nl - line);
    if (ll && line[ll - 1] == '\r')
        ll--;
    size_t next = (size_t)(nl - c->buf) + 1;
    char type = line[0];
    if (type == '+' || type == '-' || type == ':') {
        put(s, line, ll);
        *pos = next;
        return 1;
    }
    long long n = strtoll(line + 1, NULL, 10);
    if (type == '$') {
        if (n < 0) {
            put(s, "$nil", 4);
            *pos = next;
            return 1;
        }
        if (!fill(c, next + (size_t)n + 2, end))
            return -1;
        put(s, "$", 1);
        put_escaped(s, c->buf + next, (size_t)n);
        *pos = next + (size_t)n + 2;
        return 1;
    }
    if (type == '*') {
        if (n < 0) {
            put(s, "*nil", 4);
            *pos = next;
            return 1;
        }
        *pos = next;
        put(s, "*[", 2);
        for (long long i = 0; i < n; i++) {
            if (i)
                put(s, ",", 1);
            if (parse(c, pos, s, end) < 0)
                return -1;
        }
        put(s, "]", 1);
        return 1;
    }
    return -1;
}

char *kvt_reply(kvt_conn *c, int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms;
    if (!c->len && !fill(c, 1, end))
        return NULL;
    size_t pos = 0;
    str s = { 0 };
    if (parse(c, &pos, &s, end) < 0) {
        free(s.p);
        return NULL;
    }
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
    if (!s.p)
        put(&s, "", 0);
    return s.p;
}

char *kvt_cmd(kvt_conn *c, const char *line)
{
    char *dup = strdup(line), *save = NULL;
    const char *argv[64];
    int argc = 0;
    for (char *t = strtok_r(dup, " ", &save); t && argc < 64;
         t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    if (!kvt_send_argv(c, argc, argv, NULL))
        kvt_fail("cannot send '%s': the connection is gone", line);
    free(dup);
    char *r = kvt_reply(c, 30000);
    if (!r)
        kvt_fail("no reply to '%s' within 30 s", line);
    return r;
}

void kvt_expect(kvt_conn *c, const char *line, const char *want)
{
    char *got = kvt_cmd(c, line);
    if (strcmp(got, want) != 0)
        kvt_fail("'%s' replied '%s', expected '%s'", line, got, want);
    free(got);
}

bool kvt_wait_closed(kvt_conn *c, int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms;
    char tmp[65536];
    while (it_now_ms() < end) {
        struct pollfd p = { c->fd, POLLIN, 0 };
        int r = poll(&p, 1, 50);
        if (r <= 0)
            continue;
        ssize_t n = read(c->fd, tmp, sizeof(tmp));
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return true;
    }
    return false;
}

void kvt_wait_serving(int port, int timeout_ms)
{
    long long end = it_now_ms() + timeout_ms;
    while (it_now_ms() < end) {
        int fd = connect_port(port);
        if (fd >= 0) {
            kvt_conn c = { .fd = fd };
            const char *ping[] = { "PING" };
            char *r = kvt_send_argv(&c, 1, ping, NULL)
                          ? kvt_reply(&c, 2000) : NULL;
            bool ok = r && !strcmp(r, "+PONG");
            free(r);
            free(c.buf);
            close(fd);
            if (ok)
                return;
        }
        it_sleep_ms(10);
    }
    kvt_fail("the kv store on port %d did not serve within %d ms", port,
            timeout_ms);
}

char *kvt_cli(int port, const char *const *args)
{
    const char *argv[80];
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    int n = 0;
    argv[n++] = REDIS_CLI;
    argv[n++] = "-p";
    argv[n++] = p;
    argv[n++] = "--no-raw";
    for (int i = 0; args[i] && n < 79; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int st = lmh_run(argv, NULL, &out, &err, 30000);
    if (st != 0)
        kvt_fail("redis-cli %s ... exited with %d: %s", args[0], st, err);
    free(err);
    size_t l = strlen(out);
    while (l && out[l - 1] == '\n')
        out[--l] = '\0';
    return out;
}

int kvt_sh(const char *cmd, char **out, int timeout_ms)
{
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    char *o = NULL, *e = NULL;
    int st = lmh_run(argv, NULL, &o, &e, timeout_ms);
    if (st != 0)
        fprintf(stderr, "'%s' exited with %d: %s\n", cmd, st, e);
    free(e);
    if (out)
        *out = o;
    else
        free(o);
    return st;
}

long long kvt_info_int(kvt_conn *c, const char *field)
{
    char *r = kvt_cmd(c, "INFO everything");
    char key[128];
    snprintf(key, sizeof(key), "%s:", field);
    char *p = strstr(r, key);
    long long v = p ? strtoll(p + strlen(key), NULL, 10) : -1;
    free(r);
    return v;
}

/* ---- the checker ------------------------------------------------------- */

typedef struct ck_conn {
    int fd;
    char rbuf[256];
    size_t rlen;
    int inflight;             /* 0 none, 1 SET, 2 INCR */
    long long sent_ms;
    uint64_t seq;             /* seq of the SET in flight / next */
    uint8_t *acked;           /* per seq: SET acknowledged */
    size_t acked_cap;
    long long incr_acked;     /* last value an INCR replied */
    uint64_t incr_after;      /* INCRs sent after that reply */
    long long retry_ms;
    unsigned port_idx;
    unsigned turn;            /* even: SET, odd: INCR */
} ck_conn;

struct kvt_checker {
    int n;
    ck_conn *c;
    pthread_t tid;
    bool joined;
    atomic_bool stop;
    pthread_mutex_t lock;     /* ports */
    int ports[4];
    int nports;
    _Atomic uint64_t acked, unknown, reconnects;
    char failure[512];
};

static void ck_fail(kvt_checker *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void ck_fail(kvt_checker *k, const char *fmt, ...)
{
    if (k->failure[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->failure, sizeof(k->failure), fmt, ap);
    va_end(ap);
}

static void ck_drop(kvt_checker *k, ck_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->rlen = 0;
    if (c->inflight) {
        atomic_fetch_add(&k->unknown, 1);
        if (c->inflight == 1)
            c->seq++;         /* its outcome is unknown: never reuse it */
    }
    c->inflight = 0;
    c->retry_ms = it_now_ms() + 5;
}

static void ck_send(kvt_checker *k, ck_conn *c, int idx)
{
    char b[160], key[64], val[32];
    size_t n;
    if (c->turn++ % 2 == 0) {
        int kl = snprintf(key, sizeof(key), "ck:%d:%llu", idx,
                          (unsigned long long)c->seq);
        int vl = snprintf(val, sizeof(val), "%llu",
                          (unsigned long long)c->seq);
        n = (size_t)snprintf(b, sizeof(b), "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n"
                             "$%d\r\n%s\r\n", kl, key, vl, val);
        c->inflight = 1;
    } else {
        int kl = snprintf(key, sizeof(key), "cnt:%d", idx);
        n = (size_t)snprintf(b, sizeof(b), "*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n",
                             kl, key);
        c->inflight = 2;
        c->incr_after++;
    }
    c->sent_ms = it_now_ms();
    if (send(c->fd, b, n, MSG_NOSIGNAL) != (ssize_t)n)
        ck_drop(k, c);
}

static void ck_connect(kvt_checker *k, ck_conn *c)
{
    pthread_mutex_lock(&k->lock);
    int np = k->nports;
    int port = np ? k->ports[c->port_idx++ % (unsigned)np] : 0;
    pthread_mutex_unlock(&k->lock);
    if (!port)
        return;
    int fd = connect_port(port);
    if (fd < 0) {
        c->retry_ms = it_now_ms() + 5;
        return;
    }
    c->fd = fd;
    c->port_idx--;            /* stay on the port that answered */
    atomic_fetch_add(&k->reconnects, 1);
}

static void ck_on_reply(kvt_checker *k, ck_conn *c, int idx)
{
    char *nl = memchr(c->rbuf, '\n', c->rlen);
    if (!nl)
        return;
    *nl = '\0';
    if (c->inflight == 1 && !strncmp(c->rbuf, "+OK", 3)) {
        if (c->seq >= c->acked_cap) {
            size_t cap = c->acked_cap ? c->acked_cap * 2 : 1024;
            while (cap <= c->seq)
                cap *= 2;
            c->acked = realloc(c->acked, cap);
            memset(c->acked + c->acked_cap, 0, cap - c->acked_cap);
            c->acked_cap = cap;
        }
        c->acked[c->seq] = 1;
        c->seq++;
    } else if (c->inflight == 2 && c->rbuf[0] == ':') {
        long long v = strtoll(c->rbuf + 1, NULL, 10);
        if (v < c->incr_acked)
            ck_fail(k, "counter cnt:%d went back: INCR replied %lld after "
                    "%lld", idx, v, c->incr_acked);
        c->incr_acked = v;
        c->incr_after = 0;
    } else {
        ck_fail(k, "connection %d: unexpected reply '%s' to %s", idx,
                c->rbuf, c->inflight == 1 ? "SET" : "INCR");
    }
    atomic_fetch_add(&k->acked, 1);
    size_t used = (size_t)(nl - c->rbuf) + 1;
    memmove(c->rbuf, c->rbuf + used, c->rlen - used);
    c->rlen -= used;
    c->inflight = 0;
}

static void *ck_main(void *arg)
{
    kvt_checker *k = arg;
    struct pollfd *p = calloc((size_t)k->n, sizeof(*p));
    while (!atomic_load(&k->stop)) {
        long long now = it_now_ms();
        for (int i = 0; i < k->n; i++) {
            ck_conn *c = &k->c[i];
            if (c->fd < 0 && now >= c->retry_ms)
                ck_connect(k, c);
            if (c->fd >= 0 && !c->inflight)
                ck_send(k, c, i);
            if (c->fd >= 0 && c->inflight && now - c->sent_ms > 10000)
                ck_drop(k, c);   /* a store that never answers */
            p[i].fd = c->fd;
            p[i].events = POLLIN;
            p[i].revents = 0;
        }
        if (poll(p, (nfds_t)k->n, 5) <= 0)
            continue;
        for (int i = 0; i < k->n; i++) {
            ck_conn *c = &k->c[i];
            if (c->fd < 0 || !p[i].revents)
                continue;
            ssize_t r = read(c->fd, c->rbuf + c->rlen,
                             sizeof(c->rbuf) - 1 - c->rlen);
            if (r <= 0) {
                ck_drop(k, c);
                continue;
            }
            c->rlen += (size_t)r;
            if (c->inflight)
                ck_on_reply(k, c, i);
        }
    }
    for (int i = 0; i < k->n; i++)
        ck_drop(k, &k->c[i]);
    free(p);
    return NULL;
}

kvt_checker *kvt_checker_start(int nconn)
{
    kvt_checker *k = calloc(1, sizeof(*k));
    assert_non_null(k);
    k->n = nconn;
    k->c = calloc((size_t)nconn, sizeof(*k->c));
    assert_non_null(k->c);
    for (int i = 0; i < nconn; i++)
        k->c[i].fd = -1;
    pthread_mutex_init(&k->lock, NULL);
    assert_int_equal(pthread_create(&k->tid, NULL, ck_main, k), 0);
    return k;
}

void kvt_checker_ports(kvt_checker *k, const int *ports, int n)
{
    pthread_mutex_lock(&k->lock);
    k->nports = n > 4 ? 4 : n;
    memcpy(k->ports, ports, (size_t)k->nports * sizeof(int));
    pthread_mutex_unlock(&k->lock);
}

uint64_t kvt_checker_acked(kvt_checker *k)
{
    return atomic_load(&k->acked);
}

void kvt_checker_wait_progress(kvt_checker *k, uint64_t more, int timeout_ms)
{
    uint64_t want = kvt_checker_acked(k) + more;
    long long end = it_now_ms() + timeout_ms;
    while (kvt_checker_acked(k) < want) {
        if (k->failure[0])
            kvt_fail("checker: %s", k->failure);
        if (it_now_ms() > end)
            kvt_fail("the checker got only %llu of %llu more acknowledged "
                    "writes within %d ms",
                    (unsigned long long)(kvt_checker_acked(k) + more - want),
                    (unsigned long long)more, timeout_ms);
        it_sleep_ms(5);
    }
}

void kvt_checker_stop(kvt_checker *k)
{
    atomic_store(&k->stop, true);
    if (!k->joined) {
        pthread_join(k->tid, NULL);
        k->joined = true;
    }
    if (k->failure[0])
        kvt_fail("checker: %s", k->failure);
}

uint64_t kvt_checker_verify(kvt_checker *k, int port)
{
    kvt_checker_stop(k);
    kvt_conn *v = kvt_open(port, 30000);
    uint64_t checked = 0;
    for (int i = 0; i < k->n; i++) {
        ck_conn *c = &k->c[i];
        /* MGET the acknowledged keys of this connection in batches. */
        uint64_t s = 0;
        while (s < c->acked_cap) {
            const char *argv[257];
            size_t lens[257];
            char keys[256][48];
            uint64_t seqs[256];
            int n = 0;
            argv[0] = "MGET";
            lens[0] = 4;
            for (; s < c->acked_cap && n < 256; s++) {
                if (!c->acked[s])
                    continue;
                int l = snprintf(keys[n], sizeof(keys[n]), "ck:%d:%llu", i,
                                 (unsigned long long)s);
                argv[n + 1] = keys[n];
                lens[n + 1] = (size_t)l;
                seqs[n] = s;
                n++;
            }
            if (!n)
                break;
            assert_true(kvt_send_argv(v, n + 1, argv, lens));
            char *r = kvt_reply(v, 30000);
            if (!r)
                kvt_fail("no reply to MGET while verifying");
            /* "*[$v1,$v2,...]" */
            char *p = r + 2;
            for (int j = 0; j < n; j++) {
                char want[32];
                snprintf(want, sizeof(want), "$%llu",
                         (unsigned long long)seqs[j]);
                size_t wl = strlen(want);
                if (strncmp(p, want, wl) != 0 ||
                    (p[wl] != ',' && p[wl] != ']'))
                    kvt_fail("acknowledged write lost: key ck:%d:%llu should "
                            "hold %llu, the store has %.20s", i,
                            (unsigned long long)seqs[j],
                            (unsigned long long)seqs[j], p);
                p += wl + 1;
                checked++;
            }
            free(r);
        }
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "GET cnt:%d", i);
        char *r = kvt_cmd(v, cmd);
        long long val = !strcmp(r, "$nil") ? 0 : strtoll(r + 1, NULL, 10);
        free(r);
        if (val < c->incr_acked ||
            val > c->incr_acked + (long long)c->incr_after)
            kvt_fail("counter cnt:%d is %lld: its last acknowledged value "
                    "was %lld and %llu INCRs were sent after it", i, val,
                    c->incr_acked, (unsigned long long)c->incr_after);
        checked++;
    }
    kvt_close(v);
    return checked;
}

void kvt_checker_stats(kvt_checker *k, uint64_t *acked, uint64_t *unknown,
                       uint64_t *reconnects)
{
    *acked = atomic_load(&k->acked);
    *unknown = atomic_load(&k->unknown);
    *reconnects = atomic_load(&k->reconnects);
}

void kvt_checker_free(kvt_checker *k)
{
    if (!k)
        return;
    atomic_store(&k->stop, true);
    if (!k->joined)
        pthread_join(k->tid, NULL);
    for (int i = 0; i < k->n; i++)
        free(k->c[i].acked);
    free(k->c);
    pthread_mutex_destroy(&k->lock);
    free(k);
}
