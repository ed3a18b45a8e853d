/*
 * writer.c - encodes the migration stream.
 *
 * The stream is a header followed by records, all integers big-endian,
 * nothing sent as a native struct (docs/stream.md has the full essay):
 *
 *   header  "LVMG" u32 version, u32 page size, u8 role, u8 index
 *           (main: multifd channel count), u16 flags (bit 0: uuid, bit 1:
 *           postcopy-preempt, bits 8-15: multifd compression), 16 bytes
 *           uuid, u32 nblocks,
 *           nblocks x { u8 name length, name, u64 size }
 *   record  u8 type, then by type:
 *           RAM_RAW    u32 block, u64 first page, u32 npages, pages
 *           RAM_ZERO   u32 block, u64 first page, u32 npages
 *           SECTION    u8 name length, name, u32 version, u32 length, bytes
 *           END_PASS   u64 pass number
 *           END_STREAM (nothing)
 *           MC_START   u32 heartbeat timeout in ms
 *           MC_END     (nothing): checkpointing stopped, do not take over
 *           CKPT_BEGIN u64 epoch    (micro-checkpointing: RAM and section
 *           CKPT_END   u64 epoch     records between them form one
 *           HEARTBEAT  (nothing)     checkpoint, applied only when whole)
 *           RAM_XBZRLE u32 block, u64 page, u32 length, delta (xbzrle.c)
 *           MF_PAGES   u32 block, u32 n, n x u64 page (bit 63: zero page),
 *                      then the non-zero pages raw, or u32 length and the
 *                      channel's compressed batch (multifd channels)
 *           MF_SYNC    u64 sync point (multifd channels)
 *           PC_ADVISE  (nothing): postcopy may follow
 *           PC_DISCARD u32 block, u64 first word, u32 nwords, nwords x u64
 *                      bitmap words (bit i of word w: page 64w+i)
 *           PC_RUN     (nothing): postcopy starts, run the guest
 *           PC_RESUME  (nothing): this connection resumes a paused
 *                      postcopy migration (same uuid in the header)
 *           RUNSTATE   u8 1: the guest was paused and stays so (sent
 *                      only then, just before END_STREAM)
 *
 * Pages are sent as runs of adjacent pages with one 17-byte header per
 * run, by reference: the writer gathers record headers (in its arena) and
 * guest pages into one iovec array and sends it with writev once about
 * 1 MiB is pending, so guest memory reaches the socket without a copy.
 * max-bandwidth is a token bucket charged per batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "stream/stream.h"
#include "transport/transport.h"

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void lm_writer_init(lm_writer *w, int fd, atomic_bool *cancel)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->cancel = cancel;
    w->last_refill_us = now_us();
}

void lm_writer_init_conn(lm_writer *w, const lm_conn *c, atomic_bool *cancel)
{
    lm_writer_init(w, c->wfd, cancel);
    w->tls = c->tls;
}

void lm_writer_set_rate(lm_writer *w, uint64_t bytes_per_s)
{
    if (w->rate != bytes_per_s) {
        w->rate = bytes_per_s;
        w->tokens = 0;
        w->last_refill_us = now_us();
    }
}

void lm_writer_set_pacing(lm_writer *w, uint32_t us)
{
    w->pace_us = us;
}

size_t lm_writer_slice(const lm_writer *w)
{
    if (!w->rate)
        return SIZE_MAX;
    uint32_t us = w->pace_us ? w->pace_us : LM_WR_PACE_DEFAULT_US;
    double b = (double)w->rate * us / 1e6;
    return b < 4096 ? 4096 : b > (double)(SIZE_MAX / 2) ? SIZE_MAX / 2
                                                          : (size_t)b;
}

/* Add the tokens earned since the last refill; the bucket holds at most
 * one slice (lm_wr_flush sends slices of that size), or @n when larger,
 * so a sender that was idle cannot burst far above the rate.  After a
 * wait for the bucket it may hold one slice more: a wakeup comes late
 * (by 50-100 us on a VM, more when the CPU is busy), and with slices of
 * 1 ms, throwing that time away would cost a tenth of the rate. */
