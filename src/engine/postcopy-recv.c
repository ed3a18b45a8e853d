/*
 * postcopy-recv.c - the destination side of postcopy (see postcopy.h).
 *
 * The RAM was populated and filled by precopy; PC_DISCARD names the pages
 * that changed since, which are dropped here (MADV_DONTNEED) and become
 * "missing".  PC_RUN registers the blocks with a userfaultfd in MISSING
 * mode: a present page never faults, a missing one stops the thread that
 * touches it until UFFDIO_COPY places it.  The stream reader never writes
 * into guest RAM from then on (that would fault on the reader itself):
 * pages are staged in a bounce buffer and placed atomically.
 *
 * Per page: missing (set by discards, incoming thread only), received
 * (atomic, set when placed), asked_us (atomic: when the first fault asked
 * for it, 0 when not outstanding).  The fault thread sends one request
 * per page; the placement computes the latency from asked_us.
 *
 * Every byte goes through the connection's TLS session when it has one
 * (lm_conn_* and readers/writers made from the connection).  GnuTLS lets
 * one thread send while another receives on a session, never two send:
 * the incoming thread reads the main connection while the fault thread
 * sends page requests on it, and every send on it (requests, RESUMED,
 * PC_DONE, PC_MISSING, PC_RESUMED) goes through reply() under rp_lock.
 * With postcopy-preempt a second thread reads the preempt channel and
 * places its pages (postcopy-preempt-recv.c); nothing is sent there.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "engine/postcopy.h"
#include "ram/uffd-missing.h"
#include "transport/transport.h"

typedef struct pc_block {
    uint8_t *host;
    size_t pages, words;
    uint64_t *missing;
    _Atomic uint64_t *received;
    _Atomic uint64_t *asked_us;
} pc_block;

struct lm_pc_dst {
    livemig *lm;
    size_t nblocks;
    pc_block *b;
    uint64_t missing_total;
    lm_uffd_missing *uffd;
    uint8_t *bounce;
    pthread_t fault;
    bool fault_started, running;
    atomic_bool stop;
    pthread_mutex_t rp_lock;     /* every send on lm->conn */
    _Atomic uint64_t received_total;   /* placed by either channel */
    lm_pc_pre_dst *pre;          /* postcopy-preempt channel, or NULL */
    uint8_t uuid[16];            /* of the migration being received */
    lm_reader *rr;               /* reader of a resumed connection */
    uint64_t wire_before;        /* bytes of the connections before the
                                    one being read */
    uint64_t wire_last;          /* bytes of the one read last, when its
                                    stream ended (the first one's reader
                                    is not rr: its caller owns it) */
};

static void reply(lm_pc_dst *pc, const uint8_t *b, size_t n)
{
    pthread_mutex_lock(&pc->rp_lock);
    if (pc->lm->conn.wfd >= 0)
        (void)lm_conn_write_all(&pc->lm->conn, b, n);
    pthread_mutex_unlock(&pc->rp_lock);
}

lm_pc_dst *lm_pc_dst_new(livemig *lm, const lm_stream_header *hdr,
                         livemig_error *err)
{
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    if (!p.cap_postcopy_ram) {
        livemig_error_set(err, "the source has capability 'postcopy-ram' "
                          "on and this destination has it off; set it the "
                          "same on both sides");
        return NULL;
    }
    if (hdr->pc_preempt != p.cap_postcopy_preempt) {
        livemig_error_set(err, "the source has capability "
                          "'postcopy-preempt' %s and this destination has "
                          "it %s; set it the same on both sides",
                          hdr->pc_preempt ? "on" : "off",
                          hdr->pc_preempt ? "off" : "on");
        return NULL;
    }
    lm_pc_dst *pc = calloc(1, sizeof(*pc));
    if (!pc)
        goto oom;
    pc->lm = lm;
    memcpy(pc->uuid, hdr->uuid, sizeof(pc->uuid));
    pthread_mutex_init(&pc->rp_lock, NULL);
    pc->nblocks = lm->nram;
    if (!(pc->b = calloc(lm->nram, sizeof(*pc->b))))
        goto oom;
    for (size_t i = 0; i < lm->nram; i++) {
        pc_block *b = &pc->b[i];
        b->host = lm->ram[i]->host;
        b->pages = lm->ram[i]->pages;
        b->words = (b->pages + 63) / 64;
        b->missing = calloc(b->words, sizeof(uint64_t));
        b->received = calloc(b->words, sizeof(uint64_t));
        b->asked_us = calloc(b->pages, sizeof(uint64_t));
        if (!b->missing || !b->received || !b->asked_us)
            goto oom;
    }
    if (!(pc->bounce = malloc((size_t)LM_STREAM_MAX_RUN * LM_PAGE_SIZE)))
        goto oom;
    /* Now, while the source can still fall back: a destination that
     * cannot serve postcopy must say so before the guest stops there. */
    if (!(pc->uffd = lm_uffd_missing_open(err)) ||
        (p.cap_postcopy_preempt &&
         !(pc->pre = lm_pc_pre_dst_start(pc, lm, err)))) {
        lm_pc_dst_free(pc);
        return NULL;
    }
    return pc;
oom:
    lm_pc_dst_free(pc);
    livemig_error_set(err, "out of memory for postcopy's page bitmaps");
    return NULL;
}

