/*
 * kv-dict.c - the in-block hash table (see kv-dict.h).
 */
#include "guest/kv/kv-dict.h"
#include "guest/kv/kv-types.h"

#include <string.h>

#define MIN_SIZE 4u

kv_off kv_dict_new(kv_heap *h)
{
    kv_off off = kv_calloc(h, sizeof(kv_dict));
    if (off) {
        kv_dict *d = kv_ptr(h, off);
        d->rehash = -1;
    }
    return off;
}

void kv_dict_destroy(kv_heap *h, kv_off dict)
{
    kv_dict *d = kv_ptr(h, dict);
    kv_free(h, d->table[0]);
    kv_free(h, d->table[1]);
    kv_free(h, dict);
}

uint64_t kv_dict_size(const kv_dict *d)
{
    return d->used[0] + d->used[1];
}

static kv_off *buckets(kv_heap *h, kv_dict *d, int t)
{
    return kv_ptr(h, d->table[t]);
}

static uint64_t entry_hash(kv_heap *h, kv_off entry)
{
    const kv_entry *e = kv_ptr(h, entry);
    const kv_str *k = kv_ptr(h, e->key);
    return kv_hash(h, k->data, k->len);
}

static bool key_eq(kv_heap *h, kv_off entry, const void *key, size_t len)
{
    const kv_entry *e = kv_ptr(h, entry);
    const kv_str *k = kv_ptr(h, e->key);
    return k->len == len && memcmp(k->data, key, len) == 0;
}

/* Start moving to a table of @size buckets.  False if it cannot be had. */
static bool start_resize(kv_heap *h, kv_dict *d, uint64_t size)
{
    if (d->rehash >= 0 || size == d->size[0])
        return false;
    kv_off t = kv_calloc(h, size * sizeof(kv_off));
    if (!t)
        return false;
    if (!d->size[0]) {                /* the first table */
        d->table[0] = t;
        d->size[0] = size;
    } else {
        d->table[1] = t;
        d->size[1] = size;
        d->used[1] = 0;
        d->rehash = 0;
    }
    kv_touch_ptr(h, d, sizeof(*d));
    return true;
}

bool kv_dict_rehash(kv_heap *h, kv_dict *d, unsigned nb)
{
    if (d->rehash < 0)
        return false;
    kv_off *t0 = buckets(h, d, 0), *t1 = buckets(h, d, 1);
    uint64_t mask1 = d->size[1] - 1;
    unsigned empty_visits = nb * 10;
    while (nb && d->used[0]) {
        while (!t0[d->rehash]) {
            d->rehash++;
            if (!--empty_visits)
                goto out;
        }
        kv_off e = t0[d->rehash];
        while (e) {
            kv_entry *ent = kv_ptr(h, e);
            kv_off next = ent->next;
            uint64_t b = entry_hash(h, e) & mask1;
            ent->next = t1[b];
            kv_touch_ptr(h, &ent->next, sizeof(kv_off));
            t1[b] = e;
            kv_touch_ptr(h, &t1[b], sizeof(kv_off));
            d->used[0]--;
            d->used[1]++;
            e = next;
        }
        t0[d->rehash] = 0;
        kv_touch_ptr(h, &t0[d->rehash], sizeof(kv_off));
        d->rehash++;
        nb--;
    }
out:
    if (!d->used[0]) {
        kv_free(h, d->table[0]);
        d->table[0] = d->table[1];
        d->size[0] = d->size[1];
        d->used[0] = d->used[1];
        d->table[1] = 0;
        d->size[1] = d->used[1] = 0;
        d->rehash = -1;
    }
    kv_touch_ptr(h, d, sizeof(*d));
    return d->rehash >= 0;
}

kv_off kv_dict_find(kv_heap *h, kv_dict *d, const void *key, size_t len)
{
    if (!kv_dict_size(d))
        return 0;
    uint64_t hv = kv_hash(h, key, len);
    for (int t = 0; t < 2; t++) {
        if (!d->size[t])
            break;
        kv_off e = buckets(h, d, t)[hv & (d->size[t] - 1)];
        while (e) {
            if (key_eq(h, e, key, len))
                return e;
            e = ((kv_entry *)kv_ptr(h, e))->next;
        }
        if (d->rehash < 0)
            break;
    }
    return 0;
}

kv_off kv_dict_insert(kv_heap *h, kv_dict *d, kv_off key)
{
    if (d->rehash >= 0)
        kv_dict_rehash(h, d, 1);
    if (!d->size[0])
        start_resize(h, d, MIN_SIZE);
    else if (d->rehash < 0 && d->used[0] >= d->size[0])
        start_resize(h, d, d->size[0] * 2);   /* may fail: chains grow */
    if (!d->size[0])
        return 0;
    kv_off e = kv_calloc(h, sizeof(kv_entry));
    if (!e)
        return 0;
    int t = d->rehash >= 0 ? 1 : 0;
    const kv_str *k = kv_ptr(h, key);
    kv_off *b = &buckets(h, d, t)[kv_hash(h, k->data, k->len) &
                                  (d->size[t] - 1)];
    kv_entry *ent = kv_ptr(h, e);
    ent->key = key;
    ent->next = *b;
    kv_touch(h, e, sizeof(kv_entry));
    *b = e;
    kv_touch_ptr(h, b, sizeof(kv_off));
    d->used[t]++;
    kv_touch_ptr(h, d, sizeof(*d));
    return e;
}

