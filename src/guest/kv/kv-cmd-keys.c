/*
 * kv-cmd-keys.c - keyspace commands: DEL EXISTS TYPE EXPIRE PEXPIRE TTL
 * PTTL PERSIST KEYS SCAN RENAME.
 */
#include "guest/kv/kv-int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kv_cmd_del(kv_ctx *x)
{
    int64_t n = 0;
    for (size_t i = 1; i < x->argc; i++) {
        if (kv_lookup(x, i) &&
            kv_db_delete(x->h, KV_ARG(x, i), KV_LEN(x, i)))
            n++;
    }
    kv_out_int(x->out, n);
}

void kv_cmd_exists(kv_ctx *x)
{
    int64_t n = 0;
    for (size_t i = 1; i < x->argc; i++)
        if (kv_lookup(x, i))
            n++;
    kv_out_int(x->out, n);
}

void kv_cmd_type(kv_ctx *x)
{
    kv_off e = kv_lookup(x, 1);
    kv_out_status(x->out, kv_type_name(e ? ((kv_entry *)kv_ptr(x->h, e))->type
                                         : KV_T_NONE));
}

/* EXPIRE / PEXPIRE key time [NX|XX|GT|LT] */
static void expire_generic(kv_ctx *x, int64_t unit)
{
    long long t;
    if (!kv_arg_ll(x, 2, &t))
        return;
    bool nx = false, xx = false, gt = false, lt = false;
    for (size_t i = 3; i < x->argc; i++) {
        if (kv_arg_is(x, i, "nx"))
            nx = true;
        else if (kv_arg_is(x, i, "xx"))
            xx = true;
        else if (kv_arg_is(x, i, "gt"))
            gt = true;
        else if (kv_arg_is(x, i, "lt"))
            lt = true;
        else {
            kv_out_error(x->out, "ERR Unsupported option %.*s",
                         (int)(KV_LEN(x, i) > 64 ? 64 : KV_LEN(x, i)),
                         KV_ARG(x, i));
            return;
        }
    }
    if (nx && (xx || gt || lt)) {
        kv_out_error(x->out, "ERR NX and XX, GT or LT options at the same "
                     "time are not compatible");
        return;
    }
    if (gt && lt) {
        kv_out_error(x->out, "ERR GT and LT options at the same time are "
                     "not compatible");
        return;
    }
    if (t > (LLONG_MAX - x->now) / unit || t < (LLONG_MIN + x->now) / unit) {
        kv_out_error(x->out, "ERR invalid expire time in '%s' command",
                     x->cmd->name);
        return;
    }
    int64_t when = x->now + t * unit;
    kv_off e = kv_lookup(x, 1);
    if (!e) {
        kv_out_int(x->out, 0);
        return;
    }
    kv_entry *ent = kv_ptr(x->h, e);
    int64_t cur = ent->expire_ms;     /* 0 = never, i.e. infinite */
    if ((nx && cur) || (xx && !cur) ||
        (gt && (!cur || when <= cur)) || (lt && cur && when >= cur)) {
        kv_out_int(x->out, 0);
        return;
    }
    if (when <= x->now) {
        kv_db_delete(x->h, KV_ARG(x, 1), KV_LEN(x, 1));
        x->s->n.expired++;
    } else {
        kv_db_set_expire(x->h, e, when);
    }
    kv_out_int(x->out, 1);
}

void kv_cmd_expire(kv_ctx *x)
{
    expire_generic(x, 1000);
}

void kv_cmd_pexpire(kv_ctx *x)
{
    expire_generic(x, 1);
}

static void ttl_generic(kv_ctx *x, bool ms)
{
    kv_off e = kv_lookup(x, 1);
    if (!e) {
        kv_out_int(x->out, -2);
        return;
    }
    kv_entry *ent = kv_ptr(x->h, e);
    if (!ent->expire_ms) {
        kv_out_int(x->out, -1);
        return;
    }
    int64_t left = ent->expire_ms - x->now;
    if (left < 0)
        left = 0;
    kv_out_int(x->out, ms ? left : (left + 500) / 1000);
}

void kv_cmd_ttl(kv_ctx *x)
{
    ttl_generic(x, false);
}

void kv_cmd_pttl(kv_ctx *x)
{
    ttl_generic(x, true);
}

void kv_cmd_persist(kv_ctx *x)
{
    kv_off e = kv_lookup(x, 1);
    if (!e || !((kv_entry *)kv_ptr(x->h, e))->expire_ms) {
        kv_out_int(x->out, 0);
        return;
    }
    kv_db_set_expire(x->h, e, 0);
    kv_out_int(x->out, 1);
}

/* Keys collected by a walk: offsets of their entries. */
typedef struct collect {
    kv_ctx *x;
    const char *pat;
    size_t plen;
    uint32_t type;              /* SCAN TYPE, or KV_T_NONE for any */
    kv_off *e;
    size_t n, cap;
    bool oom;
} collect;

