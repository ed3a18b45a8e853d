/*
 * mc-backup.c - micro-checkpointing, backup side.
 *
 * After MC_START the destination becomes a backup.  Every checkpoint
 * (CKPT_BEGIN n ... CKPT_END n) is received whole into a staging area;
 * only then are its sections checked, its pages copied to guest RAM, its
 * sections loaded and the checkpoint acknowledged (a takeover comes
 * after all of it).  A checkpoint cut short is dropped, so guest
 * RAM always holds the last complete checkpoint.  When the primary is
 * silent for the heartbeat timeout, its connection breaks, or mc-failover
 * is asked, the backup resumes the guest from that checkpoint.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "engine/engine-int.h"
#include "engine/mc-int.h"
#include "engine/mc-pool.h"
#include "stream/stream.h"

typedef struct stage_ent {
    uint32_t block;
    uint64_t first;
    uint32_t npages;
    bool zero;
    size_t off;           /* into data, for raw pages */
} stage_ent;

typedef struct stage_sec {
    char name[256];
    uint32_t version;
    size_t off, len;
} stage_sec;

typedef struct stage {
    livemig *lm;
    lm_mc_pool mem;       /* page data, then section data, front to back */
    size_t used;
    stage_ent *ents;
    size_t nents, capents;
    stage_sec *secs;
    size_t nsecs, capsecs;
    uint64_t limit;       /* bytes: guest RAM and its sections at most */
} stage;

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return false;
    *p = q;
    *cap = n;
    return true;
}

static uint8_t *reserve(stage *st, size_t len, livemig_error *err)
{
    if (st->used + len > st->limit) {
        livemig_error_set(err, "a checkpoint is larger than guest RAM; the "
                          "stream is corrupt");
        return NULL;
    }
    if (!lm_mc_pool_use(&st->mem, (st->used + len + LM_PAGE_SIZE - 1) /
                                  LM_PAGE_SIZE)) {
        livemig_error_set(err, "out of memory staging a checkpoint of "
                          "%zu bytes; free memory on the backup's host",
                          st->used + len);
        return NULL;
    }
    uint8_t *p = st->mem.base + st->used;
    st->used += len;
    return p;
}

static bool add_ent(stage *st, const stage_ent *e, livemig_error *err)
{
    if (!grow((void **)&st->ents, &st->capents, st->nents + 1, sizeof(*e))) {
        livemig_error_set(err, "out of memory staging a checkpoint");
        return false;
    }
    st->ents[st->nents++] = *e;
    return true;
}

/* Reader hook: raw pages of a checkpoint land in the staging area. */
static uint8_t *stage_raw(void *opaque, uint32_t block, uint64_t first,
                          uint32_t npages, livemig_error *err)
{
    stage *st = opaque;
    size_t len = (size_t)npages * LM_PAGE_SIZE;
    uint8_t *p = reserve(st, len, err);
    if (!p)
        return NULL;
    stage_ent e = { block, first, npages, false,
                    (size_t)(p - st->mem.base) };
    return add_ent(st, &e, err) ? p : NULL;
}

static bool stage_section(stage *st, const lm_rec *rec, livemig_error *err)
{
    uint8_t *p = reserve(st, rec->len, err);
    if (!p)
        return false;
    if (rec->len)
        memcpy(p, rec->data, rec->len);
    if (!grow((void **)&st->secs, &st->capsecs, st->nsecs + 1,
              sizeof(stage_sec))) {
        livemig_error_set(err, "out of memory staging a checkpoint");
        return false;
    }
    stage_sec *s = &st->secs[st->nsecs++];
    snprintf(s->name, sizeof(s->name), "%s", rec->name);
    s->version = rec->version;
    s->off = (size_t)(p - st->mem.base);
    s->len = rec->len;
    return true;
}

static void apply_pages(stage *st)
{
    livemig *lm = st->lm;
    for (size_t i = 0; i < st->nents; i++) {
        stage_ent *e = &st->ents[i];
        uint8_t *dst = lm->ram[e->block]->host + e->first * LM_PAGE_SIZE;
        size_t len = (size_t)e->npages * LM_PAGE_SIZE;
        if (e->zero)
            memset(dst, 0, len);
        else
            memcpy(dst, st->mem.base + e->off, len);
    }
}

