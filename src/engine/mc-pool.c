/* mc-pool.c - see mc-pool.h. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/mc-pool.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define CHUNK 512u   /* slots per 2 MiB huge page */

static size_t round_chunk(size_t n)
{
    return (n + CHUNK - 1) / CHUNK * CHUNK;
}

bool lm_mc_pool_init(lm_mc_pool *p, size_t cap_slots, livemig_error *err)
{
    memset(p, 0, sizeof(*p));
    p->cap = round_chunk(cap_slots);
    void *b = mmap(NULL, p->cap * 4096u, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (b == MAP_FAILED) {
        livemig_error_set(err, "cannot reserve %zu bytes of address space "
                          "for checkpoints: %m; raise the address-space "
                          "limit (ulimit -v)", p->cap * 4096u);
        return false;
    }
    madvise(b, p->cap * 4096u, MADV_HUGEPAGE);
    p->base = b;
    return true;
}

void lm_mc_pool_destroy(lm_mc_pool *p)
{
    if (p->base)
        munmap(p->base, p->cap * 4096u);
    p->base = NULL;
}

/* Back slots [populated, want) with memory now, in one call.  False if
 * the memory cannot be had: better a failed checkpoint than the OOM
 * killer. */
static bool populate(lm_mc_pool *p, size_t want)
{
    want = round_chunk(want);
    if (want > p->cap)
        want = p->cap;
    if (want <= p->populated)
        return true;
    uint8_t *from = p->base + p->populated * 4096u;
    size_t len = (want - p->populated) * 4096u;
    if (madvise(from, len, MADV_POPULATE_WRITE) != 0) {
        if (errno != EINVAL)
            return false;
        /* A kernel before 5.14: touch the pages instead. */
        for (size_t off = 0; off < len; off += 4096u)
            ((volatile uint8_t *)from)[off] = 0;
    }
    p->populated = want;
    if (want > p->peak)
        p->peak = want;
    return true;
}

void lm_mc_pool_reserve(lm_mc_pool *p, size_t slots)
{
    (void)populate(p, slots);   /* ahead of need: a failure shows later */
}

/* Back at least @slots slots, growing by half again (at least one huge
 * page) so that filling the pool costs a few calls, not one per page;
 * short of memory for that, exactly what is asked. */
static bool grow_to(lm_mc_pool *p, size_t slots)
{
    if (slots <= p->populated)
        return true;
    size_t more = p->populated / 2 > CHUNK ? p->populated / 2 : CHUNK;
    return populate(p, slots > p->populated + more ? slots
                                                   : p->populated + more) ||
           populate(p, slots);
}

uint32_t lm_mc_pool_take(lm_mc_pool *p)
{
    if (p->used == p->cap || !grow_to(p, p->used + 1))
        return LM_MC_NO_SLOT;
    return (uint32_t)p->used++;
}

bool lm_mc_pool_use(lm_mc_pool *p, size_t slots)
{
    if (slots > p->cap || !grow_to(p, slots))
        return false;
    if (slots > p->used)
        p->used = slots;
    return true;
}

void lm_mc_pool_epoch_end(lm_mc_pool *p)
{
    p->recent[p->nrecent++ % LM_MC_POOL_HISTORY] = p->used;
    p->used = 0;
    size_t keep = 0, n = p->nrecent < LM_MC_POOL_HISTORY ? p->nrecent
                                                         : LM_MC_POOL_HISTORY;
    for (size_t i = 0; i < n; i++)
        if (p->recent[i] > keep)
            keep = p->recent[i];
    /* Room for a little more than the recent worst, so the next epochs
     * do not fault; the rest goes back to the system. */
    keep = round_chunk(keep + keep / 4 + CHUNK);
    if (keep >= p->populated)
        return;
    madvise(p->base + keep * 4096u, (p->populated - keep) * 4096u,
            MADV_DONTNEED);
    p->populated = keep;
}