static void refill(lm_writer *w, size_t n)
{
    uint64_t now = now_us();
    w->tokens += (double)(now - w->last_refill_us) * (double)w->rate / 1e6;
    w->last_refill_us = now;
    double slice = (double)lm_writer_slice(w);
    double cap = slice < (double)n ? (double)n : slice;
    if (w->waited)
        cap += slice;
    w->waited = false;
    if (w->tokens > cap)
        w->tokens = cap;
}

uint64_t lm_writer_pace_wait_us(lm_writer *w, size_t n)
{
    if (!w->rate)
        return 0;
    refill(w, n);
    if (w->tokens >= (double)n)
        return 0;
    w->waited = true;   /* the caller waits, then asks again */
    return (uint64_t)(((double)n - w->tokens) * 1e6 / (double)w->rate) + 1;
}

void lm_writer_charge(lm_writer *w, size_t n)
{
    if (!w->rate || !n)
        return;
    refill(w, 0);
    w->tokens -= (double)n;
    double floor = -(double)w->rate / 10.0;
    if (w->tokens < floor)
        w->tokens = floor;
}

/* Wait until the bucket allows @n more bytes. */
static void throttle(lm_writer *w, size_t n)
{
    if (!w->rate)
        return;
    for (int i = 0; i < 100000; i++) {
        refill(w, n);
        if (w->tokens >= (double)n || (w->cancel && atomic_load(w->cancel)))
            break;
        double wait = ((double)n - w->tokens) * 1e6 / (double)w->rate;
        struct timespec ts = { 0, (long)(wait > 10000 ? 10000 : wait) * 1000 };
        nanosleep(&ts, NULL);
        w->waited = true;
    }
    w->tokens -= (double)n;
}

void lm_writer_destroy(lm_writer *w)
{
    free(w->copy);
    w->copy = NULL;
}

/* Write @iov whole.  A non-blocking fd (a file: FIFO) that is full is
 * waited for, giving up when the migration is cancelled, so a reader that
 * stops reading can't hold a cancel; a blocking fd behaves as
 * lm_writev_all (EAGAIN there is a send timeout: an error). */
static bool writev_wait(lm_writer *w, struct iovec *iov, int cnt)
{
    if (w->tls)
        return lm_io_writev_all(w->fd, w->tls, iov, cnt);
    while (cnt > 0) {
        ssize_t n = writev(w->fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN || !(fcntl(w->fd, F_GETFL) & O_NONBLOCK))
                return false;
            if (w->cancel && atomic_load(w->cancel)) {
                errno = ECANCELED;
                return false;
            }
            struct pollfd p = { .fd = w->fd, .events = POLLOUT };
            (void)poll(&p, 1, 50);
            continue;
        }
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0 && n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return true;
}

/* Send the pending batch.  With a rate it goes out in slices (50 ms of
 * the rate by default, lm_writer_set_pacing), each paid for just before
 * it is written: a steady trickle, never a long silence and then a burst
 * of a whole batch. */
static bool write_batch(lm_writer *w)
{
    size_t slice = lm_writer_slice(w);
    struct iovec *iov = w->iov;
    int n = w->niov;
    while (n > 0) {
        size_t len = 0;
        int k = 0;
        while (k < n && len < slice)
            len += iov[k++].iov_len;
        struct iovec last = iov[k - 1];
        size_t over = len > slice ? len - slice : 0;
        iov[k - 1].iov_len -= over;
        len -= over;
        throttle(w, len);
        if (!writev_wait(w, iov, k))
            return false;
        w->total += len;
        w->pending -= len;
        if (w->progress)
            atomic_fetch_add(w->progress, len);
        if (over) {   /* the rest of the split element goes next */
            iov[k - 1].iov_base = (uint8_t *)last.iov_base + last.iov_len -
                                  over;
            iov[k - 1].iov_len = over;
            k--;
        }
        iov += k;
        n -= k;
    }
    return true;
}

