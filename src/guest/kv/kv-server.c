/*
 * kv-server.c - the epoll loop of the kv store (see kv-server.h).
 *
 * Threads and what they own:
 *   - the loop thread: every socket, every connection's buffers except
 *     the released-replies buffer, the live/dead lists, and the store
 *     (it alone runs commands);
 *   - engine threads: call release_cb() with replies whose checkpoint was
 *     acknowledged; under rel_lock it appends them to the connection's
 *     released buffer (c->r), counts them off, queues the connection on
 *     s->ready and wakes the loop through the eventfd;
 *   - the glue (engine threads, the watcher): pause/resume/drop through
 *     s->lock and s->cv; the loop checks s->pause_req between clients
 *     and parks under s->lock.
 * A connection is freed by the loop only once it is closed, holds no
 * output in the engine and is not queued on s->ready, so a late release
 * never touches freed memory.  Lock order: the engine's output lock, then
 * rel_lock (release_cb runs under the former); the loop never holds
 * rel_lock while it submits.
 */
#include "guest/kv/kv-server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define READ_CHUNK (64u * 1024)
#define READS_PER_TURN 8
#define ACCEPTS_PER_TURN 64
#define CRON_MS 100
#define RESERVED_FDS 64       /* monitor, engine connections, files */

typedef struct kv_conn {
    kv_server *srv;
    int fd;
    kv_client cl;
    kv_resp_parser p;
    char *q;                  /* query buffer */
    size_t qlen, qcap;
    kv_out pend;              /* replies not yet submitted */
    kv_out w;                 /* released replies to write */
    size_t wsent;
    bool want_out;            /* EPOLLOUT registered */
    bool closing;             /* QUIT or protocol error: close when sent */
    struct kv_conn *prev, *next;    /* live list, or dead list (next) */
    /* rel_lock */
    kv_out r;                 /* released by the engine, not yet in w */
    uint64_t held, held_bytes;
    bool closed, on_ready;
    struct kv_conn *ready_next;
} kv_conn;

struct kv_server {
    kv_store *st;
    livemig *lm;
    kv_server_conf conf;
    int ep, evfd, lfd;
    pthread_t thread;
    bool started;

    pthread_mutex_t lock;     /* control state: */
    pthread_cond_t cv;
    unsigned pauses;
    bool ever_resumed, parked, quit, drop_req, exited;
    atomic_bool pause_req;

    pthread_mutex_t rel_lock; /* released replies */
    kv_conn *ready;

    /* loop thread */
    kv_conn *live, *dead;
    uint64_t nconns, next_id;
    int64_t next_cron;
    bool listen_warned;

    _Atomic uint64_t held_total, dropped, nconns_pub;
    atomic_int port_pub;
};

static __thread kv_server *tls_loop;   /* set on the loop thread */

/* ---- control ------------------------------------------------------------ */

static void update_pause_locked(kv_server *s)
{
    atomic_store(&s->pause_req, s->pauses > 0 || !s->ever_resumed ||
                                    s->quit || s->drop_req);
}

static void kick(kv_server *s)
{
    uint64_t one = 1;
    if (write(s->evfd, &one, sizeof(one)) < 0) {
        /* The counter is saturated: the loop is awake anyway. */
    }
}

