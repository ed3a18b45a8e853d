/*
 * postcopy-send.c - the source side of postcopy (see postcopy.h).
 *
 * After the switch the migration thread owns the remaining-pages bitmap
 * (the blocks' dirty bitmaps, final since the guest is stopped for good)
 * and sends each page once: pages the destination asked for first, in
 * runs of one page flushed at once and not charged to
 * max-postcopy-bandwidth, then the background sweep in chunks of
 * PC_CHUNK pages, paced by max-postcopy-bandwidth.  A return-path thread
 * reads the destination's messages into a queue.
 *
 * Under max-postcopy-bandwidth the background stream is paced finely
 * (PC_PACE_US slices, no burst larger than one) and the main
 * connection's send buffer holds only a few ms of the rate: the link's
 * queue (a router's, tbf's) then stays short, and an asked-for page,
 * on either connection, waits behind little.  Asked-for pages never
 * wait for the bucket but are charged to it (QEMU counts them too), so
 * all bytes together keep to the cap and do not overfill the link when
 * the guest faults a lot.  The migration thread waits for the bucket
 * where a page request wakes it.
 *
 * With postcopy-preempt the return-path thread sends each requested page
 * itself on the preempt channel (postcopy-preempt-send.c) instead of
 * queueing it, so the bitmap is shared: a page is sent by whoever clears
 * its bit first (atomic and-not), and the background sweep reads the
 * words atomically.  Sends on a TLS session stay single-threaded: the
 * migration thread alone writes the main connection (the return-path
 * thread only reads it), the return-path thread alone writes the preempt
 * channel.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/buf.h"
#include "engine/postcopy.h"
#include "transport/transport.h"

#define PC_CHUNK 32u          /* background pages per flush (128 KiB) */
#define PC_PACE_US 1000u      /* pacing slice under max-postcopy-bandwidth */
#define PC_SNDBUF_US 2000u    /* its send buffer: this much of the rate */
#define PC_SNDBUF_MIN (64u * 1024u)
#define PC_SNDBUF_MAX (512u * 1024u)   /* and without the cap */
#define PC_QUEUE 65536u       /* outstanding page requests */

typedef struct pc_req {
    uint32_t block;
    uint64_t page;
} pc_req;

typedef struct pc_src {
    out_state *s;
    livemig *lm;
    pthread_t rp;
    bool rp_started;
    lm_conn rconn;               /* what the return-path thread reads: a
                                    copy of lm->conn, valid while it runs */
    lm_pc_pre_src *pre;          /* postcopy-preempt channel, or NULL */

    /* qlock: the request queue and what the return path said */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    pc_req *q;
    unsigned qhead, qtail;       /* qhead == qtail: empty */
    bool resumed, done, rp_failed, recovered;
    bool refused;                /* the destination said no before it ran */
    uint64_t wire_prev;          /* bytes written on broken connections */
    uint64_t pre_prev;           /* pages sent on broken preempt channels */
    uint64_t load_us, t_resumed_us, received;
    char rp_err[520];
} pc_src;

bool lm_pc_check_migrate_uri(const char *uri, livemig_error *err)
{
    if (strncmp(uri, "tcp:", 4) == 0 || strncmp(uri, "unix:", 5) == 0)
        return true;
    livemig_error_set(err, "postcopy-ram needs a tcp: or unix: URI (the "
                      "destination asks for pages over the return path), "
                      "not '%s'; turn postcopy-ram off for it", uri);
    return false;
}

bool lm_pc_check_migrate(const struct lm_params *p, const char *uri,
                         livemig_error *err)
{
    if (!p->cap_postcopy_ram)
        return true;
    if (!lm_pc_check_migrate_uri(uri, err))
        return false;
    if (p->cap_multifd) {
        livemig_error_set(err, "postcopy-ram and multifd cannot be combined "
                          "yet; turn one of the two capabilities off");
        return false;
    }
    if (p->cap_micro_checkpointing) {
        livemig_error_set(err, "postcopy-ram and micro-checkpointing "
                          "exclude each other; turn one of the two "
                          "capabilities off");
        return false;
    }
    return true;
}

bool lm_pc_wanted(out_state *s)
{
    if (!s->p.cap_postcopy_ram)
        return false;
    pthread_mutex_lock(&s->lm->lock);
    bool want = s->lm->postcopy_requested;
    pthread_mutex_unlock(&s->lm->lock);
    return want;
}