bool lm_pc_dst_discard(lm_pc_dst *pc, const lm_rec *rec, livemig_error *err)
{
    if (pc->running || rec->block >= pc->nblocks) {
        livemig_error_set(err, "a postcopy discard record arrived after "
                          "the guest started or for block %u; the stream "
                          "is corrupt", rec->block);
        return false;
    }
    pc_block *b = &pc->b[rec->block];
    for (uint32_t k = 0; k < rec->npages; k++) {
        uint64_t w = rec->words[k], wi = rec->first + k;
        w &= ~b->missing[wi];
        b->missing[wi] |= w;
        pc->missing_total += (uint64_t)__builtin_popcountll(w);
        while (w) {
            unsigned lo = (unsigned)__builtin_ctzll(w);
            unsigned hi = lo;
            while (hi < 64 && (w >> hi & 1))
                hi++;
            uint64_t first = wi * 64 + lo;
            if (madvise(b->host + first * LM_PAGE_SIZE,
                        (size_t)(hi - lo) * LM_PAGE_SIZE, MADV_DONTNEED)) {
                livemig_error_set(err, "dropping stale pages for postcopy "
                                  "failed: %s", strerror(errno));
                return false;
            }
            w &= hi == 64 ? 0 : ~0ull << hi;
        }
    }
    return true;
}

static uint8_t *stage(void *opaque, uint32_t block, uint64_t first,
                      uint32_t npages, livemig_error *err)
{
    (void)block; (void)first; (void)npages; (void)err;
    return ((lm_pc_dst *)opaque)->bounce;   /* npages <= LM_STREAM_MAX_RUN */
}

static void *fault_thread(void *arg)
{
    lm_pc_dst *pc = arg;
    livemig *lm = pc->lm;
    while (!atomic_load(&pc->stop)) {
        uint64_t addr;
        livemig_error err = { 0 };
        int rc = lm_uffd_missing_read(pc->uffd, 100, &addr, &err);
        if (rc < 0)
            break;
        if (rc == 0)
            continue;
        for (size_t i = 0; i < pc->nblocks; i++) {
            pc_block *b = &pc->b[i];
            uint64_t start = (uint64_t)(uintptr_t)b->host;
            if (addr < start || addr >= start + b->pages * LM_PAGE_SIZE)
                continue;
            uint64_t page = (addr - start) / LM_PAGE_SIZE;
            if (atomic_load(&b->received[page / 64]) & (1ull << (page % 64)))
                break;   /* placed meanwhile: the thread is awake */
            uint64_t zero = 0, now = lm_now_us();
            if (!atomic_compare_exchange_strong(&b->asked_us[page], &zero,
                                                now))
                break;   /* asked for already */
            uint8_t m[13];
            m[0] = LM_RP_PAGE_REQ;
            lm_put_be32(m + 1, (uint32_t)i);
            lm_put_be64(m + 5, page);
            reply(pc, m, sizeof(m));
            pthread_mutex_lock(&lm->lock);
            lm->stats.pc.requests++;
            pthread_mutex_unlock(&lm->lock);
            break;
        }
    }
    return NULL;
}

