/*
 * kv-cmd.c - the command table and its dispatch: name lookup, arity,
 * the memory check before a command that may grow the store, and the
 * helpers the command files share.
 */
#include "guest/kv/kv-int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define W KV_CMD_WRITE
#define R KV_CMD_READONLY
#define M KV_CMD_DENYOOM
#define F KV_CMD_FAST
#define A KV_CMD_ADMIN

/* Sorted by name (looked up by binary search).  Arity and key positions
 * as Redis's COMMAND reports them. */
static const kv_cmd table[] = {
    { "append", 3, W | M | F, 1, 1, 1, kv_cmd_append },
    { "client", -2, A, 0, 0, 0, kv_cmd_client },
    { "command", -1, 0, 0, 0, 0, kv_cmd_command },
    { "config", -2, A, 0, 0, 0, kv_cmd_config },
    { "dbsize", 1, R | F, 0, 0, 0, kv_cmd_dbsize },
    { "decr", 2, W | M | F, 1, 1, 1, kv_cmd_decr },
    { "decrby", 3, W | M | F, 1, 1, 1, kv_cmd_decrby },
    { "del", -2, W, 1, -1, 1, kv_cmd_del },
    { "echo", 2, F, 0, 0, 0, kv_cmd_echo },
    { "exists", -2, R | F, 1, -1, 1, kv_cmd_exists },
    { "expire", -3, W | F, 1, 1, 1, kv_cmd_expire },
    { "flushall", -1, W, 0, 0, 0, kv_cmd_flushall },
    { "flushdb", -1, W, 0, 0, 0, kv_cmd_flushdb },
    { "get", 2, R | F, 1, 1, 1, kv_cmd_get },
    { "getdel", 2, W | F, 1, 1, 1, kv_cmd_getdel },
    { "getset", 3, W | M | F, 1, 1, 1, kv_cmd_getset },
    { "hdel", -3, W | F, 1, 1, 1, kv_cmd_hdel },
    { "hget", 3, R | F, 1, 1, 1, kv_cmd_hget },
    { "hgetall", 2, R, 1, 1, 1, kv_cmd_hgetall },
    { "hincrby", 4, W | M | F, 1, 1, 1, kv_cmd_hincrby },
    { "hlen", 2, R | F, 1, 1, 1, kv_cmd_hlen },
    { "hmget", -3, R | F, 1, 1, 1, kv_cmd_hmget },
    { "hset", -4, W | M | F, 1, 1, 1, kv_cmd_hset },
    { "incr", 2, W | M | F, 1, 1, 1, kv_cmd_incr },
    { "incrby", 3, W | M | F, 1, 1, 1, kv_cmd_incrby },
    { "info", -1, 0, 0, 0, 0, kv_cmd_info },
    { "keys", 2, R, 0, 0, 0, kv_cmd_keys },
    { "lindex", 3, R, 1, 1, 1, kv_cmd_lindex },
    { "llen", 2, R | F, 1, 1, 1, kv_cmd_llen },
    { "lpop", -2, W | F, 1, 1, 1, kv_cmd_lpop },
    { "lpush", -3, W | M | F, 1, 1, 1, kv_cmd_lpush },
    { "lrange", 4, R, 1, 1, 1, kv_cmd_lrange },
    { "mget", -2, R | F, 1, -1, 1, kv_cmd_mget },
    { "mset", -3, W | M, 1, -1, 2, kv_cmd_mset },
    { "persist", 2, W | F, 1, 1, 1, kv_cmd_persist },
    { "pexpire", -3, W | F, 1, 1, 1, kv_cmd_pexpire },
    { "ping", -1, F, 0, 0, 0, kv_cmd_ping },
    { "pttl", 2, R | F, 1, 1, 1, kv_cmd_pttl },
    { "quit", -1, F, 0, 0, 0, kv_cmd_quit },
    { "rename", 3, W, 1, 2, 1, kv_cmd_rename },
    { "rpop", -2, W | F, 1, 1, 1, kv_cmd_rpop },
    { "rpush", -3, W | M | F, 1, 1, 1, kv_cmd_rpush },
    { "sadd", -3, W | M | F, 1, 1, 1, kv_cmd_sadd },
    { "scan", -2, R, 0, 0, 0, kv_cmd_scan },
    { "scard", 2, R | F, 1, 1, 1, kv_cmd_scard },
    { "select", 2, F, 0, 0, 0, kv_cmd_select },
    { "set", -3, W | M, 1, 1, 1, kv_cmd_set },
    { "setex", 4, W | M, 1, 1, 1, kv_cmd_setex },
    { "setnx", 3, W | M | F, 1, 1, 1, kv_cmd_setnx },
    { "sismember", 3, R | F, 1, 1, 1, kv_cmd_sismember },
    { "smembers", 2, R, 1, 1, 1, kv_cmd_smembers },
    { "spop", -2, W | F, 1, 1, 1, kv_cmd_spop },
    { "srem", -3, W | F, 1, 1, 1, kv_cmd_srem },
    { "strlen", 2, R | F, 1, 1, 1, kv_cmd_strlen },
    { "ttl", 2, R | F, 1, 1, 1, kv_cmd_ttl },
    { "type", 2, R | F, 1, 1, 1, kv_cmd_type },
};