bool lm_pc_advise(out_state *s)
{
    if (!s->p.cap_postcopy_ram)
        return true;
    if (lm_wr_pc(s->w, LM_REC_PC_ADVISE))
        return true;
    lm_out_explain_write_error(s);
    return false;
}

bool livemig_start_postcopy(livemig *lm, livemig_error *err)
{
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    pthread_mutex_lock(&lm->lock);
    bool ok = false;
    if (!p.cap_postcopy_ram)
        livemig_error_set(err, "postcopy is not enabled: set capability "
                          "'postcopy-ram' on both sides before 'migrate'");
    else if (lm->incoming)
        livemig_error_set(err, "'migrate-start-postcopy' is for the source; "
                          "this side receives the migration");
    else if (lm->status != LIVEMIG_STATUS_SETUP &&
             lm->status != LIVEMIG_STATUS_ACTIVE)
        livemig_error_set(err, "no precopy migration runs here (status "
                          "'%s'); start one with 'migrate' and then switch "
                          "it with 'migrate-start-postcopy'",
                          livemig_status_name(lm->status));
    else
        ok = true;
    if (ok && !lm->stats.pc.on && !lm->postcopy_requested) {
        lm->postcopy_requested = true;
        lm->kicked = true;
        pthread_cond_broadcast(&lm->cond);
    }
    pthread_mutex_unlock(&lm->lock);
    return ok;
}

/* ---- return path ------------------------------------------------------- */

static void rp_fail(pc_src *pc, const char *fmt, const char *detail)
{
    pthread_mutex_lock(&pc->qlock);
    if (!pc->rp_failed && !pc->done) {
        pc->rp_failed = true;
        snprintf(pc->rp_err, sizeof(pc->rp_err), fmt, detail);
    }
    pthread_cond_broadcast(&pc->qcond);
    pthread_mutex_unlock(&pc->qlock);
}

static bool take_bit(livemig_ram *r, uint64_t page)
{
    uint64_t m = 1ull << (page % 64);
    return __atomic_fetch_and(&r->dirty[page / 64], ~m, __ATOMIC_ACQ_REL) & m;
}

static void put_bit(livemig_ram *r, uint64_t page)
{
    __atomic_fetch_or(&r->dirty[page / 64], 1ull << (page % 64),
                      __ATOMIC_ACQ_REL);
}

/* postcopy-preempt: send an asked-for page now, on its own channel. */
static bool serve_urgent(pc_src *pc, pc_req q)
{
    livemig *lm = pc->lm;
    if (q.block >= lm->nram || q.page >= lm->ram[q.block]->pages) {
        char what[96];
        snprintf(what, sizeof(what), "page %llu of block %u",
                 (unsigned long long)q.page, q.block);
        rp_fail(pc, "the destination asked for %s, which does not exist; "
                "is it the same guest?", what);
        return false;
    }
    livemig_ram *r = lm->ram[q.block];
    if (!take_bit(r, q.page))
        return true;   /* sent already: it is on its way */
    if (lm_pc_pre_send(pc->pre, q.block, q.page,
                       r->host + q.page * LM_PAGE_SIZE))
        return true;
    put_bit(r, q.page);   /* it may not have arrived: again after resume */
    char why[256];
    rp_fail(pc, "the postcopy-preempt channel to the destination broke "
            "(%s); the link failed or the destination stopped",
            lm_pc_pre_error(pc->pre, why, sizeof(why)));
    return false;
}

static const char *rp_read_error(pc_src *pc, int rc, char *buf, size_t len)
{
    const char *t = lm_conn_tls_error(&pc->rconn);
    snprintf(buf, len, "%s", rc > 0 ? "closed" : t[0] ? t : strerror(errno));
    return buf;
}

