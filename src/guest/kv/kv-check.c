/*
 * kv-check.c - kv_db_check (see kv-types.h): the store walked from the
 * root, every reachable chunk handed to the heap audit.
 *
 * A corrupt store can hold any offset, so nothing is dereferenced before
 * the audit accepted its chunk (which also stops cycles: a chunk reached
 * twice fails), and every loop is bounded by what the audit allows.
 */
#include "guest/kv/kv-dict.h"
#include "guest/kv/kv-types.h"

#include <stdio.h>
#include <string.h>

enum dict_kind { D_KEYSPACE, D_HASH, D_SET };

typedef struct walk {
    kv_heap *h;
    kv_heap_audit *a;
    uint64_t expires;
} walk;

/* A kv string at @off, all of its bytes inside its chunk. */
static bool check_str(walk *w, kv_off off, const char *what)
{
    if (!kv_heap_audit_chunk(w->a, off, sizeof(kv_str), what))
        return false;
    size_t have = kv_alloc_size(w->h, off);
    const kv_str *s = kv_ptr(w->h, off);
    if (sizeof(kv_str) + (size_t)s->len > have) {
        kv_heap_audit_fail(w->a, "%s at %llu says %u bytes, its chunk holds "
                           "%zu", what, (unsigned long long)off, s->len,
                           have - sizeof(kv_str));
        return false;
    }
    return true;
}

static bool check_dict(walk *w, kv_dict *d, enum dict_kind kind,
                       uint64_t *n);

static bool check_list(walk *w, kv_off off)
{
    if (!kv_heap_audit_chunk(w->a, off, sizeof(kv_list), "list"))
        return false;
    const kv_list *l = kv_ptr(w->h, off);
    uint64_t n = 0;
    kv_off prev = 0;
    for (kv_off node = l->head; node; node = ((kv_lnode *)
                                              kv_ptr(w->h, node))->next) {
        /* The audit refuses a node reached twice: no endless walk. */
        if (!kv_heap_audit_chunk(w->a, node, sizeof(kv_lnode), "list node"))
            return false;
        const kv_lnode *ln = kv_ptr(w->h, node);
        if (ln->prev != prev) {
            kv_heap_audit_fail(w->a, "list %llu: node %llu links back to "
                               "%llu, not %llu", (unsigned long long)off,
                               (unsigned long long)node,
                               (unsigned long long)ln->prev,
                               (unsigned long long)prev);
            return false;
        }
        if (!check_str(w, ln->str, "list element"))
            return false;
        prev = node;
        n++;
    }
    if (l->tail != prev || l->len != n || !n) {
        kv_heap_audit_fail(w->a, "list %llu: len %llu, tail %llu; the walk "
                           "found %llu nodes ending at %llu%s",
                           (unsigned long long)off,
                           (unsigned long long)l->len,
                           (unsigned long long)l->tail,
                           (unsigned long long)n, (unsigned long long)prev,
                           n ? "" : " (an empty list must be deleted)");
        return false;
    }
    return true;
}

static bool check_coll(walk *w, kv_off off, enum dict_kind kind)
{
    const char *what = kind == D_HASH ? "hash" : "set";
    if (!kv_heap_audit_chunk(w->a, off, sizeof(kv_dict), what))
        return false;
    uint64_t n;
    if (!check_dict(w, kv_ptr(w->h, off), kind, &n))
        return false;
    if (!n) {
        kv_heap_audit_fail(w->a, "%s %llu is empty: it must be deleted",
                           what, (unsigned long long)off);
        return false;
    }
    return true;
}

