/*
 * kv-heap.c - the allocator inside the kv block (see kv-heap.h).
 */
#include "guest/kv/kv-heap.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- audit -------------------------------------------------------------- */

/* Chunks start 16-byte aligned (the arena starts on a page, every class
 * is a multiple of 16): one bit per 16 bytes says "covered by a chunk". */
#define UNIT 16u

struct kv_heap_audit {
    const kv_heap *h;
    uint64_t *seen;
    uint64_t chunks, used;
    bool failed;
    char why[256];
};

kv_heap_audit *kv_heap_audit_new(const kv_heap *h)
{
    kv_heap_audit *a = calloc(1, sizeof(*a));
    size_t units = h->size / UNIT;
    if (a)
        a->seen = calloc((units + 63) / 64, sizeof(uint64_t));
    if (!a || !a->seen) {
        free(a);
        return NULL;
    }
    a->h = h;
    return a;
}

void kv_heap_audit_fail(kv_heap_audit *a, const char *fmt, ...)
{
    if (a->failed)
        return;
    a->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->why, sizeof(a->why), fmt, ap);
    va_end(ap);
}

bool kv_heap_audit_ok(const kv_heap_audit *a)
{
    return !a->failed;
}

/* Mark [chunk, chunk + bytes) covered; false if any of it already was. */
static bool audit_cover(kv_heap_audit *a, kv_off chunk, uint64_t bytes)
{
    for (uint64_t u = chunk / UNIT; u < (chunk + bytes) / UNIT; u++) {
        uint64_t bit = 1ull << (u % 64);
        if (a->seen[u / 64] & bit)
            return false;
        a->seen[u / 64] |= bit;
    }
    return true;
}

/* Is @chunk a chunk position inside the used part of the arena? */
static bool audit_in_arena(const kv_root *r, kv_off chunk)
{
    return chunk >= r->arena_start && chunk < r->bump &&
           chunk % UNIT == 0;
}

bool kv_heap_audit_chunk(kv_heap_audit *a, kv_off off, size_t len,
                         const char *what)
{
    const kv_root *r = a->h->root;
    if (a->failed)
        return false;
    if (off < HDR || !audit_in_arena(r, off - HDR)) {
        kv_heap_audit_fail(a, "%s at offset %llu is not inside the used "
                           "arena [%llu, %llu)", what,
                           (unsigned long long)off,
                           (unsigned long long)r->arena_start,
                           (unsigned long long)r->bump);
        return false;
    }
    kv_off chunk = off - HDR;
    uint64_t hdr = *(const uint64_t *)kv_ptr(a->h, chunk);
    unsigned c = (unsigned)(hdr & ~HDR_TAG_MASK);
    if ((hdr & HDR_TAG_MASK) != HDR_TAG || c >= KV_NCLASSES) {
        kv_heap_audit_fail(a, "%s at offset %llu is not a live chunk "
                           "(header %#llx): freed while still in use?",
                           what, (unsigned long long)off,
                           (unsigned long long)hdr);
        return false;
    }
    uint64_t cs = class_size(c);
    if (chunk + cs > r->bump || len > cs - HDR) {
        kv_heap_audit_fail(a, "%s at offset %llu: chunk of %llu bytes "
                           "(class %u) %s", what, (unsigned long long)off,
                           (unsigned long long)cs, c,
                           chunk + cs > r->bump ? "passes the bump pointer"
                                                : "is too small for it");
        return false;
    }
    if (!audit_cover(a, chunk, cs)) {
        kv_heap_audit_fail(a, "%s at offset %llu is reached twice or "
                           "overlaps another chunk", what,
                           (unsigned long long)off);
        return false;
    }
    a->chunks++;
    a->used += cs;
    return true;
}

bool kv_heap_audit_end(kv_heap_audit *a, char *why, size_t why_len)
{
    const kv_root *r = a->h->root;
    uint64_t free_bytes = 0;
    uint64_t limit = (r->bump - r->arena_start) / UNIT;
    for (unsigned c = 0; c < KV_NCLASSES && !a->failed; c++) {
        uint64_t n = 0;
        kv_off ch = r->free_head[c];
        while (ch && !a->failed) {
            if (!audit_in_arena(r, ch) || ch + class_size(c) > r->bump ||
                *(const uint64_t *)kv_ptr(a->h, ch) != c) {
                kv_heap_audit_fail(a, "free list %u holds %llu, not a free "
                                   "chunk of that class", c,
                                   (unsigned long long)ch);
            } else if (!audit_cover(a, ch, class_size(c))) {
                kv_heap_audit_fail(a, "free chunk %llu (class %u) is in use "
                                   "or on a free list twice",
                                   (unsigned long long)ch, c);
            } else if (++n > limit) {
                kv_heap_audit_fail(a, "free list %u loops", c);
            } else {
                free_bytes += class_size(c);
                ch = *(const uint64_t *)kv_ptr(a->h, ch + HDR);
            }
        }
    }
    if (!a->failed) {
        for (uint64_t u = r->arena_start / UNIT; u < r->bump / UNIT; u++) {
            if (!(a->seen[u / 64] & (1ull << (u % 64)))) {
                kv_heap_audit_fail(a, "arena bytes at %llu are neither in a "
                                   "live chunk nor on a free list: leaked",
                                   (unsigned long long)(u * UNIT));
                break;
            }
        }
    }
    if (!a->failed && (a->chunks != r->chunks || a->used != r->used ||
                       free_bytes != r->free_bytes))
        kv_heap_audit_fail(a, "the root counts %llu chunks, %llu bytes used, "
                           "%llu free; the walk found %llu, %llu, %llu",
                           (unsigned long long)r->chunks,
                           (unsigned long long)r->used,
                           (unsigned long long)r->free_bytes,
                           (unsigned long long)a->chunks,
                           (unsigned long long)a->used,
                           (unsigned long long)free_bytes);
    bool ok = !a->failed;
    if (!ok)
        snprintf(why, why_len, "%s", a->why);
    free(a->seen);
    free(a);
    return ok;
}
