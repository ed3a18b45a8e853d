/*
 * outgoing.c - the migration thread of the source: precopy passes, then
 * switchover.
 *
 *   setup:  hello/header, start dirty tracking, mark every page dirty.
 *   pass:   send every dirty page (zero pages as a flag), end-of-pass,
 *           sync the trackers, measure bandwidth and dirty rate, estimate
 *           the downtime of switching over now.
 *   switch: when the estimate fits downtime-limit and switchover-hold is
 *           off: stop the guest, final sync, last pages, state sections,
 *           end of stream; wait until the destination says it loaded
 *           everything and runs.  Only then "completed".
 * The end of the stream is the point of no return (docs/cancel.md): a
 * failure or cancel before it restores the source guest (nothing is lost
 * and a new migration can start); after it, a cancel is refused and the
 * guest resumes here only if the destination says it will not run it.
 */
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "codec/xbzrle.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "engine/engine-int.h"
#include "engine/multifd.h"
#include "engine/outgoing-int.h"
#include "engine/postcopy.h"
#include "stream/stream.h"

/* ---- sending pages ----------------------------------------------------- */

typedef struct run {
    uint64_t start;
    uint32_t len;
    bool zero;
} run;

/*
 * xbzrle: a page sent before is sent as a delta against the copy of what
 * was sent (the cache), which is what the destination holds.  So every
 * page the cache knows must reach the destination exactly as cached: a
 * miss inserts the page and sends the cached copy (copied into the
 * writer, never by reference), a hit encodes a snapshot and caches that.
 * Pass 1 does not fill the cache: it would cost a copy of all RAM.
 */
static bool emit_xbzrle(out_state *s, uint32_t bi, const uint8_t *base,
                        uint64_t page)
{
    const uint8_t *guest = base + page * LM_PAGE_SIZE;
    uint8_t *cached = lm_xbzrle_cache_lookup(s->xc, bi, page);
    if (!cached) {
        cached = lm_xbzrle_cache_insert(s->xc, bi, page, guest);
        s->normal++;
        return lm_wr_ram_raw_copy(s->w, bi, page, cached ? cached : guest);
    }
    memcpy(s->snap, guest, LM_PAGE_SIZE);
    ssize_t n = lm_xbzrle_encode(cached, s->snap, LM_PAGE_SIZE, s->enc,
                                 LM_PAGE_SIZE - 1);
    lm_xbzrle_cache_account(s->xc, n);
    memcpy(cached, s->snap, LM_PAGE_SIZE);
    if (n == 0)
        return true;   /* rewritten with the same bytes: nothing to send */
    if (n < 0) {
        s->normal++;
        return lm_wr_ram_raw_copy(s->w, bi, page, cached);
    }
    return lm_wr_ram_xbzrle(s->w, bi, page, s->enc, (uint32_t)n);
}

static bool emit_run(out_state *s, uint32_t bi, const uint8_t *base,
                     const run *r)
{
    if (!r->len)
        return true;
    s->pages_done += r->len;
    if (s->xbzrle_on) {
        for (uint32_t i = 0; i < r->len; i++) {
            if (r->zero)
                lm_xbzrle_cache_invalidate(s->xc, bi, r->start + i);
            else if (!emit_xbzrle(s, bi, base, r->start + i))
                return false;
        }
        if (!r->zero)
            return true;
    }
    if (r->zero) {
        s->duplicate += r->len;
        return lm_wr_ram_zero(s->w, bi, r->start, r->len);
    }
    s->normal += r->len;
    return lm_wr_ram_raw(s->w, bi, r->start, r->len,
                         base + r->start * LM_PAGE_SIZE);
}

/* Bytes on the wire, main stream and channels. */
static uint64_t wire_bytes(out_state *s)
{
    return s->w->total + s->w->pending +
           (s->mf ? lm_mf_send_bytes(s->mf) : 0);
}

bool lm_out_tick(out_state *s)
{
    livemig *lm = s->lm;
    if (lm_cancelled(lm))
        return false;
    uint64_t now = lm_now_us();
    if (now - s->last_tick_us < 50000)
        return true;
    s->last_tick_us = now;
    /* max-bandwidth takes effect at once, not at the next pass: a user
     * who lowers it wants the link back now. */
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    if (!s->unthrottled && p.max_bandwidth != s->w->rate) {
        s->p.max_bandwidth = p.max_bandwidth;
        lm_writer_set_rate(s->w, p.max_bandwidth);
    }
    uint64_t done = s->pages_done - s->pass_p0;
    uint64_t left = s->pass_pages > done ? s->pass_pages - done : 0;
    uint64_t wire = wire_bytes(s);
    json_object *mf = s->mf ? lm_mf_send_stats(s->mf) : NULL;
    pthread_mutex_lock(&lm->lock);
    lm_stats *st = &lm->stats;
    if (mf) {   /* live, not only at the end of a pass */
        json_object_put(st->multifd);
        st->multifd = mf;
    }
    st->transferred = wire;
    st->precopy_bytes = wire;
    st->normal = s->normal;
    st->duplicate = s->duplicate;
    st->sent_pages = s->pages_done;
    st->remaining = left * LM_PAGE_SIZE;
    /* Mid-pass, the rates are those of this pass so far (the first pass
     * has no other), and the expected downtime is what switching over
     * now would leave to send. */
    uint64_t el = now - s->pass_t0_us;
    if (s->in_pass && el >= 100000) {
        uint64_t bw = (wire - s->pass_b0) * 1000000u / el;
        uint64_t pr = done * 1000000u / el;
        if (s->p.max_bandwidth && bw > s->p.max_bandwidth) {
            /* the token bucket's first burst is not the sustained rate */
            pr = (uint64_t)((double)pr * (double)s->p.max_bandwidth /
                            (double)bw);
            bw = s->p.max_bandwidth;
        }
        st->bandwidth = bw;
        if (done >= 64)
            st->page_rate = pr;
        if (s->p.avail_switchover_bandwidth)
            st->expected_downtime_ms = st->remaining * 1000u /
                                       s->p.avail_switchover_bandwidth;
        else if (st->page_rate)
            st->expected_downtime_ms = left * 1000u / st->page_rate;
    }
    pthread_mutex_unlock(&lm->lock);
    return true;
}

