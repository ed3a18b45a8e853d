/*
 * pattern.h - the built-in self-checking guest "pattern".
 *
 * A block of guest RAM ("pattern") split into 4 KiB pages.  Every page holds
 * a 32-byte header and a body:
 *
 *     u64 index        page number in the block
 *     u64 generation   how many times the page was written (fill = 1)
 *     u64 checksum     of the body
 *     u64 timestamp    CLOCK_MONOTONIC ns of the write
 *     body             4064 bytes derived from (index, generation) alone
 *
 * (host byte order: this is guest memory, never a wire format).
 *
 * threads=N workers each own a contiguous slice of the pages and rewrite it
 * in order, page after page, generation after generation.  A worker's state
 * is (generation g, cursor c): the pages of its slice before c have
 * generation g, the others g - 1.  After the fill every worker is at
 * (1, slice length): every page has generation 1; the next write starts the
 * pass of generation 2 at the slice's first page.  So the invariant has no
 * special case, and guest-verify checks every page against it: any lost,
 * stale, torn or misplaced page is found and named.
 *
 * The workers' (g, c), the shape of the guest and its write statistics are
 * the state section "pattern" (version 2), so a migrated guest resumes
 * exactly where the source stopped, with the source's threads, fill and
 * dirty rate (its own --guest settings other than size and outputs give
 * way).
 *
 * Downtime as the workload feels it: every page write is timestamped; the
 * guest keeps the largest gap between two consecutive writes of any of its
 * workers (max-write-gap-us).  The source's last write time travels in the
 * state section, so the first write on the destination measures the gap
 * across the migration (migration-write-gap-us); both daemons run on the
 * same host and CLOCK_MONOTONIC is shared.  A user's stop/cont counts as a
 * gap too; guest-verify's own short hold does not.
 *
 * Threads: lm_pattern_new/free from the host's main thread; query and
 * verify from any thread (the monitor); the guest ops and section callbacks
 * from engine threads.  Workers are the only writers of guest RAM.
 */
#ifndef LM_GUEST_PATTERN_H
#define LM_GUEST_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

#include "livemig/livemig.h"

struct json_object;

typedef struct lm_pattern lm_pattern;

#define LM_PATTERN_PAGE_SIZE 4096u
#define LM_PATTERN_SECTION_VERSION 2u
#define LM_PATTERN_MAX_THREADS 64u

/*
 * @spec: "pattern,size=1G,threads=1,dirty-rate=50M,fill=random" (keys in any
 * order, the leading "pattern" optional): size with K/M/G/T suffixes (powers
 * of 1024), a multiple of 4 KiB, default 1G; threads 1..64, default 1;
 * dirty-rate bytes/s with K/M/G suffixes, 0 = idle after the fill, "max" =
 * as fast as it can, default 0; fill random|text|zero, default random;
 * outputs=PATH (micro-checkpointing outputs file: parsed and kept).
 *
 * Allocates RAM with livemig_ram_alloc, registers block "pattern"
 * (livemig_ram_add with @tracker) and state section "pattern" (version 2),
 * and sets the guest ops.  @lm may be NULL (tests, benchmarks): nothing is
 * registered and the guest runs on its own.
 *
 * @incoming false: fills every page (generation 1) and starts the workers
 * (runstate running).  @incoming true: neither fills nor runs; waits for the
 * engine to load the stream and call cont (runstate inmigrate).
 */
lm_pattern *lm_pattern_new(const char *spec, livemig *lm, bool incoming,
                           livemig_tracker_kind tracker, livemig_error *err);

/* Stop the workers for good and join them (idempotent; query and verify
 * still work).  Call it before livemig_free() of the engine: the workers
 * write guest RAM the engine tracks (a manual dirty bitmap it owns, pages
 * it write-protects), so they must be gone before the engine is. */
void lm_pattern_halt(lm_pattern *p);

/* Halt the guest and free it and its RAM.  Shut down in this order:
 * lm_pattern_halt(), livemig_free(), lm_pattern_free().  NULL is a no-op. */
void lm_pattern_free(lm_pattern *p);

/*
 * QMP query-guest return value (new reference):
 * {"size", "page-size", "pages", "threads", "fill", "dirty-rate" (bytes/s,
 *  or the string "max"), "running", "throttle-percentage", "pages-written",
 *  "generation" (min over workers), "cursors" (absolute page index per
 *  worker), "generations" (per worker), "max-write-gap-us" (largest gap
 *  between two writes over the guest's life, migrations included),
 *  "last-write-ns", and after an incoming migration "resumed-from":
 *  {"generation", "cursor"} (worker 0) and, once the first page was written,
 *  "migration-write-gap-us"; "outputs" when set}.
 */
struct json_object *lm_pattern_query(lm_pattern *p);

/*
 * QMP guest-verify: holds the workers (they park; a guest stopped by the
 * engine or the user stays stopped), checks every page, releases them.
 * Returns {"ok": true, "pages", "generation", "time-us"} or
 * {"ok": false, "bad-page": I, "bad-pages": count, "reason": "page I: ...",
 *  "pages", "generation", "time-us"}.  NULL + @err only if it cannot run.
 */
struct json_object *lm_pattern_verify(lm_pattern *p, livemig_error *err);

/* ---- for tests and hosts that drive the guest themselves ---------------- */

/* The ops registered with the engine; their opaque is the lm_pattern. */
const livemig_guest_ops *lm_pattern_guest_ops(void);
const livemig_section_ops *lm_pattern_section_ops(void);

/* The guest RAM (the block "pattern") and its size in bytes. */
void *lm_pattern_ram(lm_pattern *p, size_t *size);
/* The engine's handle of the block (NULL when created without an engine). */
livemig_ram *lm_pattern_block(lm_pattern *p);

#endif
