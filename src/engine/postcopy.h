/*
 * postcopy.h - postcopy: the destination runs the guest before it has
 * every page, and pulls the missing ones on demand.
 *
 * The switch (source, after a precopy pass once migrate-start-postcopy was
 * asked): stop the guest, sync the dirty set one last time, send it as
 * PC_DISCARD bitmaps, the state sections and PC_RUN.  The destination
 * drops the listed pages (MADV_DONTNEED), registers its RAM with a
 * userfaultfd in MISSING mode, loads the state and runs the guest.  From
 * then on a guest thread that touches a dropped page sleeps in the kernel
 * until that page is placed; the destination's fault thread sends a
 * PAGE_REQ on the return path for it; the source sends asked-for pages
 * ahead of the background sweep of the rest, every page exactly once.
 * END_STREAM follows the last page; the destination checks that every
 * dropped page arrived, answers PC_DONE, and only then do both sides say
 * "completed".
 *
 * Threads: on the source the migration thread sends, a return-path thread
 * (pc_src.rp) reads requests into a queue under pc_src.qlock.  On the
 * destination the incoming thread reads the stream and places pages, a
 * fault thread (pc_dst.fault) reads the userfaultfd and sends requests;
 * return-path writes go under pc_dst.rp_lock.  Per-page request times are
 * atomics shared by the two.
 *
 * A broken link after the switch cannot fall back: the guest ran on the
 * destination.  Both sides then stay in postcopy-paused, the source
 * keeping every page, until the daemon is stopped (see docs/postcopy.md).
 */
#ifndef LM_POSTCOPY_H
#define LM_POSTCOPY_H

#include <stdbool.h>

#include "engine/engine-int.h"
#include "engine/outgoing-int.h"
#include "stream/stream.h"

/* ---- source (postcopy-send.c) ---- */

/* Refuse what postcopy cannot do, before a migration starts. */
bool lm_pc_check_migrate(const struct lm_params *p, const char *uri,
                         livemig_error *err);
/* The capability is on and migrate-start-postcopy was asked. */
bool lm_pc_wanted(out_state *s);
/* Advertise postcopy after the header (capability on). */
bool lm_pc_advise(out_state *s);
/* Switch to postcopy and run it to the end: true once the destination
 * confirmed every page. */
bool lm_pc_source(out_state *s);

/* ---- destination (postcopy-recv.c) ---- */

typedef struct lm_pc_dst lm_pc_dst;

/* PC_ADVISE arrived: the capability must be on here too. */
lm_pc_dst *lm_pc_dst_new(livemig *lm, livemig_error *err);
/* A PC_DISCARD record: drop those pages, remember them as missing. */
bool lm_pc_dst_discard(lm_pc_dst *pc, const lm_rec *rec, livemig_error *err);
/* PC_RUN: register the RAM, start the fault thread, switch @r to staged
 * pages.  The caller then runs the guest and calls lm_pc_dst_resumed. */
bool lm_pc_dst_start(lm_pc_dst *pc, lm_reader *r, livemig_error *err);
void lm_pc_dst_resumed(lm_pc_dst *pc, uint64_t load_us);
/* Read the postcopy pages from @r until END_STREAM, place them, check
 * that every dropped page arrived and answer PC_DONE.  False with @err
 * when the stream broke or was refused. */
bool lm_pc_dst_stream(lm_pc_dst *pc, lm_reader *r, livemig_error *err);
/* The stream broke (@err says why): wait in postcopy-paused (guest
 * threads keep waiting for their pages) for migrate-recover, accept the
 * source's new connection, check it resumes this migration (uuid), send
 * the list of pages still missing.  Returns the new reader (owned by
 * @pc), or NULL when cancelled.  Clears @err. */
lm_reader *lm_pc_dst_recover(lm_pc_dst *pc, livemig_error *err);
/* Keep a dead link from blocking for long: TCP keepalive and a user
 * timeout on the connection's socket (no-op on others). */
void lm_pc_watch_link(int fd);
/* Replace error-desc (a pause's reason changes; lm_set_error keeps the
 * first).  Caller holds lm->lock. */
void lm_pc_set_error_locked(livemig *lm, const char *msg);
bool lm_pc_dst_running(const lm_pc_dst *pc);   /* after PC_RUN */
void lm_pc_dst_free(lm_pc_dst *pc);

#endif
