/*
 * outgoing-int.h - the source side's per-migration state, shared by the
 * migration thread (outgoing.c) and micro-checkpointing (mc.c).  Owned by
 * the migration thread alone: no locking.
 */
#ifndef LM_OUTGOING_INT_H
#define LM_OUTGOING_INT_H

#include "codec/xbzrle-cache.h"
#include "engine/engine-int.h"
#include "stream/stream.h"

typedef struct out_state {
    livemig *lm;
    lm_writer *w;
    struct lm_params p;
    uint64_t normal, duplicate;    /* pages sent as data / as zero */
    uint64_t pages_done;           /* pages sent in any form */
    uint64_t pass_pages, pass_p0;  /* pages to send this pass; pages_done
                                      when it began (progress) */
    uint64_t last_tick_us;
    /* Numbers (publish): the pass being sent and when it began; when the
     * dirty set was last synced; small passes gathered until they are
     * enough to measure the link; hold-watching state. */
    uint64_t pass_no;
    uint64_t pass_t0_us, pass_b0;
    bool in_pass;                  /* a precopy pass is sending */
    uint64_t last_sync_us;
    uint64_t win_bytes, win_pages, win_us;
    bool ready_said;               /* MIGRATION_READY {ready: true} sent */
    uint64_t last_pass_event_us;
    bool unthrottled;              /* switchover: max-bandwidth is off */
    uint64_t dirty_pages;          /* to send in the next pass */
    bool mc_outran;                /* precopy ended with the guest dirtying
                                      faster than the link sends */
    bool stopped_guest;            /* we stopped it: restore on failure */
    livemig_runstate prev_runstate;/* what it was before switchover */
    bool past_return;              /* the end of the stream went out: only
                                      the destination's ERROR lets the
                                      guest resume here (docs/cancel.md) */
    bool dest_refused;             /* the destination sent ERROR: it does
                                      not run the guest */
    unsigned throttle;             /* auto-converge percent applied now */
    unsigned dirty_high;           /* passes in a row that dirtied too much */
    struct lm_mf_send *mf;         /* capability multifd: page channels */
    uint64_t batch[LM_MF_BATCH];   /* pages gathered for a channel */
    lm_xbzrle_cache *xc;           /* capability xbzrle: pages sent */
    bool xbzrle_on;                /* encode re-sent pages this pass */
    uint8_t snap[4096] __attribute__((aligned(64)));  /* page being encoded */
    uint8_t enc[4096];
    livemig_error err;
} out_state;

/* Send the pages whose bits are set in @bitmap (clearing them), reading
 * them at @base (the block's RAM, or a staging copy of it). */
bool lm_out_send_block(out_state *s, uint32_t bi, uint64_t *bitmap,
                       const uint8_t *base);
/* Called often while pages go out: false on cancel; publishes progress
 * and applies a max-bandwidth change at once. */
bool lm_out_tick(out_state *s);
/* Sync every tracker into the blocks' dirty bitmaps; sets dirty_pages. */
bool lm_out_sync_dirty(out_state *s);
/* The same without counting (s->dirty_pages goes stale): for a caller
 * that walks the bitmaps next anyway, as a checkpoint's pause does. */
bool lm_out_harvest_dirty(out_state *s);
/* Read one return-path message (RESUMED or ACK) within @timeout_ms (-1:
 * until cancel).  1 with *type and *value, 0 on timeout, -1 with s->err
 * (and *type LM_RP_ERROR when the destination said why). */
int lm_out_read_reply(out_state *s, int timeout_ms, int *type,
                      uint64_t *value);
/* Set s->err for a failed write, using the destination's reason if it
 * sent one. */
void lm_out_explain_write_error(out_state *s);
/* Save @sec into @b (reset first). */
bool lm_out_save_section(out_state *s, lm_section *sec, livemig_buf *b);
/* Sleep up to @ms, returning early on a kick or cancel. */
void lm_out_wait_kick(livemig *lm, unsigned ms);

/* mc.c: checkpoint forever once the backup is in sync; returns false
 * (the migration ends failed or cancelled, the guest keeps running). */
bool lm_mc_primary(out_state *s);

#endif
