/*
 * kv-heap.c - the allocator inside the kv block (see kv-heap.h).
 */
#include "guest/kv/kv-heap.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define HDR 8u                       /* chunk header: class | HDR_TAG */
#define HDR_TAG 0x4b56000000000000ull
#define HDR_TAG_MASK 0xffff000000000000ull
#define SMALL_MAX 512u
#define SMALL_CLASSES (SMALL_MAX / 16)
#define SPILL_CLASSES 8u             /* how far up a full class may borrow */

/* Total chunk bytes (header included) of class @c. */
static uint64_t class_size(unsigned c)
{
    if (c < SMALL_CLASSES)
        return 16ull * (c + 1);
    unsigned k = c - SMALL_CLASSES;
    unsigned p = 9 + k / 4, q = k % 4;           /* (2^p, 2^(p+1)] */
    return (1ull << p) + ((1ull << p) / 4) * (q + 1);
}

/* Smallest class whose chunks hold @total bytes, or KV_NCLASSES. */
static unsigned class_of(uint64_t total)
{
    if (total <= SMALL_MAX)
        return (unsigned)((total + 15) / 16) - (total ? 1 : 0);
    unsigned p = 63 - (unsigned)__builtin_clzll(total - 1);   /* 2^p < t */
    uint64_t step = (1ull << p) / 4;
    unsigned q = (unsigned)((total - (1ull << p) + step - 1) / step) - 1;
    unsigned c = SMALL_CLASSES + (p - 9) * 4 + q;
    return c < KV_NCLASSES ? c : KV_NCLASSES;
}

static void touch_root(kv_heap *h, const void *field, size_t len)
{
    kv_touch_ptr(h, field, len);
}

void kv_heap_init(kv_heap *h, void *base, size_t size, uint64_t *bitmap,
                  bool format)
{
    h->base = base;
    h->size = size;
    h->bitmap = bitmap;
    h->root = base;
    if (!format)
        return;
    kv_root *r = h->root;
    memset(r, 0, sizeof(*r));
    r->magic = KV_MAGIC;
    r->version = KV_LAYOUT_VERSION;
    r->size = size;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->hash_seed = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^
                   (uint64_t)(uintptr_t)base;
    r->arena_start = r->bump = KV_PAGE;
    r->arena_end = size;
    r->db.rehash = -1;
    touch_root(h, r, sizeof(*r));
}

bool kv_heap_check(const kv_heap *h, char *why, size_t why_len)
{
    const kv_root *r = h->root;
    if (r->magic != KV_MAGIC) {
        snprintf(why, why_len, "the block holds no kv store (bad magic)");
        return false;
    }
    if (r->version != KV_LAYOUT_VERSION) {
        snprintf(why, why_len, "the store's layout is version %llu, this "
                 "build reads version %u; run the same livemig on both "
                 "sides", (unsigned long long)r->version, KV_LAYOUT_VERSION);
        return false;
    }
    if (r->size != h->size || r->arena_end != h->size ||
        r->bump > r->arena_end || r->arena_start != KV_PAGE) {
        snprintf(why, why_len, "the store was made for a %llu-byte block, "
                 "this one has %zu bytes; give both sides the same size=",
                 (unsigned long long)r->size, h->size);
        return false;
    }
    return true;
}

static kv_off take(kv_heap *h, unsigned c)
{
    kv_root *r = h->root;
    kv_off chunk = r->free_head[c];
    uint64_t *next = kv_ptr(h, chunk + HDR);
    r->free_head[c] = *next;
    r->free_bytes -= class_size(c);
    touch_root(h, &r->free_head[c], sizeof(kv_off));
    return chunk;
}

kv_off kv_alloc(kv_heap *h, size_t len)
{
    kv_root *r = h->root;
    if (len > h->size)
        return 0;
    uint64_t total = (uint64_t)len + HDR;
    if (total < 16)
        total = 16;
    unsigned c = class_of(total);
    if (c >= KV_NCLASSES)
        return 0;
    kv_off chunk = 0;
    unsigned used_class = c;
    if (r->free_head[c]) {
        chunk = take(h, c);
    } else if (r->arena_end - r->bump >= class_size(c)) {
        chunk = r->bump;
        r->bump += class_size(c);
    } else {
        for (unsigned k = c + 1; k < KV_NCLASSES && k <= c + SPILL_CLASSES;
             k++) {
            if (r->free_head[k]) {
                chunk = take(h, k);
                used_class = k;
                break;
            }
        }
        if (!chunk)
            return 0;
    }
    uint64_t *hdr = kv_ptr(h, chunk);
    *hdr = HDR_TAG | used_class;
    kv_touch(h, chunk, HDR);
    r->used += class_size(used_class);
    r->chunks++;
    touch_root(h, r, offsetof(kv_root, free_head));
    return chunk + HDR;
}

kv_off kv_calloc(kv_heap *h, size_t len)
{
    kv_off off = kv_alloc(h, len);
    if (off) {
        memset(kv_ptr(h, off), 0, len);
        kv_touch(h, off, len);
    }
    return off;
}

size_t kv_alloc_size(const kv_heap *h, kv_off off)
{
    const uint64_t *hdr = kv_ptr(h, off - HDR);
    return class_size((unsigned)(*hdr & ~HDR_TAG_MASK)) - HDR;
}

void kv_free(kv_heap *h, kv_off off)
{
    if (!off)
        return;
    kv_root *r = h->root;
    kv_off chunk = off - HDR;
    uint64_t *hdr = kv_ptr(h, chunk);
    unsigned c = (unsigned)(*hdr & ~HDR_TAG_MASK);
    if ((*hdr & HDR_TAG_MASK) != HDR_TAG || c >= KV_NCLASSES)
        return;   /* not a live chunk: refuse rather than corrupt */
    *hdr = c;     /* tag cleared: a second free is refused */
    uint64_t *next = kv_ptr(h, off);
    *next = r->free_head[c];
    kv_touch(h, chunk, HDR + sizeof(uint64_t));
    r->free_head[c] = chunk;
    r->used -= class_size(c);
    r->free_bytes += class_size(c);
    r->chunks--;
    touch_root(h, &r->free_head[c], sizeof(kv_off));
    touch_root(h, r, offsetof(kv_root, free_head));
}

uint64_t kv_heap_avail(const kv_heap *h)
{
    const kv_root *r = h->root;
    return (r->arena_end - r->bump) + r->free_bytes;
}

uint64_t kv_hash(const kv_heap *h, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t x = h->root->hash_seed ^ (len * 0x9e3779b97f4a7c15ull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        x ^= w * 0xff51afd7ed558ccdull;
        x = (x << 31 | x >> 33) * 0xc4ceb9fe1a85ec53ull;
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    x ^= w * 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}