void kv_server_pause(kv_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->pauses++;
    update_pause_locked(s);
    kick(s);
    while (!s->parked && !s->exited)
        pthread_cond_wait(&s->cv, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

void kv_server_resume(kv_server *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->pauses)
        s->pauses--;
    s->ever_resumed = true;
    update_pause_locked(s);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
}

void kv_server_drop_clients(kv_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->drop_req = true;
    update_pause_locked(s);
    pthread_cond_broadcast(&s->cv);
    kick(s);
    pthread_mutex_unlock(&s->lock);
}

int kv_server_listen_port(kv_server *s)
{
    return atomic_load(&s->port_pub);
}

void kv_server_get_info(kv_server *s, kv_server_info *out)
{
    memset(out, 0, sizeof(*out));
    if (!s)
        return;
    out->clients = atomic_load(&s->nconns_pub);
    out->max_clients = s->conf.max_clients;
    out->held_bytes = atomic_load(&s->held_total);
    out->out_limit = s->conf.out_limit;
    out->dropped = atomic_load(&s->dropped);
}

/* ---- connections -------------------------------------------------------- */

static void set_out_interest(kv_conn *c, bool want)
{
    if (c->want_out == want || c->fd < 0)
        return;
    struct epoll_event ev = {
        .events = (c->closing ? 0 : EPOLLIN) | (want ? EPOLLOUT : 0),
        .data.ptr = c,
    };
    epoll_ctl(c->srv->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void close_conn(kv_conn *c)
{
    kv_server *s = c->srv;
    if (c->fd < 0)
        return;
    epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    pthread_mutex_lock(&s->rel_lock);
    c->closed = true;
    kv_out_free(&c->r);
    pthread_mutex_unlock(&s->rel_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = s->dead;
    s->dead = c;
    s->nconns--;
    atomic_store(&s->nconns_pub, s->nconns);
    kv_resp_free(&c->p);
    free(c->q);
    c->q = NULL;
    c->qlen = c->qcap = 0;
    kv_out_free(&c->pend);
    kv_out_free(&c->w);
}

static void free_dead(kv_server *s, bool all)
{
    kv_conn **link = &s->dead;
    while (*link) {
        kv_conn *c = *link;
        pthread_mutex_lock(&s->rel_lock);
        bool can = all || (!c->held && !c->on_ready);
        pthread_mutex_unlock(&s->rel_lock);
        if (can) {
            *link = c->next;
            kv_out_free(&c->r);
            free(c);
        } else {
            link = &c->next;
        }
    }
}

/* Write what can be written now. */
static void flush(kv_conn *c)
{
    while (c->wsent < c->w.len) {
        ssize_t n = send(c->fd, c->w.p + c->wsent, c->w.len - c->wsent,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->wsent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out_interest(c, true);
            return;
        } else {
            close_conn(c);
            return;
        }
    }
    c->w.len = c->wsent = 0;
    set_out_interest(c, false);
    if (c->closing) {
        pthread_mutex_lock(&c->srv->rel_lock);
        bool done = !c->held;
        pthread_mutex_unlock(&c->srv->rel_lock);
        if (done)
            close_conn(c);
    }
}

/* Move released replies into the write buffer (loop thread). */
static void take_released(kv_conn *c)
{
    kv_server *s = c->srv;
    pthread_mutex_lock(&s->rel_lock);
    if (c->r.len) {
        if (c->wsent == c->w.len) {
            kv_out t = c->w;
            c->w = c->r;
            c->r = t;
            c->r.len = 0;
            c->wsent = 0;
        } else {
            kv_out_raw(&c->w, c->r.p, c->r.len);
            c->r.len = 0;
        }
    }
    bool oom = c->r.oom || c->w.oom;
    pthread_mutex_unlock(&s->rel_lock);
    if (oom)
        close_conn(c);
}

/* Drop a client whose replies pile up beyond the limit (a client that
 * never reads).  True if it was dropped. */
static bool over_limit(kv_conn *c)
{
    kv_server *s = c->srv;
    pthread_mutex_lock(&s->rel_lock);
    uint64_t held = c->held_bytes;
    pthread_mutex_unlock(&s->rel_lock);
    if (c->fd < 0 || (c->w.len - c->wsent) + held <= s->conf.out_limit)
        return false;
    fprintf(stderr, "livemigd: kv: client %llu (%s) dropped: %zu bytes of "
            "replies unread, more than out-limit=%zu\n",
            (unsigned long long)c->cl.id, c->cl.addr,
            (size_t)((c->w.len - c->wsent) + held), s->conf.out_limit);
    atomic_fetch_add(&s->dropped, 1);
    close_conn(c);
    return true;
}

static void release_cb(void *opaque, const void *data, size_t len)
{
    kv_conn *c = opaque;
    kv_server *s = c->srv;
    bool wake = false;
    pthread_mutex_lock(&s->rel_lock);
    if (!c->closed)
        kv_out_raw(&c->r, data, len);
    c->held--;
    c->held_bytes -= len;
    if (!c->on_ready) {
        c->on_ready = true;
        wake = !s->ready && tls_loop != s;
        c->ready_next = s->ready;
        s->ready = c;
    }
    pthread_mutex_unlock(&s->rel_lock);
    atomic_fetch_sub(&s->held_total, len);
    if (wake)
        kick(s);
}

/* Hand the replies gathered for @c to output commit. */
static void submit(kv_conn *c)
{
    kv_server *s = c->srv;
    if (c->fd < 0 || !c->pend.len)
        return;
    if (c->pend.oom) {
        close_conn(c);
        return;
    }
    size_t len = c->pend.len;
    pthread_mutex_lock(&s->rel_lock);
    c->held++;
    c->held_bytes += len;
    pthread_mutex_unlock(&s->rel_lock);
    atomic_fetch_add(&s->held_total, len);
    livemig_error err = { 0 };
    if (!livemig_output_submit(s->lm, c->pend.p, len, release_cb, c, &err)) {
        pthread_mutex_lock(&s->rel_lock);
        c->held--;
        c->held_bytes -= len;
        pthread_mutex_unlock(&s->rel_lock);
        atomic_fetch_sub(&s->held_total, len);
        fprintf(stderr, "livemigd: kv: client %llu dropped: %s\n",
                (unsigned long long)c->cl.id, err.desc);
        close_conn(c);
        return;
    }
    kv_out_reset(&c->pend);
    /* Released at once when nothing checkpoints: write it now. */
    take_released(c);
    if (c->fd >= 0 && !over_limit(c))
        flush(c);
}

/* Run every complete command in the query buffer. */
static void process(kv_conn *c)
{
    kv_server *s = c->srv;
    switch (kv_feed(s->st, &c->cl, &c->p, c->q, &c->qlen, s->conf.query_limit,
                    &c->pend, NULL)) {
    case KV_FEED_MORE:
        return;
    case KV_FEED_CLOSE: {
        c->closing = true;
        struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
        epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = true;
        return;
    }
    case KV_FEED_NOMEM:
        close_conn(c);
        return;
    case KV_FEED_TOO_BIG:
        fprintf(stderr, "livemigd: kv: client %llu (%s) dropped: its "
                "request is larger than query-limit=%zu\n",
                (unsigned long long)c->cl.id, c->cl.addr,
                s->conf.query_limit);
        close_conn(c);
        return;
    }
}

static bool grow_query(kv_conn *c, size_t room)
{
    if (c->qcap - c->qlen >= room)
        return true;
    size_t cap = c->qcap ? c->qcap : READ_CHUNK;
    while (cap - c->qlen < room)
        cap *= 2;
    char *q = realloc(c->q, cap);
    if (!q)
        return false;
    c->q = q;
    c->qcap = cap;
    return true;
}

static void on_readable(kv_conn *c)
{
    for (int i = 0; i < READS_PER_TURN && c->fd >= 0 && !c->closing; i++) {
        if (!grow_query(c, READ_CHUNK)) {
            close_conn(c);
            return;
        }
        size_t room = c->qcap - c->qlen;
        ssize_t n = read(c->fd, c->q + c->qlen, room);
        if (n == 0) {
            submit(c);          /* replies of what it sent before EOF */
            close_conn(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            close_conn(c);
            return;
        }
        c->qlen += (size_t)n;
        process(c);
        if ((size_t)n < room)
            break;
    }
    submit(c);
}

static void new_conn(kv_server *s, int fd, const struct sockaddr_in *sa)
{
    kv_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    c->cl.id = ++s->next_id;
    c->cl.since_ms = kv_mono_ms();
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
    snprintf(c->cl.addr, sizeof(c->cl.addr), "%s:%u", ip,
             ntohs(sa->sin_port));
    kv_resp_init(&c->p, &s->conf.lim);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        free(c);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->next = s->live;
    if (s->live)
        s->live->prev = c;
    s->live = c;
    s->nconns++;
    atomic_store(&s->nconns_pub, s->nconns);
    s->st->n.connections++;
}

static void on_accept(kv_server *s)
{
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        int fd = accept4(s->lfd, (struct sockaddr *)&sa, &sl,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (s->nconns >= s->conf.max_clients) {
            static const char msg[] = "-ERR max number of clients reached\r\n";
            if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL) < 0) {
                /* it is gone already */
            }
            close(fd);
            continue;
        }
        new_conn(s, fd, &sa);
    }
}

static void try_listen(kv_server *s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)s->conf.port) };
    inet_pton(AF_INET, s->conf.bind, &sa.sin_addr);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->lfd };
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, 4096) < 0 || epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        if (!s->listen_warned)
            fprintf(stderr, "livemigd: kv: cannot listen on %s:%d: %s; "
                    "retrying (free the port or choose another port=)\n",
                    s->conf.bind, s->conf.port, strerror(errno));
        s->listen_warned = true;
        close(fd);
        return;
    }
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    s->lfd = fd;
    s->listen_warned = false;
    atomic_store(&s->port_pub, ntohs(sa.sin_port));
    fprintf(stderr, "livemigd: kv: serving on %s:%d\n", s->conf.bind,
            ntohs(sa.sin_port));
}

