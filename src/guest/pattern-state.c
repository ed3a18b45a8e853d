/*
 * pattern-state.c - the state section "pattern" (version 2) of the pattern
 * guest: what a destination needs to resume the workload exactly where the
 * source stopped and as it ran there, and to refuse a guest it cannot be.
 *
 * All fields big-endian:
 *   u64 page size, u64 pages, u32 threads, u32 fill (0 random, 1 text,
 *   2 zero), u64 pages written, u64 last write (CLOCK_MONOTONIC ns),
 *   u64 max write gap (ns), then per worker: u64 generation, u64 cursor
 *   (relative to the worker's first page, 0..slice length); version 2
 *   adds u64 dirty rate (bytes/s, 2^64-1 = max).
 *
 * The workload's behaviour (threads, fill, dirty rate) is the source's:
 * the destination takes it over whatever its own --guest said, so a
 * backup started with other settings runs on as the primary did.  The
 * size cannot change (the RAM block is the destination's), and the
 * outputs file stays the destination's own: it names a file of that host.
 * A version 1 state (no dirty rate) keeps the destination's rate.
 *
 * Save and load run with the guest stopped (the workers parked).
 */
#include <inttypes.h>
#include <stdio.h>

#include "guest/pattern-int.h"

#define PAGE LM_PATTERN_PAGE_SIZE

static bool section_save(void *opaque, livemig_buf *out, livemig_error *err)
{
    lm_pattern *p = opaque;
    bool ok = livemig_buf_put_u64(out, PAGE) &&
              livemig_buf_put_u64(out, p->npages) &&
              livemig_buf_put_u32(out, p->spec.threads) &&
              livemig_buf_put_u32(out, (uint32_t)p->spec.fill) &&
              livemig_buf_put_u64(out, lm_pattern_pages_written(p)) &&
              livemig_buf_put_u64(out, atomic_load(&p->last_write_ns)) &&
              livemig_buf_put_u64(out, atomic_load(&p->max_gap_ns));
    for (unsigned i = 0; ok && i < p->spec.threads; i++) {
        ok = livemig_buf_put_u64(out, atomic_load(&p->workers[i].generation)) &&
             livemig_buf_put_u64(out, atomic_load(&p->workers[i].cursor));
    }
    ok = ok && livemig_buf_put_u64(out, p->spec.dirty_rate);
    if (!ok)
        livemig_error_set(err, "pattern guest: out of memory saving its state");
    return ok;
}

static void fmt_size(uint64_t v, char *buf, size_t len)
{
    static const char sfx[] = "KMGT";
    int i = -1;
    while (i < 3 && v && v % 1024 == 0) {
        v /= 1024;
        i++;
    }
    if (i < 0)
        snprintf(buf, len, "%" PRIu64, v);
    else
        snprintf(buf, len, "%" PRIu64 "%c", v, sfx[i]);
}

/*
 * The state must be the one the RAM that arrived was written by: a worker
 * at (generation g, cursor c) has written (g - 1) * slice + c pages since
 * the fill counted its slice once, so the pages-written total is exact;
 * the page just before its cursor holds generation g and the one at its
 * cursor g - 1.  Anything else is a stream whose state does not belong
 * to its memory (or was altered), and running it would corrupt the guest.
 */
static bool state_matches(const lm_pattern *p, unsigned threads,
                          lm_pattern_fill fill, const uint64_t *gen,
                          const uint64_t *cur, uint64_t written,
                          bool ram_partial, livemig_error *err)
{
    /* The source's slices and fill, not this guest's own (it takes the
     * source's workload over only once everything is checked). */
    uint64_t first[LM_PATTERN_MAX_THREADS], len[LM_PATTERN_MAX_THREADS];
    for (unsigned i = 0; i < threads; i++) {
        lm_pattern_slice(p->npages, threads, i, &first[i], &len[i]);
    }
    uint64_t expect = 0;
    bool over = false;
    for (unsigned i = 0; i < threads; i++) {
        uint64_t n;
        over |= __builtin_mul_overflow(gen[i] - 1, len[i], &n);
        over |= __builtin_add_overflow(n, cur[i], &n);
        over |= __builtin_add_overflow(expect, n, &expect);
    }
    if (over || expect != written) {
        livemig_error_set(err, "pattern guest: its state in the stream says "
                          "%" PRIu64 " pages written, but its workers' "
                          "generations and cursors mean %s%" PRIu64 "; the "
                          "state section 'pattern' is corrupt", written,
                          over ? "more than " : "", over ? UINT64_MAX : expect);
        return false;
    }
    if (ram_partial)
        return true;   /* postcopy: the pages around the cursors may come later */
    for (unsigned i = 0; i < threads; i++) {
        char why[256];
        for (int k = 0; k < 2; k++) {
            /* k 0: the last page written (generation g), k 1: the next */
            if ((k == 0 && cur[i] == 0) || (k == 1 && cur[i] >= len[i]))
                continue;
            uint64_t page = first[i] + cur[i] - (k == 0);
            uint64_t g = gen[i] - (uint64_t)k;
            if (lm_pattern_page_check(fill,
                                      p->host + page * PAGE, page, g, why,
                                      sizeof(why)) != LM_PATTERN_GOOD) {
                livemig_error_set(err, "pattern guest: worker %u's state "
                                  "in the stream (generation %" PRIu64
                                  ", cursor %" PRIu64 ") does not match the "
                                  "RAM that arrived: %s; the stream is "
                                  "corrupt", i, gen[i], cur[i], why);
                return false;
            }
        }
    }
    return true;
}