bool lm_pc_dst_start(lm_pc_dst *pc, lm_reader *r, livemig_error *err)
{
    livemig *lm = pc->lm;
    for (size_t i = 0; i < pc->nblocks; i++)
        if (!lm_uffd_missing_register(pc->uffd, pc->b[i].host,
                                      pc->b[i].pages * LM_PAGE_SIZE, err))
            return false;
    if (pthread_create(&pc->fault, NULL, fault_thread, pc) != 0) {
        livemig_error_set(err, "cannot start the postcopy fault thread");
        return false;
    }
    pc->fault_started = true;
    lm_pc_watch_link(lm->conn.rfd);
    r->stage = stage;
    r->stage_opaque = pc;
    r->skip_zero = false;
    pc->running = true;
    pthread_mutex_lock(&lm->lock);
    lm->stats.pc.on = true;
    bool ok = lm_set_status_locked(lm, LIVEMIG_STATUS_ACTIVE,
                                   LIVEMIG_STATUS_POSTCOPY_ACTIVE);
    pthread_mutex_unlock(&lm->lock);
    if (!ok)
        livemig_error_set(err, "cancelled");
    return ok;
}

bool lm_pc_dst_running(const lm_pc_dst *pc)
{
    return pc && pc->running;
}

void lm_pc_dst_resumed(lm_pc_dst *pc, uint64_t load_us)
{
    uint8_t m[9];
    m[0] = LM_RP_RESUMED;
    lm_put_be64(m + 1, load_us);
    reply(pc, m, sizeof(m));
}

bool lm_pc_dst_place(lm_pc_dst *pc, const lm_rec *rec, const uint8_t *data,
                     livemig_error *err)
{
    if (rec->type != LM_REC_RAM_RAW && rec->type != LM_REC_RAM_ZERO) {
        livemig_error_set(err, "record type %d cannot carry postcopy pages",
                          rec->type);
        return false;
    }
    pc_block *b = &pc->b[rec->block];
    if (lm_uffd_missing_place(pc->uffd, b->host + rec->first * LM_PAGE_SIZE,
                              rec->type == LM_REC_RAM_RAW ? data : NULL,
                              rec->npages, LM_PAGE_SIZE, err) < 0)
        return false;
    uint64_t now = lm_now_us(), lat_total = 0, answered = 0;
    uint64_t dist[LM_PC_LAT_BUCKETS] = { 0 };
    uint64_t lats[64];   /* for the fine histogram, under the lock below */
    unsigned nlats = 0;
    for (uint32_t i = 0; i < rec->npages; i++) {
        uint64_t page = rec->first + i;
        uint64_t bit = 1ull << (page % 64);
        uint64_t was = atomic_fetch_or(&b->received[page / 64], bit);
        if (!(was & bit) && (b->missing[page / 64] & bit))
            atomic_fetch_add(&pc->received_total, 1);
        uint64_t t0 = atomic_exchange(&b->asked_us[page], 0);
        if (t0 && t0 != UINT64_MAX) {
            uint64_t lat = now > t0 ? now - t0 : 0;
            unsigned k = lat ? 63u - (unsigned)__builtin_clzll(lat) : 0;
            dist[k < LM_PC_LAT_BUCKETS ? k : LM_PC_LAT_BUCKETS - 1]++;
            lat_total += lat;
            answered++;
            if (nlats == 64) {
                pthread_mutex_lock(&pc->lm->lock);
                for (unsigned j = 0; j < nlats; j++)
                    lm_lat_hist_add(&pc->lm->stats.pc.latency_fine, lats[j]);
                pthread_mutex_unlock(&pc->lm->lock);
                nlats = 0;
            }
            lats[nlats++] = lat;
        }
        /* A fault that comes after this cannot be for a missing page. */
        if (t0 == 0)
            atomic_store(&b->asked_us[page], UINT64_MAX);
    }
    pthread_mutex_lock(&pc->lm->lock);
    lm_pc_stats *st = &pc->lm->stats.pc;
    st->bytes += (uint64_t)rec->npages * LM_PAGE_SIZE;
    st->faults += answered;
    st->latency_us_total += lat_total;
    st->blocktime_us += lat_total;
    for (unsigned k = 0; k < LM_PC_LAT_BUCKETS; k++)
        st->latency_dist[k] += dist[k];
    for (unsigned j = 0; j < nlats; j++)
        lm_lat_hist_add(&st->latency_fine, lats[j]);
    pthread_mutex_unlock(&pc->lm->lock);
    return true;
}

