/*
 * kv-cmd-string.c - string commands: GET SET SETNX SETEX GETSET GETDEL
 * MGET MSET INCR DECR INCRBY DECRBY APPEND STRLEN.
 */
#include "guest/kv/kv-int.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static void reply_str(kv_ctx *x, kv_off e)
{
    kv_entry *ent = kv_ptr(x->h, e);
    kv_str *s = kv_ptr(x->h, ent->val);
    kv_out_bulk(x->out, s->data, s->len);
}

void kv_cmd_get(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_STRING, &e))
        return;
    if (!e)
        kv_out_null(x->out);
    else
        reply_str(x, e);
}

/* Store @data under argv[ki] (entry @e if the key exists); @keepttl keeps
 * an existing expiry, else @expire_ms (0 = none) replaces it.  False when
 * the block is full (nothing changed). */
static bool store(kv_ctx *x, size_t ki, const void *data, size_t len,
                  kv_off e, bool keepttl, int64_t expire_ms)
{
    kv_off v = kv_str_new(x->h, data, len);
    if (!v)
        return false;
    if (e) {
        kv_db_set_value(x->h, e, KV_T_STRING, v);
    } else {
        e = kv_db_add(x->h, KV_ARG(x, ki), KV_LEN(x, ki), KV_T_STRING, v);
        if (!e) {
            kv_free(x->h, v);
            return false;
        }
    }
    if (!keepttl)
        kv_db_set_expire(x->h, e, expire_ms);
    return true;
}

/* SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL] */
void kv_cmd_set(kv_ctx *x)
{
    bool nx = false, xx = false, get = false, keepttl = false;
    bool has_ex = false;
    long long ttl = 0;
    int64_t unit = 0;
    for (size_t i = 3; i < x->argc; i++) {
        bool more = i + 1 < x->argc;
        if (kv_arg_is(x, i, "nx") && !xx) {
            nx = true;
        } else if (kv_arg_is(x, i, "xx") && !nx) {
            xx = true;
        } else if (kv_arg_is(x, i, "get")) {
            get = true;
        } else if (kv_arg_is(x, i, "keepttl") && !has_ex) {
            keepttl = true;
        } else if ((kv_arg_is(x, i, "ex") || kv_arg_is(x, i, "px")) &&
                   !keepttl && !has_ex && more) {
            unit = kv_arg_is(x, i, "ex") ? 1000 : 1;
            has_ex = true;
            if (!kv_arg_ll(x, ++i, &ttl))
                return;
        } else {
            kv_out_error(x->out, "%s", KV_ERR_SYNTAX);
            return;
        }
    }
    int64_t expire = 0;
    if (has_ex) {
        if (ttl <= 0 || ttl > (LLONG_MAX - x->now) / unit) {
            kv_out_error(x->out, "ERR invalid expire time in 'set' command");
            return;
        }
        expire = x->now + ttl * unit;
    }
    kv_off e = kv_lookup(x, 1);
    kv_entry *ent = e ? kv_ptr(x->h, e) : NULL;
    if (get && ent && ent->type != KV_T_STRING) {
        kv_out_error(x->out, "%s", KV_ERR_WRONGTYPE);
        return;
    }
    size_t mark = x->out->len;
    if (get) {
        if (e)
            reply_str(x, e);   /* the old value, before it is replaced */
        else
            kv_out_null(x->out);
    }
    if ((nx && e) || (xx && !e)) {
        if (!get)
            kv_out_null(x->out);
        return;
    }
    if (!store(x, 1, KV_ARG(x, 2), KV_LEN(x, 2), e, keepttl, expire)) {
        x->out->len = mark;    /* one reply per command: the -OOM */
        kv_reply_oom(x);
        return;
    }
    if (!get)
        kv_out_status(x->out, "OK");
}

void kv_cmd_setnx(kv_ctx *x)
{
    kv_off e = kv_lookup(x, 1);
    if (e) {
        kv_out_int(x->out, 0);
        return;
    }
    if (!store(x, 1, KV_ARG(x, 2), KV_LEN(x, 2), 0, false, 0)) {
        kv_reply_oom(x);
        return;
    }
    kv_out_int(x->out, 1);
}

void kv_cmd_setex(kv_ctx *x)
{
    long long ttl;
    if (!kv_arg_ll(x, 2, &ttl))
        return;
    if (ttl <= 0 || ttl > (LLONG_MAX - x->now) / 1000) {
        kv_out_error(x->out, "ERR invalid expire time in 'setex' command");
        return;
    }
    kv_off e = kv_lookup(x, 1);
    if (!store(x, 1, KV_ARG(x, 3), KV_LEN(x, 3), e, false,
               x->now + ttl * 1000)) {
        kv_reply_oom(x);
        return;
    }
    kv_out_status(x->out, "OK");
}

void kv_cmd_getset(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_STRING, &e))
        return;
    size_t mark = x->out->len;
    if (e)
        reply_str(x, e);
    else
        kv_out_null(x->out);
    if (!store(x, 1, KV_ARG(x, 2), KV_LEN(x, 2), e, false, 0)) {
        x->out->len = mark;
        kv_reply_oom(x);
    }
}

