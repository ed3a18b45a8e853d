/*
 * kv-cmd-coll.c - list, hash and set commands: LPUSH RPUSH LPOP RPOP LLEN
 * LRANGE LINDEX; HSET HGET HMGET HGETALL HDEL HLEN HINCRBY; SADD SREM
 * SMEMBERS SISMEMBER SCARD SPOP.  A collection that becomes empty is
 * deleted, as in Redis.
 */
#include "guest/kv/kv-int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The entry of key argv[1] with @type, created empty if absent.  0 with a
 * reply sent (WRONGTYPE or -OOM). */
static kv_off get_or_create(kv_ctx *x, uint32_t type)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, type, &e))
        return 0;
    if (e)
        return e;
    kv_off v = type == KV_T_LIST ? kv_list_new(x->h) : kv_dict_new(x->h);
    if (v && !(e = kv_db_add(x->h, KV_ARG(x, 1), KV_LEN(x, 1), type, v)))
        kv_value_free(x->h, type, v);
    if (!e)
        kv_reply_oom(x);
    return e;
}

static kv_off val_of(kv_ctx *x, kv_off e)
{
    return ((kv_entry *)kv_ptr(x->h, e))->val;
}

static uint64_t coll_len(kv_ctx *x, kv_off e)
{
    kv_entry *ent = kv_ptr(x->h, e);
    if (ent->type == KV_T_LIST)
        return ((kv_list *)kv_ptr(x->h, ent->val))->len;
    return kv_dict_size(kv_ptr(x->h, ent->val));
}

static void drop_if_empty(kv_ctx *x, kv_off e)
{
    if (!coll_len(x, e))
        kv_db_delete(x->h, KV_ARG(x, 1), KV_LEN(x, 1));
}

static void bulk_of(kv_ctx *x, kv_off str)
{
    kv_str *s = kv_ptr(x->h, str);
    kv_out_bulk(x->out, s->data, s->len);
}

/* ---- lists ------------------------------------------------------------ */

static void push(kv_ctx *x, bool left)
{
    kv_off e = get_or_create(x, KV_T_LIST);
    if (!e)
        return;
    for (size_t i = 2; i < x->argc; i++) {
        if (!kv_list_push(x->h, val_of(x, e), left, KV_ARG(x, i),
                          KV_LEN(x, i))) {
            drop_if_empty(x, e);
            kv_reply_oom(x);
            return;
        }
    }
    kv_out_int(x->out, (int64_t)coll_len(x, e));
}

void kv_cmd_lpush(kv_ctx *x)
{
    push(x, true);
}

void kv_cmd_rpush(kv_ctx *x)
{
    push(x, false);
}

static void pop(kv_ctx *x, bool left)
{
    long long count = -1;
    if (x->argc > 3) {
        kv_out_error(x->out, "ERR wrong number of arguments for '%s' "
                     "command", x->cmd->name);
        return;
    }
    if (x->argc == 3) {
        if (!kv_parse_ll(KV_ARG(x, 2), KV_LEN(x, 2), &count) || count < 0) {
            kv_out_error(x->out, "ERR value is out of range, must be "
                         "positive");
            return;
        }
    }
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_LIST, &e))
        return;
    if (!e) {
        if (count >= 0)
            kv_out_null_array(x->out);
        else
            kv_out_null(x->out);
        return;
    }
    uint64_t n = count < 0 ? 1 : (uint64_t)count;
    uint64_t have = coll_len(x, e);
    if (n > have)
        n = have;
    if (count >= 0)
        kv_out_array(x->out, n);
    for (uint64_t i = 0; i < n; i++) {
        kv_off s = kv_list_pop(x->h, val_of(x, e), left);
        bulk_of(x, s);
        kv_free(x->h, s);
    }
    drop_if_empty(x, e);
}

void kv_cmd_lpop(kv_ctx *x)
{
    pop(x, true);
}

void kv_cmd_rpop(kv_ctx *x)
{
    pop(x, false);
}

void kv_cmd_llen(kv_ctx *x)
{
    kv_off e;
    if (kv_lookup_type(x, 1, KV_T_LIST, &e))
        kv_out_int(x->out, e ? (int64_t)coll_len(x, e) : 0);
}