#define TRUNC_MSG "pattern guest: its state in the stream is truncated " \
                  "(section 'pattern')"

static bool section_load(void *opaque, uint32_t version, livemig_cursor *in,
                         livemig_error *err)
{
    lm_pattern *p = opaque;
    if (version < 1 || version > LM_PATTERN_SECTION_VERSION) {
        livemig_error_set(err, "pattern guest: state version %u is not "
                          "supported (this guest reads version %u); use the "
                          "same livemig version on both sides", version,
                          LM_PATTERN_SECTION_VERSION);
        return false;
    }
    uint64_t page_size, npages, written, last, max_gap;
    uint32_t threads, fill;
    if (!livemig_cursor_get_u64(in, &page_size) ||
        !livemig_cursor_get_u64(in, &npages) ||
        !livemig_cursor_get_u32(in, &threads) ||
        !livemig_cursor_get_u32(in, &fill) ||
        !livemig_cursor_get_u64(in, &written) ||
        !livemig_cursor_get_u64(in, &last) ||
        !livemig_cursor_get_u64(in, &max_gap)) {
        livemig_error_set(err, TRUNC_MSG);
        return false;
    }
    if (page_size != PAGE) {
        livemig_error_set(err, "pattern guest: the source uses %" PRIu64
                          "-byte pages, this guest %u-byte pages", page_size,
                          PAGE);
        return false;
    }
    if (npages != p->npages) {
        char a[32], b[32];
        fmt_size(npages > UINT64_MAX / PAGE ? npages : npages * PAGE, a,
                 sizeof(a));
        fmt_size(p->spec.size, b, sizeof(b));
        livemig_error_set(err, "pattern guest: the source has %" PRIu64
                          " pages (size=%s), this guest %" PRIu64 " pages "
                          "(size=%s); start both sides with the same --guest "
                          "size", npages, a, p->npages, b);
        return false;
    }
    if (threads < 1 || threads > LM_PATTERN_MAX_THREADS || threads > npages) {
        livemig_error_set(err, "pattern guest: the source runs threads=%u, "
                          "which this guest cannot (1 to %u, at most one per "
                          "page)", threads, LM_PATTERN_MAX_THREADS);
        return false;
    }
    if (fill > LM_PATTERN_FILL_ZERO) {
        livemig_error_set(err, "pattern guest: the source uses fill %u, "
                          "unknown here; use the same livemig version on "
                          "both sides", fill);
        return false;
    }
    uint64_t gen[LM_PATTERN_MAX_THREADS], cur[LM_PATTERN_MAX_THREADS];
    for (unsigned i = 0; i < threads; i++) {
        if (!livemig_cursor_get_u64(in, &gen[i]) ||
            !livemig_cursor_get_u64(in, &cur[i])) {
            livemig_error_set(err, TRUNC_MSG);
            return false;
        }
        uint64_t first, len;
        lm_pattern_slice(npages, threads, i, &first, &len);
        if (cur[i] > len || gen[i] == 0 || (gen[i] == 1 && cur[i] < len)) {
            livemig_error_set(err, "pattern guest: invalid state of worker %u "
                              "in the stream: generation %" PRIu64 ", cursor %"
                              PRIu64 " of %" PRIu64 " pages", i, gen[i],
                              cur[i], len);
            return false;
        }
    }
    uint64_t rate = p->spec.dirty_rate;
    if (version >= 2 && !livemig_cursor_get_u64(in, &rate)) {
        livemig_error_set(err, TRUNC_MSG);
        return false;
    }
    if (in->len) {
        livemig_error_set(err, "pattern guest: %zu unexpected bytes after its "
                          "state in the stream (section 'pattern' version "
                          "%u)", in->len, version);
        return false;
    }
    if (!state_matches(p, threads, (lm_pattern_fill)fill, gen, cur, written,
                       in->flags & LIVEMIG_CURSOR_RAM_PARTIAL, err))
        return false;

    /* Everything checked: take the source's workload over (the workers
     * are parked: the guest is stopped while sections load), then its
     * positions. */
    if (!lm_pattern_reshape(p, threads, (lm_pattern_fill)fill, rate, err))
        return false;
    uint64_t own = 0;
    for (unsigned i = 0; i < threads; i++) {
        pattern_worker *w = &p->workers[i];
        atomic_store(&w->generation, gen[i]);
        atomic_store(&w->cursor, cur[i]);
        own += atomic_load(&w->written);
    }
    atomic_store(&p->base_written, written > own ? written - own : 0);
    atomic_store(&p->last_write_ns, last);
    atomic_store(&p->max_gap_ns, max_gap);
    p->resumed_generation = gen[0];
    p->resumed_cursor = p->workers[0].first + cur[0];
    atomic_store(&p->migration_gap_ns, 0);
    atomic_store(&p->gap_pending, true);
    atomic_store_explicit(&p->migrated, true, memory_order_release);
    return true;
}

static const livemig_section_ops pattern_section_ops = {
    .save = section_save, .load = section_load,
};

const livemig_section_ops *lm_pattern_section_ops(void)
{
    return &pattern_section_ops;
}