static void *rp_thread(void *arg)
{
    pc_src *pc = arg;
    const lm_conn *c = &pc->rconn;
    for (;;) {
        uint8_t type, b[12];
        char why[256];
        int rc = lm_conn_read_full(c, &type, 1);
        if (rc != 0) {
            rp_fail(pc, "the return path from the destination broke (%s); "
                    "the link failed or the destination stopped",
                    rp_read_error(pc, rc, why, sizeof(why)));
            return NULL;
        }
        if (type == LM_RP_PAGE_REQ) {
            if (lm_conn_read_full(c, b, 12) != 0)
                continue;   /* EOF is seen on the next read */
            pc_req r = { lm_get_be32(b), lm_get_be64(b + 4) };
            if (pc->pre) {
                if (!serve_urgent(pc, r))
                    return NULL;
                continue;
            }
            pthread_mutex_lock(&pc->qlock);
            if (pc->qtail - pc->qhead < PC_QUEUE) {
                pc->q[pc->qtail % PC_QUEUE] = r;
                pc->qtail++;
            }
            pthread_cond_broadcast(&pc->qcond);   /* a pacing wait ends */
            pthread_mutex_unlock(&pc->qlock);
        } else if (type == LM_RP_PC_MISSING) {
            uint8_t h[16];
            if (lm_conn_read_full(c, h, 16) != 0)
                continue;
            uint32_t bi = lm_get_be32(h), n = lm_get_be32(h + 12);
            uint64_t first = lm_get_be64(h + 4);
            if (bi >= pc->lm->nram || n > LM_PC_DISCARD_MAX_WORDS ||
                first > pc->lm->ram[bi]->bitmap_words ||
                n > pc->lm->ram[bi]->bitmap_words - first) {
                rp_fail(pc, "%s", "the destination's list of missing pages "
                        "does not fit the guest RAM; is it the same guest?");
                return NULL;
            }
            for (uint32_t k = 0; k < n; k++) {
                if (lm_conn_read_full(c, b, 8) != 0)
                    break;
                /* Pages lost in flight when the link broke: again. */
                __atomic_fetch_or(&pc->lm->ram[bi]->dirty[first + k],
                                  lm_get_be64(b), __ATOMIC_ACQ_REL);
            }
        } else if (type == LM_RP_PC_RESUMED) {
            pthread_mutex_lock(&pc->qlock);
            pc->recovered = true;
            pthread_cond_broadcast(&pc->qcond);
            pthread_mutex_unlock(&pc->qlock);
        } else if (type == LM_RP_RESUMED || type == LM_RP_PC_DONE) {
            if (lm_conn_read_full(c, b, 8) != 0)
                continue;
            pthread_mutex_lock(&pc->qlock);
            if (type == LM_RP_RESUMED) {
                pc->resumed = true;
                pc->load_us = lm_get_be64(b);
                pc->t_resumed_us = lm_now_us();
            } else {
                pc->done = true;
                pc->received = lm_get_be64(b);
            }
            pthread_cond_broadcast(&pc->qcond);
            pthread_mutex_unlock(&pc->qlock);
            if (type == LM_RP_PC_DONE)
                return NULL;
        } else if (type == LM_RP_ERROR) {
            char msg[401] = "";
            if (lm_conn_read_full(c, b, 2) == 0) {
                size_t n = lm_get_be16(b);
                if (n > 400)
                    n = 400;
                if (lm_conn_read_full(c, msg, n) == 0)
                    msg[n] = '\0';
            }
            pthread_mutex_lock(&pc->qlock);
            pc->refused = !pc->resumed;
            pthread_mutex_unlock(&pc->qlock);
            rp_fail(pc, "the destination refused or ended the postcopy stream: %s", msg);
            return NULL;
        } else {
            char t[8];
            snprintf(t, sizeof(t), "0x%02x", type);
            rp_fail(pc, "unexpected reply %s from the destination during "
                    "postcopy; is it a livemig engine of the same version?",
                    t);
            return NULL;
        }
    }
}

/* ---- sending ----------------------------------------------------------- */

/* @n pages from @first, all of them taken from the bitmap already. */
static bool send_run(pc_src *pc, uint32_t bi, uint64_t first, uint32_t n)
{
    out_state *s = pc->s;
    livemig_ram *r = pc->lm->ram[bi];
    uint64_t i = 0;
    while (i < n) {
        const uint8_t *p = r->host + (first + i) * LM_PAGE_SIZE;
        bool zero = lm_page_is_zero(p);
        uint64_t j = i + 1;
        while (j < n &&
               lm_page_is_zero(r->host + (first + j) * LM_PAGE_SIZE) == zero)
            j++;
        bool ok = zero ? lm_wr_ram_zero(s->w, bi, first + i, (uint32_t)(j - i))
                       : lm_wr_ram_raw(s->w, bi, first + i, (uint32_t)(j - i), p);
        if (!ok)
            return false;
        if (zero)
            s->duplicate += j - i;
        else
            s->normal += j - i;
        s->pages_done += j - i;
        i = j;
    }
    return true;
}