void kv_cmd_lrange(kv_ctx *x)
{
    long long start, stop;
    if (!kv_arg_ll(x, 2, &start) || !kv_arg_ll(x, 3, &stop))
        return;
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_LIST, &e))
        return;
    if (!e) {
        kv_out_array(x->out, 0);
        return;
    }
    long long len = (long long)coll_len(x, e);
    if (start < 0)
        start += len;
    if (stop < 0)
        stop += len;
    if (start < 0)
        start = 0;
    if (start > stop || start >= len) {
        kv_out_array(x->out, 0);
        return;
    }
    if (stop >= len)
        stop = len - 1;
    kv_out_array(x->out, (size_t)(stop - start + 1));
    kv_off n = kv_list_index(x->h, val_of(x, e), start);
    for (long long i = start; i <= stop && n; i++) {
        kv_lnode *node = kv_ptr(x->h, n);
        bulk_of(x, node->str);
        n = node->next;
    }
}

void kv_cmd_lindex(kv_ctx *x)
{
    long long idx;
    if (!kv_arg_ll(x, 2, &idx))
        return;
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_LIST, &e))
        return;
    kv_off n = e ? kv_list_index(x->h, val_of(x, e), idx) : 0;
    if (!n)
        kv_out_null(x->out);
    else
        bulk_of(x, ((kv_lnode *)kv_ptr(x->h, n))->str);
}

/* ---- hashes ------------------------------------------------------------ */

void kv_cmd_hset(kv_ctx *x)
{
    if (x->argc % 2) {
        kv_out_error(x->out, "ERR wrong number of arguments for 'hset' "
                     "command");
        return;
    }
    kv_off e = get_or_create(x, KV_T_HASH);
    if (!e)
        return;
    int64_t added = 0;
    for (size_t i = 2; i < x->argc; i += 2) {
        bool created;
        if (!kv_hash_set(x->h, val_of(x, e), KV_ARG(x, i), KV_LEN(x, i),
                         KV_ARG(x, i + 1), KV_LEN(x, i + 1), &created)) {
            drop_if_empty(x, e);
            kv_reply_oom(x);
            return;
        }
        added += created;
    }
    kv_out_int(x->out, added);
}

static kv_off field(kv_ctx *x, kv_off e, size_t i)
{
    return kv_dict_find(x->h, kv_ptr(x->h, val_of(x, e)), KV_ARG(x, i),
                        KV_LEN(x, i));
}

void kv_cmd_hget(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_HASH, &e))
        return;
    kv_off f = e ? field(x, e, 2) : 0;
    if (!f)
        kv_out_null(x->out);
    else
        bulk_of(x, ((kv_entry *)kv_ptr(x->h, f))->val);
}

void kv_cmd_hmget(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_HASH, &e))
        return;
    kv_out_array(x->out, x->argc - 2);
    for (size_t i = 2; i < x->argc; i++) {
        kv_off f = e ? field(x, e, i) : 0;
        if (!f)
            kv_out_null(x->out);
        else
            bulk_of(x, ((kv_entry *)kv_ptr(x->h, f))->val);
    }
}

typedef struct emit {
    kv_ctx *x;
    bool values;
} emit;

static bool emit_cb(kv_heap *h, kv_off e, void *opaque)
{
    emit *m = opaque;
    (void)h;
    kv_entry *ent = kv_ptr(m->x->h, e);
    bulk_of(m->x, ent->key);
    if (m->values)
        bulk_of(m->x, ent->val);
    return true;
}

void kv_cmd_hgetall(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_HASH, &e))
        return;
    if (!e) {
        kv_out_array(x->out, 0);
        return;
    }
    kv_out_array(x->out, 2 * coll_len(x, e));
    emit m = { x, true };
    kv_dict_each(x->h, kv_ptr(x->h, val_of(x, e)), emit_cb, &m);
}

void kv_cmd_hdel(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_HASH, &e))
        return;
    int64_t n = 0;
    for (size_t i = 2; e && i < x->argc; i++)
        n += kv_dict_remove(x->h, val_of(x, e), KV_ARG(x, i), KV_LEN(x, i),
                            true);
    if (e)
        drop_if_empty(x, e);
    kv_out_int(x->out, n);
}

void kv_cmd_hlen(kv_ctx *x)
{
    kv_off e;
    if (kv_lookup_type(x, 1, KV_T_HASH, &e))
        kv_out_int(x->out, e ? (int64_t)coll_len(x, e) : 0);
}