/* multifd: every channel busy; progress still shows (a cancel reaches
 * the channels directly). */
static void tick_idle(void *opaque)
{
    (void)lm_out_tick(opaque);
}

bool lm_out_send_block(out_state *s, uint32_t bi, uint64_t *bitmap,
                       const uint8_t *base)
{
    livemig_ram *ram = s->lm->ram[bi];
    bool detect = s->p.zero_page_detection != 0;
    /* Under a low max-bandwidth, short runs: a run is written whole, and
     * progress shows (and a cancel is seen) between writes. */
    uint32_t max_run = 256;
    if (s->w->rate && s->w->rate / 20 / LM_PAGE_SIZE < max_run)
        max_run = s->w->rate / 20 / LM_PAGE_SIZE > 1
                      ? (uint32_t)(s->w->rate / 20 / LM_PAGE_SIZE) : 1;
    run cur = { 0, 0, false };
    for (size_t wi = 0; wi < ram->bitmap_words; wi++) {
        uint64_t word = bitmap[wi];
        if (!word)
            continue;
        bitmap[wi] = 0;
        while (word) {
            uint64_t page = wi * 64 + (uint64_t)__builtin_ctzll(word);
            word &= word - 1;
            bool z = detect && lm_page_is_zero(base + page * LM_PAGE_SIZE);
            if (cur.len && page == cur.start + cur.len && z == cur.zero &&
                cur.len < max_run) {
                cur.len++;
                continue;
            }
            if (!emit_run(s, bi, base, &cur))
                return false;
            cur = (run){ page, 1, z };
        }
        if (!lm_out_tick(s))   /* cheap: a clock read per 64 pages */
            return false;
    }
    return emit_run(s, bi, base, &cur);
}

/* multifd: hand the dirty pages to the channels in batches; they find
 * the zero pages and compress. */

/* A page channel failed: the destination may have said why on the main
 * connection before it closed its channels, and that reason is the one
 * to report; otherwise the channel's own error. */
static bool mf_failed(out_state *s, const livemig_error *e)
{
    if (livemig_error_is_set(&s->err))
        return false;
    if (s->lm->conn.return_path && !lm_cancelled(s->lm)) {
        int t = 0;
        uint64_t v;
        if (lm_out_read_reply(s, 200, &t, &v) < 0 && t == LM_RP_ERROR)
            return false;
        livemig_error_clear(&s->err);
    }
    livemig_error_set(&s->err, "%s", e->desc);
    return false;
}
static bool send_block_mf(out_state *s, uint32_t bi)
{
    livemig_ram *ram = s->lm->ram[bi];
    livemig_error e = { 0 };
    uint32_t n = 0;
    for (size_t wi = 0; wi < ram->bitmap_words; wi++) {
        uint64_t word = ram->dirty[wi];
        if (!word)
            continue;
        ram->dirty[wi] = 0;
        while (word) {
            s->batch[n++] = wi * 64 + (uint64_t)__builtin_ctzll(word);
            word &= word - 1;
            if (n == LM_MF_BATCH) {
                if (!lm_mf_send_pages(s->mf, bi, ram->host, s->batch, n,
                                      &e))
                    return mf_failed(s, &e);
                s->pages_done += n;
                n = 0;
            }
        }
        if (!lm_out_tick(s))   /* cheap: a clock read per 64 pages */
            return false;
    }
    if (n && !lm_mf_send_pages(s->mf, bi, ram->host, s->batch, n, &e))
        return mf_failed(s, &e);
    s->pages_done += n;
    return true;
}

static bool send_dirty(out_state *s)
{
    for (uint32_t bi = 0; bi < s->lm->nram; bi++) {
        bool ok = s->mf ? send_block_mf(s, bi)
                        : lm_out_send_block(s, bi, s->lm->ram[bi]->dirty,
                                            s->lm->ram[bi]->host);
        if (!ok)
            return false;
    }
    return true;
}

/* End of a pass (or of the final pages): with multifd every channel
 * reaches the sync point first, then the main stream says so. */
static bool end_pass(out_state *s, uint64_t pass)
{
    if (s->mf) {
        livemig_error e = { 0 };
        if (!lm_mf_send_sync(s->mf, pass, &e))
            return mf_failed(s, &e);
        json_object *st = lm_mf_send_stats(s->mf);
        pthread_mutex_lock(&s->lm->lock);
        json_object_put(s->lm->stats.multifd);
        s->lm->stats.multifd = st;
        pthread_mutex_unlock(&s->lm->lock);
    }
    if (!lm_wr_end_pass(s->w, pass) || !lm_wr_flush(s->w)) {
        lm_out_explain_write_error(s);
        return false;
    }
    return true;
}



bool lm_out_harvest_dirty(out_state *s)
{
    for (size_t i = 0; i < s->lm->nram; i++) {
        livemig_ram *r = s->lm->ram[i];
        if (!lm_tracker_sync(r->tracker, r->dirty, NULL, &s->err))
            return false;
    }
    return true;
}

