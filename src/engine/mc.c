/*
 * mc.c - micro-checkpointing, primary side.
 *
 * Once precopy has brought the backup close (mc_ready in outgoing.c),
 * the migration thread checkpoints forever instead of switching over,
 * one epoch at a time:
 *
 *   wait mc-delay (heartbeats meanwhile, a kick re-reads mc-delay)
 *   copy dirty pages into the pool while the guest runs (rounds)
 *   stop the guest; sync; copy the last dirty pages; save the sections;
 *   resume the guest                          <- the pause users feel
 *   send CKPT_BEGIN n, the captured pages, the sections, CKPT_END n
 *   wait for ACK n; release the outputs of epoch n
 *
 * The pool (mc-pool.h) holds a copy of each page captured this epoch, so
 * the pages of a checkpoint are frozen at the pause while the guest runs
 * on: sending never races the guest.  It holds the pages of an epoch,
 * not all of RAM.  Copying while the guest runs is correct because a
 * sync harvests a page's dirty bit before the copy reads the page: a
 * write after the harvest sets the bit again and the page is copied again
 * (into the same slot) in the pause.  It only pays while the guest
 * dirties slower than we copy, hence the bounds on the rounds (above
 * checkpoint()).
 *
 * The link to the backup follows the timing rule of mc-int.h: the
 * primary hears a PONG or an ACK from a live backup at least every
 * heartbeat interval, gives it up after the give-up time of silence, and
 * stops its own guest rather than run on when the backup took over or
 * may have.
 */
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "engine/mc-int.h"
#include "engine/mc-pool.h"
#include "engine/outgoing-int.h"
#include "transport/transport.h"

typedef struct mc_block {
    lm_mc_pool *pool;      /* shared by every block */
    uint64_t *send;        /* pages captured and not yet sent */
    uint32_t *slot;        /* page -> its pool slot this epoch */
} mc_block;

/* Copy the block's dirty pages into the pool and move their bits to the
 * send bitmap.  A page captured again in the same epoch reuses its slot.
 * Returns pages copied, or UINT64_MAX if the pool cannot take them (its
 * cap is every guest page, so only when memory ran out). */
typedef struct mc_link mc_link;
/* While the guest runs, a long capture keeps heartbeats going. */
static bool capture_tick(out_state *s, mc_link *L);

static uint64_t capture(out_state *s, mc_link *L, livemig_ram *r,
                        mc_block *b)
{
    uint64_t n = 0;
    for (size_t wi = 0; wi < r->bitmap_words; wi++) {
        if (L && (wi & 255) == 255 && !capture_tick(s, L))
            return UINT64_MAX - 1;
        uint64_t word = r->dirty[wi];
        if (!word)
            continue;
        r->dirty[wi] = 0;
        b->send[wi] |= word;
        while (word) {
            size_t page = wi * 64 + (size_t)__builtin_ctzll(word);
            word &= word - 1;
            uint32_t sl = b->slot[page];
            if (sl == LM_MC_NO_SLOT) {
                sl = lm_mc_pool_take(b->pool);
                if (sl == LM_MC_NO_SLOT) {
                    /* Give back what this word did not copy: dirty
                     * again, and not to be sent unless an earlier
                     * round gave it a slot. */
                    uint64_t left = word | (1ull << (page & 63));
                    r->dirty[wi] |= left;
                    for (; left; left &= left - 1) {
                        size_t pg = wi * 64 + (size_t)__builtin_ctzll(left);
                        if (b->slot[pg] == LM_MC_NO_SLOT)
                            b->send[wi] &= ~(1ull << (pg & 63));
                    }
                    return UINT64_MAX;
                }
                b->slot[page] = sl;
            }
            memcpy(lm_mc_pool_at(b->pool, sl), r->host + page * LM_PAGE_SIZE,
                   LM_PAGE_SIZE);
            n++;
        }
    }
    return n;
}

/* Send the block's captured pages from the pool, runs of pages that are
 * adjacent both in the guest and in the pool as one record; free their
 * slots. */