/* Check everything first, then store: a checkpoint is applied whole.
 * The pages go in before the sections, whose loaders check their state
 * against the RAM (the pattern guest's cursors), and all of it before
 * the ACK: an acknowledged checkpoint is one this backup can run. */
static bool apply(stage *st, livemig_error *err)
{
    livemig *lm = st->lm;
    for (size_t i = 0; i < st->nsecs; i++) {
        lm_section *s = lm_find_section(lm, st->secs[i].name);
        if (!s || st->secs[i].version > s->version) {
            livemig_error_set(err, "checkpoint has state section '%s' "
                              "version %u that this backup cannot load",
                              st->secs[i].name, st->secs[i].version);
            return false;
        }
    }
    /* Every checkpoint carries every section: a backup that took over
     * from one that lacks a section would run on state it never got. */
    for (size_t k = 0; k < lm->nsections; k++) {
        size_t i = 0;
        while (i < st->nsecs && strcmp(st->secs[i].name,
                                       lm->sections[k].name) != 0)
            i++;
        if (i == st->nsecs) {
            livemig_error_set(err, "a checkpoint lacks state section '%s'; "
                              "the checkpoint stream is corrupt or not from "
                              "a livemig primary", lm->sections[k].name);
            return false;
        }
    }
    apply_pages(st);
    for (size_t i = 0; i < st->nsecs; i++) {
        lm_section *s = lm_find_section(lm, st->secs[i].name);
        livemig_cursor c = { st->mem.base + st->secs[i].off,
                             st->secs[i].len, 0 };
        if (!s->ops.load(s->opaque, st->secs[i].version, &c, err)) {
            /* RAM is already updated: this backup can no longer take over
             * consistently, so the caller must not fail over. */
            livemig_error_set(err, "loading state section '%s' of a "
                              "checkpoint failed", s->name);
            return false;
        }
    }
    return true;
}

/* A new checkpoint: the last one's staging memory is free; keep what
 * recent checkpoints needed, backed. */
static void reset(stage *st)
{
    lm_mc_pool_epoch_end(&st->mem);
    st->used = st->nents = st->nsecs = 0;
}

/* The backup's side of the rule in mc-int.h. */
typedef struct lease {
    uint64_t hb_ms;
    uint64_t renewed_us;     /* last message sent while the lease held */
    uint64_t ack_epoch;      /* last ACK sent, and when */
    uint64_t ack_us;
    uint64_t sent_us;        /* last message sent at all */
} lease;

static bool lease_holds(const lease *l, uint64_t now)
{
    return now - l->renewed_us < lm_mc_lease_ms(l->hb_ms) * 1000u;
}

static bool reply(livemig *lm, lease *l, uint8_t type, uint64_t v)
{
    uint8_t b[9];
    b[0] = type;
    lm_put_be64(b + 1, v);
    uint64_t now = lm_now_us();
    /* Only a message sent while the lease holds renews it: after a gap
     * the primary may already have given this backup up. */
    if (lease_holds(l, now))
        l->renewed_us = now;
    l->sent_us = now;
    if (type == LM_RP_ACK) {
        l->ack_epoch = v;
        l->ack_us = now;
    }
    return lm->conn.wfd >= 0 && lm_conn_write_all(&lm->conn, b, sizeof(b));
}

static void applied(livemig *lm, uint64_t epoch, uint64_t bytes,
                    uint64_t us)
{
    pthread_mutex_lock(&lm->lock);
    lm->mc.checkpoints++;
    lm->mc.epoch = epoch;
    lm->mc.bytes_last = bytes;
    lm->mc.bytes_total += bytes;
    lm->mc.ack_last_us = us;
    lm->mc.ack_total_us += us;
    lm_hist_add(&lm->mc.bytes, bytes);
    lm_hist_add(&lm->mc.ack_us, us);
    pthread_mutex_unlock(&lm->lock);
    lm_mc_note_checkpoint(lm, "backup", epoch);
}