void kv_cmd_hincrby(kv_ctx *x)
{
    long long by, v = 0;
    if (!kv_arg_ll(x, 3, &by))
        return;
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_HASH, &e))
        return;
    kv_off f = e ? field(x, e, 2) : 0;
    if (f) {
        kv_str *s = kv_ptr(x->h, ((kv_entry *)kv_ptr(x->h, f))->val);
        if (!kv_parse_ll(s->data, s->len, &v)) {
            kv_out_error(x->out, "ERR hash value is not an integer");
            return;
        }
    }
    if ((by < 0 && v < 0 && by < LLONG_MIN - v) ||
        (by > 0 && v > 0 && by > LLONG_MAX - v)) {
        kv_out_error(x->out, "%s", KV_ERR_OVERFLOW);
        return;
    }
    v += by;
    if (!e && !(e = get_or_create(x, KV_T_HASH)))
        return;
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%lld", v);
    bool created;
    if (!kv_hash_set(x->h, val_of(x, e), KV_ARG(x, 2), KV_LEN(x, 2), tmp,
                     (size_t)n, &created)) {
        drop_if_empty(x, e);
        kv_reply_oom(x);
        return;
    }
    kv_out_int(x->out, v);
}

/* ---- sets -------------------------------------------------------------- */

void kv_cmd_sadd(kv_ctx *x)
{
    kv_off e = get_or_create(x, KV_T_SET);
    if (!e)
        return;
    int64_t added = 0;
    for (size_t i = 2; i < x->argc; i++) {
        int r = kv_set_add(x->h, val_of(x, e), KV_ARG(x, i), KV_LEN(x, i));
        if (r < 0) {
            drop_if_empty(x, e);
            kv_reply_oom(x);
            return;
        }
        added += r;
    }
    kv_out_int(x->out, added);
}

void kv_cmd_srem(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_SET, &e))
        return;
    int64_t n = 0;
    for (size_t i = 2; e && i < x->argc; i++)
        n += kv_dict_remove(x->h, val_of(x, e), KV_ARG(x, i), KV_LEN(x, i),
                            false);
    if (e)
        drop_if_empty(x, e);
    kv_out_int(x->out, n);
}

void kv_cmd_smembers(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_SET, &e))
        return;
    if (!e) {
        kv_out_array(x->out, 0);
        return;
    }
    kv_out_array(x->out, coll_len(x, e));
    emit m = { x, false };
    kv_dict_each(x->h, kv_ptr(x->h, val_of(x, e)), emit_cb, &m);
}

void kv_cmd_sismember(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_SET, &e))
        return;
    kv_out_int(x->out, e && field(x, e, 2) ? 1 : 0);
}

void kv_cmd_scard(kv_ctx *x)
{
    kv_off e;
    if (kv_lookup_type(x, 1, KV_T_SET, &e))
        kv_out_int(x->out, e ? (int64_t)coll_len(x, e) : 0);
}

void kv_cmd_spop(kv_ctx *x)
{
    long long count = -1;
    if (x->argc > 3) {
        kv_out_error(x->out, "%s", KV_ERR_SYNTAX);
        return;
    }
    if (x->argc == 3) {
        if (!kv_parse_ll(KV_ARG(x, 2), KV_LEN(x, 2), &count) || count < 0) {
            kv_out_error(x->out, "ERR value is out of range, must be "
                         "positive");
            return;
        }
    }
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_SET, &e))
        return;
    if (!e) {
        if (count >= 0)
            kv_out_array(x->out, 0);
        else
            kv_out_null(x->out);
        return;
    }
    uint64_t n = count < 0 ? 1 : (uint64_t)count;
    uint64_t have = coll_len(x, e);
    if (n > have)
        n = have;
    if (count >= 0)
        kv_out_array(x->out, n);
    for (uint64_t i = 0; i < n; i++) {
        kv_off d = val_of(x, e);
        kv_off m = kv_dict_random(x->h, kv_ptr(x->h, d), kv_store_rand(x->s));
        kv_str *s = kv_ptr(x->h, ((kv_entry *)kv_ptr(x->h, m))->key);
        kv_out_bulk(x->out, s->data, s->len);
        kv_dict_remove(x->h, d, s->data, s->len, false);
    }
    drop_if_empty(x, e);
}