bool lm_out_sync_dirty(out_state *s)
{
    if (!lm_out_harvest_dirty(s))
        return false;
    /* Count what is set, not what was new: pages left from an aborted
     * pass are still to send. */
    uint64_t total = 0;
    for (size_t i = 0; i < s->lm->nram; i++) {
        livemig_ram *r = s->lm->ram[i];
        for (size_t w = 0; w < r->bitmap_words; w++)
            total += (uint64_t)__builtin_popcountll(r->dirty[w]);
    }
    s->dirty_pages = total;
    return true;
}

/* ---- return path ------------------------------------------------------- */

int lm_out_read_reply(out_state *s, int timeout_ms, int *type_out,
                      uint64_t *value)
{
    const lm_conn *c = &s->lm->conn;
    uint64_t deadline = lm_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        if (lm_cancelled(s->lm))
            return -1;
        int rc = lm_conn_wait_readable(c, 50);
        if (rc != 0)
            break;
        if (timeout_ms >= 0 && lm_now_ms() >= deadline)
            return 0;
    }
    uint8_t type;
    if (lm_conn_read_full(c, &type, 1) != 0) {
        if (lm_conn_tls_error(c)[0])
            livemig_error_set(&s->err, "the destination ended the "
                              "connection: %s", lm_conn_tls_error(c));
        else
            livemig_error_set(&s->err, "the destination closed the "
                              "connection before confirming it runs the "
                              "guest; check the destination's "
                              "query-migrate for its error");
        return -1;
    }
    if (type == LM_RP_RESUMED || type == LM_RP_ACK) {
        uint8_t b[8];
        if (lm_conn_read_full(c, b, 8) != 0) {
            livemig_error_set(&s->err, "truncated reply from the "
                              "destination");
            return -1;
        }
        *type_out = type;
        *value = lm_get_be64(b);
        return 1;
    }
    if (type == LM_RP_ERROR) {
        uint8_t b[2];
        char msg[400] = "";
        *type_out = type;
        if (lm_conn_read_full(c, b, 2) == 0) {
            size_t n = lm_get_be16(b);
            if (n >= sizeof(msg))
                n = sizeof(msg) - 1;
            if (lm_conn_read_full(c, msg, n) == 0)
                msg[n] = '\0';
        }
        lm_utf8_scrub(msg);   /* the peer's bytes go into error-desc */
        livemig_error_set(&s->err, "the destination refused the migration: "
                          "%s", msg[0] ? msg : "(no reason given)");
        s->dest_refused = true;
        return -1;
    }
    livemig_error_set(&s->err, "unexpected reply 0x%02x from the "
                      "destination; is it a livemig engine of the same "
                      "version?", type);
    return -1;
}

/* exec: wait up to @timeout_ms (< 0: until the engine is shut down) for
 * the command to exit; true with how it ended in @how. */
static bool command_exit(out_state *s, int timeout_ms, char *how, size_t len)
{
    livemig *lm = s->lm;
    pthread_mutex_lock(&lm->lock);
    lm_conn c = lm->conn;
    pthread_mutex_unlock(&lm->lock);
    if (!lm_conn_wait_exit(&c, timeout_ms, &lm->cancel))
        return false;
    pthread_mutex_lock(&lm->lock);
    lm->conn.exited = true;
    lm->conn.exit_code = c.exit_code;
    lm->conn.exit_signal = c.exit_signal;
    pthread_mutex_unlock(&lm->lock);
    lm_conn_describe_exit(&c, how, len);
    return true;
}

/* exec: the stream is delivered once the command read all of it (EOF
 * now) and exited with status 0. */
static bool finish_command(out_state *s)
{
    livemig *lm = s->lm;
    pthread_mutex_lock(&lm->lock);
    int fd = lm->conn.wfd;
    lm->conn.wfd = -1;
    pthread_mutex_unlock(&lm->lock);
    close(fd);
    s->w->fd = -1;
    char how[128];
    if (!command_exit(s, -1, how, sizeof(how))) {
        livemig_error_set(&s->err, "the command '%s' still ran when the "
                          "engine was shut down", lm->uri);
        return false;
    }
    if (lm->conn.exit_code == 0 && !lm->conn.exit_signal)
        return true;
    livemig_error_set(&s->err, "the command '%s' %s after it was given the "
                      "whole stream", lm->uri, how);
    return false;
}

/* A write failed: the destination may have said why before closing. */
void lm_out_explain_write_error(out_state *s)
{
    int e = s->w->error;
    char how[128];
    if (s->lm->conn.child > 0 && !lm_cancelled(s->lm) &&
        command_exit(s, 1000, how, sizeof(how))) {
        livemig_error_set(&s->err, "the command '%s' %s before it took the "
                          "whole migration stream; check that it reads "
                          "all of its input", s->lm->uri, how);
        return;
    }
    if (s->lm->conn.return_path && !lm_cancelled(s->lm)) {
        uint64_t dummy;
        int t;
        if (lm_out_read_reply(s, 200, &t, &dummy) < 0 &&
            livemig_error_is_set(&s->err))
            return;
    }
    if (e == EAGAIN || e == EWOULDBLOCK)
        livemig_error_set(&s->err, "the destination stopped reading the "
                          "migration stream for longer than the send "
                          "timeout; it is hung or overloaded");
    else
        livemig_error_set(&s->err, "sending the migration stream failed: "
                          "%s; the destination stopped or the connection "
                          "broke", strerror(e ? e : EIO));
}

/* The migration failed: when the destination refused it on the main
 * connection (its error, or a TLS alert, on the return path), that is
 * the reason to report, not what a multifd channel saw of it. */