static bool send_block(out_state *s, uint32_t bi, mc_block *b)
{
    livemig_ram *ram = s->lm->ram[bi];
    bool detect = s->p.zero_page_detection != 0;
    uint64_t start = 0;
    uint32_t len = 0, first_slot = 0;
    bool zero = false;
    for (size_t wi = 0; wi <= ram->bitmap_words; wi++) {
        uint64_t word = wi < ram->bitmap_words ? b->send[wi] : 0;
        if (wi < ram->bitmap_words)
            b->send[wi] = 0;
        bool last = wi == ram->bitmap_words;
        while (word || (last && len)) {
            uint64_t page = 0;
            uint32_t sl = 0;
            bool z = false;
            if (word) {
                page = wi * 64 + (uint64_t)__builtin_ctzll(word);
                word &= word - 1;
                sl = b->slot[page];
                b->slot[page] = LM_MC_NO_SLOT;
                z = detect && lm_page_is_zero(lm_mc_pool_at(b->pool, sl));
                if (len && page == start + len && z == zero &&
                    (z || sl == first_slot + len) && len < 256) {
                    len++;
                    continue;
                }
            }
            if (len) {
                bool ok = zero ? lm_wr_ram_zero(s->w, bi, start, len)
                               : lm_wr_ram_raw(s->w, bi, start, len,
                                               lm_mc_pool_at(b->pool,
                                                             first_slot));
                if (!ok)
                    return false;
                if (zero)
                    s->duplicate += len;
                else
                    s->normal += len;
                s->pages_done += len;
            }
            if (!word && last) {
                len = 0;
                break;
            }
            start = page;
            first_slot = sl;
            zero = z;
            len = 1;
        }
        if (!last && (wi & 63) == 63 && !lm_out_tick(s))
            return false;
    }
    return true;
}

/* Capture every block; UINT64_MAX: the pool cannot grow, UINT64_MAX - 1:
 * the link ended during a heartbeat. */
static uint64_t capture_all(out_state *s, mc_link *L, mc_block *mb)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->lm->nram; i++) {
        uint64_t c = capture(s, L, s->lm->ram[i], &mb[i]);
        if (c >= UINT64_MAX - 1)
            return c;
        n += c;
    }
    return n;
}

/* What the primary knows of its backup (migration thread only). */
typedef enum mc_end {
    MC_LINK_OK,
    MC_LINK_LOST,        /* the connection broke or closed */
    MC_LINK_HUNG,        /* nothing from the backup for the give-up time */
    MC_LINK_TOOK_OVER,   /* the backup says it runs the guest */
    MC_LINK_STOOD_DOWN,  /* the backup says it will not take over */
} mc_end;

struct mc_link {
    uint64_t hb_ms;          /* mc-heartbeat-timeout of this session */
    uint64_t heard_us;       /* last message read from the backup */
    uint64_t sent_us;        /* end of our last write to it */
    uint64_t acked;          /* last acknowledged epoch */
    uint64_t next_epoch;     /* the checkpoint being sent or next */
    uint64_t suspect_epoch;  /* 0, or: silent long enough for the backup
                                to take over; an ACK >= this clears it */
    uint64_t silent_ms;      /* the longest such silence */
    mc_end end;
    uint64_t peer_epoch;     /* TOOK_OVER / STOOD_DOWN */
    /* Keeping up with the guest (see keep_up()). */
    uint64_t prev_pause_us;  /* when the previous checkpoint's pause began */
    double link_Bps;         /* checkpoint bytes per second, smoothed */
    unsigned slow_n, fast_n; /* epochs in a row over / within mc-delay */
    bool behind;
    bool throttling;         /* mc-throttle set the guest's throttle */
    char why[400];           /* LOST: how */
};

static void link_end(mc_link *L, mc_end end, const char *why)
{
    if (L->end != MC_LINK_OK)
        return;
    L->end = end;
    snprintf(L->why, sizeof(L->why), "%.200s", why);
}

/* Read what the backup sent, waiting up to @timeout_ms for the first
 * message.  False once the link ended (L->end says how). */
static bool rp_read(out_state *s, mc_link *L, int timeout_ms)
{
    const lm_conn *c = &s->lm->conn;
    if (c->rfd < 0) {
        link_end(L, MC_LINK_LOST, "no return path to the backup");
        return false;
    }
    for (;;) {
        /* Through the connection: a TLS session may hold a whole
         * record already decrypted. */
        int rc = lm_conn_wait_readable(c, timeout_ms);
        if (rc == 0)
            return true;
        timeout_ms = 0;
        uint8_t t, b[8];
        if (lm_conn_read_full(c, &t, 1) != 0) {
            link_end(L, MC_LINK_LOST, "its connection closed");
            return false;
        }
        if (t == LM_RP_ERROR) {
            char msg[400] = "";
            if (lm_conn_read_full(c, b, 2) == 0) {
                size_t n = lm_get_be16(b);
                if (n >= sizeof(msg))
                    n = sizeof(msg) - 1;
                if (lm_conn_read_full(c, msg, n) == 0)
                    msg[n] = '\0';
            }
            char why[420];
            snprintf(why, sizeof(why), "it failed: %.300s", msg);
            link_end(L, MC_LINK_LOST, why);
            return false;
        }
        if (t < LM_RP_ACK || t > LM_RP_STOOD_DOWN ||
            lm_conn_read_full(c, b, 8) != 0) {
            link_end(L, MC_LINK_LOST, "it sent a malformed reply");
            return false;
        }
        uint64_t v = lm_get_be64(b);
        L->heard_us = lm_now_us();
        if (t == LM_RP_ACK) {
            if (v > L->acked)
                L->acked = v;
            if (L->suspect_epoch && v >= L->suspect_epoch)
                L->suspect_epoch = 0;
        } else if (t == LM_RP_TOOK_OVER || t == LM_RP_STOOD_DOWN) {
            L->peer_epoch = v;
            link_end(L, t == LM_RP_TOOK_OVER ? MC_LINK_TOOK_OVER
                                             : MC_LINK_STOOD_DOWN, "");
            return false;
        }
    }
}