void kv_cmd_getdel(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_STRING, &e))
        return;
    if (!e) {
        kv_out_null(x->out);
        return;
    }
    reply_str(x, e);
    kv_db_delete(x->h, KV_ARG(x, 1), KV_LEN(x, 1));
}

void kv_cmd_mget(kv_ctx *x)
{
    kv_out_array(x->out, x->argc - 1);
    for (size_t i = 1; i < x->argc; i++) {
        kv_off e = kv_lookup(x, i);
        if (e && ((kv_entry *)kv_ptr(x->h, e))->type == KV_T_STRING)
            reply_str(x, e);
        else
            kv_out_null(x->out);
    }
}

void kv_cmd_mset(kv_ctx *x)
{
    if (x->argc % 2 == 0) {
        kv_out_error(x->out, "ERR wrong number of arguments for 'mset' "
                     "command");
        return;
    }
    for (size_t i = 1; i < x->argc; i += 2) {
        kv_off e = kv_lookup(x, i);
        if (!store(x, i, KV_ARG(x, i + 1), KV_LEN(x, i + 1), e, false, 0)) {
            kv_reply_oom(x);
            return;
        }
    }
    kv_out_status(x->out, "OK");
}

static void incr_by(kv_ctx *x, long long by)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_STRING, &e))
        return;
    long long v = 0;
    if (e) {
        kv_str *s = kv_ptr(x->h, ((kv_entry *)kv_ptr(x->h, e))->val);
        if (!kv_parse_ll(s->data, s->len, &v)) {
            kv_out_error(x->out, "%s", KV_ERR_NOTINT);
            return;
        }
    }
    if ((by < 0 && v < 0 && by < LLONG_MIN - v) ||
        (by > 0 && v > 0 && by > LLONG_MAX - v)) {
        kv_out_error(x->out, "%s", KV_ERR_OVERFLOW);
        return;
    }
    v += by;
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%lld", v);
    if (!store(x, 1, tmp, (size_t)n, e, true, 0)) {
        kv_reply_oom(x);
        return;
    }
    kv_out_int(x->out, v);
}

void kv_cmd_incr(kv_ctx *x)
{
    incr_by(x, 1);
}

void kv_cmd_decr(kv_ctx *x)
{
    incr_by(x, -1);
}

void kv_cmd_incrby(kv_ctx *x)
{
    long long by;
    if (kv_arg_ll(x, 2, &by))
        incr_by(x, by);
}

void kv_cmd_decrby(kv_ctx *x)
{
    long long by;
    if (!kv_arg_ll(x, 2, &by))
        return;
    if (by == LLONG_MIN) {
        kv_out_error(x->out, "ERR decrement would overflow");
        return;
    }
    incr_by(x, -by);
}

void kv_cmd_append(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_STRING, &e))
        return;
    size_t add = KV_LEN(x, 2);
    if (!e) {
        if (!store(x, 1, KV_ARG(x, 2), add, 0, false, 0)) {
            kv_reply_oom(x);
            return;
        }
        kv_out_int(x->out, (int64_t)add);
        return;
    }
    kv_entry *ent = kv_ptr(x->h, e);
    kv_str *old = kv_ptr(x->h, ent->val);
    size_t len = old->len;
    if (len + add > KV_STR_MAX) {
        kv_out_error(x->out, "ERR string exceeds maximum allowed size "
                     "(proto-max-bulk-len)");
        return;
    }
    if (sizeof(kv_str) + len + add <= kv_alloc_size(x->h, ent->val)) {
        /* Room in the chunk: append in place. */
        memcpy(old->data + len, KV_ARG(x, 2), add);
        old->len = (uint32_t)(len + add);
        kv_touch_ptr(x->h, old, sizeof(kv_str) + len + add);
    } else {
        /* Grow to twice the need, so repeated appends stay linear. */
        size_t want = sizeof(kv_str) + (len + add) * 2;
        kv_off v = kv_alloc(x->h, want);
        if (!v)
            v = kv_alloc(x->h, sizeof(kv_str) + len + add);
        if (!v) {
            kv_reply_oom(x);
            return;
        }
        kv_str *s = kv_ptr(x->h, v);
        old = kv_ptr(x->h, ent->val);
        s->len = (uint32_t)(len + add);
        memcpy(s->data, old->data, len);
        memcpy(s->data + len, KV_ARG(x, 2), add);
        kv_touch(x->h, v, sizeof(kv_str) + len + add);
        kv_db_set_value(x->h, e, KV_T_STRING, v);
    }
    kv_out_int(x->out, (int64_t)(len + add));
}

void kv_cmd_strlen(kv_ctx *x)
{
    kv_off e;
    if (!kv_lookup_type(x, 1, KV_T_STRING, &e))
        return;
    if (!e) {
        kv_out_int(x->out, 0);
        return;
    }
    kv_str *s = kv_ptr(x->h, ((kv_entry *)kv_ptr(x->h, e))->val);
    kv_out_int(x->out, s->len);
}