/* The first page dropped at the switch and not placed yet: false if
 * none, else its block and page. */
static bool first_lost(lm_pc_dst *pc, size_t *bi, uint64_t *page)
{
    for (size_t i = 0; i < pc->nblocks; i++) {
        pc_block *b = &pc->b[i];
        for (size_t w = 0; w < b->words; w++) {
            uint64_t lost = b->missing[w] & ~atomic_load(&b->received[w]);
            if (lost) {
                *bi = i;
                *page = w * 64 + (uint64_t)__builtin_ctzll(lost);
                return true;
            }
        }
    }
    return false;
}

/* END_STREAM came on the main connection.  With postcopy-preempt, pages
 * sent on the other channel just before it may still be on their way:
 * wait for them while that channel works and they keep coming. */
static bool wait_preempt_pages(lm_pc_dst *pc, livemig_error *err)
{
    size_t bi;
    uint64_t page, seen = atomic_load(&pc->received_total);
    uint64_t last_progress = lm_now_us();
    while (pc->pre && first_lost(pc, &bi, &page)) {
        char why[400];
        if (lm_pc_pre_dst_broken(pc->pre, why, sizeof(why))) {
            livemig_error_set(err, "%s", why);
            return false;
        }
        if (lm_cancelled(pc->lm)) {
            livemig_error_set(err, "cancelled");
            return false;
        }
        uint64_t now = lm_now_us(), got = atomic_load(&pc->received_total);
        if (got != seen) {
            seen = got;
            last_progress = now;
        } else if (now - last_progress > 30u * 1000000u) {
            livemig_error_set(err, "page %llu of block %zu, sent on the "
                              "postcopy-preempt channel, did not arrive "
                              "within 30 s of the end of the stream; the "
                              "link is stuck", (unsigned long long)page, bi);
            return false;
        }
        struct timespec ts = { 0, 2000000L };
        nanosleep(&ts, NULL);   /* a page takes a link round trip */
    }
    return true;
}

static bool finish(lm_pc_dst *pc, livemig_error *err)
{
    size_t bi;
    uint64_t page;
    if (!wait_preempt_pages(pc, err))
        return false;
    if (first_lost(pc, &bi, &page)) {
        uint64_t got = atomic_load(&pc->received_total);
        livemig_error_set(err, "postcopy ended with %llu of %llu pages "
                          "never received (first: page %llu of block %zu); "
                          "the source must resend them",
                          (unsigned long long)(pc->missing_total - got),
                          (unsigned long long)pc->missing_total,
                          (unsigned long long)page, bi);
        return false;
    }
    uint8_t m[9];
    m[0] = LM_RP_PC_DONE;
    lm_put_be64(m + 1, atomic_load(&pc->received_total));
    reply(pc, m, sizeof(m));
    return true;
}

void lm_pc_dst_free(lm_pc_dst *pc)
{
    if (!pc)
        return;
    /* The preempt thread places pages through the userfaultfd: it goes
     * before the userfaultfd does. */
    lm_pc_pre_dst_stop(pc->pre);
    atomic_store(&pc->stop, true);
    if (pc->fault_started)
        pthread_join(pc->fault, NULL);
    lm_uffd_missing_close(pc->uffd);
    for (size_t i = 0; pc->b && i < pc->nblocks; i++) {
        free(pc->b[i].missing);
        free((void *)pc->b[i].received);
        free((void *)pc->b[i].asked_us);
    }
    free(pc->b);
    free(pc->bounce);
    if (pc->rr) {
        lm_reader_destroy(pc->rr);
        free(pc->rr);
    }
    pthread_mutex_destroy(&pc->rp_lock);
    free(pc);
}

void lm_pc_set_error_locked(livemig *lm, const char *msg)
{
    size_t n = strnlen(msg, sizeof(lm->error_desc) - 1);
    memcpy(lm->error_desc, msg, n);
    lm->error_desc[n] = '\0';
}

void lm_pc_watch_link(int fd)
{
    /* A cut link (cable, blackhole) sends no RST: without these a blocked
     * read or write would wait for minutes before either side pauses. */
    int one = 1, idle = 1, intvl = 1, cnt = 3;
    unsigned timeout_ms = 3000;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms,
                     sizeof(timeout_ms));
}