/* Pages asked for: sent and flushed at once, outside the rate limit. */
static bool serve_requests(pc_src *pc, uint64_t *served)
{
    out_state *s = pc->s;
    bool any = false;
    for (;;) {
        pc_req batch[64];
        unsigned n = 0;
        pthread_mutex_lock(&pc->qlock);
        while (n < 64 && pc->qhead != pc->qtail)
            batch[n++] = pc->q[pc->qhead++ % PC_QUEUE];
        pthread_mutex_unlock(&pc->qlock);
        if (!n)
            break;
        for (unsigned i = 0; i < n; i++) {
            if (batch[i].block >= pc->lm->nram ||
                batch[i].page >= pc->lm->ram[batch[i].block]->pages) {
                livemig_error_set(&s->err, "the destination asked for page "
                                  "%llu of block %u, which does not exist",
                                  (unsigned long long)batch[i].page,
                                  batch[i].block);
                return false;
            }
            if (!take_bit(pc->lm->ram[batch[i].block], batch[i].page))
                continue;   /* sent already: it is on its way */
            if (!send_run(pc, batch[i].block, batch[i].page, 1))
                return false;
            (*served)++;
            any = true;
        }
    }
    if (!any)
        return true;
    /* Sent at once, and paid for by the background pages after them. */
    uint64_t rate = s->w->rate, before = s->w->total;
    s->w->rate = 0;
    bool ok = lm_wr_flush(s->w);
    s->w->rate = rate;
    lm_writer_charge(s->w, (size_t)(s->w->total - before));
    return ok;
}

/* The next background chunk from the cursor; false at the end. */
static bool next_chunk(pc_src *pc, uint32_t *bi, uint64_t *page,
                       uint32_t *n)
{
    for (; *bi < pc->lm->nram; (*bi)++, *page = 0) {
        livemig_ram *r = pc->lm->ram[*bi];
        for (uint64_t w = *page / 64; w < r->bitmap_words; w++) {
            uint64_t bits = __atomic_load_n(&r->dirty[w], __ATOMIC_ACQUIRE);
            if (w == *page / 64)
                bits &= ~0ull << (*page % 64);
            if (!bits)
                continue;
            uint64_t first = w * 64 + (uint64_t)__builtin_ctzll(bits);
            uint32_t len = 0;
            while (len < PC_CHUNK && first + len < r->pages &&
                   take_bit(r, first + len))
                len++;
            *page = first;   /* the caller moves past the run */
            *n = len;
            return true;
        }
    }
    return false;
}

static void publish_pc(pc_src *pc, uint64_t b0, uint64_t served,
                       uint64_t left)
{
    livemig *lm = pc->lm;
    out_state *s = pc->s;
    pthread_mutex_lock(&lm->lock);
    uint64_t pn, pz, pw;
    lm_pc_pre_counts(pc->pre, &pn, &pz, &pw);
    lm->stats.transferred = pc->wire_prev + s->w->total + s->w->pending + pw;
    lm->stats.pc.bytes = lm->stats.transferred - b0;
    lm->stats.pc.requests = served + pn + pz;
    lm->stats.pc.preempt_pages = pc->pre_prev + pn + pz;
    lm->stats.remaining = left * LM_PAGE_SIZE;
    lm->stats.normal = s->normal + pn;
    lm->stats.duplicate = s->duplicate + pz;
    pthread_mutex_unlock(&lm->lock);
}

static uint64_t count_left(livemig *lm)
{
    uint64_t n = 0;
    for (size_t i = 0; i < lm->nram; i++)
        for (size_t w = 0; w < lm->ram[i]->bitmap_words; w++)
            n += (uint64_t)__builtin_popcountll(
                __atomic_load_n(&lm->ram[i]->dirty[w], __ATOMIC_RELAXED));
    return n;
}

static bool send_switch(pc_src *pc)
{
    out_state *s = pc->s;
    livemig *lm = pc->lm;
    for (uint32_t bi = 0; bi < lm->nram; bi++) {
        livemig_ram *r = lm->ram[bi];
        for (uint64_t w = 0; w < r->bitmap_words; w += LM_PC_DISCARD_MAX_WORDS) {
            uint64_t n = r->bitmap_words - w;
            if (n > LM_PC_DISCARD_MAX_WORDS)
                n = LM_PC_DISCARD_MAX_WORDS;
            bool any = false;
            for (uint64_t k = 0; k < n && !any; k++)
                any = r->dirty[w + k] != 0;
            if (any && !lm_wr_pc_discard(s->w, bi, w, r->dirty + w,
                                         (uint32_t)n))
                return false;
        }
    }
    livemig_buf b = LM_BUF_INIT;
    bool ok = true;
    for (size_t i = 0; ok && i < lm->nsections; i++) {
        lm_section *sec = &lm->sections[i];
        ok = lm_out_save_section(s, sec, &b) &&
             lm_wr_section(s->w, sec->name, sec->version, b.p,
                           (uint32_t)b.len);
    }
    lm_buf_release(&b);
    /* The point of no return: a cancel from here on is refused, as the
     * guest may run on the destination once PC_RUN (the last byte of
     * the flush) is there.  A cancel that came first wins. */
    if (ok && !lm_commit(lm)) {
        livemig_error_set(&s->err, "cancelled");
        return false;
    }
    return ok && lm_wr_pc(s->w, LM_REC_PC_RUN) && lm_wr_flush(s->w);
}