bool lm_wr_flush(lm_writer *w)
{
    if (w->error)
        return false;
    if (w->niov == 0)
        return true;
    if (!write_batch(w)) {
        w->error = errno ? errno : EIO;
        return false;
    }
    w->niov = 0;
    w->pending = 0;
    w->arena_used = 0;
    w->copy_used = 0;
    return true;
}

/* Queue @len bytes at @p by reference. */
static bool push(lm_writer *w, const void *p, size_t len)
{
    if (w->niov == LM_WR_IOV && !lm_wr_flush(w))
        return false;
    struct iovec *last = w->niov ? &w->iov[w->niov - 1] : NULL;
    if (last && (const uint8_t *)last->iov_base + last->iov_len == p) {
        last->iov_len += len;     /* adjacent: coalesce */
    } else {
        w->iov[w->niov].iov_base = (void *)p;
        w->iov[w->niov].iov_len = len;
        w->niov++;
    }
    w->pending += len;
    return true;
}

/* Room for a record header of @len bytes in the arena. */
static uint8_t *hdr(lm_writer *w, size_t len)
{
    if ((w->arena_used + len > LM_WR_ARENA || w->niov >= LM_WR_IOV - 2) &&
        !lm_wr_flush(w))
        return NULL;
    uint8_t *p = w->arena + w->arena_used;
    w->arena_used += len;
    return p;
}

static bool maybe_flush(lm_writer *w)
{
    /* Under a low max-bandwidth, smaller batches (about 50 ms of the
     * rate): the caller gets control back often enough to show progress
     * and to notice a cancel or a new limit. */
    size_t batch = LM_WR_BATCH;
    if (w->rate && w->rate / 20 < batch)
        batch = w->rate / 20 > 65536 ? (size_t)(w->rate / 20) : 65536;
    return w->pending < batch || lm_wr_flush(w);
}

bool lm_wr_header(lm_writer *w, const lm_stream_header *h)
{
    size_t len = 4 + 4 + 4 + 1 + 1 + 2 + 16 + 4;
    for (uint32_t i = 0; i < h->nblocks; i++)
        len += 1 + strlen(h->blocks[i].name) + 8;
    uint8_t *p = hdr(w, len), *q = p;
    if (!p)
        return false;
    lm_put_be32(q, LM_STREAM_MAGIC); q += 4;
    lm_put_be32(q, h->version); q += 4;
    lm_put_be32(q, h->page_size); q += 4;
    *q++ = h->role;
    *q++ = h->index;
    /* flags: bit 0 = uuid present, bit 1 = postcopy-preempt, bits 8-15 =
     * multifd compression */
    lm_put_be16(q, (uint16_t)(1u | (h->pc_preempt ? 2u : 0u) |
                              (unsigned)h->compression << 8)); q += 2;
    memcpy(q, h->uuid, 16); q += 16;
    lm_put_be32(q, h->nblocks); q += 4;
    for (uint32_t i = 0; i < h->nblocks; i++) {
        size_t n = strlen(h->blocks[i].name);
        *q++ = (uint8_t)n;
        memcpy(q, h->blocks[i].name, n); q += n;
        lm_put_be64(q, h->blocks[i].size); q += 8;
    }
    return push(w, p, len);
}

static bool ram_rec(lm_writer *w, int type, uint32_t block, uint64_t first,
                    uint32_t npages)
{
    uint8_t *p = hdr(w, 17);
    if (!p)
        return false;
    p[0] = (uint8_t)type;
    lm_put_be32(p + 1, block);
    lm_put_be64(p + 5, first);
    lm_put_be32(p + 13, npages);
    return push(w, p, 17);
}

