/*
 * kv-heap.h - the kv store's memory: one RAM block holding a root record
 * and an arena, with an allocator that hands out offsets, not pointers,
 * so the block can be mapped at another address on another host and mean
 * the same thing.
 *
 * Layout (host byte order: this is guest memory, never a wire format; both
 * ends of a migration run the same build):
 *   [0, 4096)          kv_root: magic, layout version, arena bounds, the
 *                      allocator's free lists, the keyspace dictionary's
 *                      header, the hash seed;
 *   [4096, size)       the arena: chunks of 16-byte multiples, each with
 *                      an 8-byte header naming its size class.
 * Offset 0 is the root, so 0 never names a chunk: it is the null offset.
 *
 * Allocation: one free list per size class (16-byte steps up to 512 bytes,
 * then four classes per power of two), then the bump pointer, then a
 * bigger class's free chunk used whole.  No coalescing: a store that
 * churns values of very different sizes fragments, and -OOM comes early;
 * the numbers in INFO memory show it.
 *
 * Dirty tracking: every write into the block is followed by kv_touch()
 * over the bytes written, which marks their pages in the engine's manual
 * bitmap (a no-op when the block is tracked by uffd-wp-async or mprotect).
 * Only the server thread writes the block.
 */
#ifndef KV_HEAP_H
#define KV_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "livemig/livemig.h"

typedef uint64_t kv_off;            /* offset in the block; 0 = null */

#define KV_PAGE 4096u
#define KV_NCLASSES 160u
#define KV_MAGIC 0x6c6d2d6b762d3031ull   /* "lm-kv-01" */
#define KV_LAYOUT_VERSION 1u

/* A dictionary header (see kv-dict.h); lives in the block. */
typedef struct kv_dict {
    kv_off table[2];        /* arrays of bucket heads (kv_off) */
    uint64_t size[2];       /* buckets, a power of two, 0 = none */
    uint64_t used[2];
    int64_t rehash;         /* next bucket of table[0] to move, -1 idle */
} kv_dict;

typedef struct kv_root {
    uint64_t magic;
    uint64_t version;
    uint64_t size;          /* of the block */
    uint64_t hash_seed;
    uint64_t arena_start, arena_end, bump;
    uint64_t used;          /* bytes in allocated chunks */
    uint64_t free_bytes;    /* bytes in free-list chunks */
    uint64_t chunks;        /* allocated chunks */
    uint64_t expires;       /* keys with a time to live */
    uint64_t expire_cursor; /* active expiry's place in the keyspace */
    kv_off free_head[KV_NCLASSES];
    kv_dict db;             /* the keyspace */
} kv_root;

/* The host's handle on the block (not in the block). */
typedef struct kv_heap {
    uint8_t *base;
    size_t size;
    uint64_t *bitmap;       /* manual tracker's bitmap, or NULL */
    kv_root *root;
} kv_heap;

/* Attach to @base (@size bytes).  @format true: lay out an empty store
 * (a new source); false: the block comes from a migration and is checked
 * by kv_heap_check once loaded. */
void kv_heap_init(kv_heap *h, void *base, size_t size, uint64_t *bitmap,
                  bool format);
/* Is the block a store this build understands?  @why names what is off. */
bool kv_heap_check(const kv_heap *h, char *why, size_t why_len);

static inline void *kv_ptr(const kv_heap *h, kv_off off)
{
    return h->base + off;
}

/* Mark the pages of [off, off + len) dirty. */
static inline void kv_touch(const kv_heap *h, kv_off off, size_t len)
{
    if (!h->bitmap || !len)
        return;
    size_t first = off / KV_PAGE, last = (off + len - 1) / KV_PAGE;
    for (size_t p = first; p <= last; p++)
        livemig_dirty_mark(h->bitmap, p);
}

static inline void kv_touch_ptr(const kv_heap *h, const void *p, size_t len)
{
    kv_touch(h, (kv_off)((const uint8_t *)p - h->base), len);
}

/* A chunk of at least @len bytes (8-aligned), or 0 when the arena is
 * full.  The bytes are not cleared. */
kv_off kv_alloc(kv_heap *h, size_t len);
/* Same, zeroed (and touched). */
kv_off kv_calloc(kv_heap *h, size_t len);
void kv_free(kv_heap *h, kv_off off);
/* Usable bytes of the chunk at @off. */
size_t kv_alloc_size(const kv_heap *h, kv_off off);

/* Bytes that can still be allocated, roughly (bump room + free lists). */
uint64_t kv_heap_avail(const kv_heap *h);

/* A 64-bit hash of @data, seeded by the store's seed. */
uint64_t kv_hash(const kv_heap *h, const void *data, size_t len);

/* ---- audit (tests and the fuzzer) --------------------------------------- */

/* The allocator checked against a walk of the store (kv_db_check): the
 * walk hands every chunk it reaches to kv_heap_audit_chunk; then
 * kv_heap_audit_end walks the free lists and checks that the live and the
 * free chunks tile the arena up to the bump pointer without overlap, and
 * that the root's counters (chunks, used, free_bytes) match.  The first
 * thing found wrong is kept; later calls then do nothing. */
typedef struct kv_heap_audit kv_heap_audit;

kv_heap_audit *kv_heap_audit_new(const kv_heap *h);
/* A live chunk at @off reached by the walk, which needs @len bytes of it.
 * False if it is not a live chunk, too small, or reached twice. */
bool kv_heap_audit_chunk(kv_heap_audit *a, kv_off off, size_t len,
                         const char *what);
/* Record a failure of the walk itself (the first one is kept). */
void kv_heap_audit_fail(kv_heap_audit *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool kv_heap_audit_ok(const kv_heap_audit *a);
/* Finish, free @a; false with the first failure in @why. */
bool kv_heap_audit_end(kv_heap_audit *a, char *why, size_t why_len);

#endif
