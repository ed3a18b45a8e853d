/*
 * tracker.h - dirty-page trackers: which pages of a RAM block were written.
 *
 * One interface, three implementations (an ops table, one file each):
 *
 *   uffd-wp-async  tracker-uffd.c      userfaultfd write-protect in async
 *                                      mode; a sync is one PAGEMAP_SCAN
 *                                      that reports written pages and
 *                                      re-protects them atomically (Linux
 *                                      >= 6.7).  The kernel resolves write
 *                                      faults itself: no signal, no thread.
 *   mprotect       tracker-mprotect.c  mprotect(PROT_READ) + a SIGSEGV
 *                                      handler that records the page and
 *                                      makes it writable; any Linux.
 *   manual         tracker-manual.c    the host marks pages itself with
 *                                      livemig_dirty_mark().
 *
 * Life cycle:  new -> start -> sync ... sync -> stop [-> start ...] -> free.
 * A tracker is driven by one thread at a time (the migration thread); any
 * number of other threads may write the block meanwhile.
 *
 * The contract of sync ("get and clear", like KVM's dirty log): every write
 * to the block made after lm_tracker_start() returned is either visible to
 * a read of that page made after a sync that reported it returns, or
 * reported by a later sync.  So a caller that reads the reported pages
 * after each sync never misses a write.  Pages never written are never
 * reported, except where the granularity below is coarser than a page.
 *
 * Granularity.  Reports are per page of @page_size, which for uffd and
 * mprotect must be the host page size (sysconf(_SC_PAGESIZE)); manual
 * accepts any power of two.
 * Transparent huge pages with uffd-wp-async (measured on Linux 6.18 by
 * tests/ram/test-tracker.c, case uffd_thp): reports are per 4 KiB page even
 * for a block allocated with MADV_HUGEPAGE and populated.  A write to a
 * write-protected huge PMD makes the kernel split the huge mapping and
 * resolve the fault on the 4 KiB page, so only that page is reported; the
 * price is that every 2 MiB region written while tracked loses its huge
 * mapping (the test sees 16 of 32 regions split after writing one page in
 * every other one), so the guest takes more TLB misses afterwards.  No need
 * for MADV_NOHUGEPAGE to get exact reports.
 *
 * Kernel writes (read(2), recv into the block): transparent with
 * uffd-wp-async; with mprotect they fail with EFAULT while a page is
 * protected, so a host that receives into tracked memory must use uffd or
 * manual.
 *
 * mprotect owns SIGSEGV process-wide while any mprotect tracker runs (see
 * tracker-mprotect.c for how it chains to the previous handler).  The block
 * must be PROT_READ | PROT_WRITE before start, the host must not change its
 * protection while it is tracked, and stop leaves it read-write.  A write
 * to a 4 KiB page of a THP splits the huge mapping, as with uffd.  It splits
 * the mapping into one VMA per run of written pages; when the kernel's
 * vm.max_map_count is reached it falls back to unprotecting (and
 * reporting) 2 MiB at a time, then the whole block: over-reporting, never
 * losing writes.
 */
#ifndef LIVEMIG_RAM_TRACKER_H
#define LIVEMIG_RAM_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "livemig/livemig.h"

typedef struct lm_tracker lm_tracker;

/* Create a tracker for [@host, @host + @size).  @host page-aligned, @size a
 * multiple of @page_size.  Nothing is tracked until lm_tracker_start().
 * @kind: LIVEMIG_TRACKER_* from include/livemig/livemig.h; AUTO resolves to
 * uffd-wp-async when the kernel supports it, else mprotect.  An explicit
 * kind the kernel lacks fails with the missing feature named. */
lm_tracker *lm_tracker_new(livemig_tracker_kind kind, void *host, size_t size,
                           size_t page_size, livemig_error *err);
/* Stop (if started) and free.  NULL is a no-op.  The memory stays the
 * host's. */
void lm_tracker_free(lm_tracker *t);
/* The kind actually used; never AUTO. */
livemig_tracker_kind lm_tracker_kind(const lm_tracker *t);

/* Start tracking: every page written after this returns is reported by a
 * later sync.  Pages written before are not reported (the caller sends the
 * whole block once).  Fails if already started. */
bool lm_tracker_start(lm_tracker *t, livemig_error *err);

/* Report every page written since start or the previous sync by OR-ing its
 * bit into @dirty (one bit per page, bit p%64 of word p/64, caller-sized to
 * cover the block) and re-arm.  *@count (may be NULL) gets the number of
 * bits this call turned from 0 to 1 in @dirty (as QEMU counts
 * dirty-pages-rate): pages already set by an earlier unsent sync are not
 * counted twice.  After it returns the caller reads the reported pages; any
 * write made after a page's bit was harvested is visible to that read or
 * reported by the next sync.  On failure @dirty may hold part of the
 * report (bits are only ever added) and tracking may have lost state: treat
 * it as fatal for the migration and stop the tracker. */
bool lm_tracker_sync(lm_tracker *t, uint64_t *dirty, size_t *count,
                     livemig_error *err);

/* The caller says every writer of the block is stopped, and that stopping
 * ordered their stores before this thread (a lock they went through, or
 * a release of theirs that this thread acquired).  While set, a manual
 * sync skips its cross-CPU barrier (membarrier IPIs cost tens of us on a
 * VM), which only matters for writers still running.  Clear it before the writers resume. */
void lm_tracker_set_quiesced(lm_tracker *t, bool quiesced);

/* Stop tracking, unprotect everything; the guest runs at full speed again.
 * Writes that were not yet synced are dropped.  No-op if not started. */
void lm_tracker_stop(lm_tracker *t);

/* For MANUAL: the bitmap the host marks with livemig_dirty_mark() (one bit
 * per page, owned by the tracker, valid until lm_tracker_free()).  Marks
 * made while the tracker is stopped are harmless and cleared by start.
 * NULL for the other kinds. */
uint64_t *lm_tracker_manual_bitmap(lm_tracker *t);

/* Whether manual trackers' syncs issue a process-wide membarrier (see
 * tracker-manual.c).  When false (old kernel, seccomp), livemig_dirty_mark's
 * check-then-set is not safe: hosts must put a full fence between their
 * store and the mark. */
bool lm_tracker_manual_has_membarrier(void);

/* Whether the kernel supports @kind (AUTO: always true).  The probe runs
 * once per process and is cached; thread-safe.  When false, @why_not names
 * the missing feature (e.g. "UFFD_FEATURE_WP_ASYNC"). */
bool lm_tracker_available(livemig_tracker_kind kind, livemig_error *why_not);

#endif /* LIVEMIG_RAM_TRACKER_H */