static bool stream(lm_pc_dst *pc, lm_reader *r, livemig_error *err)
{
    livemig *lm = pc->lm;
    uint64_t last = 0;
    lm_rec rec;
    for (;;) {
        if (lm_cancelled(lm)) {
            livemig_error_set(err, "cancelled");
            return false;
        }
        if (!lm_rd_record(r, &rec, err))
            return false;
        if (rec.type == LM_REC_END_STREAM)
            break;
        if (!lm_pc_dst_place(pc, &rec, pc->bounce, err))
            return false;
        uint64_t now = lm_now_us();
        if (now - last >= 50000) {   /* progress for query-migrate */
            last = now;
            pthread_mutex_lock(&lm->lock);
            lm->stats.transferred = pc->wire_before + r->total +
                                    lm->stats.pc.preempt_bytes;
            pthread_mutex_unlock(&lm->lock);
        }
    }
    pthread_mutex_lock(&lm->lock);
    lm->stats.transferred = pc->wire_before + r->total +
                            lm->stats.pc.preempt_bytes;
    pthread_mutex_unlock(&lm->lock);
    return finish(pc, err);
}

bool lm_pc_dst_stream(lm_pc_dst *pc, lm_reader *r, livemig_error *err)
{
    bool ok = stream(pc, r, err);
    pc->wire_last = r->total;
    return ok;
}

/* Tell the source what is still missing (dropped and not placed), then
 * ask again for the pages faulting threads wait for. */
static void send_missing(lm_pc_dst *pc)
{
    uint8_t *m = malloc(17 + (size_t)LM_PC_DISCARD_MAX_WORDS * 8);
    if (!m)
        return;   /* the link breaks again below: the source pauses */
    for (size_t i = 0; i < pc->nblocks; i++) {
        pc_block *b = &pc->b[i];
        for (size_t w = 0; w < b->words; w += LM_PC_DISCARD_MAX_WORDS) {
            size_t n = b->words - w;
            if (n > LM_PC_DISCARD_MAX_WORDS)
                n = LM_PC_DISCARD_MAX_WORDS;
            bool any = false;
            for (size_t k = 0; k < n; k++) {
                uint64_t x = b->missing[w + k] &
                             ~atomic_load(&b->received[w + k]);
                lm_put_be64(m + 17 + k * 8, x);
                any |= x != 0;
            }
            if (!any)
                continue;
            m[0] = LM_RP_PC_MISSING;
            lm_put_be32(m + 1, (uint32_t)i);
            lm_put_be64(m + 5, w);
            lm_put_be32(m + 13, (uint32_t)n);
            reply(pc, m, 17 + n * 8);
        }
    }
    m[0] = LM_RP_PC_RESUMED;
    reply(pc, m, 1);
    free(m);
    for (size_t i = 0; i < pc->nblocks; i++) {
        pc_block *b = &pc->b[i];
        for (uint64_t page = 0; page < b->pages; page++) {
            uint64_t t = atomic_load(&b->asked_us[page]);
            if (!t || t == UINT64_MAX)
                continue;
            uint8_t q[13];
            q[0] = LM_RP_PAGE_REQ;
            lm_put_be32(q + 1, (uint32_t)i);
            lm_put_be64(q + 5, page);
            reply(pc, q, sizeof(q));
        }
    }
}

void lm_pc_dst_refuse(lm_conn *c, const char *msg)
{
    size_t n = strlen(msg) > 400 ? 400 : strlen(msg);
    uint8_t b[3 + 400];
    b[0] = LM_RP_ERROR;
    lm_put_be16(b + 1, (uint16_t)n);
    memcpy(b + 3, msg, n);
    if (c->wfd >= 0)
        (void)lm_conn_write_all(c, b, 3 + n);
    lm_conn_close(c);
}

