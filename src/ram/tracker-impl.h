/*
 * tracker-impl.h - what the tracker implementations share (private to
 * src/ram).  tracker.c checks arguments and state, then calls the ops;
 * each implementation keeps its own state behind @priv.
 */
#ifndef LIVEMIG_RAM_TRACKER_IMPL_H
#define LIVEMIG_RAM_TRACKER_IMPL_H

#include "ram/tracker.h"

typedef struct lm_tracker_ops {
    livemig_tracker_kind kind;
    /* Set up @t->priv; nothing tracked yet. */
    bool (*init)(lm_tracker *t, livemig_error *err);
    /* Free @t->priv (called stopped). */
    void (*fini)(lm_tracker *t);
    bool (*start)(lm_tracker *t, livemig_error *err);
    /* OR reported pages into @dirty, add newly set bits to *@count. */
    bool (*sync)(lm_tracker *t, uint64_t *dirty, size_t *count,
                 livemig_error *err);
    void (*stop)(lm_tracker *t);
} lm_tracker_ops;

struct lm_tracker {
    /* Set by lm_tracker_new, constant after. */
    const lm_tracker_ops *ops;
    uint8_t *host;
    size_t size;
    size_t page_size;
    unsigned page_shift;
    size_t npages;
    size_t nwords;            /* bitmap words covering npages */
    /* Driven by the owning thread only. */
    bool started;
    bool quiesced;            /* lm_tracker_set_quiesced() */
    void *priv;
};

extern const lm_tracker_ops lm_tracker_uffd_ops;
extern const lm_tracker_ops lm_tracker_mprotect_ops;
extern const lm_tracker_ops lm_tracker_manual_ops;

/* Kernel probe of uffd-wp-async, uncached (tracker.c caches it).  On
 * failure @why_not names the missing feature. */
bool lm_tracker_uffd_probe(livemig_error *why_not);

/* OR @bits into @dirty[@w], return how many were newly set. */
static inline size_t lm_tracker_or_word(uint64_t *dirty, size_t w,
                                        uint64_t bits)
{
    uint64_t fresh = bits & ~dirty[w];
    dirty[w] |= bits;
    return (size_t)__builtin_popcountll(fresh);
}

/* Set pages [@first, @first + @n) in @dirty, return how many were new. */
size_t lm_tracker_set_range(uint64_t *dirty, size_t first, size_t n);

#endif /* LIVEMIG_RAM_TRACKER_IMPL_H */