/* Before every write: a gap since the last one as long as half the
 * backup's heartbeat timeout may have let it take over. */
static void note_gap(mc_link *L)
{
    if (!L->hb_ms || !L->sent_us)
        return;
    uint64_t gap_ms = (lm_now_us() - L->sent_us) / 1000u;
    if (gap_ms >= lm_mc_suspect_ms(L->hb_ms)) {
        if (!L->suspect_epoch)
            L->suspect_epoch = L->next_epoch;
        if (gap_ms > L->silent_ms)
            L->silent_ms = gap_ms;
    }
}

/* A write failed: find out from the return path why, if the backup said. */
static void write_failed(out_state *s, mc_link *L)
{
    int e = s->w->error;
    if (rp_read(s, L, 200)) {
        if (e == EAGAIN || e == EWOULDBLOCK)
            link_end(L, MC_LINK_HUNG, "it stopped reading checkpoints");
        else {
            char why[200];
            snprintf(why, sizeof(why), "sending to it failed: %s",
                     strerror(e ? e : EIO));
            link_end(L, MC_LINK_LOST, why);
        }
    }
}

/* Heard nothing for the give-up time? */
static bool check_hung(mc_link *L)
{
    uint64_t silent = (lm_now_us() - L->heard_us) / 1000u;
    if (silent < lm_mc_giveup_ms(L->hb_ms))
        return true;
    char why[160];
    snprintf(why, sizeof(why), "nothing from it for %llu ms",
             (unsigned long long)silent);
    link_end(L, MC_LINK_HUNG, why);
    return false;
}

static bool heartbeat(out_state *s, mc_link *L)
{
    note_gap(L);
    if (!lm_wr_heartbeat(s->w)) {
        write_failed(s, L);
        return false;
    }
    L->sent_us = lm_now_us();
    return true;
}

/* Keep the link alive while waiting: read replies, send a heartbeat when
 * due, notice a hung backup.  False when the link ended. */
static bool keep_alive(out_state *s, mc_link *L, int wait_ms)
{
    if (!rp_read(s, L, wait_ms) || !check_hung(L))
        return false;
    if ((lm_now_us() - L->sent_us) / 1000u >=
        lm_mc_heartbeat_every_ms(L->hb_ms))
        return heartbeat(s, L);
    return true;
}

static bool capture_tick(out_state *s, mc_link *L)
{
    if ((lm_now_us() - L->sent_us) / 1000u <
        lm_mc_heartbeat_every_ms(L->hb_ms))
        return true;
    return rp_read(s, L, 0) && heartbeat(s, L);
}

static bool stop_requested(livemig *lm)
{
    pthread_mutex_lock(&lm->lock);
    bool stop = lm->mc_failover || lm_cancelled(lm);
    pthread_mutex_unlock(&lm->lock);
    return stop;
}

/* Wait mc-delay from @since_us, keeping the link alive.  A kick (mc-delay
 * changed) re-reads the delay. */
static bool wait_delay(out_state *s, mc_link *L, uint64_t since_us)
{
    livemig *lm = s->lm;
    for (;;) {
        if (stop_requested(lm))
            return false;
        lm_tunables_snapshot(lm->tun, &s->p);
        uint64_t due = since_us + s->p.mc_delay * 1000u, now = lm_now_us();
        if (now >= due)
            return true;
        uint64_t left_ms = (due - now + 999) / 1000;
        lm_out_wait_kick(lm, (unsigned)(left_ms < 20 ? left_ms : 20));
        if (!keep_alive(s, L, 0))
            return false;
    }
}