bool lm_wr_ram_raw(lm_writer *w, uint32_t block, uint64_t first,
                   uint32_t npages, const void *data)
{
    return ram_rec(w, LM_REC_RAM_RAW, block, first, npages) &&
           push(w, data, (size_t)npages * 4096u) && maybe_flush(w);
}

bool lm_wr_ram_zero(lm_writer *w, uint32_t block, uint64_t first,
                    uint32_t npages)
{
    return ram_rec(w, LM_REC_RAM_ZERO, block, first, npages) &&
           maybe_flush(w);
}

/* Reserve a record header of @hlen bytes and @clen bytes of the copy
 * arena together: one flush first if either is short, none after, so
 * neither reservation can be released by a flush before it is queued. */
static bool reserve2(lm_writer *w, size_t hlen, size_t clen, uint8_t **h,
                     uint8_t **c)
{
    if (!w->copy && !(w->copy = malloc(LM_WR_BATCH))) {
        w->error = ENOMEM;
        return false;
    }
    if ((w->arena_used + hlen > LM_WR_ARENA || w->niov >= LM_WR_IOV - 2 ||
         w->copy_used + clen > LM_WR_BATCH) && !lm_wr_flush(w))
        return false;
    *h = w->arena + w->arena_used;
    w->arena_used += hlen;
    *c = w->copy + w->copy_used;
    w->copy_used += clen;
    return true;
}

static bool copied_rec(lm_writer *w, int type, uint32_t block, uint64_t page,
                       uint32_t n, const void *data, uint32_t len)
{
    uint8_t *p, *c;
    if (!reserve2(w, 17, len, &p, &c))
        return false;
    memcpy(c, data, len);
    p[0] = (uint8_t)type;
    lm_put_be32(p + 1, block);
    lm_put_be64(p + 5, page);
    lm_put_be32(p + 13, n);
    return push(w, p, 17) && push(w, c, len) && maybe_flush(w);
}

bool lm_wr_ram_raw_copy(lm_writer *w, uint32_t block, uint64_t page,
                        const void *data)
{
    return copied_rec(w, LM_REC_RAM_RAW, block, page, 1, data, 4096);
}

bool lm_wr_ram_xbzrle(lm_writer *w, uint32_t block, uint64_t page,
                      const void *enc, uint32_t len)
{
    return copied_rec(w, LM_REC_RAM_XBZRLE, block, page, len, enc, len);
}

bool lm_wr_mf_pages(lm_writer *w, uint32_t block, const uint64_t *pages,
                    const bool *zero, uint32_t n, const uint8_t *base,
                    const void *cdata, uint32_t clen)
{
    size_t hlen = 9 + (size_t)n * 8 + (cdata ? 4 : 0);
    uint8_t *p, *c = NULL;
    if (cdata ? !reserve2(w, hlen, clen, &p, &c) : !(p = hdr(w, hlen)))
        return false;
    p[0] = LM_REC_MF_PAGES;
    lm_put_be32(p + 1, block);
    lm_put_be32(p + 5, n);
    for (uint32_t i = 0; i < n; i++)
        lm_put_be64(p + 9 + 8 * i, pages[i] | (zero[i] ? LM_MF_ZERO : 0));
    if (cdata) {
        lm_put_be32(p + 9 + 8 * n, clen);
        memcpy(c, cdata, clen);
        return push(w, p, hlen) && push(w, c, clen) && maybe_flush(w);
    }
    if (!push(w, p, hlen))
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (!zero[i] && !push(w, base + pages[i] * 4096, 4096))
            return false;
    return maybe_flush(w);
}

bool lm_wr_mf_sync(lm_writer *w, uint64_t sync)
{
    uint8_t *p = hdr(w, 9);
    if (!p)
        return false;
    p[0] = LM_REC_MF_SYNC;
    lm_put_be64(p + 1, sync);
    return push(w, p, 9) && lm_wr_flush(w);
}