static bool start_rp(pc_src *pc)
{
    pc->rp_failed = pc->recovered = false;
    pc->rp_err[0] = '\0';
    pc->qhead = pc->qtail = 0;
    /* A short send queue keeps asked-for pages close behind the
     * background ones (shorter under a cap: pace_background). */
    int sndbuf = PC_SNDBUF_MAX;
    (void)setsockopt(pc->lm->conn.wfd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
                     sizeof(sndbuf));
    lm_pc_watch_link(pc->lm->conn.wfd);
    pthread_mutex_lock(&pc->lm->lock);
    pc->rconn = pc->lm->conn;
    pthread_mutex_unlock(&pc->lm->lock);
    pc->rp_started = pthread_create(&pc->rp, NULL, rp_thread, pc) == 0;
    if (!pc->rp_started)
        livemig_error_set(&pc->s->err, "cannot start the postcopy return "
                          "path thread");
    return pc->rp_started;
}

static void stop_rp(pc_src *pc)
{
    if (!pc->rp_started)
        return;
    pthread_mutex_lock(&pc->lm->lock);
    lm_conn_shutdown(&pc->lm->conn);
    pthread_mutex_unlock(&pc->lm->lock);
    lm_pc_pre_shutdown(pc->pre);   /* a send blocked on a dead link */
    pthread_join(pc->rp, NULL);
    pc->rp_started = false;
}

static bool rp_failed(pc_src *pc)
{
    pthread_mutex_lock(&pc->qlock);
    bool f = pc->rp_failed;
    pthread_mutex_unlock(&pc->qlock);
    return f;
}

/* The background stream's pacing for max-postcopy-bandwidth @rate (0:
 * none): slices of PC_PACE_US and a send buffer of PC_SNDBUF_US of the
 * rate under a cap; without one, as fast as the link takes it behind a
 * PC_SNDBUF_MAX buffer. */
static void pace_background(pc_src *pc, uint64_t rate)
{
    out_state *s = pc->s;
    lm_writer_set_rate(s->w, rate);
    lm_writer_set_pacing(s->w, PC_PACE_US);
    uint64_t b = rate ? rate * PC_SNDBUF_US / 1000000u : PC_SNDBUF_MAX;
    int sndbuf = b < PC_SNDBUF_MIN ? (int)PC_SNDBUF_MIN
                 : b > PC_SNDBUF_MAX ? (int)PC_SNDBUF_MAX : (int)b;
    (void)setsockopt(s->w->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
                     sizeof(sndbuf));
}

/* Wait up to @us for the pacing bucket, or less when a page request
 * comes (or the return path fails). */
static void pace_wait(pc_src *pc, uint64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (us > 10000 ? 10000 : us) * 1000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_mutex_lock(&pc->qlock);
    if (pc->qhead == pc->qtail && !pc->rp_failed)
        pthread_cond_timedwait(&pc->qcond, &pc->qlock, &ts);
    pthread_mutex_unlock(&pc->qlock);
}

/* Send every remaining page, then END_STREAM, then wait for PC_DONE.
 * 1: done; 0: the link broke (pause); -1: cancelled. */