lm_reader *lm_pc_dst_hello(lm_pc_dst *pc, lm_conn *c, int role,
                           livemig_error *err)
{
    livemig *lm = pc->lm;
    /* As the first connection: a recovery must not be the way around
     * TLS (a plain source into a TLS destination is refused, saying so). */
    if (!lm_secure_server(lm, c, err))
        return NULL;
    lm_reader *r = malloc(sizeof(*r));
    if (!r || !lm_reader_init_conn(r, c, err)) {
        free(r);
        return NULL;
    }
    r->timeout_ms = 10000;
    bool ok = lm_rd_header(r, err);
    if (ok && memcmp(r->hdr.uuid, pc->uuid, sizeof(pc->uuid)) != 0) {
        livemig_error_set(err, "the connection is a stream of another "
                          "migration (its uuid differs from the paused "
                          "one's); resume with migrate {uri, resume: true} "
                          "on this migration's source");
        ok = false;
    } else if (ok && r->hdr.role != role) {
        livemig_error_set(err, "a connection with role %u came where the "
                          "%s was expected; is the source a livemig of "
                          "the same version with the same capabilities?",
                          r->hdr.role, role == LM_ROLE_MAIN
                              ? "main connection"
                              : "postcopy-preempt channel");
        ok = false;
    }
    if (ok) {
        lm_stream_block local[LM_STREAM_MAX_BLOCKS];
        for (size_t i = 0; i < lm->nram; i++) {
            snprintf(local[i].name, sizeof(local[i].name), "%s",
                     lm->ram[i]->name);
            local[i].size = lm->ram[i]->size;
            local[i].host = lm->ram[i]->host;
        }
        ok = lm_rd_bind(r, local, (uint32_t)lm->nram, err);
    }
    if (!ok) {
        lm_reader_destroy(r);
        free(r);
        return NULL;
    }
    r->timeout_ms = 0;
    return r;
}

/* A new connection: the source of this migration resuming it? */
static lm_reader *hello_resume(lm_pc_dst *pc, lm_conn *c, livemig_error *err)
{
    lm_reader *r = lm_pc_dst_hello(pc, c, LM_ROLE_MAIN, err);
    if (!r)
        return NULL;
    lm_rec rec;
    r->timeout_ms = 10000;
    bool ok = lm_rd_record(r, &rec, err);
    if (ok && rec.type != LM_REC_PC_RESUME) {
        livemig_error_set(err, "the connection does not resume the paused "
                          "postcopy migration (record %d first); use "
                          "migrate with resume: true on the source",
                          rec.type);
        ok = false;
    }
    if (!ok) {
        lm_reader_destroy(r);
        free(r);
        return NULL;
    }
    r->timeout_ms = 0;
    r->stage = stage;
    r->stage_opaque = pc;
    return r;
}

static void note_refusal(livemig *lm, const char *why)
{
    char m2[700];
    snprintf(m2, sizeof(m2), "refused a connection while recovering "
             "postcopy: %s", why);
    lm_log(lm, "%s", m2);
    pthread_mutex_lock(&lm->lock);
    lm_pc_set_error_locked(lm, m2);
    pthread_mutex_unlock(&lm->lock);
}

/* Accept on the recovery listener until this migration's source is back:
 * its main connection (PC_RESUME) and, with postcopy-preempt, its new
 * preempt channel, which it opens right after (within 10 s).  Anything
 * else is refused with the reason, and we keep listening.  NULL when
 * cancelled or the listener failed. */
static lm_reader *accept_resume(lm_pc_dst *pc, lm_conn *mc)
{
    livemig *lm = pc->lm;
    lm_reader *r = NULL, *pr = NULL;
    lm_conn pcn = LM_CONN_INIT;
    uint64_t deadline = 0;
    while (!lm_cancelled(lm) && (!r || (pc->pre && !pr))) {
        if (r && lm_now_ms() > deadline) {
            note_refusal(lm, "the source resumed without its "
                         "postcopy-preempt channel within 10 s; both "
                         "sides need postcopy-preempt, then resume again");
            lm_pc_dst_refuse(mc, "the postcopy-preempt channel did not "
                             "follow the resumed connection within 10 s");
            lm_reader_destroy(r);
            free(r);
            r = NULL;
        }
        livemig_error e = { 0 };
        lm_conn c;
        int rc = lm_listener_accept(&lm->listener, 100, &c, &e);
        if (rc < 0) {
            lm_set_error(lm, e.desc);
            break;
        }
        if (rc == 0)
            continue;
        lm_reader *x = NULL;
        if (!r) {
            if ((x = hello_resume(pc, &c, &e))) {
                r = x;
                *mc = c;
                deadline = lm_now_ms() + 10000;
            }
        } else if ((x = lm_pc_dst_hello(pc, &c, LM_ROLE_PC_PREEMPT, &e))) {
            pr = x;
            pcn = c;
        }
        if (!x) {
            lm_pc_dst_refuse(&c, e.desc);
            note_refusal(lm, e.desc);
        }
    }
    if (r && pc->pre && !pr) {   /* cancelled half-way */
        lm_reader_destroy(r);
        free(r);
        lm_conn_close(mc);
        return NULL;
    }
    if (pr)
        lm_pc_pre_dst_adopt(pc->pre, pcn, pr);
    return r;
}

