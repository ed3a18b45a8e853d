/*
 * kv-types.c - values and keyspace operations (see kv-types.h).
 */
#include "guest/kv/kv-types.h"
#include "guest/kv/kv-dict.h"

#include <string.h>

kv_off kv_str_new(kv_heap *h, const void *data, size_t len)
{
    if (len > KV_STR_MAX)
        return 0;
    kv_off s = kv_alloc(h, sizeof(kv_str) + len);
    if (!s)
        return 0;
    kv_str *p = kv_ptr(h, s);
    p->len = (uint32_t)len;
    if (len)
        memcpy(p->data, data, len);
    kv_touch(h, s, sizeof(kv_str) + len);
    return s;
}

const char *kv_type_name(uint32_t type)
{
    switch (type) {
    case KV_T_STRING: return "string";
    case KV_T_LIST: return "list";
    case KV_T_HASH: return "hash";
    case KV_T_SET: return "set";
    default: return "none";
    }
}

static bool free_entry_cb(kv_heap *h, kv_off e, void *opaque)
{
    bool values = *(bool *)opaque;
    kv_entry *ent = kv_ptr(h, e);
    kv_free(h, ent->key);
    if (values)
        kv_free(h, ent->val);
    kv_free(h, e);
    return true;
}

void kv_strdict_free(kv_heap *h, kv_off dict, bool has_values)
{
    kv_dict_each(h, kv_ptr(h, dict), free_entry_cb, &has_values);
    kv_dict_destroy(h, dict);
}

void kv_value_free(kv_heap *h, uint32_t type, kv_off val)
{
    if (!val)
        return;
    switch (type) {
    case KV_T_STRING:
        kv_free(h, val);
        break;
    case KV_T_LIST: {
        kv_list *l = kv_ptr(h, val);
        for (kv_off n = l->head; n;) {
            kv_lnode *node = kv_ptr(h, n);
            kv_off next = node->next;
            kv_free(h, node->str);
            kv_free(h, n);
            n = next;
        }
        kv_free(h, val);
        break;
    }
    case KV_T_HASH:
        kv_strdict_free(h, val, true);
        break;
    case KV_T_SET:
        kv_strdict_free(h, val, false);
        break;
    }
}

/* ---- keyspace ------------------------------------------------------------ */

static void free_db_entry(kv_heap *h, kv_off e)
{
    kv_entry *ent = kv_ptr(h, e);
    if (ent->expire_ms) {
        h->root->expires--;
        kv_touch_ptr(h, &h->root->expires, sizeof(uint64_t));
    }
    kv_value_free(h, ent->type, ent->val);
    kv_free(h, ent->key);
    kv_free(h, e);
}

kv_off kv_db_lookup(kv_heap *h, const void *key, size_t len, int64_t now_ms,
                    uint64_t *expired)
{
    kv_dict *db = &h->root->db;
    kv_off e = kv_dict_find(h, db, key, len);
    if (!e)
        return 0;
    kv_entry *ent = kv_ptr(h, e);
    if (ent->expire_ms && ent->expire_ms <= now_ms) {
        kv_dict_unlink(h, db, key, len);
        free_db_entry(h, e);
        if (expired)
            (*expired)++;
        return 0;
    }
    return e;
}

kv_off kv_db_add(kv_heap *h, const void *key, size_t len, uint32_t type,
                 kv_off val)
{
    kv_off k = kv_str_new(h, key, len);
    if (!k)
        return 0;
    kv_off e = kv_dict_insert(h, &h->root->db, k);
    if (!e) {
        kv_free(h, k);
        return 0;
    }
    kv_entry *ent = kv_ptr(h, e);
    ent->type = type;
    ent->val = val;
    kv_touch(h, e, sizeof(kv_entry));
    return e;
}