static bool send_checkpoint(out_state *s, mc_link *L, mc_block *mb,
                            uint64_t epoch, livemig_buf *secs,
                            size_t *sec_len, size_t nsec)
{
    livemig *lm = s->lm;
    note_gap(L);
    if (!lm_wr_ckpt(s->w, LM_REC_CKPT_BEGIN, epoch))
        goto io;
    for (uint32_t i = 0; i < lm->nram; i++)
        if (!send_block(s, i, &mb[i]))
            goto io;
    size_t off = 0;
    for (size_t i = 0; i < nsec; i++) {
        lm_section *sec = &lm->sections[i];
        if (!lm_wr_section(s->w, sec->name, sec->version, secs->p + off,
                           (uint32_t)sec_len[i]))
            goto io;
        off += sec_len[i];
    }
    if (!lm_wr_ckpt(s->w, LM_REC_CKPT_END, epoch) || !lm_wr_flush(s->w))
        goto io;
    L->sent_us = lm_now_us();
    return true;
io:
    if (s->w->error)
        write_failed(s, L);
    return false;
}

static bool wait_ack(out_state *s, mc_link *L, uint64_t epoch)
{
    while (L->acked < epoch) {
        if (lm_cancelled(s->lm))
            return false;
        if (!keep_alive(s, L, 20))
            return false;
    }
    if (L->acked != epoch) {
        char why[160];
        snprintf(why, sizeof(why), "it acknowledged %llu, expected "
                 "checkpoint %llu", (unsigned long long)L->acked,
                 (unsigned long long)epoch);
        link_end(L, MC_LINK_LOST, why);
        return false;
    }
    return true;
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

/*
 * A guest faster than the link.  A checkpoint that takes longer than
 * mc-delay to send and acknowledge makes the next epoch longer, which
 * dirties more, which makes the next checkpoint longer still, up to all of
 * RAM; output commit latency grows with it.  Three such epochs in a row
 * set mc.falling-behind and emit MC_FALLING_BEHIND with the figures.
 *
 * With mc-throttle, the guest's speed is scaled each epoch so that the
 * next checkpoint would take 60 % of mc-delay: the dirty bytes of an
 * epoch scale with the guest's speed and the epoch's length, and the
 * checkpoint's time with its bytes.  The throttle eases by at most a
 * quarter per epoch when there is room, so it does not oscillate.
 */
static void keep_up(out_state *s, mc_link *L, uint64_t epoch,
                    uint64_t pause_us, uint64_t bytes, uint64_t ckpt_us)
{
    livemig *lm = s->lm;
    uint64_t delay_us = s->p.mc_delay * 1000u;
    uint64_t epoch_us = L->prev_pause_us ? pause_us - L->prev_pause_us
                                         : delay_us;
    L->prev_pause_us = pause_us;
    if (ckpt_us) {
        double r = (double)bytes * 1e6 / (double)ckpt_us;
        L->link_Bps = L->link_Bps ? (L->link_Bps + r) / 2 : r;
    }
    if (ckpt_us > delay_us) {
        L->fast_n = 0;
        L->slow_n++;
    } else {
        L->slow_n = 0;
        L->fast_n++;
    }
    bool was = L->behind;
    if (L->slow_n >= 3)
        L->behind = true;
    else if (L->fast_n >= 3)
        L->behind = false;
    uint64_t link_bytes = (uint64_t)(L->link_Bps * (double)delay_us / 1e6);
    pthread_mutex_lock(&lm->lock);
    lm->mc.falling_behind = L->behind;
    lm->mc.epoch_ms = epoch_us / 1000u;
    lm->mc.link_bytes = link_bytes;
    pthread_mutex_unlock(&lm->lock);
    if (L->behind && !was) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "epoch", json_object_new_uint64(epoch));
        json_object_object_add(d, "dirty-bytes", json_object_new_uint64(bytes));
        json_object_object_add(d, "link-bytes",
                               json_object_new_uint64(link_bytes));
        json_object_object_add(d, "epoch-ms",
                               json_object_new_uint64(epoch_us / 1000u));
        json_object_object_add(d, "mc-delay",
                               json_object_new_uint64(s->p.mc_delay));
        lm_emit(lm, "MC_FALLING_BEHIND", d);
    }

    if (!s->p.mc_throttle) {
        if (L->throttling)   /* turned off: lift what we applied */
            set_throttle(s, 0);
        L->throttling = false;
        return;
    }
    L->throttling = true;
    if (!ckpt_us || !epoch_us)
        return;
    /* Guest speed that makes the next checkpoint take 60 % of mc-delay
     * in an epoch of mc-delay. */
    double speed = (100.0 - s->throttle) / 100.0;
    double f = 0.6 * (double)epoch_us / (double)ckpt_us;
    /* Ease off gently; double only from a checkpoint so small that the
     * next one, twice as large, still takes under half of mc-delay. */
    if (f > 1.25)
        f = f >= 2.5 ? 2.0 : 1.25;
    /* A checkpoint of (nearly) all of RAM that did not fit in mc-delay
     * says only that the guest dirtied at least that much: its real speed
     * may be many times what the link carries, and scaling by the ratio
     * would take many long epochs to get there.  Cut harder. */
    uint64_t ram = 0;
    for (size_t i = 0; i < lm->nram; i++)
        ram += lm->ram[i]->size;
    if (bytes >= ram / 10 * 9 && ckpt_us > delay_us && f > 0.25)
        f = 0.25;
    double want = speed * f;
    if (want > 1)
        want = 1;
    /* Rounded down, toward more speed: rounding to nearest kept a 99 %
     * throttle at 99 % for ever (1 % eased by a quarter is 1.25 %). */
    unsigned pct = (unsigned)(100.0 - want * 100.0);
    if (pct > s->p.max_cpu_throttle)
        pct = (unsigned)s->p.max_cpu_throttle;
    set_throttle(s, pct);
}

