/*
 * mc.c - micro-checkpointing, primary side.
 *
 * Once precopy has brought the backup close (converged), the migration
 * thread checkpoints forever instead of switching over, one epoch at a
 * time:
 *
 *   wait mc-delay (heartbeats meanwhile, a kick re-reads mc-delay)
 *   copy dirty pages into the shadow while the guest runs (up to 2 rounds)
 *   stop the guest; sync; copy the last dirty pages; save the sections;
 *   resume the guest                          <- the pause users feel
 *   send CKPT_BEGIN n, the captured pages, the sections, CKPT_END n
 *   wait for ACK n; release the outputs of epoch n
 *
 * The shadow is a full-size copy of guest RAM, so the pages of a
 * checkpoint are frozen at the pause while the guest runs on: sending
 * never races the guest.  Copying while the guest runs is correct because
 * a sync harvests a page's dirty bit before the copy reads the page: a
 * write after the harvest sets the bit again and the page is copied again
 * in the pause.  It only pays while the guest dirties slower than we copy,
 * hence at most two rounds and only while there is a lot to copy.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "engine/outgoing-int.h"

typedef struct mc_block {
    uint8_t *shadow;       /* captured pages of the current checkpoint */
    uint64_t *send;        /* pages captured and not yet sent */
} mc_block;

/* Copy the block's dirty pages into the shadow and move their bits to
 * the send bitmap.  Returns pages copied. */
static uint64_t capture(livemig_ram *r, mc_block *b)
{
    uint64_t n = 0;
    for (size_t wi = 0; wi < r->bitmap_words; wi++) {
        uint64_t word = r->dirty[wi];
        if (!word)
            continue;
        r->dirty[wi] = 0;
        b->send[wi] |= word;
        while (word) {
            int bit = __builtin_ctzll(word);
            /* Copy the run of set bits at once. */
            uint64_t rest = ~(word >> bit);
            int len = rest ? __builtin_ctzll(rest) : 64 - bit;
            size_t page = wi * 64 + (size_t)bit;
            memcpy(b->shadow + page * LM_PAGE_SIZE,
                   r->host + page * LM_PAGE_SIZE, (size_t)len * LM_PAGE_SIZE);
            n += (uint64_t)len;
            word = len == 64 ? 0 : word & ~(((1ull << len) - 1) << bit);
        }
    }
    return n;
}

static uint64_t capture_all(out_state *s, mc_block *mb)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->lm->nram; i++)
        n += capture(s->lm->ram[i], &mb[i]);
    return n;
}

static bool heartbeat(out_state *s)
{
    if (!lm_wr_heartbeat(s->w)) {
        lm_out_explain_write_error(s);
        return false;
    }
    return true;
}

static bool stop_requested(livemig *lm)
{
    pthread_mutex_lock(&lm->lock);
    bool stop = lm->mc_failover || lm_cancelled(lm);
    pthread_mutex_unlock(&lm->lock);
    return stop;
}

/* Wait mc-delay from @since_us, sending heartbeats often enough for the
 * backup's timeout.  A kick (mc-delay changed) re-reads the delay. */
static bool wait_delay(out_state *s, uint64_t since_us)
{
    livemig *lm = s->lm;
    for (int i = 0; i < 1000000; i++) {
        if (stop_requested(lm))
            return false;
        lm_tunables_snapshot(lm->tun, &s->p);
        uint64_t due = since_us + s->p.mc_delay * 1000u, now = lm_now_us();
        if (now >= due)
            return true;
        uint64_t hb = s->p.mc_heartbeat_timeout ? s->p.mc_heartbeat_timeout / 4
                                                : 500;
        if (hb < 5)
            hb = 5;
        uint64_t left_ms = (due - now + 999) / 1000;
        lm_out_wait_kick(lm, (unsigned)(left_ms < hb ? left_ms : hb));
        if (lm_now_us() < due && !heartbeat(s))
            return false;
    }
    return true;
}

