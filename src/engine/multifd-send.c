/*
 * multifd-send.c - the source's page channels (see multifd.h).
 *
 * Fields of a channel are grouped by owner: "lock" ones are the hand-over
 * between the migration thread and the channel thread (one batch slot, a
 * sync request, quit); the rest belong to the channel thread.
 */
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/compress.h"
#include "engine/multifd.h"

typedef struct mf_chan {
    struct lm_mf_send *m;
    unsigned idx;
    pthread_t tid;
    bool started;
    lm_conn conn;

    /* m->lock */
    bool has_batch, sync_req, quit, failed;
    uint64_t sync;
    uint32_t block, n;
    const uint8_t *base;
    uint64_t pages[LM_MF_BATCH];

    /* channel thread */
    lm_writer *w;
    lm_compressor *comp;
    uint8_t *raw, *cbuf;
    size_t cbuf_len;
    bool zero[LM_MF_BATCH];
    /* written by the channel thread, read live by the migration thread */
    _Atomic uint64_t raw_bytes, sent_pages, zero_pages;
    _Atomic uint64_t bytes;   /* on the wire, counted by the writer */
} mf_chan;

struct lm_mf_send {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    mf_chan *ch;
    unsigned n;
    atomic_bool *cancel;
    void (*idle)(void *opaque);   /* while every channel is busy */
    void *idle_opaque;
    bool failed;
    livemig_error err;    /* the first channel failure */
};

static void chan_fail(mf_chan *c, const char *what)
{
    lm_mf_send *m = c->m;
    pthread_mutex_lock(&m->lock);
    c->failed = m->failed = true;
    livemig_error_set(&m->err, "multifd channel %u: %s", c->idx, what);
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static bool send_batch(mf_chan *c)
{
    uint32_t nz = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        c->zero[i] = lm_page_is_zero(c->base + c->pages[i] * LM_PAGE_SIZE);
        if (!c->zero[i] && c->comp)
            memcpy(c->raw + (size_t)nz * LM_PAGE_SIZE,
                   c->base + c->pages[i] * LM_PAGE_SIZE, LM_PAGE_SIZE);
        nz += !c->zero[i];
    }
    c->zero_pages += c->n - nz;
    c->sent_pages += nz;
    c->raw_bytes += (uint64_t)nz * LM_PAGE_SIZE;
    bool ok;
    if (c->comp && nz) {
        livemig_error e = { 0 };
        size_t clen = lm_compress(c->comp, c->raw, (size_t)nz * LM_PAGE_SIZE,
                                  c->cbuf, c->cbuf_len, &e);
        if (!clen) {
            chan_fail(c, e.desc);
            return false;
        }
        ok = lm_wr_mf_pages(c->w, c->block, c->pages, c->zero, c->n, c->base,
                            c->cbuf, (uint32_t)clen);
    } else {
        ok = lm_wr_mf_pages(c->w, c->block, c->pages, c->zero, c->n, c->base,
                            NULL, 0);
    }
    if (!ok)
        chan_fail(c, "sending failed: the destination stopped or the "
                     "connection broke");
    return ok;
}

static void *chan_main(void *arg)
{
    mf_chan *c = arg;
    lm_mf_send *m = c->m;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (;;) {
        pthread_mutex_lock(&m->lock);
        while (!c->has_batch && !c->sync_req && !c->quit)
            pthread_cond_wait(&m->cond, &m->lock);
        bool quit = c->quit, batch = c->has_batch, sync = c->sync_req;
        uint64_t point = c->sync;
        pthread_mutex_unlock(&m->lock);
        if (quit)
            break;
        bool ok = true;
        if (batch)
            ok = send_batch(c);
        else if (sync) {
            ok = lm_wr_mf_sync(c->w, point);
            if (!ok)
                chan_fail(c, "sending a sync point failed");
        }
        pthread_mutex_lock(&m->lock);
        if (batch)
            c->has_batch = false;
        else
            c->sync_req = false;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
        if (!ok)
            break;
    }
    return NULL;
}

