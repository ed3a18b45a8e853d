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
 * TLS: every connection of postcopy (the main one, its return path, a
 * recovery's, the preempt channel) goes through its lm_conn's session
 * when tls-creds is set, secured with lm_secure_client/lm_secure_server
 * like the first.  No two threads ever send on one session: see each
 * file's head for who sends where.
 *
 * postcopy-preempt (a capability, both sides): at the switch the source
 * opens one more connection (role LM_ROLE_PC_PREEMPT) and its return-path
 * thread sends each requested page there at once, taking the page's bit
 * from the remaining-pages bitmap atomically, so the migration thread's
 * background sweep and it never send a page twice.  The destination reads
 * it on a thread of its own (postcopy-preempt-recv.c).  A recovery
 * re-creates it right after the main connection.
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

/* A hello for another connection of the migration running on @lm. */
bool lm_pc_fill_header(livemig *lm, lm_stream_header *h, uint8_t role);

/* postcopy-preempt-send.c: the source's preempt channel. */
typedef struct lm_pc_pre_src lm_pc_pre_src;
/* Connect to @uri, run TLS as tls-creds says, send the hello. */
lm_pc_pre_src *lm_pc_pre_open(livemig *lm, const char *uri,
                              livemig_error *err);
/* Send the page at @data (block @block, page @page) and flush it.  One
 * thread only (the return-path thread).  False when the channel broke. */
bool lm_pc_pre_send(lm_pc_pre_src *p, uint32_t block, uint64_t page,
                    const uint8_t *data);
/* Why the last send failed. */
const char *lm_pc_pre_error(lm_pc_pre_src *p, char *buf, size_t len);
/* Pages sent as data, as zero, and bytes written (any thread). */
void lm_pc_pre_counts(lm_pc_pre_src *p, uint64_t *normal, uint64_t *zero,
                      uint64_t *wire);
void lm_pc_pre_shutdown(lm_pc_pre_src *p);   /* any thread */
void lm_pc_pre_close(lm_pc_pre_src *p);

/* Refuse what postcopy cannot do, before a migration starts. */
bool lm_pc_check_migrate_uri(const char *uri, livemig_error *err);
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

/* PC_ADVISE arrived on the main connection with header @hdr: the
 * capability must be on here too, and postcopy-preempt the same on both
 * sides.  With postcopy-preempt the migration's listener is taken over
 * to accept the preempt channel. */
lm_pc_dst *lm_pc_dst_new(livemig *lm, const lm_stream_header *hdr,
                         livemig_error *err);
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
/* Place the pages of a RAM record whose data (RAW) is at @data; any
 * thread (the incoming one, the preempt one). */
bool lm_pc_dst_place(lm_pc_dst *pc, const lm_rec *rec, const uint8_t *data,
                     livemig_error *err);
/* A connection that joins this migration: TLS as the first one, then a
 * header with this migration's uuid and @role, bound to the RAM blocks.
 * The reader (caller frees), or NULL with @err. */
lm_reader *lm_pc_dst_hello(lm_pc_dst *pc, lm_conn *c, int role,
                           livemig_error *err);
/* Tell the peer of @c why it is refused (ERROR), and close @c. */
void lm_pc_dst_refuse(lm_conn *c, const char *msg);

/* postcopy-preempt-recv.c: the destination's preempt channel. */
typedef struct lm_pc_pre_dst lm_pc_pre_dst;
/* Take lm->listener over and accept the channel on a thread that then
 * reads and places its pages. */
lm_pc_pre_dst *lm_pc_pre_dst_start(lm_pc_dst *pc, livemig *lm,
                                   livemig_error *err);
/* A recovery accepted the new channel: drop the old one, read this. */
void lm_pc_pre_dst_adopt(lm_pc_pre_dst *p, lm_conn c, lm_reader *r);
/* The channel failed since it was connected: true, with why. */
bool lm_pc_pre_dst_broken(lm_pc_pre_dst *p, char *why, size_t len);
void lm_pc_pre_dst_stop(lm_pc_pre_dst *p);
void lm_pc_dst_free(lm_pc_dst *pc);

#endif
