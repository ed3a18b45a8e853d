/*
 * kv-types.h - the values of the kv store, inside the block: strings,
 * lists, hashes and sets, and the keyspace operations on them.
 *
 *   string  kv_str {u32 len; bytes}            (integers as decimal text)
 *   list    kv_list {head, tail, len}, nodes {prev, next, kv_str}
 *   hash    kv_dict of field -> kv_str
 *   set     kv_dict of members (val 0)
 * A keyspace entry (kv_entry) holds the key, the type and the value's
 * offset, and the expiry time on the store's clock.
 *
 * Everything here writes the block through kv-heap and touches what it
 * wrote.  Functions that allocate return 0 / false when the block is full
 * and leave the store as it was.
 */
#ifndef KV_TYPES_H
#define KV_TYPES_H

#include "guest/kv/kv-heap.h"

enum { KV_T_NONE = 0, KV_T_STRING, KV_T_LIST, KV_T_HASH, KV_T_SET };

typedef struct kv_str {
    uint32_t len;
    char data[];
} kv_str;

typedef struct kv_list {
    kv_off head, tail;
    uint64_t len;
} kv_list;

typedef struct kv_lnode {
    kv_off prev, next;
    kv_off str;
} kv_lnode;

/* Largest string value (as Redis's proto-max-bulk-len). */
#define KV_STR_MAX (512u * 1024 * 1024)

kv_off kv_str_new(kv_heap *h, const void *data, size_t len);
static inline kv_str *kv_str_at(kv_heap *h, kv_off s)
{
    return kv_ptr(h, s);
}

const char *kv_type_name(uint32_t type);

/* Free a value of @type (all its parts). */
void kv_value_free(kv_heap *h, uint32_t type, kv_off val);

/* ---- keyspace ------------------------------------------------------------ */

/* The live entry of @key, or 0.  An expired key is deleted on the way
 * (@now_ms is the store clock) and counted in *expired. */
kv_off kv_db_lookup(kv_heap *h, const void *key, size_t len, int64_t now_ms,
                    uint64_t *expired);
/* Add @key with a value (key must be absent); returns the entry or 0. */
kv_off kv_db_add(kv_heap *h, const void *key, size_t len, uint32_t type,
                 kv_off val);
/* Delete @key: true if it existed. */
bool kv_db_delete(kv_heap *h, const void *key, size_t len);
/* Replace an entry's value (the old one is freed); the expiry is kept. */
void kv_db_set_value(kv_heap *h, kv_off entry, uint32_t type, kv_off val);
void kv_db_set_expire(kv_heap *h, kv_off entry, int64_t when_ms);
/* Remove every key. */
void kv_db_flush(kv_heap *h);
/* Delete up to @max expired keys found from the expiry cursor, looking at
 * no more than @budget buckets.  Returns how many were deleted. */
uint64_t kv_db_expire_cycle(kv_heap *h, int64_t now_ms, unsigned budget);

/* ---- lists ------------------------------------------------------------ */

kv_off kv_list_new(kv_heap *h);
/* Push a copy of @data at the head (@left) or tail; false when full. */
bool kv_list_push(kv_heap *h, kv_off list, bool left, const void *data,
                  size_t len);
/* Pop from the head or tail: the kv_str (the caller frees it), or 0. */
kv_off kv_list_pop(kv_heap *h, kv_off list, bool left);
/* The node at @index (negative from the tail), or 0. */
kv_off kv_list_index(kv_heap *h, kv_off list, int64_t index);

/* ---- hashes and sets (a dict of strings) -------------------------------- */

/* Set field -> value (replace); *created says whether the field is new.
 * False when full. */
bool kv_hash_set(kv_heap *h, kv_off dict, const void *f, size_t flen,
                 const void *v, size_t vlen, bool *created);
/* Add a member: 1 added, 0 present, -1 full. */
int kv_set_add(kv_heap *h, kv_off dict, const void *m, size_t len);
/* Remove a field / member: true if it was there. */
bool kv_dict_remove(kv_heap *h, kv_off dict, const void *k, size_t len,
                    bool has_values);
/* Free a whole hash or set dict. */
void kv_strdict_free(kv_heap *h, kv_off dict, bool has_values);

/* ---- consistency (tests and the fuzzer; kv-check.c) --------------------- */

/* Walk the whole store and check what the commands rely on: every
 * dictionary's tables, counts, rehash state and bucket placement, no key
 * twice, every entry's type and value (lists linked both ways with their
 * length, no empty collection), the root's expires count, and, through
 * kv_heap_audit, that the walk accounts for every allocated chunk exactly
 * once.  *@keys (may be NULL) gets the keys the walk found.  Reads only;
 * O(size of the store).  False with the first thing wrong in @why. */
bool kv_db_check(kv_heap *h, uint64_t *keys, char *why, size_t why_len);

#endif