static void prefer_destination_reason(out_state *s)
{
    if (!s->lm->conn.return_path || lm_cancelled(s->lm) ||
        strncmp(s->err.desc, "the destination", 15) == 0)
        return;
    livemig_error own = s->err;
    livemig_error_clear(&s->err);
    uint64_t v;
    int t;
    if (lm_out_read_reply(s, 200, &t, &v) < 0 &&
        (strncmp(s->err.desc, "the destination refused", 23) == 0 ||
         strncmp(s->err.desc, "the destination ended", 21) == 0))
        return;
    s->err = own;
}

/* ---- passes ------------------------------------------------------------ */

/* A link is measured over at least this much sending: a small pass fits
 * in the socket buffers (4 MiB) or the token bucket's burst and would
 * read as a far faster link (a held migration sends small passes). */
#define MEASURE_BYTES (16u << 20)
#define MEASURE_US 200000u

static void publish(out_state *s, uint64_t pass_bytes, uint64_t pass_pages,
                    uint64_t pass_us, uint64_t dirtied, uint64_t since_sync_us)
{
    livemig *lm = s->lm;
    pthread_mutex_lock(&lm->lock);
    lm_stats *st = &lm->stats;
    uint64_t wire = wire_bytes(s);
    st->transferred = wire;
    st->precopy_bytes = wire;
    st->normal = s->normal;
    st->duplicate = s->duplicate;
    st->sent_pages = s->pages_done;
    st->remaining = s->dirty_pages * LM_PAGE_SIZE;
    st->pages_per_second = s->pages_done * 1000000u /
                           (lm_now_us() - st->start_ms * 1000u + 1);
    s->win_bytes += pass_bytes;
    s->win_pages += pass_pages;
    s->win_us += pass_us;
    if (s->win_us > 0 && (s->win_bytes >= MEASURE_BYTES ||
                          s->win_us >= MEASURE_US || !st->page_rate)) {
        /* The estimate counts pages, not bytes: zero pages, xbzrle deltas
         * and compression make a page cost less than its size, and the
         * rate at which pages went out already shows it. */
        uint64_t bw = s->win_bytes * 1000000u / s->win_us;
        uint64_t pr = s->win_pages * 1000000u / s->win_us;
        if (s->p.max_bandwidth && bw > s->p.max_bandwidth) {
            /* a burst inside the token bucket is not the sustained rate */
            pr = (uint64_t)((double)pr * (double)s->p.max_bandwidth /
                            (double)bw);
            bw = s->p.max_bandwidth;
        }
        if (s->win_bytes)
            st->bandwidth = bw;
        if (s->win_pages)
            st->page_rate = pr;
        s->win_bytes = s->win_pages = s->win_us = 0;
    }
    /* Dirtied over the wall time between two syncs, waits included. */
    if (since_sync_us > 0)
        st->dirty_pages_rate = dirtied * 1000000u / since_sync_us;
    st->bandwidth_source = 0;
    if (s->p.avail_switchover_bandwidth) {
        st->bandwidth_source = 1;
        st->expected_downtime_ms = st->remaining * 1000u /
                                   s->p.avail_switchover_bandwidth;
    } else {
        st->expected_downtime_ms =
            st->page_rate ? s->dirty_pages * 1000u / st->page_rate
                          : (s->dirty_pages ? UINT64_MAX / 2 : 0);
    }
    st->converged = st->expected_downtime_ms <= s->p.downtime_limit;
    bool changed = false;
    json_object *ev = NULL;
    if (pass_us > 0) {
        lm_verdict_input in = {
            .pass = st->dirty_sync_count, .remaining = st->remaining,
            .expected_ms = st->expected_downtime_ms,
            .pass_ms = pass_us / 1000,
            .limit_ms = s->p.downtime_limit,
            .dirty_rate = st->dirty_pages_rate * LM_PAGE_SIZE,
            .bandwidth = st->bandwidth, .throttle = s->throttle,
            .auto_converge = s->p.cap_auto_converge };
        changed = lm_verdict_update(&st->verdict, &in);
    }
    if (changed && s->p.cap_events)
        ev = lm_verdict_event(st);
    pthread_mutex_unlock(&lm->lock);
    if (ev)
        lm_emit(lm, "MIGRATION_CONVERGENCE", ev);
}

static void set_throttle(out_state *s, unsigned pct)
{
    if (pct == s->throttle)
        return;
    s->throttle = pct;
    if (s->lm->gops.throttle)
        s->lm->gops.throttle(s->lm->gopaque, pct);
    pthread_mutex_lock(&s->lm->lock);
    s->lm->stats.cpu_throttle = pct;
    pthread_mutex_unlock(&s->lm->lock);
}

/* auto-converge, with QEMU's meaning: when a pass dirtied more than
 * throttle-trigger-threshold % of what it sent, twice in a row, throttle
 * the guest (cpu-throttle-initial first, then cpu-throttle-increment more
 * each time, or with tailslow only what the measured ratio asks for),
 * never above max-cpu-throttle. */