static void emit_epoch_reason(livemig *lm, const char *event,
                              const char *role, uint64_t epoch,
                              const char *reason)
{
    json_object *d = json_object_new_object();
    if (role)
        json_object_object_add(d, "role", json_object_new_string(role));
    json_object_object_add(d, "epoch", json_object_new_uint64(epoch));
    json_object_object_add(d, "reason", json_object_new_string(reason));
    lm_emit(lm, event, d);
}

/* Take over from the last applied checkpoint @epoch. */
void lm_mc_take_over(livemig *lm, uint64_t epoch, const char *reason)
{
    lm_guest_cont(lm);
    emit_epoch_reason(lm, "MC_FAILOVER", NULL, epoch, reason);
    pthread_mutex_lock(&lm->lock);
    lm->mc.active = false;
    lm->mc.standby = false;
    lm->mc.failover_epoch = epoch;
    snprintf(lm->mc.failover_reason, sizeof(lm->mc.failover_reason), "%.255s",
             reason);
    pthread_mutex_unlock(&lm->lock);
}

bool lm_mc_backup(livemig *lm, lm_reader *r, uint32_t heartbeat_ms,
                  livemig_error *err)
{
    stage st = { .lm = lm };
    for (size_t i = 0; i < lm->nram; i++)
        st.limit += lm->ram[i]->size;
    st.limit += LM_STREAM_MAX_SECTION * 4ull;
    if (!lm_mc_pool_init(&st.mem, st.limit / LM_PAGE_SIZE + 1, err))
        return false;
    pthread_mutex_lock(&lm->lock);
    lm->mc.active = true;
    pthread_mutex_unlock(&lm->lock);
    r->timeout_ms = (int)heartbeat_ms;
    r->skip_zero = false;
    lease l = { .hb_ms = heartbeat_ms, .renewed_us = lm_now_us() };
    /* While a long checkpoint arrives, PONGs keep the primary informed. */
    uint64_t pong_every_us = lm_mc_heartbeat_every_ms(heartbeat_ms) * 500u;
    (void)reply(lm, &l, LM_RP_PONG, 0);

    uint64_t applied_epoch = 0, cur = 0, t0 = 0, b0 = 0;
    bool in_ckpt = false, broken = false, ended = false;
    livemig_error why = { 0 };
    lm_rec rec;
    for (;;) {
        if (!lm_rd_record(r, &rec, &why))
            break;
        bool ok = true;
        switch (rec.type) {
        case LM_REC_HEARTBEAT:
            (void)reply(lm, &l, LM_RP_PONG, applied_epoch);
            break;
        case LM_REC_MC_END:
            ended = true;
            livemig_error_set(&why, "this backup stood down: the primary "
                              "stopped checkpointing (migrate_cancel or "
                              "mc-failover there) and runs on");
            break;
        case LM_REC_CKPT_BEGIN:
            ok = !in_ckpt;
            in_ckpt = true;
            cur = rec.pass;
            /* The primary began this one after reading our ACK of the
             * previous: it had not given us up when that ACK left. */
            if (l.ack_epoch + 1 == cur && l.ack_us > l.renewed_us)
                l.renewed_us = l.ack_us;
            reset(&st);
            r->stage = stage_raw;
            r->stage_opaque = &st;
            t0 = lm_now_us();
            b0 = r->total;
            break;
        case LM_REC_RAM_RAW:
            ok = in_ckpt;   /* staged by the reader */
            break;
        case LM_REC_RAM_ZERO: {
            stage_ent e = { rec.block, rec.first, rec.npages, true, 0 };
            ok = in_ckpt && add_ent(&st, &e, &why);
            break;
        }
        case LM_REC_SECTION:
            ok = in_ckpt && stage_section(&st, &rec, &why);
            break;
        case LM_REC_CKPT_END:
            ok = in_ckpt && rec.pass == cur && cur == applied_epoch + 1;
            if (!ok)
                break;
            in_ckpt = false;
            r->stage = NULL;
            if (!apply(&st, &why)) {
                broken = true;
                ok = false;
                break;
            }
            if (!reply(lm, &l, LM_RP_ACK, cur))
                livemig_error_set(&why, "cannot acknowledge checkpoint "
                                  "%llu: the primary is gone",
                                  (unsigned long long)cur);
            uint64_t ack_us = lm_now_us() - t0;
            applied_epoch = cur;
            applied(lm, cur, r->total - b0, ack_us);
            break;
        default:
            ok = false;
        }
        if (!ok) {
            if (!livemig_error_is_set(&why))
                livemig_error_set(&why, "unexpected record %d in the "
                                  "checkpoint stream (epoch %llu)", rec.type,
                                  (unsigned long long)cur);
            break;
        }
        if (livemig_error_is_set(&why))
            break;
        if (in_ckpt && lm_now_us() - l.sent_us >= pong_every_us)
            (void)reply(lm, &l, LM_RP_PONG, applied_epoch);
    }
    r->stage = NULL;   /* it points at st */
    lm_mc_pool_destroy(&st.mem);
    free(st.ents);
    free(st.secs);

    /* Decide now, before any wait: how long since the last exchange that
     * the primary is bound to honour. */
    uint64_t now = lm_now_us();
    bool holds = lease_holds(&l, now);
    uint64_t away_ms = (now - l.renewed_us) / 1000u;
    pthread_mutex_lock(&lm->lock);
    /* mc-heartbeat-timeout 0: a manager that fences decides; losing the
     * primary's connection alone is no reason to take over. */
    while (!ended && !broken && applied_epoch && heartbeat_ms == 0 &&
           !lm->mc_failover && !lm_cancelled(lm))
        pthread_cond_wait(&lm->cond, &lm->lock);
    bool asked = lm->mc_failover;
    pthread_mutex_unlock(&lm->lock);

    if (applied_epoch == 0 || broken) {
        livemig_error_set(err, "this backup cannot take over: %s; it has no "
                          "complete checkpoint to resume from",
                          why.desc[0] ? why.desc : "the stream ended");
        emit_epoch_reason(lm, "MC_FAILOVER_REFUSED", NULL, applied_epoch,
                          err->desc);
        return false;
    }
    if (!asked && heartbeat_ms && !ended && !holds) {
        /* Stopped or starved longer than the lease: the primary may have
         * given us up and run on.  Standing down keeps one guest. */
        (void)reply(lm, &l, LM_RP_STOOD_DOWN, applied_epoch);
        livemig_error cause = why;
        livemig_error_clear(&why);
        livemig_error_set(&why, "this backup stood down instead of taking "
                          "over (%s): it had no exchange with the primary "
                          "for %llu ms, and after %llu ms the primary may "
                          "give it up and run on", cause.desc,
                          (unsigned long long)away_ms,
                          (unsigned long long)lm_mc_lease_ms(heartbeat_ms));
        ended = true;
    }
    if (ended && !asked) {
        /* Decided under the lock: an mc-failover from now on finds the
         * standby and forces it; one that came before it wins. */
        pthread_mutex_lock(&lm->lock);
        asked = lm->mc_failover;
        if (!asked) {
            lm->mc.standby = true;
            lm->mc.active = false;
        }
        pthread_mutex_unlock(&lm->lock);
    }
    if (ended && !asked) {
        livemig_error_set(err, "%s; the guest stays stopped at checkpoint "
                          "%llu: run mc-failover here to take over only if "
                          "the primary does not run the guest", why.desc,
                          (unsigned long long)applied_epoch);
        emit_epoch_reason(lm, "MC_STOOD_DOWN", "backup", applied_epoch,
                          err->desc);
        return false;
    }
    (void)reply(lm, &l, LM_RP_TOOK_OVER, applied_epoch);
    /* Said as an operator reads it: why the primary is taken for dead. */
    char plain[sizeof(why.desc)];
    if (r->timed_out)
        snprintf(plain, sizeof(plain), "the primary was silent for %u ms "
                 "(mc-heartbeat-timeout)", heartbeat_ms);
    else if (r->eof)
        snprintf(plain, sizeof(plain), "the primary's connection closed "
                 "(it stopped, or the network between the two broke)");
    else
        snprintf(plain, sizeof(plain), "%s", why.desc);
    lm_mc_take_over(lm, applied_epoch, asked ? "mc-failover" : plain);
    return true;
}
