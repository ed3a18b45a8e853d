/*
 * mc-pool.h - where the primary keeps the pages of the checkpoint being
 * captured: a pool of page slots sized to the pages dirtied per epoch,
 * not a second copy of guest RAM.  The backup stages each checkpoint it
 * receives in a pool of its own, filled front to back.
 *
 * The pool reserves address space for its cap (every guest page on the
 * primary: no epoch can dirty more; guest RAM and the largest sections on
 * the backup) but backs with memory only what epochs use.  It
 * grows geometrically when an epoch needs more slots, and at the end of
 * each epoch gives back what lies beyond the largest use of the last
 * LM_MC_POOL_HISTORY epochs, so a burst costs memory only while it lasts.
 * Growing touches memory before it is needed (huge pages, populated in
 * one call), so a copy into the pool rarely faults, least of all in the
 * guest's pause.  Huge pages matter twice over on virtual machines whose
 * page tables the hypervisor shadows: there, the first write to a 4 KiB
 * page costs about 10 us; with huge pages, about 30x less.
 * One thread per pool: the migration thread on the primary, the incoming
 * thread on the backup.
 */
#ifndef LM_MC_POOL_H
#define LM_MC_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "livemig/livemig.h"

#define LM_MC_POOL_HISTORY 16u
#define LM_MC_NO_SLOT UINT32_MAX

typedef struct lm_mc_pool {
    uint8_t *base;          /* cap slots of address space */
    size_t cap;             /* slots reserved */
    size_t used;            /* slots handed out this epoch */
    size_t populated;       /* slots backed by memory */
    size_t peak;            /* largest populated so far */
    size_t recent[LM_MC_POOL_HISTORY];  /* used by recent epochs */
    unsigned nrecent;
} lm_mc_pool;

bool lm_mc_pool_init(lm_mc_pool *p, size_t cap_slots, livemig_error *err);
void lm_mc_pool_destroy(lm_mc_pool *p);
/* Back at least @slots slots with memory now. */
void lm_mc_pool_reserve(lm_mc_pool *p, size_t slots);
/* A fresh slot (its index), or LM_MC_NO_SLOT at the cap or when no
 * memory can be had for it. */
uint32_t lm_mc_pool_take(lm_mc_pool *p);
static inline uint8_t *lm_mc_pool_at(const lm_mc_pool *p, uint32_t slot)
{
    return p->base + (size_t)slot * 4096u;
}
/* Slots [0, @slots) in use this epoch and backed by memory; false above
 * the cap or when no memory can be had.  For a caller that fills the pool
 * front to back. */
bool lm_mc_pool_use(lm_mc_pool *p, size_t slots);
/* The epoch's pages are sent (primary) or applied (backup): every slot
 * is free again; shrink. */
void lm_mc_pool_epoch_end(lm_mc_pool *p);
/* Bytes of memory the pool holds now. */
static inline uint64_t lm_mc_pool_bytes(const lm_mc_pool *p)
{
    return (uint64_t)p->populated * 4096u;
}

#endif