static void auto_converge(out_state *s, uint64_t sent, uint64_t dirtied)
{
    const struct lm_params *p = &s->p;
    if (!p->cap_auto_converge || !sent)
        return;
    uint64_t threshold = sent * p->throttle_trigger_threshold / 100;
    if (dirtied <= threshold) {
        s->dirty_high = 0;
        return;
    }
    if (++s->dirty_high < 2)
        return;
    s->dirty_high = 0;
    unsigned pct;
    if (!s->throttle) {
        pct = (unsigned)p->cpu_throttle_initial;
    } else {
        unsigned inc = (unsigned)p->cpu_throttle_increment;
        if (p->cpu_throttle_tailslow) {
            /* Guest speed that would bring the dirty rate to threshold. */
            double now = 100.0 - s->throttle;
            double ideal = now * (double)threshold / (double)dirtied;
            unsigned need = (unsigned)(now - ideal + 0.5);
            if (need < inc)
                inc = need ? need : 1;
        }
        pct = s->throttle + inc;
    }
    if (pct > p->max_cpu_throttle)
        pct = (unsigned)p->max_cpu_throttle;
    set_throttle(s, pct);
}

static void xbzrle_publish(out_state *s)
{
    lm_xbzrle_cache_stats st;
    lm_xbzrle_cache_get_stats(s->xc, &st);
    pthread_mutex_lock(&s->lm->lock);
    s->lm->stats.xbzrle_on = true;
    s->lm->stats.xbzrle = st;
    pthread_mutex_unlock(&s->lm->lock);
}

static bool do_pass(out_state *s, uint64_t pass)
{
    livemig *lm = s->lm;
    lm_tunables_snapshot(lm->tun, &s->p);
    lm_writer_set_rate(s->w, s->p.max_bandwidth);
    if (s->xc) {
        /* A safe point: resizing drops the cache, and the pages it held
         * are simply sent raw next time. */
        livemig_error e = { 0 };
        /* The size was checked when it was set; should the memory be gone
         * since, the old cache goes on (query-migrate shows its size):
         * a tunable never fails the migration. */
        (void)lm_xbzrle_cache_resize(s->xc, s->p.xbzrle_cache_size, &e);
        s->xbzrle_on = pass > 1;
    }
    if (s->mf)
        lm_mf_send_set_rate(s->mf, s->p.max_bandwidth);
    uint64_t t0 = lm_now_us(), b0 = wire_bytes(s), p0 = s->pages_done;
    if (!s->last_sync_us)
        s->last_sync_us = t0;   /* tracking started just before pass 1 */
    s->pass_p0 = p0;
    s->pass_no = pass;
    s->pass_t0_us = t0;
    s->pass_b0 = b0;
    pthread_mutex_lock(&lm->lock);
    lm->stats.dirty_sync_count = pass;   /* the pass being sent, as QEMU */
    pthread_mutex_unlock(&lm->lock);
    /* As QEMU: MIGRATION_PASS when a pass begins.  A held, ready
     * migration keeps the destination in sync with a pass every few
     * ms: one event a second is enough to watch it. */
    if (s->p.cap_events &&
        (!s->ready_said || t0 - s->last_pass_event_us >= 1000000)) {
        s->last_pass_event_us = t0;
        json_object *d = json_object_new_object();
        json_object_object_add(d, "pass", json_object_new_uint64(pass));
        lm_emit(lm, "MIGRATION_PASS", d);
    }
    s->pass_pages = 0;
    for (size_t i = 0; i < lm->nram; i++)
        for (size_t w = 0; w < lm->ram[i]->bitmap_words; w++)
            s->pass_pages += (uint64_t)__builtin_popcountll(lm->ram[i]->dirty[w]);
    s->in_pass = true;
    if (!send_dirty(s)) {
        s->in_pass = false;
        if (s->w->error)
            lm_out_explain_write_error(s);
        return false;
    }
    s->in_pass = false;
    if (!end_pass(s, pass))
        return false;
    if (!lm_out_sync_dirty(s))
        return false;
    uint64_t now = lm_now_us(), dt = now - t0;
    uint64_t since_sync = now - s->last_sync_us;
    s->last_sync_us = now;
    publish(s, wire_bytes(s) - b0, s->pages_done - p0, dt, s->dirty_pages,
            since_sync);
    if (s->xc)
        xbzrle_publish(s);
    if (pass > 1)
        auto_converge(s, wire_bytes(s) - b0, s->dirty_pages * LM_PAGE_SIZE);
    return true;
}

bool lm_out_save_section(out_state *s, lm_section *sec, livemig_buf *b)
{
    lm_buf_reset(b);
    if (!sec->ops.save(sec->opaque, b, &s->err)) {
        livemig_error_set(&s->err, "saving state section '%s' failed",
                          sec->name);
        return false;
    }
    if (b->len > LM_STREAM_MAX_SECTION) {
        livemig_error_set(&s->err, "state section '%s' is %zu bytes, more "
                          "than %u", sec->name, b->len, LM_STREAM_MAX_SECTION);
        return false;
    }
    return true;
}

static bool send_sections(out_state *s)
{
    livemig_buf b = LM_BUF_INIT;
    bool ok = true;
    for (size_t i = 0; ok && i < s->lm->nsections; i++) {
        lm_section *sec = &s->lm->sections[i];
        if (!lm_out_save_section(s, sec, &b)) {
            ok = false;
        } else if (!lm_wr_section(s->w, sec->name, sec->version, b.p,
                                  (uint32_t)b.len)) {
            lm_out_explain_write_error(s);
            ok = false;
        }
    }
    lm_buf_release(&b);
    return ok;
}

/* Wait while switchover-hold is set (or pause-before-switchover asks).
 * Returns false on cancel.  A kick (the hold cleared) wakes it at once;
 * otherwise it wakes every 10 ms to keep the destination in sync. */
void lm_out_wait_kick(livemig *lm, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lm->lock);
    while (!lm->kicked && !lm_cancelled(lm))
        if (pthread_cond_timedwait(&lm->cond, &lm->lock, &ts) != 0)
            break;
    lm->kicked = false;
    pthread_mutex_unlock(&lm->lock);
}