static void drop_all(kv_server *s)
{
    while (s->live)
        close_conn(s->live);
    if (s->lfd >= 0) {
        epoll_ctl(s->ep, EPOLL_CTL_DEL, s->lfd, NULL);
        close(s->lfd);
        s->lfd = -1;
        atomic_store(&s->port_pub, -1);
    }
    free_dead(s, false);
}

static void drain_ready(kv_server *s)
{
    pthread_mutex_lock(&s->rel_lock);
    kv_conn *c = s->ready;
    s->ready = NULL;
    pthread_mutex_unlock(&s->rel_lock);
    while (c) {
        pthread_mutex_lock(&s->rel_lock);
        kv_conn *next = c->ready_next;
        c->on_ready = false;
        pthread_mutex_unlock(&s->rel_lock);
        if (c->fd >= 0) {
            take_released(c);
            if (c->fd >= 0 && !over_limit(c))
                flush(c);
        }
        c = next;
    }
}

static void cron(kv_server *s)
{
    int64_t now = kv_mono_ms();
    if (now < s->next_cron)
        return;
    s->next_cron = now + CRON_MS;
    kv_heap *h = &s->st->heap;
    s->st->n.expired += kv_db_expire_cycle(h, kv_store_now_ms(s->st), 16);
    kv_dict_rehash(h, &h->root->db, 256);
}