static int send_loop(pc_src *pc, uint64_t b0, uint64_t *served)
{
    out_state *s = pc->s;
    livemig *lm = pc->lm;
    uint32_t bi = 0, n = 0;
    uint64_t page = 0, last_pub = 0, pre_seen, pn, pz;
    {
        struct lm_params p;
        lm_tunables_snapshot(lm->tun, &p);
        pace_background(pc, p.max_postcopy_bandwidth);
        lm_pc_pre_counts(pc->pre, &pn, &pz, &pre_seen);
    }
    for (;;) {
        if (lm_cancelled(lm))
            return -1;
        if (rp_failed(pc))
            return 0;
        if (!serve_requests(pc, served))
            return livemig_error_is_set(&s->err) && !s->w->error ? -1 : 0;
        uint64_t now = lm_now_us();
        if (now - last_pub >= 50000) {
            last_pub = now;
            struct lm_params p;
            lm_tunables_snapshot(lm->tun, &p);
            if (p.max_postcopy_bandwidth != s->w->rate)
                pace_background(pc, p.max_postcopy_bandwidth);
            publish_pc(pc, b0, *served, count_left(lm));
        }
        /* Pages the preempt channel sent at once count against the cap
         * as well: the background stream makes room for them. */
        uint64_t pre_now;
        lm_pc_pre_counts(pc->pre, &pn, &pz, &pre_now);
        lm_writer_charge(s->w, (size_t)(pre_now - pre_seen));
        pre_seen = pre_now;
        /* Under the cap, wait for the next chunk's tokens here, where a
         * page request ends the wait, not in the writer. */
        uint64_t wait = lm_writer_pace_wait_us(
            s->w, PC_CHUNK * (LM_PAGE_SIZE + 17u) < lm_writer_slice(s->w)
                      ? PC_CHUNK * (LM_PAGE_SIZE + 17u)
                      : lm_writer_slice(s->w));
        if (wait) {
            pace_wait(pc, wait);
            continue;
        }
        if (!next_chunk(pc, &bi, &page, &n))
            break;
        if (!send_run(pc, bi, page, n) || !lm_wr_flush(s->w)) {
            /* The pages of a failed write may not have arrived. */
            for (uint32_t i = 0; i < n; i++)
                put_bit(lm->ram[bi], page + i);
            return lm_cancelled(lm) ? -1 : 0;
        }
        page += n;
    }
    if (!lm_wr_end_stream(s->w))
        return lm_cancelled(lm) ? -1 : 0;
    /* Every page went out: wait for the destination to confirm it has
     * them all (asked-for pages still in flight are ignored there). */
    pthread_mutex_lock(&pc->qlock);
    while (!pc->done && !pc->rp_failed && !lm_cancelled(lm)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&pc->qcond, &pc->qlock, &ts);
    }
    int rc = pc->done ? 1 : lm_cancelled(lm) ? -1 : 0;
    pthread_mutex_unlock(&pc->qlock);
    return rc;
}

/* The link broke after the switch: the guest ran on the destination, so
 * nothing may resume here.  Keep every page and wait in postcopy-paused
 * for migrate {resume: true} (a new connection) or a cancel.  Then say
 * who we are (same uuid, PC_RESUME) and take back the pages the
 * destination still misses.  False when cancelled. */