/* switchover-hold: publish that the migration is held, and say when it
 * becomes ready to switch over and when it stops being ready
 * (MIGRATION_READY, with the events capability). */
static void watch_hold(out_state *s, bool converged)
{
    livemig *lm = s->lm;
    bool held = s->p.switchover_hold;
    pthread_mutex_lock(&lm->lock);
    lm->stats.held = held;
    uint64_t expected = lm->stats.expected_downtime_ms;
    pthread_mutex_unlock(&lm->lock);
    if (!held) {
        s->ready_said = false;   /* released: the switchover follows */
        return;
    }
    if (converged == s->ready_said)
        return;
    s->ready_said = converged;
    if (s->p.cap_events) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "ready", json_object_new_boolean(converged));
        json_object_object_add(d, "pass", json_object_new_uint64(s->pass_no));
        json_object_object_add(d, "expected-downtime",
                               json_object_new_uint64(expected));
        lm_emit(lm, "MIGRATION_READY", d);
    }
}

/* Held and ready: sync again before the dirty set could fill half of
 * downtime-limit at the measured rates, but no more often than every
 * 10 ms and at least every 100 ms. */
static unsigned hold_wait_ms(out_state *s)
{
    pthread_mutex_lock(&s->lm->lock);
    double pr = (double)s->lm->stats.page_rate;
    double dr = (double)s->lm->stats.dirty_pages_rate;
    pthread_mutex_unlock(&s->lm->lock);
    if (dr <= 0)
        return 100;
    double ms = 0.5 * (double)s->p.downtime_limit * pr / dr;
    return ms < 10 ? 10 : ms > 100 ? 100 : (unsigned)ms;
}

static bool switchover(out_state *s)
{
    livemig *lm = s->lm;
    lm_downtime dt = { 0 };
    uint64_t t0 = lm_now_us();
    pthread_mutex_lock(&lm->lock);
    s->prev_runstate = lm->runstate;
    pthread_mutex_unlock(&lm->lock);
    lm_guest_stop(lm, LIVEMIG_RUN_FINISH_MIGRATE);
    s->stopped_guest = true;
    /* The guest is down: max-bandwidth no longer throttles (the estimate
     * that allowed the switchover assumed the measured rate). */
    s->unthrottled = true;
    lm_writer_set_rate(s->w, 0);
    if (s->mf)
        lm_mf_send_set_rate(s->mf, 0);
    uint64_t t1 = lm_now_us();
    pthread_mutex_lock(&lm->lock);
    livemig_status from = LIVEMIG_STATUS_ACTIVE;
    bool ok = true;
    if (s->p.cap_pause_before_switchover) {
        /* Guest stopped, nothing of the final state sent yet: wait for
         * migrate-continue (or a cancel, which resumes the guest). */
        ok = lm_set_status_locked(lm, from, LIVEMIG_STATUS_PRE_SWITCHOVER);
        from = LIVEMIG_STATUS_PRE_SWITCHOVER;
        while (ok && !lm->continue_requested && !lm_cancelled(lm))
            pthread_cond_wait(&lm->cond, &lm->lock);
        /* As in QEMU, the guest is down during the pause: it counts as
         * downtime (in the "stop" part of the breakdown). */
        t1 = lm_now_us();
    }
    ok = ok && lm_set_status_locked(lm, from, LIVEMIG_STATUS_DEVICE);
    pthread_mutex_unlock(&lm->lock);
    if (!ok)
        return false;   /* cancelled meanwhile */
    if (!lm_out_sync_dirty(s))
        return false;
    /* The stop-and-copy is the last pass (QEMU counts its sync too). */
    pthread_mutex_lock(&lm->lock);
    uint64_t final_pass = ++lm->stats.dirty_sync_count;
    lm->stats.remaining = s->dirty_pages * LM_PAGE_SIZE;
    pthread_mutex_unlock(&lm->lock);
    if (s->p.cap_events) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "pass", json_object_new_uint64(final_pass));
        lm_emit(lm, "MIGRATION_PASS", d);
    }
    uint64_t t2 = lm_now_us();
    uint64_t b0 = wire_bytes(s);
    if (!send_dirty(s) || !lm_wr_flush(s->w)) {
        if (s->w->error)
            lm_out_explain_write_error(s);
        return false;
    }
    if (s->mf && !end_pass(s, final_pass))
        return false;
    if (!send_sections(s))
        return false;
    /* A guest the user had stopped arrives stopped (as in QEMU). */
    if (s->prev_runstate != LIVEMIG_RUN_RUNNING &&
        !lm_wr_runstate(s->w, LM_RUN_PAUSED)) {
        lm_out_explain_write_error(s);
        return false;
    }
    /* The point of no return: from here a cancel is refused.  A cancel
     * that came first wins, and the destination never sees the end. */
    if (!lm_commit(lm))
        return false;
    if (!lm_wr_end_stream(s->w)) {
        /* END_STREAM is the last byte: a failed write never sent it, so
         * the destination cannot have started. */
        lm_out_explain_write_error(s);
        return false;
    }
    s->past_return = true;
    /* The guest's state is handed over: this copy is stale from here on
     * unless the destination refuses it. */
    pthread_mutex_lock(&lm->lock);
    lm->runstate = LIVEMIG_RUN_POSTMIGRATE;
    pthread_mutex_unlock(&lm->lock);
    if (lm->conn.child > 0 && !finish_command(s))
        return false;
    uint64_t t3 = lm_now_us(), load_us = 0;
    if (lm->conn.return_path) {
        int type;
        if (lm_out_read_reply(s, -1, &type, &load_us) != 1)
            return false;
        if (type != LM_RP_RESUMED) {
            livemig_error_set(&s->err, "the destination acknowledged a "
                              "checkpoint instead of confirming the "
                              "switchover; is it a livemig engine of the "
                              "same version?");
            return false;
        }
    }
    uint64_t t4 = lm_now_us();
    dt.stop_us = t1 - t0;
    dt.sync_us = t2 - t1;
    dt.send_us = t3 - t2;
    dt.load_us = load_us;
    dt.confirm_us = t4 - t3 > load_us ? t4 - t3 - load_us : 0;
    s->dirty_pages = 0;
    publish(s, 0, 0, 0, 0, 0);
    pthread_mutex_lock(&lm->lock);
    lm->stats.dt = dt;
    lm->stats.downtime_ms = (t4 - t0 + 500) / 1000;
    lm->stats.downtime_bytes = wire_bytes(s) - b0;
    lm->stats.transferred = wire_bytes(s);
    lm->stats.precopy_bytes = b0;
    pthread_mutex_unlock(&lm->lock);
    return true;
}