lm_mf_send *lm_mf_send_start(livemig *lm, const char *uri,
                             const lm_stream_header *hdr,
                             const struct lm_params *p, livemig_error *err)
{
    lm_mf_send *m = calloc(1, sizeof(*m));
    unsigned n = (unsigned)p->multifd_channels;
    if (!m || !(m->ch = calloc(n, sizeof(mf_chan)))) {
        free(m);
        livemig_error_set(err, "out of memory for multifd channels");
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    m->n = n;
    lm_stream_header *h = malloc(sizeof(*h));
    bool ok = h != NULL;
    if (h)
        *h = *hdr;
    for (unsigned i = 0; ok && i < n; i++) {
        mf_chan *c = &m->ch[i];
        c->m = m;
        c->idx = i;
        c->conn = (lm_conn)LM_CONN_INIT;
        if (!lm_transport_connect_until(uri, &lm->cancel, &c->conn, err) ||
            !lm_secure_client(lm, &c->conn, err)) {
            ok = false;
            break;
        }
        c->w = malloc(sizeof(*c->w));
        c->raw = malloc(LM_MF_BATCH * LM_PAGE_SIZE);
        if (!c->w || !c->raw) {
            livemig_error_set(err, "out of memory for multifd channel %u", i);
            ok = false;
            break;
        }
        lm_writer_init_conn(c->w, &c->conn, &lm->cancel);
        if (p->max_bandwidth)
            lm_writer_set_rate(c->w, p->max_bandwidth / n + 1);
        if (p->multifd_compression != LM_COMPRESS_NONE) {
            int level = p->multifd_compression == LM_COMPRESS_ZSTD
                            ? (int)p->multifd_zstd_level
                            : (int)p->multifd_zlib_level;
            c->comp = lm_compressor_new(
                (lm_compress_method)p->multifd_compression, level, err);
            c->cbuf_len = lm_compress_bound(
                (lm_compress_method)p->multifd_compression,
                LM_MF_BATCH * LM_PAGE_SIZE);
            c->cbuf = malloc(c->cbuf_len);
            if (!c->comp || !c->cbuf) {
                livemig_error_set(err, "cannot set up %s compression for "
                                  "multifd channel %u",
                                  lm_compress_name(p->multifd_compression), i);
                ok = false;
                break;
            }
        }
        h->role = LM_ROLE_MULTIFD;
        h->index = (uint8_t)i;
        if (!lm_wr_header(c->w, h) || !lm_wr_flush(c->w)) {
            livemig_error_set(err, "multifd channel %u: sending its hello "
                              "failed", i);
            ok = false;
            break;
        }
        c->w->progress = &c->bytes;   /* pages, not the hello */
        c->started = pthread_create(&c->tid, NULL, chan_main, c) == 0;
        ok = c->started;
    }
    free(h);
    if (!ok) {
        livemig_error_set(err, "cannot open the multifd channels");
        lm_mf_send_stop(m);
        return NULL;
    }
    return m;
}

bool lm_mf_send_pages(lm_mf_send *m, uint32_t block, const uint8_t *base,
                      const uint64_t *pages, uint32_t n, livemig_error *err)
{
    pthread_mutex_lock(&m->lock);
    mf_chan *free_ch = NULL;
    while (!m->failed) {
        for (unsigned i = 0; i < m->n && !free_ch; i++)
            if (!m->ch[i].has_batch && !m->ch[i].sync_req)
                free_ch = &m->ch[i];
        if (free_ch)
            break;
        if (!m->idle) {
            pthread_cond_wait(&m->cond, &m->lock);
            continue;
        }
        /* Every channel is busy (a low max-bandwidth): let the caller
         * publish progress every 50 ms meanwhile. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) != 0) {
            pthread_mutex_unlock(&m->lock);
            m->idle(m->idle_opaque);
            pthread_mutex_lock(&m->lock);
        }
    }
    if (free_ch) {
        free_ch->block = block;
        free_ch->base = base;
        free_ch->n = n;
        memcpy(free_ch->pages, pages, n * sizeof(uint64_t));
        free_ch->has_batch = true;
        pthread_cond_broadcast(&m->cond);
    } else {
        livemig_error_set(err, "%s", m->err.desc);
    }
    pthread_mutex_unlock(&m->lock);
    return free_ch != NULL;
}

bool lm_mf_send_sync(lm_mf_send *m, uint64_t sync, livemig_error *err)
{
    pthread_mutex_lock(&m->lock);
    /* Wait for the batches in flight, then ask every channel. */
    for (unsigned i = 0; i < m->n && !m->failed; i++) {
        while (m->ch[i].has_batch && !m->failed)
            pthread_cond_wait(&m->cond, &m->lock);
        m->ch[i].sync = sync;
        m->ch[i].sync_req = true;
    }
    pthread_cond_broadcast(&m->cond);
    for (unsigned i = 0; i < m->n && !m->failed; i++)
        while (m->ch[i].sync_req && !m->failed)
            pthread_cond_wait(&m->cond, &m->lock);
    bool ok = !m->failed;
    if (!ok)
        livemig_error_set(err, "%s", m->err.desc);
    pthread_mutex_unlock(&m->lock);
    return ok;
}

void lm_mf_send_set_idle(lm_mf_send *m, void (*fn)(void *opaque),
                         void *opaque)
{
    m->idle = fn;
    m->idle_opaque = opaque;
}

void lm_mf_send_set_rate(lm_mf_send *m, uint64_t bytes_per_s)
{
    /* Between passes every channel is idle (after a sync): safe to set. */
    for (unsigned i = 0; i < m->n; i++)
        if (m->ch[i].w)
            lm_writer_set_rate(m->ch[i].w,
                               bytes_per_s ? bytes_per_s / m->n + 1 : 0);
}

void lm_mf_send_shutdown(lm_mf_send *m)
{
    pthread_mutex_lock(&m->lock);
    m->failed = true;
    livemig_error_set(&m->err, "cancelled");
    for (unsigned i = 0; i < m->n; i++)
        lm_conn_shutdown(&m->ch[i].conn);
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

void lm_mf_send_stop(lm_mf_send *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    for (unsigned i = 0; i < m->n; i++)
        m->ch[i].quit = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    for (unsigned i = 0; i < m->n; i++) {
        mf_chan *c = &m->ch[i];
        if (c->started)
            pthread_join(c->tid, NULL);
        if (c->w && !m->failed)
            lm_wr_flush(c->w);
        lm_conn_close(&c->conn);
        if (c->w)
            lm_writer_destroy(c->w);
        free(c->w);
        free(c->raw);
        free(c->cbuf);
        lm_compressor_free(c->comp);
    }
    free(m->ch);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}

uint64_t lm_mf_send_bytes(lm_mf_send *m)
{
    uint64_t b = 0;
    for (unsigned i = 0; i < m->n; i++)
        b += atomic_load(&m->ch[i].bytes);
    return b;
}

json_object *lm_mf_send_stats(lm_mf_send *m)
{
    json_object *a = json_object_new_array();
    for (unsigned i = 0; i < m->n; i++) {
        mf_chan *c = &m->ch[i];
        json_object *o = json_object_new_object();
        uint64_t bytes = atomic_load(&c->bytes);
        json_object_object_add(o, "channel", json_object_new_int((int)i));
        json_object_object_add(o, "bytes", json_object_new_uint64(bytes));
        json_object_object_add(o, "pages", json_object_new_uint64(
            atomic_load(&c->sent_pages)));
        json_object_object_add(o, "zero-pages", json_object_new_uint64(
            atomic_load(&c->zero_pages)));
        json_object_object_add(o, "compression-ratio", json_object_new_double(
            bytes ? (double)atomic_load(&c->raw_bytes) / (double)bytes : 0));
        json_object_array_add(a, o);
    }
    return a;
}
