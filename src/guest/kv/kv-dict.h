/*
 * kv-dict.h - a chained hash table inside the kv block: the keyspace, and
 * the fields of a hash and the members of a set.
 *
 * Keys are kv strings (kv-types.h); an entry holds the key, a value
 * offset, a type and an expiry time.  The table doubles when it is as full
 * as it has buckets and shrinks when it is an eighth full, moving its
 * buckets to the new table a few at a time on later writes (and from the
 * server's cron), so no single command pays for rehashing a big table, and
 * a failed allocation of a bigger table only makes chains longer.
 */
#ifndef KV_DICT_H
#define KV_DICT_H

#include "guest/kv/kv-heap.h"

typedef struct kv_entry {
    kv_off next;
    kv_off key;             /* kv_str */
    kv_off val;             /* depends on type; 0 for set members */
    int64_t expire_ms;      /* store clock; 0 = never */
    uint32_t type;          /* keyspace: KV_T_*; else 0 */
    uint32_t pad;
} kv_entry;

/* A new empty dictionary header in the heap (0 when full). */
kv_off kv_dict_new(kv_heap *h);
/* Free the tables and the header; entries must have been freed. */
void kv_dict_destroy(kv_heap *h, kv_off dict);

uint64_t kv_dict_size(const kv_dict *d);

/* The entry whose key is @key (@len bytes), or 0. */
kv_off kv_dict_find(kv_heap *h, kv_dict *d, const void *key, size_t len);
/* Insert a new entry for kv string @key (which must not be present);
 * returns it with val/type/expire zero, or 0 when the heap is full. */
kv_off kv_dict_insert(kv_heap *h, kv_dict *d, kv_off key);
/* Unlink the entry of @key and return it (the caller frees key, value and
 * entry), or 0. */
kv_off kv_dict_unlink(kv_heap *h, kv_dict *d, const void *key, size_t len);

/* Move up to @buckets buckets of a resize in progress.  True while one is
 * still in progress. */
bool kv_dict_rehash(kv_heap *h, kv_dict *d, unsigned buckets);

/* Visit every entry (no insert or unlink during the walk). */
typedef bool (*kv_dict_fn)(kv_heap *h, kv_off entry, void *opaque);
void kv_dict_each(kv_heap *h, kv_dict *d, kv_dict_fn fn, void *opaque);

/* SCAN: visit the entries of the buckets of cursor @cursor and return the
 * next cursor (0 when done).  Entries present for the whole scan are seen
 * at least once, across resizes (reverse-binary cursor). */
uint64_t kv_dict_scan(kv_heap *h, kv_dict *d, uint64_t cursor,
                      kv_dict_fn fn, void *opaque);

/* A random entry (SPOP, expiry sampling), or 0 if empty. */
kv_off kv_dict_random(kv_heap *h, kv_dict *d, uint64_t rnd);

#endif