kv_off kv_dict_unlink(kv_heap *h, kv_dict *d, const void *key, size_t len)
{
    if (!kv_dict_size(d))
        return 0;
    if (d->rehash >= 0)
        kv_dict_rehash(h, d, 1);
    uint64_t hv = kv_hash(h, key, len);
    for (int t = 0; t < 2; t++) {
        if (!d->size[t])
            break;
        kv_off *link = &buckets(h, d, t)[hv & (d->size[t] - 1)];
        while (*link) {
            kv_off e = *link;
            kv_entry *ent = kv_ptr(h, e);
            if (key_eq(h, e, key, len)) {
                *link = ent->next;
                kv_touch_ptr(h, link, sizeof(kv_off));
                d->used[t]--;
                if (d->rehash < 0 && d->size[0] > 16 &&
                    d->used[0] * 8 < d->size[0]) {
                    uint64_t s = MIN_SIZE;
                    while (s < d->used[0])
                        s *= 2;
                    start_resize(h, d, s);
                }
                kv_touch_ptr(h, d, sizeof(*d));
                return e;
            }
            link = &ent->next;
        }
        if (d->rehash < 0)
            break;
    }
    return 0;
}

void kv_dict_each(kv_heap *h, kv_dict *d, kv_dict_fn fn, void *opaque)
{
    for (int t = 0; t < 2; t++) {
        if (!d->size[t])
            continue;
        kv_off *b = buckets(h, d, t);
        for (uint64_t i = 0; i < d->size[t]; i++) {
            for (kv_off e = b[i]; e;) {
                kv_off next = ((kv_entry *)kv_ptr(h, e))->next;
                if (!fn(h, e, opaque))
                    return;
                e = next;
            }
        }
    }
}

static uint64_t rev(uint64_t v)
{
    v = ((v >> 1) & 0x5555555555555555ull) | ((v & 0x5555555555555555ull) << 1);
    v = ((v >> 2) & 0x3333333333333333ull) | ((v & 0x3333333333333333ull) << 2);
    v = ((v >> 4) & 0x0f0f0f0f0f0f0f0full) | ((v & 0x0f0f0f0f0f0f0f0full) << 4);
    v = ((v >> 8) & 0x00ff00ff00ff00ffull) | ((v & 0x00ff00ff00ff00ffull) << 8);
    v = ((v >> 16) & 0x0000ffff0000ffffull) | ((v & 0x0000ffff0000ffffull) << 16);
    return (v >> 32) | (v << 32);
}

static void visit_bucket(kv_heap *h, kv_off *b, uint64_t i, kv_dict_fn fn,
                         void *opaque)
{
    for (kv_off e = b[i]; e;) {
        kv_off next = ((kv_entry *)kv_ptr(h, e))->next;
        fn(h, e, opaque);
        e = next;
    }
}

uint64_t kv_dict_scan(kv_heap *h, kv_dict *d, uint64_t v, kv_dict_fn fn,
                      void *opaque)
{
    if (!kv_dict_size(d) || !d->size[0])
        return 0;
    uint64_t m0;
    if (d->rehash < 0) {
        m0 = d->size[0] - 1;
        visit_bucket(h, buckets(h, d, 0), v & m0, fn, opaque);
    } else {
        int small = d->size[0] <= d->size[1] ? 0 : 1, big = 1 - small;
        m0 = d->size[small] - 1;
        uint64_t m1 = d->size[big] - 1;
        visit_bucket(h, buckets(h, d, small), v & m0, fn, opaque);
        /* Every bucket of the bigger table that expands from it. */
        do {
            visit_bucket(h, buckets(h, d, big), v & m1, fn, opaque);
            v |= ~m1;
            v = rev(rev(v) + 1);
        } while (v & (m0 ^ m1));
        return v;
    }
    v |= ~m0;
    v = rev(rev(v) + 1);
    return v;
}

kv_off kv_dict_random(kv_heap *h, kv_dict *d, uint64_t rnd)
{
    if (!kv_dict_size(d))
        return 0;
    /* Probe buckets from a random start; take the first non-empty one's
     * entry at a random depth.  Not uniform, as SPOP needs not be. */
    for (int t = 0; t < 2; t++) {
        if (!d->used[t])
            continue;
        kv_off *b = buckets(h, d, t);
        uint64_t n = d->size[t];
        for (uint64_t i = 0; i < n; i++) {
            kv_off e = b[(rnd + i) & (n - 1)];
            if (!e)
                continue;
            unsigned depth = 0;
            for (kv_off x = e; x; x = ((kv_entry *)kv_ptr(h, x))->next)
                depth++;
            unsigned pick = (unsigned)((rnd >> 32) % depth);
            while (pick--)
                e = ((kv_entry *)kv_ptr(h, e))->next;
            return e;
        }
    }
    return 0;
}