static bool send_checkpoint(out_state *s, mc_block *mb, uint64_t epoch,
                            livemig_buf *secs, size_t *sec_len, size_t nsec)
{
    livemig *lm = s->lm;
    if (!lm_wr_ckpt(s->w, LM_REC_CKPT_BEGIN, epoch))
        goto io;
    for (uint32_t i = 0; i < lm->nram; i++)
        if (!lm_out_send_block(s, i, mb[i].send, mb[i].shadow))
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
    return true;
io:
    if (s->w->error)
        lm_out_explain_write_error(s);
    else if (!livemig_error_is_set(&s->err))
        livemig_error_set(&s->err, "sending checkpoint %llu stopped",
                          (unsigned long long)epoch);
    return false;
}

static bool wait_ack(out_state *s, uint64_t epoch)
{
    int timeout = s->p.mc_heartbeat_timeout
                      ? (int)s->p.mc_heartbeat_timeout + 1000 : -1;
    int type;
    uint64_t v;
    int rc = lm_out_read_reply(s, timeout, &type, &v);
    if (rc == 0)
        livemig_error_set(&s->err, "the backup did not acknowledge "
                          "checkpoint %llu within %d ms",
                          (unsigned long long)epoch, timeout);
    if (rc != 1)
        return false;
    if (type != LM_RP_ACK || v != epoch) {
        livemig_error_set(&s->err, "the backup acknowledged %llu, expected "
                          "checkpoint %llu", (unsigned long long)v,
                          (unsigned long long)epoch);
        return false;
    }
    return true;
}

/* One epoch: capture with the guest paused as briefly as we can. */
static bool checkpoint(out_state *s, mc_block *mb, uint64_t epoch,
                       livemig_buf *secs, size_t *sec_len)
{
    livemig *lm = s->lm;
    /* Copy while the guest runs, while there is a lot to copy. */
    uint64_t pages = 0;
    for (int round = 0; round < 2; round++) {
        if (!lm_out_sync_dirty(s))
            return false;
        if (s->dirty_pages < 256)
            break;
        pages += capture_all(s, mb);
    }

    bool ok = true;
    uint64_t t0 = lm_now_us();
    pthread_mutex_lock(&lm->lock);
    bool running = lm->runstate == LIVEMIG_RUN_RUNNING;
    if (running && lm->gops.stop)
        lm->gops.stop(lm->gopaque);
    /* Outputs from now on come after this checkpoint's state. */
    lm_output_set_epoch(lm, epoch + 1);
    ok = lm_out_sync_dirty(s);
    uint64_t paused_pages = ok ? capture_all(s, mb) : 0;
    lm_buf_reset(secs);
    livemig_buf one = LM_BUF_INIT;
    for (size_t i = 0; ok && i < lm->nsections; i++) {
        ok = lm_out_save_section(s, &lm->sections[i], &one) &&
             livemig_buf_put(secs, one.p, one.len);
        sec_len[i] = one.len;
    }
    if (running && lm->gops.cont)
        lm->gops.cont(lm->gopaque);
    pthread_mutex_unlock(&lm->lock);
    uint64_t pause = lm_now_us() - t0;
    lm_buf_release(&one);
    if (!ok)
        return false;

    uint64_t b0 = s->w->total, t1 = lm_now_us();
    if (!send_checkpoint(s, mb, epoch, secs, sec_len, lm->nsections) ||
        !wait_ack(s, epoch))
        return false;
    uint64_t ack = lm_now_us() - t1;
    lm_output_release_upto(lm, epoch);

    pthread_mutex_lock(&lm->lock);
    lm_mc_stats *m = &lm->mc;
    m->checkpoints++;
    m->epoch = epoch;
    m->pause_last_us = pause;
    if (pause > m->pause_max_us)
        m->pause_max_us = pause;
    m->pause_total_us += pause;
    m->bytes_last = s->w->total - b0;
    m->bytes_total += m->bytes_last;
    m->ack_last_us = ack;
    m->ack_total_us += ack;
    m->pages_total += pages + paused_pages;
    m->paused_pages_total += paused_pages;
    lm->stats.transferred = s->w->total;
    pthread_mutex_unlock(&lm->lock);
    lm_mc_note_checkpoint(lm, "primary", epoch);
    return true;
}