static bool setup(out_state *s)
{
    livemig *lm = s->lm;
    lm_stream_header *h = calloc(1, sizeof(*h));
    if (!h) {
        livemig_error_set(&s->err, "out of memory");
        return false;
    }
    h->version = LM_STREAM_VERSION;
    h->page_size = LM_PAGE_SIZE;
    h->role = LM_ROLE_MAIN;
    if (getrandom(h->uuid, sizeof(h->uuid), 0) != sizeof(h->uuid))
        memset(h->uuid, 0, sizeof(h->uuid));
    pthread_mutex_lock(&lm->lock);
    memcpy(lm->mig_uuid, h->uuid, sizeof(h->uuid));
    pthread_mutex_unlock(&lm->lock);
    h->nblocks = (uint32_t)lm->nram;
    for (size_t i = 0; i < lm->nram; i++) {
        snprintf(h->blocks[i].name, sizeof(h->blocks[i].name), "%s",
                 lm->ram[i]->name);
        h->blocks[i].size = lm->ram[i]->size;
    }
    h->pc_preempt = s->p.cap_postcopy_ram && s->p.cap_postcopy_preempt;
    if (s->p.cap_multifd) {
        h->index = (uint8_t)s->p.multifd_channels;
        h->compression = (uint8_t)s->p.multifd_compression;
    }
    bool ok = lm_wr_header(s->w, h) && lm_wr_flush(s->w);
    if (!ok) {
        free(h);
        lm_out_explain_write_error(s);
        return false;
    }
    if (s->p.cap_multifd) {
        s->mf = lm_mf_send_start(lm, lm->uri, h, &s->p, &s->err);
        if (s->mf)
            lm_mf_send_set_idle(s->mf, tick_idle, s);
        pthread_mutex_lock(&lm->lock);
        lm->mf_send = s->mf;
        bool cancelled = lm_cancelled(lm);
        pthread_mutex_unlock(&lm->lock);
        if (s->mf && cancelled)
            lm_mf_send_shutdown(s->mf);
    }
    free(h);
    if (s->p.cap_multifd && !s->mf)
        return false;
    if (s->p.cap_xbzrle &&
        !(s->xc = lm_xbzrle_cache_new(s->p.xbzrle_cache_size, LM_PAGE_SIZE,
                                      &s->err)))
        return false;
    /* Track first, then mark everything: a write during pass 1 is sent
     * in pass 1 or reported for pass 2, never lost. */
    for (size_t i = 0; i < lm->nram; i++) {
        livemig_ram *r = lm->ram[i];
        if (!lm_tracker_start(r->tracker, &s->err))
            return false;
        memset(r->dirty, 0xff, r->bitmap_words * sizeof(uint64_t));
        if (r->pages % 64)
            r->dirty[r->bitmap_words - 1] = (1ull << (r->pages % 64)) - 1;
    }
    pthread_mutex_lock(&lm->lock);
    lm->stats.setup_ms = lm_now_ms() - lm->stats.start_ms;
    ok = lm_set_status_locked(lm, LIVEMIG_STATUS_SETUP, LIVEMIG_STATUS_ACTIVE);
    pthread_mutex_unlock(&lm->lock);
    return ok;
}

/* Checkpoints need no convergence (a guest that dirties faster than the
 * link only makes them large), but the first one should be no larger
 * than those after it: it is sent while the next epoch runs, and a big
 * one stretches that epoch, whose checkpoint is then bigger too.  A pass
 * no longer than mc-delay left only what the guest dirtied in that time,
 * about one epoch's worth.  A guest faster than the link never gets
 * there: precopy stops once a pass no longer shrinks the dirty set. */
#define MC_PRECOPY_MAX_PASSES 10
static bool mc_ready(out_state *s, uint64_t pass, uint64_t pass_us,
                     uint64_t prev_dirty)
{
    if (s->dirty_pages < 256 || pass_us <= s->p.mc_delay * 1000u)
        return true;
    s->mc_outran = pass > 1 && s->dirty_pages * 10 >= prev_dirty * 9;
    return s->mc_outran || pass >= MC_PRECOPY_MAX_PASSES;
}