static bool collect_cb(kv_heap *h, kv_off e, void *opaque)
{
    collect *c = opaque;
    kv_entry *ent = kv_ptr(h, e);
    if (ent->expire_ms && ent->expire_ms <= c->x->now)
        return true;
    if (c->type && ent->type != c->type)
        return true;
    kv_str *k = kv_ptr(h, ent->key);
    if (c->pat && !(c->plen == 1 && c->pat[0] == '*') &&
        !kv_glob(c->pat, c->plen, k->data, k->len, false))
        return true;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        kv_off *n = realloc(c->e, cap * sizeof(*n));
        if (!n) {
            c->oom = true;
            return false;
        }
        c->e = n;
        c->cap = cap;
    }
    c->e[c->n++] = e;
    return true;
}

static void reply_keys(kv_ctx *x, collect *c)
{
    kv_out_array(x->out, c->n);
    for (size_t i = 0; i < c->n; i++) {
        kv_str *k = kv_ptr(x->h, ((kv_entry *)kv_ptr(x->h, c->e[i]))->key);
        kv_out_bulk(x->out, k->data, k->len);
    }
    free(c->e);
}

void kv_cmd_keys(kv_ctx *x)
{
    collect c = { .x = x, .pat = KV_ARG(x, 1), .plen = KV_LEN(x, 1) };
    kv_dict_each(x->h, &x->h->root->db, collect_cb, &c);
    if (c.oom) {
        free(c.e);
        kv_out_error(x->out, "ERR out of memory listing keys; use SCAN");
        return;
    }
    reply_keys(x, &c);
}

/* SCAN cursor [MATCH pattern] [COUNT n] [TYPE t] */
void kv_cmd_scan(kv_ctx *x)
{
    char tmp[32];
    size_t l = KV_LEN(x, 1);
    unsigned long long cursor;
    char *end;
    if (l == 0 || l >= sizeof(tmp)) {
        kv_out_error(x->out, "ERR invalid cursor");
        return;
    }
    memcpy(tmp, KV_ARG(x, 1), l);
    tmp[l] = '\0';
    cursor = strtoull(tmp, &end, 10);
    if (*end || tmp[0] == '-') {
        kv_out_error(x->out, "ERR invalid cursor");
        return;
    }
    collect c = { .x = x };
    long long count = 10;
    for (size_t i = 2; i < x->argc; i++) {
        bool more = i + 1 < x->argc;
        if (kv_arg_is(x, i, "match") && more) {
            c.pat = KV_ARG(x, i + 1);
            c.plen = KV_LEN(x, i + 1);
            i++;
        } else if (kv_arg_is(x, i, "count") && more) {
            if (!kv_arg_ll(x, i + 1, &count))
                return;
            if (count < 1) {
                kv_out_error(x->out, "%s", KV_ERR_SYNTAX);
                return;
            }
            i++;
        } else if (kv_arg_is(x, i, "type") && more) {
            static const char *const names[] = { "string", "list", "hash",
                                                 "set" };
            c.type = KV_T_NONE;
            for (unsigned t = 0; t < 4; t++)
                if (kv_arg_is(x, i + 1, names[t]))
                    c.type = t + 1;
            if (!c.type) {
                /* An unknown type matches nothing, as in Redis. */
                c.type = 0xffffffffu;
            }
            i++;
        } else {
            kv_out_error(x->out, "%s", KV_ERR_SYNTAX);
            return;
        }
    }
    uint64_t v = cursor;
    /* Bounded work on a sparse table; COUNT may be as large as a long
     * long goes. */
    long long visits = count > LLONG_MAX / 10 ? LLONG_MAX : count * 10;
    do {
        v = kv_dict_scan(x->h, &x->h->root->db, v, collect_cb, &c);
    } while (v && (long long)c.n < count && --visits > 0 && !c.oom);
    if (c.oom) {
        free(c.e);
        kv_out_error(x->out, "ERR out of memory scanning keys");
        return;
    }
    kv_out_array(x->out, 2);
    kv_out_bulk_int(x->out, (int64_t)v);
    reply_keys(x, &c);
}

void kv_cmd_rename(kv_ctx *x)
{
    kv_off e = kv_lookup(x, 1);
    if (!e) {
        kv_out_error(x->out, "ERR no such key");
        return;
    }
    if (KV_LEN(x, 1) == KV_LEN(x, 2) &&
        !memcmp(KV_ARG(x, 1), KV_ARG(x, 2), KV_LEN(x, 1))) {
        kv_out_status(x->out, "OK");
        return;
    }
    /* The value moves to the destination's entry (reused if the key
     * exists, so a full block cannot lose it), then the source goes. */
    kv_off dst = kv_lookup(x, 2);
    kv_entry *ent = kv_ptr(x->h, e);
    uint32_t type = ent->type;
    kv_off val = ent->val;
    int64_t expire = ent->expire_ms;
    kv_off n = dst;
    if (dst) {
        kv_db_set_value(x->h, dst, type, val);
    } else if (!(n = kv_db_add(x->h, KV_ARG(x, 2), KV_LEN(x, 2), type,
                               val))) {
        kv_reply_oom(x);
        return;
    }
    ent = kv_ptr(x->h, e);
    ent->val = 0;                      /* now owned by the destination */
    kv_touch(x->h, e, sizeof(kv_entry));
    kv_db_delete(x->h, KV_ARG(x, 1), KV_LEN(x, 1));
    kv_db_set_expire(x->h, n, expire);
    kv_out_status(x->out, "OK");
}
