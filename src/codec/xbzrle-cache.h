/*
 * xbzrle-cache.h - the cache of sent pages that XBZRLE encodes against.
 *
 * The cache holds, for some pages of the guest, a copy of the content the
 * destination has for that page, keyed by (RAM block index, page index in
 * the block).  It is direct-mapped: a key has exactly one slot, and
 * inserting a key evicts whatever key held its slot.  Consecutive pages of
 * one block land in consecutive slots, so a block smaller than the cache
 * never evicts itself.
 *
 * Budget: xbzrle-cache-size bytes of page data, i.e. size / page_size
 * slots (rounded down; a size smaller than one page is refused).  The slot
 * table adds 16 bytes per slot (0.4 % for 4 KiB pages) outside the budget.
 *
 * Threads: the cache belongs to the migration thread.  Nothing here locks;
 * all calls on one cache must come from one thread at a time.  Resizing
 * (the live xbzrle-cache-size tunable) is done by that thread at a safe
 * point (the start of a pass), never from the monitor thread.
 *
 * Correctness rule: the cached copy must equal what the destination has.
 * So the page bytes that go on the wire must be the bytes put in the cache,
 * and any page sent by another path (zero page, compressed, multifd) must
 * be invalidated (or re-inserted with what was sent).  The flow for one
 * dirty page, with a scratch page `snap` and `enc` of page_size - 1 bytes:
 *
 *     const uint8_t *old = lm_xbzrle_cache_lookup(c, block, page);
 *     if (!old) {                                   // miss
 *         const uint8_t *copy = lm_xbzrle_cache_insert(c, block, page, guest);
 *         send raw from copy (or raw from guest without caching:
 *                             lm_xbzrle_cache_invalidate instead);
 *     } else {                                      // hit
 *         memcpy(snap, guest, page_size);           // guest keeps writing
 *         ssize_t n = lm_xbzrle_encode(old, snap, page_size, enc, page_size - 1);
 *         lm_xbzrle_cache_account(c, n);
 *         lm_xbzrle_cache_insert(c, block, page, snap);
 *         if (n < 0) send raw from snap; else if (n > 0) send enc[0..n);
 *         // n == 0: the destination already has this content
 *     }
 *
 * Statistics: hits and misses are counted by lookup; pages, bytes and
 * overflow are counted by the caller through lm_xbzrle_cache_account()
 * (the cache cannot know what was sent).  Counters are cumulative over the
 * cache's life and survive a resize.  They map onto query-migrate's
 * "xbzrle-cache": cache-size, bytes, pages, cache-miss, cache-miss-rate,
 * encoding-rate, overflow.
 */
#ifndef LM_XBZRLE_CACHE_H
#define LM_XBZRLE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "livemig/livemig.h"

typedef struct lm_xbzrle_cache lm_xbzrle_cache;

typedef struct lm_xbzrle_cache_stats {
    /* the cache itself */
    uint64_t cache_size;    /* budget in bytes as configured */
    uint64_t page_size;
    uint64_t slots;         /* cache_size / page_size */
    uint64_t used;          /* slots holding a page now */
    uint64_t hits;          /* lookups that found the key */
    uint64_t misses;        /* lookups that did not ("cache-miss") */
    uint64_t evictions;     /* inserts that replaced another key */
    /* recorded by the caller with lm_xbzrle_cache_account() */
    uint64_t pages;         /* pages encoded (n >= 0) */
    uint64_t bytes;         /* encoded bytes of those pages */
    uint64_t overflow;      /* encodings not smaller than a raw page */
    /* derived */
    double miss_rate;       /* misses / (hits + misses), 0 if no lookup */
    double encoding_rate;   /* pages * page_size / bytes, 0 if no bytes */
} lm_xbzrle_cache_stats;

/* Create a cache of @size_bytes bytes of page data for pages of
 * @page_size bytes (1 to LM_XBZRLE_PAGE_SIZE_MAX, in practice 4096).
 * NULL with @err set if @size_bytes is smaller than one page, the page
 * size is invalid, or memory runs out.  Free with lm_xbzrle_cache_free. */
lm_xbzrle_cache *lm_xbzrle_cache_new(uint64_t size_bytes, size_t page_size,
                                     livemig_error *err);

/* Free @c and every cached page; NULL is a no-op. */
void lm_xbzrle_cache_free(lm_xbzrle_cache *c);

/* The cached copy of (@block, @page), or NULL; counts a hit or a miss.
 * The pointer stays valid until the next insert into the same slot,
 * invalidate of this key, resize or free.  The caller may read it; writing
 * it changes the cached content. */
uint8_t *lm_xbzrle_cache_lookup(lm_xbzrle_cache *c, uint32_t block,
                                uint64_t page);

/* True if (@block, @page) is cached; counts nothing. */
bool lm_xbzrle_cache_contains(const lm_xbzrle_cache *c, uint32_t block,
                              uint64_t page);

/* Copy the page_size bytes at @data into the cache as (@block, @page),
 * replacing the previous content of that key or evicting the key that held
 * its slot.  @data may be the key's own cached copy.  Returns the cached
 * copy (see lookup for its lifetime); never fails. */
uint8_t *lm_xbzrle_cache_insert(lm_xbzrle_cache *c, uint32_t block,
                                uint64_t page, const uint8_t *data);

/* Forget (@block, @page) if it is cached (sent by another path). */
void lm_xbzrle_cache_invalidate(lm_xbzrle_cache *c, uint32_t block,
                                uint64_t page);

/* Forget every page; keeps the size and the counters. */
void lm_xbzrle_cache_clear(lm_xbzrle_cache *c);

/* Change the budget to @size_bytes.  A different size drops every cached
 * page (the next pass sends them raw and refills the cache); the same size
 * keeps them.  On error (@size_bytes below one page, out of memory) the
 * cache is unchanged, contents included, and @err says why.  Counters are
 * kept.  Call only on the thread that uses the cache, at a safe point. */
bool lm_xbzrle_cache_resize(lm_xbzrle_cache *c, uint64_t size_bytes,
                            livemig_error *err);

/* Record the result @encoded of one lm_xbzrle_encode() on a cache hit:
 * -1 counts an overflow, n >= 0 counts a page of n encoded bytes. */
void lm_xbzrle_cache_account(lm_xbzrle_cache *c, ssize_t encoded);

/* Snapshot of the counters. */
void lm_xbzrle_cache_get_stats(const lm_xbzrle_cache *c,
                               lm_xbzrle_cache_stats *out);

/* The page size and the current number of slots. */
size_t lm_xbzrle_cache_page_size(const lm_xbzrle_cache *c);
uint64_t lm_xbzrle_cache_slots(const lm_xbzrle_cache *c);

#endif