static void quiesce(livemig *lm, bool on)
{
    for (size_t i = 0; i < lm->nram; i++)
        lm_tracker_set_quiesced(lm->ram[i]->tracker, on);
}

/* Copying while the guest runs: the dirty pages at which the pause takes
 * the rest, and for how long after the first round to go on when a round
 * no longer shrinks the dirty set by a quarter.  A page copied in the
 * pause costs 0.3-2 us (its source and its slot are cold), a round
 * outside it a sync.  A guest that dirties slower than we copy leaves the
 * pause a page or two within a few rounds; one that writes in bursts (a
 * paced guest catching up after a stall writes up to 10 ms of its pages
 * at once) is outlasted by the budget; one that writes as fast as we copy
 * gets the budget and no more.  The trackers that write-protect re-arm
 * every page a sync reports, and the guest's next write to it faults
 * (15-50 us here): for them, few rounds and a larger residue, as before.
 * MC_GROW_ROUNDS: see the end of the loop in checkpoint(). */
#define MC_PAUSE_PAGES 4
#define MC_COPY_US 2000
#define MC_COPY_ROUNDS 32
#define MC_WP_PAUSE_PAGES 32
#define MC_WP_COPY_ROUNDS 4
#define MC_GROW_ROUNDS 4

/* One epoch: capture with the guest paused as briefly as we can. */
static bool checkpoint(out_state *s, mc_link *L, mc_block *mb,
                       uint64_t epoch, livemig_buf *secs, size_t *sec_len)
{
    livemig *lm = s->lm;
    /* Copy while the guest runs: each round copies what the guest
     * dirtied during the one before, so rounds shrink fast while the
     * guest dirties slower than we copy, and the pause is left with a few
     * pages. */
    bool wp = false;
    for (size_t i = 0; i < lm->nram; i++)
        wp |= lm_tracker_kind(lm->ram[i]->tracker) != LIVEMIG_TRACKER_MANUAL;
    uint64_t pause_pages = wp ? MC_WP_PAUSE_PAGES : MC_PAUSE_PAGES;
    int rounds = wp ? MC_WP_COPY_ROUNDS : MC_COPY_ROUNDS;
    uint64_t pages = 0, chase_us = 0, prev = UINT64_MAX;
    size_t grew = 0;   /* pool slots the last round took */
    lm_mc_pool *pool = mb[0].pool;
    for (int round = 0; round < rounds; round++) {
        if (!lm_out_sync_dirty(s))
            return false;
        if (s->dirty_pages <= pause_pages)
            break;
        /* A set that shrinks by a quarter or more is converging (a guest
         * at half our copy speed leaves 0.4-0.6 of it, noisily). */
        bool shrank = s->dirty_pages <= prev / 4 * 3;
        prev = s->dirty_pages;
        size_t used = pool->used, backed = pool->populated;
        uint64_t c = capture_all(s, L, mb);
        if (c == UINT64_MAX - 1)
            return false;
        if (c == UINT64_MAX)
            break;   /* the pause captures the rest */
        pages += c;
        grew = pool->used - used;
        /* Back the pool for the new pages the next round or the pause
         * may capture: growing it in the pause would fault in megabytes
         * with the guest stopped.  About what this round took, while the
         * guest dirties slower than we copy, except after the first
         * round, which took the whole epoch: later ones take only pages
         * not captured yet.  Here, not between the last sync and the
         * stop: on a fresh host it takes milliseconds per megabyte. */
        lm_mc_pool_reserve(pool, pool->used + (round ? grew : 0) + 512);
        /* The guest outruns us: the pause takes what it dirtied during
         * this round.  Ending after a copy, not after a sync: a set just
         * harvested and left to the pause would be copied with the guest
         * stopped, into slots that may still need backing (on a fresh
         * host, 143 ms for 9,706 pages was seen).  A round that had to
         * back pool memory says nothing about the guest's speed (it ran
         * at the speed of the host's page faults): among the first
         * MC_GROW_ROUNDS it does not end the chase (the first epochs grow
         * the pool, and ending them early left 10k pages to the pause),
         * after them it does (32 rounds that each grow the pool stretched
         * epochs until the pool was all of RAM). */
        if (round == 0)
            chase_us = lm_now_us();
        else if (!shrank &&
                 (pool->populated == backed || round >= MC_GROW_ROUNDS) &&
                 lm_now_us() - chase_us >= MC_COPY_US)
            break;
    }

    bool ok = true;
    /* The pause, with a clock read between its parts (query-migrate
     * mc.pause-parts-us, for the last checkpoint). */
    uint64_t tp[6];
    pthread_mutex_lock(&lm->guest_lock);
    pthread_mutex_lock(&lm->lock);
    tp[0] = lm_now_us();
    bool running = lm->runstate == LIVEMIG_RUN_RUNNING;
    if (running && lm->gops.stop)
        lm->gops.stop(lm->gopaque);
    tp[1] = lm_now_us();
    /* Outputs from now on come after this checkpoint's state. */
    lm_output_set_epoch(lm, epoch + 1);
    /* stop() returned: nothing writes guest RAM, and its return ordered
     * the guest's stores before us, so the sync needs no IPIs. */
    quiesce(lm, !running || lm->gops.stop);
    ok = lm_out_harvest_dirty(s);
    quiesce(lm, false);
    tp[2] = lm_now_us();
    uint64_t paused_pages = ok ? capture_all(s, NULL, mb) : 0;
    if (paused_pages == UINT64_MAX) {
        livemig_error_set(&s->err, "out of memory for the checkpoint pool "
                          "(%llu bytes held); free memory on this host or "
                          "turn on mc-throttle so epochs dirty less",
                          (unsigned long long)lm_mc_pool_bytes(mb[0].pool));
        ok = false;
    }
    tp[3] = lm_now_us();
    lm_buf_reset(secs);
    livemig_buf one = LM_BUF_INIT;
    for (size_t i = 0; ok && i < lm->nsections; i++) {
        ok = lm_out_save_section(s, &lm->sections[i], &one) &&
             livemig_buf_put(secs, one.p, one.len);
        sec_len[i] = one.len;
    }
    tp[4] = lm_now_us();
    if (running && lm->gops.cont)
        lm->gops.cont(lm->gopaque);
    tp[5] = lm_now_us();
    for (int i = 0; i < 5; i++)
        lm->mc.pause_parts_us[i] = tp[i + 1] - tp[i];
    pthread_mutex_unlock(&lm->lock);
    pthread_mutex_unlock(&lm->guest_lock);
    uint64_t pause = tp[5] - tp[0];
    lm_buf_release(&one);
    if (!ok)
        return false;

    uint64_t b0 = s->w->total, t1 = lm_now_us();
    uint64_t pause_start = tp[0];
    L->next_epoch = epoch;
    if (!send_checkpoint(s, L, mb, epoch, secs, sec_len, lm->nsections) ||
        !wait_ack(s, L, epoch))
        return false;
    uint64_t ack = lm_now_us() - t1;
    lm_output_release_upto(lm, epoch);
    /* Sent and flushed: the slots are free; shrink to recent needs. */
    lm_mc_pool_epoch_end(mb[0].pool);
    uint64_t shadow = lm_mc_pool_bytes(mb[0].pool);
    for (size_t i = 0; i < lm->nram; i++)
        shadow += lm->ram[i]->bitmap_words * sizeof(uint64_t) +
                  lm->ram[i]->pages * sizeof(uint32_t);

    pthread_mutex_lock(&lm->lock);
    lm_mc_stats *m = &lm->mc;
    m->checkpoints++;
    m->epoch = epoch;
    m->pause_last_us = pause;
    if (pause > m->pause_max_us) {
        /* The worst pause is the one to explain, not the last. */
        m->pause_max_us = pause;
        memcpy(m->pause_max_parts_us, m->pause_parts_us,
               sizeof(m->pause_max_parts_us));
        m->pause_max_pages = paused_pages;
        m->pause_max_epoch = epoch;
    }
    m->pause_total_us += pause;
    m->bytes_last = s->w->total - b0;
    m->bytes_total += m->bytes_last;
    m->ack_last_us = ack;
    m->ack_total_us += ack;
    lm_hist_add(&m->pause_us, pause);
    lm_hist_add(&m->bytes, m->bytes_last);
    lm_hist_add(&m->ack_us, ack);
    m->shadow_bytes = shadow;
    if (shadow > m->shadow_peak_bytes)
        m->shadow_peak_bytes = shadow;
    m->pages_total += pages + paused_pages;
    m->paused_pages_total += paused_pages;
    m->paused_pages_last = paused_pages;
    lm->stats.transferred = s->w->total;
    uint64_t bytes = m->bytes_last;
    pthread_mutex_unlock(&lm->lock);
    lm_tunables_snapshot(lm->tun, &s->p);
    keep_up(s, L, epoch, pause_start, bytes, ack);
    lm_mc_note_checkpoint(lm, "primary", epoch);
    return true;
}