lm_reader *lm_pc_dst_recover(lm_pc_dst *pc, livemig_error *err)
{
    livemig *lm = pc->lm;
    char msg[700], why[400] = "";
    if (pc->pre && lm_pc_pre_dst_broken(pc->pre, why + 2, sizeof(why) - 2))
        memcpy(why, "; ", 2);
    /* Short enough that the hint at the end fits error-desc. */
    snprintf(msg, sizeof(msg), "postcopy paused: %.180s%.120s; the guest "
             "runs here and its threads wait for the pages still at the "
             "source; recover with migrate-recover {uri} here, then migrate "
             "{uri, resume: true} on the source", err->desc, why);
    pthread_mutex_lock(&lm->lock);
    lm_pc_set_error_locked(lm, msg);
    lm_set_status_locked(lm, LIVEMIG_STATUS__MAX,
                         LIVEMIG_STATUS_POSTCOPY_PAUSED);
    pthread_mutex_unlock(&lm->lock);
    for (;;) {
        pthread_mutex_lock(&lm->lock);
        while (!lm_cancelled(lm) && !lm->pc_resume)
            pthread_cond_wait(&lm->cond, &lm->lock);
        if (lm_cancelled(lm)) {
            pthread_mutex_unlock(&lm->lock);
            return NULL;
        }
        lm->pc_resume = false;
        lm_set_status_locked(lm, LIVEMIG_STATUS_POSTCOPY_PAUSED,
                             LIVEMIG_STATUS_POSTCOPY_RECOVER);
        pthread_mutex_unlock(&lm->lock);
        lm_conn c = LM_CONN_INIT;
        lm_reader *r = accept_resume(pc, &c);
        if (!r) {
            pthread_mutex_lock(&lm->lock);
            lm_set_status_locked(lm, LIVEMIG_STATUS_POSTCOPY_RECOVER,
                                 LIVEMIG_STATUS_POSTCOPY_PAUSED);
            pthread_mutex_unlock(&lm->lock);
            continue;
        }
        /* The new connection replaces the broken one (the fault thread
         * writes requests to lm->conn under rp_lock). */
        lm_pc_watch_link(c.rfd);
        pthread_mutex_lock(&pc->rp_lock);
        pthread_mutex_lock(&lm->lock);
        lm_conn_close(&lm->conn);
        lm->conn = c;
        lm_listener_close(&lm->listener);
        pthread_mutex_unlock(&lm->lock);
        pthread_mutex_unlock(&pc->rp_lock);
        pc->wire_before += pc->wire_last;
        pc->wire_last = 0;
        if (pc->rr) {
            lm_reader_destroy(pc->rr);
            free(pc->rr);
        }
        pc->rr = r;
        send_missing(pc);
        livemig_error_clear(err);
        pthread_mutex_lock(&lm->lock);
        lm->error_desc[0] = '\0';
        lm_set_status_locked(lm, LIVEMIG_STATUS_POSTCOPY_RECOVER,
                             LIVEMIG_STATUS_POSTCOPY_ACTIVE);
        pthread_mutex_unlock(&lm->lock);
        return r;
    }
}

bool livemig_postcopy_recover(livemig *lm, const char *uri, livemig_error *err)
{
    pthread_mutex_lock(&lm->lock);
    bool ok = lm->incoming && lm->status == LIVEMIG_STATUS_POSTCOPY_PAUSED &&
              !lm->pc_resume;
    if (!ok) {
        livemig_error_set(err, "migrate-recover resumes a paused postcopy "
                          "migration on its destination; this side is in "
                          "status '%s'%s", livemig_status_name(lm->status),
                          lm->incoming ? "" : " as a source");
    } else {
        lm_listener_close(&lm->listener);
        ok = lm_transport_listen(uri, &lm->listener, err);
        if (ok) {
            lm->pc_resume = true;
            pthread_cond_broadcast(&lm->cond);
        }
    }
    pthread_mutex_unlock(&lm->lock);
    return ok;
}