bool lm_mc_primary(out_state *s)
{
    livemig *lm = s->lm;
    mc_block *mb = calloc(lm->nram, sizeof(*mb));
    size_t *sec_len = calloc(lm->nsections + 1, sizeof(size_t));
    livemig_buf secs = LM_BUF_INIT;
    bool ok = mb && sec_len;
    for (size_t i = 0; ok && i < lm->nram; i++) {
        mb[i].shadow = livemig_ram_alloc(lm->ram[i]->size, &s->err);
        mb[i].send = calloc(lm->ram[i]->bitmap_words, sizeof(uint64_t));
        ok = mb[i].shadow && mb[i].send;
    }
    if (!ok && !livemig_error_is_set(&s->err))
        livemig_error_set(&s->err, "out of memory for the checkpoint "
                          "staging copy of guest RAM");

    lm_tunables_snapshot(lm->tun, &s->p);
    /* A stalled backup must not stall the primary: writes give up after
     * the heartbeat timeout (5 s when failover is on command only). */
    uint64_t to = s->p.mc_heartbeat_timeout ? s->p.mc_heartbeat_timeout + 1000
                                            : 5000;
    struct timeval tv = { (time_t)(to / 1000), (suseconds_t)(to % 1000) * 1000 };
    if (lm->conn.is_socket)
        setsockopt(lm->conn.wfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    pthread_mutex_lock(&lm->lock);
    lm->mc.active = true;
    pthread_mutex_unlock(&lm->lock);
    lm_output_hold(lm, 1);
    if (ok && (!lm_wr_mc_start(s->w, (uint32_t)s->p.mc_heartbeat_timeout) ||
               !lm_wr_flush(s->w))) {
        lm_out_explain_write_error(s);
        ok = false;
    }
    uint64_t since = lm_now_us();
    for (uint64_t epoch = 1; ok; epoch++) {
        if (epoch > 1 && !wait_delay(s, since))
            break;
        since = lm_now_us();
        ok = checkpoint(s, mb, epoch, &secs, sec_len);
    }

    pthread_mutex_lock(&lm->lock);
    bool dropped = lm->mc_failover;
    pthread_mutex_unlock(&lm->lock);
    if ((dropped || lm_cancelled(lm)) && !s->w->error) {
        /* Stopped on purpose while the backup is fine: it must not take
         * over, two guests would run. */
        (void)lm_wr_mc_end(s->w);
    }
    /* Checkpointing ended: the guest keeps running, unprotected; nothing
     * held can be backed any more, so everything is released. */
    lm_output_release_all(lm);
    pthread_mutex_lock(&lm->lock);
    uint64_t epoch = lm->mc.epoch;
    lm->mc.active = false;
    pthread_mutex_unlock(&lm->lock);
    if (dropped || !lm_cancelled(lm)) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "epoch", json_object_new_uint64(epoch));
        json_object_object_add(d, "reason", json_object_new_string(
            dropped ? "dropped by mc-failover"
                    : livemig_error_is_set(&s->err) ? s->err.desc
                                                    : "backup lost"));
        lm_emit(lm, "MC_BACKUP_LOST", d);
    }
    if (dropped) {
        /* Dropping the backup on command ends like a cancel. */
        atomic_store(&lm->cancel, true);
        pthread_mutex_lock(&lm->lock);
        lm_set_status_locked(lm, LIVEMIG_STATUS__MAX,
                             LIVEMIG_STATUS_CANCELLING);
        pthread_mutex_unlock(&lm->lock);
    } else if (!lm_cancelled(lm)) {
        livemig_error why = s->err;
        livemig_error_clear(&s->err);
        livemig_error_set(&s->err, "the backup is lost (%s); the guest runs "
                          "unprotected: run migrate to a new backup to "
                          "protect it again", why.desc[0] ? why.desc
                                                          : "no reason");
    }
    for (size_t i = 0; mb && i < lm->nram; i++) {
        livemig_ram_free(mb[i].shadow, lm->ram[i]->size);
        free(mb[i].send);
    }
    free(mb);
    free(sec_len);
    lm_buf_release(&secs);
    return false;
}