bool lm_wr_section(lm_writer *w, const char *name, uint32_t version,
                   const void *data, uint32_t len)
{
    size_t n = strlen(name);
    uint8_t *p = hdr(w, 1 + 1 + n + 4 + 4);
    if (!p)
        return false;
    p[0] = LM_REC_SECTION;
    p[1] = (uint8_t)n;
    memcpy(p + 2, name, n);
    lm_put_be32(p + 2 + n, version);
    lm_put_be32(p + 6 + n, len);
    /* Section bytes live in a caller buffer: send them before returning. */
    return push(w, p, 10 + n) && (!len || push(w, data, len)) &&
           lm_wr_flush(w);
}

bool lm_wr_end_pass(lm_writer *w, uint64_t pass)
{
    uint8_t *p = hdr(w, 9);
    if (!p)
        return false;
    p[0] = LM_REC_END_PASS;
    lm_put_be64(p + 1, pass);
    return push(w, p, 9);
}

bool lm_wr_end_stream(lm_writer *w)
{
    uint8_t *p = hdr(w, 1);
    if (!p)
        return false;
    p[0] = LM_REC_END_STREAM;
    return push(w, p, 1) && lm_wr_flush(w);
}

bool lm_wr_mc_start(lm_writer *w, uint32_t heartbeat_ms)
{
    uint8_t *p = hdr(w, 5);
    if (!p)
        return false;
    p[0] = LM_REC_MC_START;
    lm_put_be32(p + 1, heartbeat_ms);
    return push(w, p, 5);
}

bool lm_wr_ckpt(lm_writer *w, int type, uint64_t epoch)
{
    uint8_t *p = hdr(w, 9);
    if (!p)
        return false;
    p[0] = (uint8_t)type;
    lm_put_be64(p + 1, epoch);
    return push(w, p, 9);
}

bool lm_wr_heartbeat(lm_writer *w)
{
    uint8_t *p = hdr(w, 1);
    if (!p)
        return false;
    p[0] = LM_REC_HEARTBEAT;
    return push(w, p, 1) && lm_wr_flush(w);
}

bool lm_wr_mc_end(lm_writer *w)
{
    uint8_t *p = hdr(w, 1);
    if (!p)
        return false;
    p[0] = LM_REC_MC_END;
    return push(w, p, 1) && lm_wr_flush(w);
}

bool lm_wr_runstate(lm_writer *w, uint8_t state)
{
    uint8_t *p = hdr(w, 2);
    if (!p)
        return false;
    p[0] = LM_REC_RUNSTATE;
    p[1] = state;
    return push(w, p, 2);
}

bool lm_page_is_zero(const void *p)
{
    const uint64_t *q = p;
    /* Random pages fail on the first word; zero pages are read in
     * 64-byte strides the compiler vectorises. */
    if (q[0])
        return false;
    for (size_t i = 0; i < 4096 / 8; i += 8) {
        if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] |
            q[i + 6] | q[i + 7])
            return false;
    }
    return true;
}

bool lm_wr_pc(lm_writer *w, int type)
{
    uint8_t *p = hdr(w, 1);
    if (!p)
        return false;
    p[0] = (uint8_t)type;
    return push(w, p, 1);
}

bool lm_wr_pc_discard(lm_writer *w, uint32_t block, uint64_t first,
                      const uint64_t *words, uint32_t nwords)
{
    uint8_t *p, *c;
    if (!reserve2(w, 17, (size_t)nwords * 8, &p, &c))
        return false;
    for (uint32_t i = 0; i < nwords; i++)
        lm_put_be64(c + (size_t)i * 8, words[i]);
    p[0] = LM_REC_PC_DISCARD;
    lm_put_be32(p + 1, block);
    lm_put_be64(p + 5, first);
    lm_put_be32(p + 13, nwords);
    return push(w, p, 17) && push(w, c, (size_t)nwords * 8) &&
           maybe_flush(w);
}
