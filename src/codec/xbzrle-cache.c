/*
 * xbzrle-cache.c - direct-mapped cache of sent pages for XBZRLE.
 *
 * Layout: one array of slot keys and one contiguous block of page data,
 * slot i's page at data + i * page_size.  A key maps to its slot by
 * (page + block * K) mod slots, K a large odd constant: consecutive pages
 * of a block take consecutive slots and different blocks start at
 * unrelated offsets.  The modulo keeps every byte of the budget usable
 * (QEMU rounds the slot count down to a power of two and may lose half);
 * one division per lookup is noise next to encoding a page.
 */
#include "codec/xbzrle-cache.h"

#include <stdlib.h>
#include <string.h>

#include "codec/xbzrle.h"

#define BLOCK_SPREAD 0x9e3779b97f4a7c15ull

typedef struct slot {
    uint64_t page;
    uint32_t block;
    uint32_t valid;
} slot;

struct lm_xbzrle_cache {
    size_t page_size;
    uint64_t size_bytes;        /* budget as configured */
    uint64_t nslots;
    uint64_t used;
    slot *slots;
    uint8_t *data;              /* nslots * page_size bytes */
    /* counters, cumulative */
    uint64_t hits, misses, evictions;
    uint64_t pages, bytes, overflow;
};

static inline uint64_t slot_of(const lm_xbzrle_cache *c, uint32_t block,
                               uint64_t page)
{
    return (page + (uint64_t)block * BLOCK_SPREAD) % c->nslots;
}

static inline uint8_t *data_of(const lm_xbzrle_cache *c, uint64_t i)
{
    return c->data + (size_t)i * c->page_size;
}

/* Allocate the tables for @size_bytes; false with @err set on failure. */
static bool alloc_tables(size_t page_size, uint64_t size_bytes,
                         slot **slots, uint8_t **data, uint64_t *nslots,
                         livemig_error *err)
{
    if (size_bytes < page_size) {
        livemig_error_set(err, "xbzrle cache size %llu is smaller than one "
                          "page: use at least %zu bytes",
                          (unsigned long long)size_bytes, page_size);
        return false;
    }
    uint64_t n = size_bytes / page_size;
    if (n > SIZE_MAX / page_size || n > SIZE_MAX / sizeof(slot)) {
        livemig_error_set(err, "xbzrle cache size %llu does not fit in the "
                          "address space: use a smaller size",
                          (unsigned long long)size_bytes);
        return false;
    }
    *slots = calloc((size_t)n, sizeof(slot));
    *data = malloc((size_t)n * page_size);
    if (!*slots || !*data) {
        free(*slots);
        free(*data);
        livemig_error_set(err, "cannot allocate an xbzrle cache of %llu "
                          "bytes: out of memory; use a smaller "
                          "xbzrle-cache-size",
                          (unsigned long long)size_bytes);
        return false;
    }
    *nslots = n;
    return true;
}

lm_xbzrle_cache *lm_xbzrle_cache_new(uint64_t size_bytes, size_t page_size,
                                     livemig_error *err)
{
    if (page_size == 0 || page_size > LM_XBZRLE_PAGE_SIZE_MAX) {
        livemig_error_set(err, "xbzrle page size %zu is not supported: use "
                          "1 to %u bytes", page_size,
                          (unsigned)LM_XBZRLE_PAGE_SIZE_MAX);
        return NULL;
    }
    lm_xbzrle_cache *c = calloc(1, sizeof(*c));
    if (!c) {
        livemig_error_set(err, "cannot allocate an xbzrle cache: out of "
                          "memory");
        return NULL;
    }
    c->page_size = page_size;
    if (!alloc_tables(page_size, size_bytes, &c->slots, &c->data,
                      &c->nslots, err)) {
        free(c);
        return NULL;
    }
    c->size_bytes = size_bytes;
    return c;
}

void lm_xbzrle_cache_free(lm_xbzrle_cache *c)
{
    if (!c)
        return;
    free(c->slots);
    free(c->data);
    free(c);
}

uint8_t *lm_xbzrle_cache_lookup(lm_xbzrle_cache *c, uint32_t block,
                                uint64_t page)
{
    uint64_t i = slot_of(c, block, page);
    const slot *s = &c->slots[i];

    if (s->valid && s->page == page && s->block == block) {
        c->hits++;
        return data_of(c, i);
    }
    c->misses++;
    return NULL;
}

bool lm_xbzrle_cache_contains(const lm_xbzrle_cache *c, uint32_t block,
                              uint64_t page)
{
    const slot *s = &c->slots[slot_of(c, block, page)];
    return s->valid && s->page == page && s->block == block;
}

uint8_t *lm_xbzrle_cache_insert(lm_xbzrle_cache *c, uint32_t block,
                                uint64_t page, const uint8_t *data)
{
    uint64_t i = slot_of(c, block, page);
    slot *s = &c->slots[i];
    uint8_t *dst = data_of(c, i);

    if (!s->valid)
        c->used++;
    else if (s->page != page || s->block != block)
        c->evictions++;
    s->page = page;
    s->block = block;
    s->valid = 1;
    if (dst != data)
        memcpy(dst, data, c->page_size);
    return dst;
}

void lm_xbzrle_cache_invalidate(lm_xbzrle_cache *c, uint32_t block,
                                uint64_t page)
{
    slot *s = &c->slots[slot_of(c, block, page)];

    if (s->valid && s->page == page && s->block == block) {
        s->valid = 0;
        c->used--;
    }
}

void lm_xbzrle_cache_clear(lm_xbzrle_cache *c)
{
    memset(c->slots, 0, (size_t)c->nslots * sizeof(slot));
    c->used = 0;
}

bool lm_xbzrle_cache_resize(lm_xbzrle_cache *c, uint64_t size_bytes,
                            livemig_error *err)
{
    slot *slots;
    uint8_t *data;
    uint64_t n;

    if (size_bytes == c->size_bytes)
        return true;
    /* Build the new tables before dropping the old ones, so a failure
     * leaves the cache as it was. */
    if (!alloc_tables(c->page_size, size_bytes, &slots, &data, &n, err))
        return false;
    free(c->slots);
    free(c->data);
    c->slots = slots;
    c->data = data;
    c->nslots = n;
    c->used = 0;
    c->size_bytes = size_bytes;
    return true;
}

void lm_xbzrle_cache_account(lm_xbzrle_cache *c, ssize_t encoded)
{
    if (encoded < 0) {
        c->overflow++;
        return;
    }
    c->pages++;
    c->bytes += (uint64_t)encoded;
}

void lm_xbzrle_cache_get_stats(const lm_xbzrle_cache *c,
                               lm_xbzrle_cache_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->cache_size = c->size_bytes;
    out->page_size = c->page_size;
    out->slots = c->nslots;
    out->used = c->used;
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->pages = c->pages;
    out->bytes = c->bytes;
    out->overflow = c->overflow;
    if (c->hits + c->misses)
        out->miss_rate = (double)c->misses / (double)(c->hits + c->misses);
    if (c->bytes)
        out->encoding_rate = (double)c->pages * (double)c->page_size /
                             (double)c->bytes;
}

size_t lm_xbzrle_cache_page_size(const lm_xbzrle_cache *c)
{
    return c->page_size;
}

uint64_t lm_xbzrle_cache_slots(const lm_xbzrle_cache *c)
{
    return c->nslots;
}
