/*
 * postcopy-preempt-recv.c - the destination's end of the postcopy-preempt
 * channel (see postcopy-preempt-send.c): a thread that reads the pages
 * the source sends there and places them, beside the incoming thread that
 * places the background pages of the main connection.  A page may come
 * both ways (resent after a recovery): the second UFFDIO_COPY finds it
 * present (EEXIST) and is a no-op.
 *
 * The source connects at its postcopy switch, long after the main
 * connection, so the migration's listener stays open (owned here) until
 * the channel is there; anything else that connects meanwhile is refused
 * with the reason and the thread keeps listening.  At a recovery the
 * recovering thread accepts the new channel itself and hands it over
 * (lm_pc_pre_dst_adopt).
 *
 * lock guards: listener (the thread accepts on it while it is open),
 * conn/r (the channel; only the thread reads it and only the thread
 * closes it, others may shut it down), broken/why, stop.  A channel that
 * fails cuts the main connection too, so both sides pause together, as
 * with a broken main connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/postcopy.h"
#include "transport/transport.h"

struct lm_pc_pre_dst {
    lm_pc_dst *pc;
    livemig *lm;
    uint8_t *bounce;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    lm_listener listener;
    lm_conn conn;
    lm_reader *r;
    bool broken, stop;
    bool replacing;              /* adopt drops the old channel: not a
                                    failure to report */
    char why[400];
};

static uint8_t *stage(void *opaque, uint32_t block, uint64_t first,
                      uint32_t npages, livemig_error *err)
{
    (void)block; (void)first; (void)npages; (void)err;
    return ((lm_pc_pre_dst *)opaque)->bounce;
}

static void drop_channel(lm_pc_pre_dst *p, const char *why)
{
    pthread_mutex_lock(&p->lock);
    lm_reader *r = p->r;
    lm_conn c = p->conn;
    p->r = NULL;
    p->conn = (lm_conn)LM_CONN_INIT;
    bool report = why && !p->stop && !p->replacing;
    if (report) {
        p->broken = true;
        snprintf(p->why, sizeof(p->why), "%s", why);
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (r) {
        lm_reader_destroy(r);
        free(r);
    }
    lm_conn_close(&c);
    if (report) {
        /* Both channels pause together: the source sees the main link
         * break and the recovery re-creates both. */
        pthread_mutex_lock(&p->lm->lock);
        lm_conn_shutdown(&p->lm->conn);
        pthread_mutex_unlock(&p->lm->lock);
    }
}

/* Accept until the source's channel is there (or we are stopped). */
static void accept_channel(lm_pc_pre_dst *p)
{
    for (;;) {
        pthread_mutex_lock(&p->lock);
        bool done = p->stop || p->r;   /* a recovery adopted one */
        pthread_mutex_unlock(&p->lock);
        if (done)
            break;
        lm_conn c;
        livemig_error e = { 0 };
        int rc = lm_listener_accept(&p->listener, 100, &c, &e);
        if (rc < 0) {
            lm_log(p->lm, "postcopy-preempt: %s", e.desc);
            break;
        }
        if (rc == 0)
            continue;
        lm_reader *r = lm_pc_dst_hello(p->pc, &c, LM_ROLE_PC_PREEMPT, &e);
        if (!r) {
            lm_log(p->lm, "refused a connection on the migration port "
                   "while waiting for the postcopy-preempt channel: %s",
                   e.desc);
            lm_pc_dst_refuse(&c, e.desc);
            continue;
        }
        r->stage = stage;
        r->stage_opaque = p;
        pthread_mutex_lock(&p->lock);
        bool taken = p->r != NULL;
        if (!taken) {
            p->conn = c;
            p->r = r;
        }
        pthread_mutex_unlock(&p->lock);
        if (taken) {
            lm_reader_destroy(r);
            free(r);
            lm_conn_close(&c);
        }
        break;
    }
    lm_listener_close(&p->listener);
}

static void *pre_thread(void *arg)
{
    lm_pc_pre_dst *p = arg;
    if (p->listener.fd >= 0)
        accept_channel(p);
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->stop && !p->r)
            pthread_cond_wait(&p->cond, &p->lock);
        lm_reader *r = p->r;
        bool stop = p->stop;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            break;
        livemig_error e = { 0 };
        lm_rec rec;
        uint64_t seen = 0;   /* the hello (header) counts too */
        while (lm_rd_record(r, &rec, &e) &&
               lm_pc_dst_place(p->pc, &rec, p->bounce, &e)) {
            pthread_mutex_lock(&p->lm->lock);
            p->lm->stats.pc.preempt_pages += rec.npages;
            p->lm->stats.pc.preempt_bytes += r->total - seen;
            p->lm->stats.transferred += r->total - seen;
            pthread_mutex_unlock(&p->lm->lock);
            seen = r->total;
        }
        char why[400];
        snprintf(why, sizeof(why), "the postcopy-preempt channel broke: "
                 "%.320s", e.desc);
        drop_channel(p, why);
    }
    drop_channel(p, NULL);
    return NULL;
}

lm_pc_pre_dst *lm_pc_pre_dst_start(lm_pc_dst *pc, livemig *lm,
                                   livemig_error *err)
{
    lm_pc_pre_dst *p = calloc(1, sizeof(*p));
    if (!p || !(p->bounce = malloc((size_t)LM_STREAM_MAX_RUN *
                                   LM_PAGE_SIZE))) {
        free(p);
        livemig_error_set(err, "out of memory for the postcopy-preempt "
                          "channel");
        return NULL;
    }
    p->pc = pc;
    p->lm = lm;
    p->conn = (lm_conn)LM_CONN_INIT;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    /* The migration's listener is ours now: the source connects the
     * channel at its postcopy switch. */
    pthread_mutex_lock(&lm->lock);
    p->listener = lm->listener;
    lm->listener.fd = -1;
    lm->listener.path[0] = '\0';
    lm->listener.pending = (lm_conn)LM_CONN_INIT;
    pthread_mutex_unlock(&lm->lock);
    if (pthread_create(&p->thread, NULL, pre_thread, p) != 0) {
        livemig_error_set(err, "cannot start the postcopy-preempt thread");
        lm_pc_pre_dst_stop(p);
        return NULL;
    }
    p->started = true;
    return p;
}

void lm_pc_pre_dst_adopt(lm_pc_pre_dst *p, lm_conn c, lm_reader *r)
{
    r->stage = stage;
    r->stage_opaque = p;
    pthread_mutex_lock(&p->lock);
    /* The old channel (a paused link) goes first: the thread drops it
     * once its read fails. */
    p->replacing = true;
    while (p->r && !p->stop) {
        lm_conn_shutdown(&p->conn);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    }
    p->conn = c;
    p->r = r;
    p->broken = false;
    p->replacing = false;
    p->why[0] = '\0';
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

bool lm_pc_pre_dst_broken(lm_pc_pre_dst *p, char *why, size_t len)
{
    pthread_mutex_lock(&p->lock);
    bool b = p->broken;
    if (b && why)
        snprintf(why, len, "%s", p->why);
    pthread_mutex_unlock(&p->lock);
    return b;
}

void lm_pc_pre_dst_stop(lm_pc_pre_dst *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    lm_conn_shutdown(&p->conn);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (p->started)
        pthread_join(p->thread, NULL);
    drop_channel(p, NULL);
    lm_listener_close(&p->listener);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p->bounce);
    free(p);
}