static bool check_entry(walk *w, kv_dict *d, kv_off e, enum dict_kind kind,
                        int t, uint64_t bucket)
{
    if (!kv_heap_audit_chunk(w->a, e, sizeof(kv_entry), "dict entry"))
        return false;
    kv_entry *ent = kv_ptr(w->h, e);
    if (!check_str(w, ent->key, "key"))
        return false;
    const kv_str *k = kv_ptr(w->h, ent->key);
    if ((kv_hash(w->h, k->data, k->len) & (d->size[t] - 1)) != bucket) {
        kv_heap_audit_fail(w->a, "entry %llu is in bucket %llu of table %d, "
                           "its key hashes elsewhere",
                           (unsigned long long)e, (unsigned long long)bucket,
                           t);
        return false;
    }
    /* The first entry with this key is the one a lookup finds: this
     * one, unless the key is in the dict twice. */
    if (kv_dict_find(w->h, d, k->data, k->len) != e) {
        kv_heap_audit_fail(w->a, "key '%.*s' is in a dict twice",
                           (int)(k->len > 64 ? 64 : k->len), k->data);
        return false;
    }
    if (kind != D_KEYSPACE) {
        if (ent->type || ent->expire_ms ||
            (kind == D_SET ? ent->val != 0 : !check_str(w, ent->val,
                                                        "hash value"))) {
            kv_heap_audit_fail(w->a, "%s entry %llu: type %u, expiry %lld, "
                               "value %llu", kind == D_SET ? "set" : "hash",
                               (unsigned long long)e, ent->type,
                               (long long)ent->expire_ms,
                               (unsigned long long)ent->val);
            return false;
        }
        return true;
    }
    if (ent->expire_ms < 0 || !ent->val) {
        kv_heap_audit_fail(w->a, "key entry %llu: expiry %lld, value %llu",
                           (unsigned long long)e, (long long)ent->expire_ms,
                           (unsigned long long)ent->val);
        return false;
    }
    if (ent->expire_ms)
        w->expires++;
    switch (ent->type) {
    case KV_T_STRING:
        return check_str(w, ent->val, "string value");
    case KV_T_LIST:
        return check_list(w, ent->val);
    case KV_T_HASH:
        return check_coll(w, ent->val, D_HASH);
    case KV_T_SET:
        return check_coll(w, ent->val, D_SET);
    default:
        kv_heap_audit_fail(w->a, "key entry %llu has type %u",
                           (unsigned long long)e, ent->type);
        return false;
    }
}

static bool check_dict(walk *w, kv_dict *d, enum dict_kind kind, uint64_t *n)
{
    *n = 0;
    for (int t = 0; t < 2; t++) {
        uint64_t size = d->size[t];
        if (!size) {
            if (d->table[t] || d->used[t]) {
                kv_heap_audit_fail(w->a, "dict table %d: no buckets, but "
                                   "table %llu and %llu entries", t,
                                   (unsigned long long)d->table[t],
                                   (unsigned long long)d->used[t]);
                return false;
            }
            continue;
        }
        if ((size & (size - 1)) || size > w->h->size / sizeof(kv_off) ||
            !kv_heap_audit_chunk(w->a, d->table[t], size * sizeof(kv_off),
                                 "dict table")) {
            kv_heap_audit_fail(w->a, "dict table %d: %llu buckets at %llu",
                               t, (unsigned long long)size,
                               (unsigned long long)d->table[t]);
            return false;
        }
    }
    if (d->rehash < 0 ? d->size[1] != 0
                      : !d->size[0] || !d->size[1] ||
                            (uint64_t)d->rehash > d->size[0]) {
        kv_heap_audit_fail(w->a, "dict rehash at %lld with tables of %llu "
                           "and %llu buckets", (long long)d->rehash,
                           (unsigned long long)d->size[0],
                           (unsigned long long)d->size[1]);
        return false;
    }
    for (int t = 0; t < 2; t++) {
        const kv_off *b = d->size[t] ? kv_ptr(w->h, d->table[t]) : NULL;
        uint64_t found = 0;
        for (uint64_t i = 0; i < d->size[t]; i++) {
            if (b[i] && t == 0 && d->rehash >= 0 &&
                i < (uint64_t)d->rehash) {
                kv_heap_audit_fail(w->a, "dict bucket %llu of table 0 was "
                                   "rehashed but holds entries",
                                   (unsigned long long)i);
                return false;
            }
            for (kv_off e = b[i]; e;
                 e = ((kv_entry *)kv_ptr(w->h, e))->next) {
                if (!check_entry(w, d, e, kind, t, i))
                    return false;
                found++;
            }
        }
        if (found != d->used[t]) {
            kv_heap_audit_fail(w->a, "dict table %d counts %llu entries, "
                               "holds %llu", t,
                               (unsigned long long)d->used[t],
                               (unsigned long long)found);
            return false;
        }
        *n += found;
    }
    return true;
}

bool kv_db_check(kv_heap *h, uint64_t *keys, char *why, size_t why_len)
{
    if (!kv_heap_check(h, why, why_len))
        return false;
    kv_heap_audit *a = kv_heap_audit_new(h);
    if (!a) {
        snprintf(why, why_len, "out of memory for the store check");
        return false;
    }
    walk w = { .h = h, .a = a };
    uint64_t n = 0;
    if (check_dict(&w, &h->root->db, D_KEYSPACE, &n) &&
        w.expires != h->root->expires)
        kv_heap_audit_fail(a, "the root counts %llu keys with a time to "
                           "live, the walk found %llu",
                           (unsigned long long)h->root->expires,
                           (unsigned long long)w.expires);
    if (keys)
        *keys = n;
    return kv_heap_audit_end(a, why, why_len);
}