static bool pause_and_resume(pc_src *pc, const char *why)
{
    livemig *lm = pc->lm;
    out_state *s = pc->s;
    stop_rp(pc);
    char msg[700];
    snprintf(msg, sizeof(msg), "postcopy paused: %s; the source keeps every "
             "page and the guest stays stopped here; resume with migrate "
             "{uri, resume: true} after migrate-recover on the destination",
             why);
    pthread_mutex_lock(&lm->lock);
    lm_pc_set_error_locked(lm, msg);
    lm_set_status_locked(lm, LIVEMIG_STATUS__MAX,
                         LIVEMIG_STATUS_POSTCOPY_PAUSED);
    while (!lm_cancelled(lm) && !lm->pc_resume)
        pthread_cond_wait(&lm->cond, &lm->lock);
    if (lm_cancelled(lm)) {
        pthread_mutex_unlock(&lm->lock);
        return false;
    }
    lm->pc_resume = false;
    lm_conn_close(&lm->conn);
    lm->conn = lm->pc_conn;
    lm->pc_conn = (lm_conn)LM_CONN_INIT;
    char uri[sizeof(lm->pc_uri)];
    snprintf(uri, sizeof(uri), "%s", lm->pc_uri);
    lm_set_status_locked(lm, LIVEMIG_STATUS_POSTCOPY_PAUSED,
                         LIVEMIG_STATUS_POSTCOPY_RECOVER);
    pthread_mutex_unlock(&lm->lock);
    uint64_t pn, pz, pw;
    lm_pc_pre_counts(pc->pre, &pn, &pz, &pw);
    pc->wire_prev += pw;
    pc->pre_prev += pn + pz;
    lm_pc_pre_close(pc->pre);
    pc->pre = NULL;
    uint64_t rate = s->w->rate;
    pc->wire_prev += s->w->total;
    lm_writer_destroy(s->w);
    lm_writer_init(s->w, -1, &lm->cancel);
    /* The recovery's connection is secured like the first one was: a
     * TLS destination refuses it otherwise, and stays paused. */
    livemig_error e = { 0 };
    lm_stream_header *h = calloc(1, sizeof(*h));
    bool ok = h && lm_secure_client_to(lm, &lm->conn, uri, &e);
    if (ok) {
        lm_writer_destroy(s->w);
        lm_writer_init_conn(s->w, &lm->conn, &lm->cancel);
        lm_writer_set_rate(s->w, rate);
        lm_pc_fill_header(lm, h, LM_ROLE_MAIN);
        ok = lm_wr_header(s->w, h) && lm_wr_pc(s->w, LM_REC_PC_RESUME) &&
             lm_wr_flush(s->w);
        if (!ok)
            livemig_error_set(&e, "the resumed connection broke at once "
                              "(%s)", lm->conn.tls &&
                              lm_conn_tls_error(&lm->conn)[0]
                                  ? lm_conn_tls_error(&lm->conn)
                                  : strerror(s->w->error));
    }
    free(h);
    if (ok && s->p.cap_postcopy_preempt &&
        !(pc->pre = lm_pc_pre_open(lm, uri, &e)))
        ok = false;
    ok = ok && start_rp(pc);
    /* The destination lists what it still misses, then PC_RESUMED. */
    pthread_mutex_lock(&pc->qlock);
    while (ok && !pc->recovered && !pc->rp_failed && !lm_cancelled(lm))
        pthread_cond_wait(&pc->qcond, &pc->qlock);
    ok = ok && pc->recovered;
    char err[sizeof(pc->rp_err)];
    snprintf(err, sizeof(err), "%s", pc->rp_err);
    pthread_mutex_unlock(&pc->qlock);
    if (lm_cancelled(lm))
        return false;
    if (!ok) {
        /* The destination's reason (it refused us) says most. */
        char why[sizeof(err) + sizeof(e.desc) + 8];
        snprintf(why, sizeof(why), "%s%s%s", err[0] ? err : "",
                 err[0] && e.desc[0] ? "; " : "",
                 err[0] || e.desc[0] ? e.desc
                                     : "the resumed connection broke");
        return pause_and_resume(pc, why);
    }
    pthread_mutex_lock(&lm->lock);
    lm->error_desc[0] = '\0';
    lm_set_status_locked(lm, LIVEMIG_STATUS_POSTCOPY_RECOVER,
                         LIVEMIG_STATUS_POSTCOPY_ACTIVE);
    pthread_mutex_unlock(&lm->lock);
    return true;
}