/* Checkpointing ended: say why in MC words, and decide whether this
 * guest runs on (unprotected) or stops because the backup may run it. */
static void primary_end(out_state *s, mc_link *L)
{
    livemig *lm = s->lm;
    pthread_mutex_lock(&lm->lock);
    bool dropped = lm->mc_failover;
    uint64_t epoch = lm->mc.epoch;
    pthread_mutex_unlock(&lm->lock);
    bool cancelled = lm_cancelled(lm) && !dropped;

    if (L->end == MC_LINK_OK && !s->w->error) {
        /* We stop while the backup is fine (cancel, mc-failover here, a
         * local failure): it must not take over, two guests would run. */
        (void)lm_wr_mc_end(s->w);
    }
    bool superseded = L->end == MC_LINK_TOOK_OVER ||
                      ((L->end == MC_LINK_LOST || L->end == MC_LINK_HUNG) &&
                       L->suspect_epoch);
    const char *event = NULL;
    char reason[1400] = "";
    json_object *d = json_object_new_object();
    json_object_object_add(d, "epoch", json_object_new_uint64(epoch));

    if (superseded) {
        /* Outputs held now were never backed: nobody may see them. */
        lm_guest_stop(lm, LIVEMIG_RUN_PAUSED);
        lm_output_discard_all(lm);
        if (L->end == MC_LINK_TOOK_OVER)
            snprintf(reason, sizeof(reason), "the backup took over from "
                     "checkpoint %llu while this primary did not answer; "
                     "the guest is stopped here so that it runs only on "
                     "the backup: quit this daemon, or run cont here only "
                     "if the backup does not run the guest",
                     (unsigned long long)L->peer_epoch);
        else
            snprintf(reason, sizeof(reason), "the backup is %s (%s) and may "
                     "have taken over: this primary was silent for %llu ms, "
                     "half the backup's mc-heartbeat-timeout or more; the "
                     "guest is stopped here so that it never runs twice: "
                     "check the backup's query-status, and run cont here "
                     "only if the backup does not run the guest",
                     L->end == MC_LINK_HUNG ? "hung" : "lost", L->why,
                     (unsigned long long)L->silent_ms);
        event = "MC_STOOD_DOWN";
        json_object_object_add(d, "role", json_object_new_string("primary"));
    } else {
        /* The guest keeps running, unprotected; nothing held can be
         * backed any more, so everything is released. */
        lm_output_release_all(lm);
        if (dropped) {
            snprintf(reason, sizeof(reason), "dropped by mc-failover");
            event = "MC_BACKUP_LOST";
        } else if (cancelled) {
            event = NULL;
        } else if (L->end == MC_LINK_HUNG) {
            snprintf(reason, sizeof(reason), "the backup is hung: %s, "
                     "longer than mc-heartbeat-timeout + 1000 ms; the guest "
                     "runs unprotected: run migrate to a new backup to "
                     "protect it again", L->why);
            event = "MC_BACKUP_HUNG";
            json_object_object_add(d, "silent-ms", json_object_new_uint64(
                (lm_now_us() - L->heard_us) / 1000u));
        } else if (L->end == MC_LINK_STOOD_DOWN) {
            snprintf(reason, sizeof(reason), "the backup stood down at "
                     "checkpoint %llu: it was out of touch with this primary "
                     "too long to take over safely; the guest runs "
                     "unprotected: run migrate to a new backup to protect it "
                     "again", (unsigned long long)L->peer_epoch);
            event = "MC_BACKUP_STOOD_DOWN";
        } else if (L->end == MC_LINK_LOST) {
            snprintf(reason, sizeof(reason), "the backup is lost: %s; the "
                     "guest runs unprotected: run migrate to a new backup "
                     "to protect it again", L->why);
            event = "MC_BACKUP_LOST";
        } else {
            /* A failure here (tracker, section): the backup was told to
             * stand down. */
            snprintf(reason, sizeof(reason), "checkpointing stopped: %s; the "
                     "backup stands down and the guest runs unprotected: "
                     "run migrate to protect it again",
                     livemig_error_is_set(&s->err) ? s->err.desc : "failed");
            event = "MC_BACKUP_LOST";
        }
    }
    if (event) {
        json_object_object_add(d, "reason", json_object_new_string(reason));
        lm_emit(lm, event, d);
    } else {
        json_object_put(d);
    }
    pthread_mutex_lock(&lm->lock);
    lm->mc.active = false;
    pthread_mutex_unlock(&lm->lock);
    if (dropped) {
        /* Dropping the backup on command ends like a cancel. */
        atomic_store(&lm->cancel, true);
        pthread_mutex_lock(&lm->lock);
        lm_set_status_locked(lm, LIVEMIG_STATUS__MAX,
                             LIVEMIG_STATUS_CANCELLING);
        pthread_mutex_unlock(&lm->lock);
    } else if (!cancelled || superseded) {
        livemig_error_clear(&s->err);
        livemig_error_set(&s->err, "%s", reason);
    }
}