/* Park until resumed (or told to quit).  False: quit. */
static bool park(kv_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->parked = true;
    pthread_cond_broadcast(&s->cv);
    for (;;) {
        if (s->drop_req) {
            s->drop_req = false;
            update_pause_locked(s);
            pthread_mutex_unlock(&s->lock);
            drop_all(s);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        if (s->quit || (s->pauses == 0 && s->ever_resumed))
            break;
        pthread_cond_wait(&s->cv, &s->lock);
    }
    s->parked = false;
    bool quit = s->quit;
    pthread_mutex_unlock(&s->lock);
    return !quit;
}

static void *loop_main(void *arg)
{
    kv_server *s = arg;
    tls_loop = s;
    struct epoll_event ev[MAX_EVENTS];
    for (;;) {
        if (atomic_load(&s->pause_req) && !park(s))
            break;
        if (s->lfd < 0)
            try_listen(s);
        int n = epoll_wait(s->ep, ev, MAX_EVENTS, CRON_MS);
        for (int i = 0; i < n; i++) {
            /* A stop waits for this loop: leave the rest for later (the
             * events are level-triggered and come back). */
            if (atomic_load(&s->pause_req))
                break;
            void *p = ev[i].data.ptr;
            if (p == &s->evfd) {
                uint64_t v;
                if (read(s->evfd, &v, sizeof(v)) < 0) {
                    /* nothing to read: another wake-up took it */
                }
            } else if (p == &s->lfd) {
                on_accept(s);
            } else {
                kv_conn *c = p;
                if (c->fd < 0)
                    continue;
                if (ev[i].events & EPOLLOUT)
                    flush(c);
                if (c->fd >= 0 && !c->closing &&
                    (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    on_readable(c);
                else if (c->fd >= 0 && (ev[i].events & (EPOLLHUP | EPOLLERR)))
                    close_conn(c);
            }
        }
        drain_ready(s);
        free_dead(s, false);
        if (!atomic_load(&s->pause_req))
            cron(s);
    }
    pthread_mutex_lock(&s->lock);
    s->exited = true;
    s->parked = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- lifetime ------------------------------------------------------------- */

kv_server *kv_server_new(kv_store *st, livemig *lm, const kv_server_conf *conf,
                         livemig_error *err)
{
    kv_server *s = calloc(1, sizeof(*s));
    if (!s) {
        livemig_error_set(err, "kv guest: out of memory");
        return NULL;
    }
    s->st = st;
    s->lm = lm;
    s->conf = *conf;
    s->lfd = -1;
    s->pauses = 0;
    atomic_store(&s->port_pub, -1);
    struct in_addr a;
    if (inet_pton(AF_INET, conf->bind, &a) != 1) {
        livemig_error_set(err, "kv guest: bind address '%s' is not an IPv4 "
                          "address; use e.g. bind=127.0.0.1", conf->bind);
        free(s);
        return NULL;
    }
    /* 10,000 clients need as many descriptors: take what the hard limit
     * allows, and serve fewer clients if it allows less. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)conf->max_clients + RESERVED_FDS;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want
                              ? want : rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur < want) {
            unsigned fit = rl.rlim_cur > RESERVED_FDS * 2
                               ? (unsigned)(rl.rlim_cur - RESERVED_FDS) : 16;
            fprintf(stderr, "livemigd: kv: the open-files limit is %llu: "
                    "serving at most %u clients (raise 'ulimit -n' for "
                    "max-clients=%u)\n", (unsigned long long)rl.rlim_cur,
                    fit, conf->max_clients);
            s->conf.max_clients = fit;
        }
    }
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->evfd };
    if (s->ep < 0 || s->evfd < 0 ||
        epoll_ctl(s->ep, EPOLL_CTL_ADD, s->evfd, &ev) < 0) {
        livemig_error_set(err, "kv guest: cannot create its event loop: %s",
                          strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->rel_lock, NULL);
    update_pause_locked(s);
    int e = pthread_create(&s->thread, NULL, loop_main, s);
    if (e) {
        livemig_error_set(err, "kv guest: cannot start its server thread: "
                          "%s", strerror(e));
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->rel_lock);
        goto fail;
    }
    s->started = true;
    return s;
fail:
    if (s->ep >= 0)
        close(s->ep);
    if (s->evfd >= 0)
        close(s->evfd);
    free(s);
    return NULL;
}

void kv_server_halt(kv_server *s)
{
    if (!s || !s->started)
        return;
    pthread_mutex_lock(&s->lock);
    s->quit = true;
    update_pause_locked(s);
    pthread_cond_broadcast(&s->cv);
    kick(s);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->started = false;
    drop_all(s);
}

void kv_server_free(kv_server *s)
{
    if (!s)
        return;
    kv_server_halt(s);
    free_dead(s, true);
    close(s->ep);
    close(s->evfd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->rel_lock);
    free(s);
}