const kv_cmd *kv_cmd_table(size_t *n)
{
    *n = sizeof(table) / sizeof(table[0]);
    return table;
}

static const kv_cmd *find(const char *name, size_t len)
{
    char low[16];
    if (len == 0 || len >= sizeof(low))
        return NULL;
    for (size_t i = 0; i < len; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[len] = '\0';
    size_t lo = 0, hi = sizeof(table) / sizeof(table[0]);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(low, table[mid].name);
        if (!c)
            return &table[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Redis's "unknown command" error: the name and the first arguments
 * quoted, up to 128 bytes each and 128 in all. */
static void unknown(kv_ctx *x)
{
    char args[512];
    size_t n = 0;
    args[0] = '\0';
    for (size_t i = 1; i < x->argc && n < 128; i++) {
        int room = 128 - (int)n;
        int w = snprintf(args + n, sizeof(args) - n, "'%.*s' ",
                         (int)(KV_LEN(x, i) < (size_t)room ? KV_LEN(x, i)
                                                           : (size_t)room),
                         KV_ARG(x, i));
        if (w < 0)
            break;
        n += (size_t)w;
        if (n >= sizeof(args))
            n = sizeof(args) - 1;
    }
    kv_out_error(x->out, "ERR unknown command '%.*s', with args beginning "
                 "with: %s", (int)(KV_LEN(x, 0) > 128 ? 128 : KV_LEN(x, 0)),
                 KV_ARG(x, 0), args);
}

void kv_reply_oom(kv_ctx *x)
{
    x->s->n.rejected++;
    kv_out_error(x->out, "%s", KV_ERR_OOM);
}

void kv_cmd_run(kv_ctx *x)
{
    const kv_cmd *c = find(KV_ARG(x, 0), KV_LEN(x, 0));
    x->s->n.commands++;
    if (!c) {
        unknown(x);
        return;
    }
    x->cmd = c;
    if ((c->arity > 0 && x->argc != (size_t)c->arity) ||
        (c->arity < 0 && x->argc < (size_t)-c->arity)) {
        kv_out_error(x->out, "ERR wrong number of arguments for '%s' "
                     "command", c->name);
        return;
    }
    if (c->flags & KV_CMD_DENYOOM) {
        /* Room for the arguments twice over (keys, values, their
         * entries), or the command is refused before it changes anything;
         * the reserve keeps deletes and bookkeeping working when full. */
        uint64_t need = x->s->oom_reserve;
        for (size_t i = 1; i < x->argc; i++)
            need += 2 * KV_LEN(x, i) + 96;
        if (kv_heap_avail(x->h) < need) {
            kv_reply_oom(x);
            return;
        }
    }
    x->now = kv_store_now_ms(x->s);
    c->fn(x);
}

/* ---- shared helpers ----------------------------------------------------- */

bool kv_parse_ll(const char *s, size_t len, long long *v)
{
    char tmp[32];
    if (len == 0 || len >= sizeof(tmp))
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    /* Redis's string2ll: no spaces, no '+', no leading zeros. */
    const char *p = tmp;
    if (*p == '-')
        p++;
    if (!*p || (*p == '0' && p[1]) || !isdigit((unsigned char)*p))
        return false;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q))
            return false;
    errno = 0;
    char *end;
    long long r = strtoll(tmp, &end, 10);
    if (errno || *end)
        return false;
    *v = r;
    return true;
}

bool kv_arg_ll(kv_ctx *x, size_t i, long long *v)
{
    if (kv_parse_ll(KV_ARG(x, i), KV_LEN(x, i), v))
        return true;
    kv_out_error(x->out, "%s", KV_ERR_NOTINT);
    return false;
}

bool kv_arg_is(kv_ctx *x, size_t i, const char *word)
{
    size_t n = strlen(word);
    return KV_LEN(x, i) == n && strncasecmp(KV_ARG(x, i), word, n) == 0;
}

kv_off kv_lookup(kv_ctx *x, size_t i)
{
    kv_off e = kv_db_lookup(x->h, KV_ARG(x, i), KV_LEN(x, i), x->now,
                            &x->s->n.expired);
    if (e)
        x->s->n.hits++;
    else
        x->s->n.misses++;
    return e;
}

bool kv_lookup_type(kv_ctx *x, size_t i, uint32_t type, kv_off *e)
{
    *e = kv_lookup(x, i);
    if (*e && ((kv_entry *)kv_ptr(x->h, *e))->type != type) {
        kv_out_error(x->out, "%s", KV_ERR_WRONGTYPE);
        return false;
    }
    return true;
}

/* Redis's glob: * ? [abc] [^a] [a-z] and \ escapes.  *@skip_longer is
 * set when the rest of the pattern after a '*' matched nowhere in what is
 * left of the string: then no earlier '*' can succeed by matching more
 * either (that only moves the rest further right), so the search ends
 * there.  Without it, KEYS *a*a*a*a*a*a*a*a*a*a*a*a*a*b against one key of
 * sixty 'a's runs for hours, and the server thread serves nobody
 * (Redis's CVE-2022-36021, fixed the same way). */
static bool glob(const char *p, size_t plen, const char *s, size_t slen,
                 bool nocase, bool *skip_longer)
{
    while (plen && slen) {
        switch (*p) {
        case '*':
            while (plen > 1 && p[1] == '*') {
                p++;
                plen--;
            }
            if (plen == 1)
                return true;
            for (size_t k = 0; k <= slen; k++) {
                if (glob(p + 1, plen - 1, s + k, slen - k, nocase,
                         skip_longer))
                    return true;
                if (*skip_longer)
                    return false;
            }
            *skip_longer = true;
            return false;
        case '?':
            break;
        case '[': {
            p++;
            plen--;
            bool neg = plen && *p == '^';
            if (neg) {
                p++;
                plen--;
            }
            bool match = false;
            while (plen && *p != ']') {
                if (*p == '\\' && plen >= 2) {
                    p++;
                    plen--;
                    if (*p == *s)
                        match = true;
                } else if (plen >= 3 && p[1] == '-') {
                    int a = (unsigned char)p[0], b = (unsigned char)p[2];
                    int c = (unsigned char)*s;
                    if (a > b) {
                        int t = a;
                        a = b;
                        b = t;
                    }
                    if (nocase) {
                        a = tolower(a);
                        b = tolower(b);
                        c = tolower(c);
                    }
                    if (c >= a && c <= b)
                        match = true;
                    p += 2;
                    plen -= 2;
                } else if (nocase ? tolower((unsigned char)*p) ==
                                        tolower((unsigned char)*s)
                                  : *p == *s) {
                    match = true;
                }
                p++;
                plen--;
            }
            if (!plen)
                return false;      /* no closing ']' */
            if (neg)
                match = !match;
            if (!match)
                return false;
            break;
        }
        case '\\':
            if (plen >= 2) {
                p++;
                plen--;
            }
            /* fall through */
        default:
            if (nocase ? tolower((unsigned char)*p) !=
                             tolower((unsigned char)*s)
                       : *p != *s)
                return false;
            break;
        }
        p++;
        plen--;
        s++;
        slen--;
    }
    while (plen && *p == '*') {
        p++;
        plen--;
    }
    return !plen && !slen;
}

bool kv_glob(const char *p, size_t plen, const char *s, size_t slen,
             bool nocase)
{
    bool skip_longer = false;
    return glob(p, plen, s, slen, nocase, &skip_longer);
}

/* ---- the store's clock and randomness --------------------------------- */

int64_t kv_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t kv_store_now_ms(const kv_store *s)
{
    return kv_mono_ms() + s->clock_offset_ms;
}

uint64_t kv_store_rand(kv_store *s)
{
    uint64_t x = s->rnd ? s->rnd : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rnd = x;
    return x;
}