bool kv_db_delete(kv_heap *h, const void *key, size_t len)
{
    kv_off e = kv_dict_unlink(h, &h->root->db, key, len);
    if (!e)
        return false;
    free_db_entry(h, e);
    return true;
}

void kv_db_set_value(kv_heap *h, kv_off entry, uint32_t type, kv_off val)
{
    kv_entry *ent = kv_ptr(h, entry);
    kv_value_free(h, ent->type, ent->val);
    ent->type = type;
    ent->val = val;
    kv_touch(h, entry, sizeof(kv_entry));
}

void kv_db_set_expire(kv_heap *h, kv_off entry, int64_t when_ms)
{
    kv_entry *ent = kv_ptr(h, entry);
    if (!ent->expire_ms != !when_ms) {
        if (when_ms)
            h->root->expires++;
        else
            h->root->expires--;
        kv_touch_ptr(h, &h->root->expires, sizeof(uint64_t));
    }
    ent->expire_ms = when_ms;
    kv_touch(h, entry, sizeof(kv_entry));
}

static bool flush_cb(kv_heap *h, kv_off e, void *opaque)
{
    (void)opaque;
    free_db_entry(h, e);
    return true;
}

void kv_db_flush(kv_heap *h)
{
    kv_dict *db = &h->root->db;
    kv_dict_each(h, db, flush_cb, NULL);
    kv_free(h, db->table[0]);
    kv_free(h, db->table[1]);
    memset(db, 0, sizeof(*db));
    db->rehash = -1;
    h->root->expires = 0;
    kv_touch_ptr(h, h->root, sizeof(kv_root));
}

typedef struct expire_scan {
    int64_t now;
    kv_off found[64];
    unsigned n;
} expire_scan;

static bool expire_cb(kv_heap *h, kv_off e, void *opaque)
{
    expire_scan *s = opaque;
    kv_entry *ent = kv_ptr(h, e);
    if (ent->expire_ms && ent->expire_ms <= s->now && s->n < 64)
        s->found[s->n++] = e;
    return true;
}

uint64_t kv_db_expire_cycle(kv_heap *h, int64_t now_ms, unsigned budget)
{
    kv_root *r = h->root;
    uint64_t deleted = 0;
    if (!r->expires)
        return 0;
    while (budget--) {
        expire_scan s = { .now = now_ms };
        r->expire_cursor = kv_dict_scan(h, &r->db, r->expire_cursor,
                                        expire_cb, &s);
        kv_touch_ptr(h, &r->expire_cursor, sizeof(uint64_t));
        for (unsigned i = 0; i < s.n; i++) {
            kv_entry *ent = kv_ptr(h, s.found[i]);
            kv_str *k = kv_ptr(h, ent->key);
            if (kv_db_delete(h, k->data, k->len))
                deleted++;
        }
        if (!r->expire_cursor)
            break;
    }
    return deleted;
}

/* ---- lists ------------------------------------------------------------ */

kv_off kv_list_new(kv_heap *h)
{
    return kv_calloc(h, sizeof(kv_list));
}

bool kv_list_push(kv_heap *h, kv_off list, bool left, const void *data,
                  size_t len)
{
    kv_off s = kv_str_new(h, data, len);
    if (!s)
        return false;
    kv_off n = kv_alloc(h, sizeof(kv_lnode));
    if (!n) {
        kv_free(h, s);
        return false;
    }
    kv_list *l = kv_ptr(h, list);
    kv_lnode *node = kv_ptr(h, n);
    node->str = s;
    if (left) {
        node->prev = 0;
        node->next = l->head;
        if (l->head) {
            kv_lnode *old = kv_ptr(h, l->head);
            old->prev = n;
            kv_touch(h, l->head, sizeof(kv_lnode));
        }
        l->head = n;
        if (!l->tail)
            l->tail = n;
    } else {
        node->next = 0;
        node->prev = l->tail;
        if (l->tail) {
            kv_lnode *old = kv_ptr(h, l->tail);
            old->next = n;
            kv_touch(h, l->tail, sizeof(kv_lnode));
        }
        l->tail = n;
        if (!l->head)
            l->head = n;
    }
    l->len++;
    kv_touch(h, n, sizeof(kv_lnode));
    kv_touch(h, list, sizeof(kv_list));
    return true;
}

