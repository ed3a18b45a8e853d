/*
 * multifd-recv.c - the destination's page channels (see multifd.h).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/compress.h"
#include "engine/multifd.h"

typedef struct mr_chan {
    struct lm_mf_recv *m;
    unsigned idx;
    bool present, started;
    pthread_t tid;
    lm_conn conn;
    lm_reader *r;
    uint64_t synced;          /* m->lock: last sync point processed */
} mr_chan;

struct lm_mf_recv {
    livemig *lm;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    mr_chan *ch;
    unsigned n, added;
    uint8_t uuid[16];
    lm_compress_method method;
    bool skip_zero;
    bool failed;
    livemig_error err;
};

static void fail(lm_mf_recv *m, const livemig_error *e)
{
    pthread_mutex_lock(&m->lock);
    m->failed = true;
    livemig_error_set(&m->err, "%s", e->desc);
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

/* All channels reached @sync (or something failed). */
static bool all_synced_locked(lm_mf_recv *m, uint64_t sync)
{
    for (unsigned i = 0; i < m->n; i++)
        if (m->ch[i].synced < sync)
            return false;
    return true;
}

static void *chan_main(void *arg)
{
    mr_chan *c = arg;
    lm_mf_recv *m = c->m;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    livemig_error e = { 0 };
    lm_rec rec;
    for (;;) {
        if (!lm_rd_record(c->r, &rec, &e)) {
            pthread_mutex_lock(&m->lock);
            bool done = m->failed || c->synced == UINT64_MAX;
            pthread_mutex_unlock(&m->lock);
            if (!done) {
                livemig_error why = { 0 };
                livemig_error_set(&why, "multifd channel %u: %s", c->idx,
                                  e.desc);
                fail(m, &why);
            }
            return NULL;
        }
        if (rec.type == LM_REC_MF_PAGES)
            continue;
        if (rec.type != LM_REC_MF_SYNC) {
            livemig_error_set(&e, "multifd channel %u: record type %d does "
                              "not belong on a page channel", c->idx,
                              rec.type);
            fail(m, &e);
            return NULL;
        }
        /* The barrier: no page after this sync point may land before
         * every channel has landed all of its pages before it. */
        pthread_mutex_lock(&m->lock);
        c->synced = rec.pass;
        c->r->skip_zero = false;
        pthread_cond_broadcast(&m->cond);
        while (!m->failed && !all_synced_locked(m, rec.pass))
            pthread_cond_wait(&m->cond, &m->lock);
        bool failed = m->failed;
        pthread_mutex_unlock(&m->lock);
        if (failed)
            return NULL;
    }
}

lm_mf_recv *lm_mf_recv_new(livemig *lm, unsigned nchannels,
                           const lm_stream_header *main_hdr,
                           livemig_error *err)
{
    lm_mf_recv *m = calloc(1, sizeof(*m));
    if (!m || !(m->ch = calloc(nchannels, sizeof(mr_chan)))) {
        free(m);
        livemig_error_set(err, "out of memory for multifd channels");
        return NULL;
    }
    m->lm = lm;
    m->n = nchannels;
    memcpy(m->uuid, main_hdr->uuid, 16);
    m->method = (lm_compress_method)main_hdr->compression;
    if (m->method >= LM_COMPRESS__MAX) {
        free(m->ch);
        free(m);
        livemig_error_set(err, "the source compresses multifd pages with "
                          "method %u, which this build does not know",
                          main_hdr->compression);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    for (unsigned i = 0; i < nchannels; i++) {
        m->ch[i].m = m;
        m->ch[i].idx = i;
        m->ch[i].conn = (lm_conn)LM_CONN_INIT;
    }
    return m;
}

void lm_mf_recv_skip_zero(lm_mf_recv *m, bool skip)
{
    m->skip_zero = skip;
}

bool lm_mf_recv_add(lm_mf_recv *m, lm_conn conn, lm_reader *r,
                    livemig_error *err)
{
    const lm_stream_header *h = &r->hdr;
    const char *why = NULL;
    if (h->role != LM_ROLE_MULTIFD)
        why = "it is not a multifd channel";
    else if (memcmp(h->uuid, m->uuid, 16) != 0)
        why = "it belongs to another migration (UUID differs)";
    else if (h->index >= m->n)
        why = "its index is beyond the channel count";
    else if (m->ch[h->index].present)
        why = "a channel with its index is already connected";
    if (why) {
        livemig_error_set(err, "refused multifd channel %u: %s", h->index,
                          why);
        return false;
    }
    mr_chan *c = &m->ch[h->index];
    c->present = true;
    c->conn = conn;
    c->r = r;
    r->skip_zero = m->skip_zero;
    if (m->method != LM_COMPRESS_NONE &&
        !(r->decomp = lm_compressor_new(m->method, 1, err)))
        return false;
    m->added++;
    c->started = pthread_create(&c->tid, NULL, chan_main, c) == 0;
    if (!c->started) {
        livemig_error_set(err, "cannot start multifd channel %u", c->idx);
        return false;
    }
    return true;
}

bool lm_mf_recv_complete(lm_mf_recv *m) { return m->added == m->n; }

bool lm_mf_recv_wait(lm_mf_recv *m, uint64_t sync, livemig_error *err)
{
    pthread_mutex_lock(&m->lock);
    while (!m->failed && !atomic_load(&m->lm->cancel) &&
           !all_synced_locked(m, sync)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&m->cond, &m->lock, &ts);
    }
    bool ok = !m->failed && all_synced_locked(m, sync);
    if (!ok)
        livemig_error_set(err, "%s", m->failed ? m->err.desc : "cancelled");
    /* Past the last sync the channels' end of stream is expected. */
    if (ok)
        for (unsigned i = 0; i < m->n; i++)
            m->ch[i].synced = UINT64_MAX;
    pthread_mutex_unlock(&m->lock);
    return ok;
}

void lm_mf_recv_shutdown(lm_mf_recv *m)
{
    pthread_mutex_lock(&m->lock);
    m->failed = true;
    livemig_error_set(&m->err, "cancelled");
    for (unsigned i = 0; i < m->n; i++)
        if (m->ch[i].present)
            lm_conn_shutdown(&m->ch[i].conn);
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static void join_all(lm_mf_recv *m)
{
    lm_mf_recv_shutdown(m);
    for (unsigned i = 0; i < m->n; i++) {
        mr_chan *c = &m->ch[i];
        if (c->started)
            pthread_join(c->tid, NULL);
        c->started = false;
    }
}

void lm_mf_recv_finish(lm_mf_recv *m, lm_reader *into)
{
    join_all(m);
    for (unsigned i = 0; i < m->n; i++)
        if (m->ch[i].r)
            lm_rd_merge_received(into, m->ch[i].r);
}

void lm_mf_recv_stop(lm_mf_recv *m)
{
    if (!m)
        return;
    join_all(m);
    for (unsigned i = 0; i < m->n; i++) {
        mr_chan *c = &m->ch[i];
        if (c->r) {
            lm_compressor_free(c->r->decomp);
            lm_reader_destroy(c->r);
            free(c->r);
        }
        lm_conn_close(&c->conn);
    }
    free(m->ch);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}