static bool migrate(out_state *s)
{
    livemig *lm = s->lm;
    if (!setup(s) || !lm_pc_advise(s))
        return false;
    uint64_t prev_dirty = 0;
    for (uint64_t pass = 1; !lm_cancelled(lm); pass++) {
        if (!do_pass(s, pass))
            return false;
        if (lm_pc_wanted(s))
            return lm_pc_source(s);
        /* Decide with the tunables as they are now: a limit or the hold
         * may have changed while the pass ran. */
        lm_tunables_snapshot(lm->tun, &s->p);
        pthread_mutex_lock(&lm->lock);
        bool converged = lm->stats.expected_downtime_ms <= s->p.downtime_limit;
        lm->stats.converged = converged;
        pthread_mutex_unlock(&lm->lock);
        if (s->p.cap_micro_checkpointing) {
            if (mc_ready(s, pass, lm_now_us() - s->pass_t0_us, prev_dirty)) {
                s->xbzrle_on = false;   /* checkpoints send from the pool */
                return lm_mc_primary(s);
            }
            prev_dirty = s->dirty_pages;
            continue;
        }
        watch_hold(s, converged);
        if (converged && !s->p.switchover_hold)
            return switchover(s);
        if (converged || s->dirty_pages == 0)   /* held: keep in sync */
            lm_out_wait_kick(lm, converged ? hold_wait_ms(s) : 10);
    }
    return false;
}

/* Open the connection here, not on the monitor's thread (see
 * livemig_migrate); cancel can cut it as soon as it is published. */
static bool connect_out(out_state *s)
{
    livemig *lm = s->lm;
    lm_conn c;
    if (!lm_transport_connect_until(lm->uri, &lm->cancel, &c, &s->err))
        return false;
    pthread_mutex_lock(&lm->lock);
    lm->conn = c;
    bool cancelled = lm_cancelled(lm);
    pthread_mutex_unlock(&lm->lock);
    /* The handshake runs on lm->conn, where a cancel's shutdown finds
     * its sockets. */
    if (cancelled || !lm_secure_client(lm, &lm->conn, &s->err))
        return false;
    lm_writer_init_conn(s->w, &lm->conn, &lm->cancel);
    return true;
}

void *lm_outgoing_thread(void *arg)
{
    livemig *lm = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    out_state *s = calloc(1, sizeof(*s));
    lm_writer *w = malloc(sizeof(*w));
    bool ok = false;
    if (s && w) {
        s->lm = lm;
        s->w = w;
        lm_writer_init(w, -1, &lm->cancel);
        lm_tunables_snapshot(lm->tun, &s->p);
        ok = connect_out(s) && migrate(s);
        if (!ok && !lm_cancelled(lm))
            prefer_destination_reason(s);
    }
    for (size_t i = 0; i < lm->nram; i++)
        lm_tracker_stop(lm->ram[i]->tracker);
    if (s)
        set_throttle(s, 0);   /* lifted however the migration ends */
    if (s && s->mf) {
        pthread_mutex_lock(&lm->lock);
        lm->mf_send = NULL;
        pthread_mutex_unlock(&lm->lock);
        if (!ok)
            lm_mf_send_shutdown(s->mf);
        lm_mf_send_stop(s->mf);
    }

    /* Closed outside the lock: ending an exec: command may take a
     * moment, and the monitor keeps answering meanwhile. */
    pthread_mutex_lock(&lm->lock);
    lm_conn conn = lm->conn;
    lm->conn = (lm_conn)LM_CONN_INIT;
    pthread_mutex_unlock(&lm->lock);
    lm_conn_close(&conn);

    if (ok) {
        pthread_mutex_lock(&lm->lock);
        lm->runstate = LIVEMIG_RUN_POSTMIGRATE;
        lm_set_status_locked(lm, LIVEMIG_STATUS__MAX,
                             LIVEMIG_STATUS_COMPLETED);
        pthread_mutex_unlock(&lm->lock);
    } else if (s && s->past_return && !s->dest_refused) {
        /* The destination got the whole stream and may run the guest; we
         * cannot know, so this copy must not run on its own. */
        char msg[sizeof(lm->error_desc)];
        snprintf(msg, sizeof(msg), "the whole migration stream was sent "
                 "but no confirmation came (%.160s): the outcome is "
                 "unknown, so the guest stays stopped here; check the "
                 "destination's query-status, and only if its guest does "
                 "not run, 'cont' resumes it here",
                 livemig_error_is_set(&s->err) ? s->err.desc
                                               : "migration abandoned");
        lm_set_error(lm, msg);
        pthread_mutex_lock(&lm->lock);
        lm->runstate = LIVEMIG_RUN_POSTMIGRATE;
        lm_set_status_locked(lm, LIVEMIG_STATUS__MAX, LIVEMIG_STATUS_FAILED);
        pthread_mutex_unlock(&lm->lock);
    } else {
        if (s && s->stopped_guest) {
            /* Back to how it was: a guest the user had paused stays so. */
            if (s->prev_runstate == LIVEMIG_RUN_RUNNING) {
                lm_guest_cont(lm);
            } else {
                pthread_mutex_lock(&lm->lock);
                lm->runstate = s->prev_runstate;
                pthread_mutex_unlock(&lm->lock);
            }
        }
        bool cancelled = lm_cancelled(lm);
        if (!cancelled)
            lm_set_error(lm, s && livemig_error_is_set(&s->err)
                                 ? s->err.desc
                                 : "migration failed (out of memory)");
        pthread_mutex_lock(&lm->lock);
        lm_set_status_locked(lm, LIVEMIG_STATUS__MAX,
                             cancelled ? LIVEMIG_STATUS_CANCELLED
                                       : LIVEMIG_STATUS_FAILED);
        pthread_mutex_unlock(&lm->lock);
    }
    if (s && s->xc) {
        xbzrle_publish(s);
        lm_xbzrle_cache_free(s->xc);
    }
    if (w)
        lm_writer_destroy(w);
    free(w);
    free(s);
    return NULL;
}