bool lm_mc_primary(out_state *s)
{
    livemig *lm = s->lm;
    mc_block *mb = calloc(lm->nram, sizeof(*mb));
    size_t *sec_len = calloc(lm->nsections + 1, sizeof(size_t));
    livemig_buf secs = LM_BUF_INIT;
    lm_mc_pool pool = { 0 };
    size_t guest_pages = 0;
    for (size_t i = 0; i < lm->nram; i++)
        guest_pages += lm->ram[i]->pages;
    bool ok = mb && sec_len && lm_mc_pool_init(&pool, guest_pages, &s->err);
    for (size_t i = 0; ok && i < lm->nram; i++) {
        mb[i].pool = &pool;
        mb[i].send = calloc(lm->ram[i]->bitmap_words, sizeof(uint64_t));
        mb[i].slot = malloc(lm->ram[i]->pages * sizeof(uint32_t));
        ok = mb[i].send && mb[i].slot;
        if (ok)
            memset(mb[i].slot, 0xff, lm->ram[i]->pages * sizeof(uint32_t));
    }
    if (!ok && !livemig_error_is_set(&s->err))
        livemig_error_set(&s->err, "out of memory for the checkpoint pool");

    lm_tunables_snapshot(lm->tun, &s->p);
    mc_link L = { .hb_ms = s->p.mc_heartbeat_timeout };
    /* A stalled backup must not stall the primary: a send that makes no
     * progress for the give-up time fails. */
    uint64_t to = lm_mc_giveup_ms(L.hb_ms);
    struct timeval tv = { (time_t)(to / 1000), (suseconds_t)(to % 1000) * 1000 };
    if (lm->conn.is_socket)
        setsockopt(lm->conn.wfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    pthread_mutex_lock(&lm->lock);
    lm->mc.active = true;
    pthread_mutex_unlock(&lm->lock);
    lm_output_hold(lm, 1);
    if (s->p.mc_throttle && s->mc_outran) {
        /* Precopy showed the guest outruns the link: start slow and let
         * keep_up() ease off, rather than make the first epochs (and the
         * outputs they hold) as long as a whole-RAM checkpoint. */
        set_throttle(s, (unsigned)s->p.max_cpu_throttle);
        L.throttling = true;
    } else if (!s->p.mc_throttle && s->throttle) {
        /* auto-converge throttled precopy; checkpoints need no
         * convergence, and without mc-throttle nothing would lift it. */
        set_throttle(s, 0);
    }
    /* The first epoch captures what the last pass left dirty, the next
     * ones what the guest dirties in an epoch: back the pool for the
     * larger now, before the backup starts timing our silence.  On a
     * fresh host that takes 6 us a page here (0.2 once backed), and copy
     * rounds that must back their slots let the guest outrun them.  Not
     * more: backing twice this made the first epoch, which runs while
     * we back the pool, large enough to snowball (seen: a 1 s pause and
     * a pool of all of RAM at 10k pages per epoch). */
    if (ok) {
        pthread_mutex_lock(&lm->lock);
        uint64_t rate = lm->stats.dirty_pages_rate;
        pthread_mutex_unlock(&lm->lock);
        uint64_t want = rate * s->p.mc_delay / 1000u;
        if (want < s->dirty_pages)
            want = s->dirty_pages;
        lm_mc_pool_reserve(&pool, want + want / 4);
    }
    L.heard_us = lm_now_us();
    if (ok && (!lm_wr_mc_start(s->w, (uint32_t)s->p.mc_heartbeat_timeout) ||
               !lm_wr_flush(s->w))) {
        write_failed(s, &L);
        ok = false;
    }
    L.sent_us = lm_now_us();
    uint64_t since = lm_now_us();
    for (uint64_t epoch = 1; ok; epoch++) {
        L.next_epoch = epoch;
        if (epoch > 1 && !wait_delay(s, &L, since))
            break;
        since = lm_now_us();
        ok = checkpoint(s, &L, mb, epoch, &secs, sec_len);
    }
    primary_end(s, &L);
    for (size_t i = 0; mb && i < lm->nram; i++) {
        free(mb[i].send);
        free(mb[i].slot);
    }
    lm_mc_pool_destroy(&pool);
    free(mb);
    free(sec_len);
    lm_buf_release(&secs);
    return false;
}