kv_off kv_list_pop(kv_heap *h, kv_off list, bool left)
{
    kv_list *l = kv_ptr(h, list);
    kv_off n = left ? l->head : l->tail;
    if (!n)
        return 0;
    kv_lnode *node = kv_ptr(h, n);
    kv_off s = node->str;
    if (left) {
        l->head = node->next;
        if (l->head) {
            kv_lnode *nx = kv_ptr(h, l->head);
            nx->prev = 0;
            kv_touch(h, l->head, sizeof(kv_lnode));
        } else {
            l->tail = 0;
        }
    } else {
        l->tail = node->prev;
        if (l->tail) {
            kv_lnode *pv = kv_ptr(h, l->tail);
            pv->next = 0;
            kv_touch(h, l->tail, sizeof(kv_lnode));
        } else {
            l->head = 0;
        }
    }
    l->len--;
    kv_touch(h, list, sizeof(kv_list));
    kv_free(h, n);
    return s;
}

kv_off kv_list_index(kv_heap *h, kv_off list, int64_t index)
{
    kv_list *l = kv_ptr(h, list);
    if (index < 0)
        index += (int64_t)l->len;
    if (index < 0 || (uint64_t)index >= l->len)
        return 0;
    kv_off n;
    if ((uint64_t)index < l->len / 2) {
        n = l->head;
        while (index--)
            n = ((kv_lnode *)kv_ptr(h, n))->next;
    } else {
        n = l->tail;
        for (uint64_t i = l->len - 1; i > (uint64_t)index; i--)
            n = ((kv_lnode *)kv_ptr(h, n))->prev;
    }
    return n;
}

/* ---- hashes and sets ---------------------------------------------------- */

bool kv_hash_set(kv_heap *h, kv_off dict, const void *f, size_t flen,
                 const void *v, size_t vlen, bool *created)
{
    kv_dict *d = kv_ptr(h, dict);
    kv_off val = kv_str_new(h, v, vlen);
    if (!val)
        return false;
    kv_off e = kv_dict_find(h, d, f, flen);
    if (e) {
        kv_entry *ent = kv_ptr(h, e);
        kv_free(h, ent->val);
        ent->val = val;
        kv_touch(h, e, sizeof(kv_entry));
        *created = false;
        return true;
    }
    kv_off k = kv_str_new(h, f, flen);
    if (!k) {
        kv_free(h, val);
        return false;
    }
    e = kv_dict_insert(h, d, k);
    if (!e) {
        kv_free(h, k);
        kv_free(h, val);
        return false;
    }
    kv_entry *ent = kv_ptr(h, e);
    ent->val = val;
    kv_touch(h, e, sizeof(kv_entry));
    *created = true;
    return true;
}

int kv_set_add(kv_heap *h, kv_off dict, const void *m, size_t len)
{
    kv_dict *d = kv_ptr(h, dict);
    if (kv_dict_find(h, d, m, len))
        return 0;
    kv_off k = kv_str_new(h, m, len);
    if (!k)
        return -1;
    if (!kv_dict_insert(h, d, k)) {
        kv_free(h, k);
        return -1;
    }
    return 1;
}

bool kv_dict_remove(kv_heap *h, kv_off dict, const void *k, size_t len,
                    bool has_values)
{
    kv_off e = kv_dict_unlink(h, kv_ptr(h, dict), k, len);
    if (!e)
        return false;
    kv_entry *ent = kv_ptr(h, e);
    kv_free(h, ent->key);
    if (has_values)
        kv_free(h, ent->val);
    kv_free(h, e);
    return true;
}