bool lm_pc_source(out_state *s)
{
    livemig *lm = s->lm;
    pc_src *pc = calloc(1, sizeof(*pc));
    if (!pc || !(pc->q = calloc(PC_QUEUE, sizeof(*pc->q)))) {
        free(pc);
        livemig_error_set(&s->err, "out of memory for postcopy");
        return false;
    }
    pc->s = s;
    pc->lm = lm;
    pthread_mutex_init(&pc->qlock, NULL);
    pthread_cond_init(&pc->qcond, NULL);

    /* The preempt channel opens while the guest still runs here: a
     * failure is then an ordinary failed migration, and its handshake
     * is not downtime. */
    if (s->p.cap_postcopy_preempt &&
        !(pc->pre = lm_pc_pre_open(lm, lm->uri, &s->err))) {
        pthread_mutex_destroy(&pc->qlock);
        pthread_cond_destroy(&pc->qcond);
        free(pc->q);
        free(pc);
        return false;
    }
    uint64_t t0 = lm_now_us();
    lm_guest_stop(lm, LIVEMIG_RUN_FINISH_MIGRATE);
    s->stopped_guest = true;
    s->unthrottled = true;   /* lm_out_tick leaves the rate to us */
    s->xbzrle_on = false;
    bool ok = lm_out_sync_dirty(s);
    pthread_mutex_lock(&lm->lock);
    ok = ok && lm_set_status_locked(lm, LIVEMIG_STATUS_ACTIVE,
                                    LIVEMIG_STATUS_POSTCOPY_ACTIVE);
    if (ok)
        lm->stats.pc.on = true;
    pthread_mutex_unlock(&lm->lock);
    uint64_t b0 = s->w->total + s->w->pending, served = 0;
    if (ok && !send_switch(pc)) {
        if (!livemig_error_is_set(&s->err))
            lm_out_explain_write_error(s);
        ok = false;
    }
    /* Before PC_RUN reached the destination the source may still resume;
     * from here on it never may: the guest could already run there. */
    int rc = -1;
    if (ok) {
        s->stopped_guest = false;
        rc = start_rp(pc) ? send_loop(pc, b0, &served) : -1;
        pthread_mutex_lock(&pc->qlock);
        bool refused = rc == 0 && pc->refused;
        if (refused)
            livemig_error_set(&s->err, "%s", pc->rp_err);
        pthread_mutex_unlock(&pc->qlock);
        if (refused) {
            /* It never ran the guest: this side may and must go on. */
            s->stopped_guest = true;
            rc = -1;
        }
        while (rc == 0) {
            char why[sizeof(pc->rp_err)];
            pthread_mutex_lock(&pc->qlock);
            snprintf(why, sizeof(why), "%s", pc->rp_err[0] ? pc->rp_err
                     : "the link to the destination broke");
            pthread_mutex_unlock(&pc->qlock);
            if (!pause_and_resume(pc, why)) {
                rc = -1;
                break;
            }
            rc = send_loop(pc, b0, &served);
        }
    }
    publish_pc(pc, b0, served, count_left(lm));
    stop_rp(pc);
    lm_pc_pre_close(pc->pre);
    pc->pre = NULL;
    bool done = rc == 1;
    if (done) {
        pthread_mutex_lock(&lm->lock);
        /* The guest was down from the stop here until the destination
         * said it runs. */
        lm->stats.dt.load_us = pc->load_us;
        lm->stats.downtime_ms = pc->t_resumed_us > t0
                                    ? (pc->t_resumed_us - t0 + 500) / 1000
                                    : 0;
        lm->stats.downtime_bytes = 0;
        lm->error_desc[0] = '\0';   /* a pause on the way is over */
        pthread_mutex_unlock(&lm->lock);
    } else if (!livemig_error_is_set(&s->err)) {
        livemig_error_set(&s->err, "postcopy ended without the "
                          "destination confirming every page");
    }
    pthread_mutex_destroy(&pc->qlock);
    pthread_cond_destroy(&pc->qcond);
    free(pc->q);
    free(pc);
    return done;
}

bool livemig_migrate_resume(livemig *lm, const char *uri, livemig_error *err)
{
    pthread_mutex_lock(&lm->lock);
    bool ok = !lm->incoming &&
              lm->status == LIVEMIG_STATUS_POSTCOPY_PAUSED && !lm->pc_resume;
    if (!ok)
        livemig_error_set(err, "cannot resume: 'resume' continues a paused "
                          "postcopy migration and this side is in status "
                          "'%s'%s; start a new migration without 'resume'",
                          livemig_status_name(lm->status),
                          lm->incoming ? " as a destination" : "");
    pthread_mutex_unlock(&lm->lock);
    if (!ok)
        return false;
    if (strlen(uri) >= sizeof(lm->pc_uri)) {
        livemig_error_set(err, "migration URI is longer than %zu bytes",
                          sizeof(lm->pc_uri) - 1);
        return false;
    }
    if (!lm_pc_check_migrate_uri(uri, err) ||
        !lm_secure_check(lm, uri, false, err))
        return false;
    lm_conn c;
    if (!lm_transport_connect(uri, &c, err))
        return false;
    pthread_mutex_lock(&lm->lock);
    ok = lm->status == LIVEMIG_STATUS_POSTCOPY_PAUSED && !lm->pc_resume;
    if (ok) {
        snprintf(lm->pc_uri, sizeof(lm->pc_uri), "%s", uri);
        lm->pc_conn = c;
        lm->pc_resume = true;
        pthread_cond_broadcast(&lm->cond);
    } else {
        lm_conn_close(&c);
        livemig_error_set(err, "the migration left postcopy-paused "
                          "meanwhile (status '%s')",
                          livemig_status_name(lm->status));
    }
    pthread_mutex_unlock(&lm->lock);
    return ok;
}

bool livemig_migrate_pause(livemig *lm, livemig_error *err)
{
    pthread_mutex_lock(&lm->lock);
    bool ok = lm->status == LIVEMIG_STATUS_POSTCOPY_ACTIVE;
    if (ok)
        lm_conn_shutdown(&lm->conn);   /* both sides see the link break */
    else
        livemig_error_set(err, "migrate-pause only cuts a migration in "
                          "status 'postcopy-active', not '%s'",
                          livemig_status_name(lm->status));
    pthread_mutex_unlock(&lm->lock);
    return ok;
}
