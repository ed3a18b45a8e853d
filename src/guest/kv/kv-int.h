/*
 * kv-int.h - what the files of the kv guest share: the store (block +
 * clock + counters), a client as commands see it, the command context and
 * table, and the hooks the server and the glue give INFO.
 *
 * Threads: the server thread alone runs commands and writes the block.
 * The glue (kv-guest.c) parks it for the engine (stop) and reads or loads
 * the counters and the clock only while it is parked.
 */
#ifndef KV_INT_H
#define KV_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "guest/kv/kv-dict.h"
#include "guest/kv/kv-heap.h"
#include "guest/kv/kv-resp.h"
#include "guest/kv/kv-types.h"

/* Counters that travel with the store (the state section). */
typedef struct kv_counters {
    uint64_t commands;
    uint64_t connections;
    uint64_t hits, misses;
    uint64_t expired;
    uint64_t rejected;          /* -OOM replies */
} kv_counters;

typedef struct kv_store {
    kv_heap heap;
    kv_counters n;
    /* The store's clock, in ms: CLOCK_MONOTONIC + offset.  The offset
     * travels in the state section so the clock runs on across hosts. */
    int64_t clock_offset_ms;
    uint64_t oom_reserve;       /* bytes kept for deletes and bookkeeping */
    uint64_t rnd;               /* xorshift state (SPOP, sampling) */
    struct kv_server *srv;      /* for INFO clients */
    struct kv_guest *guest;     /* for INFO livemig */
    char tracker[32];           /* dirty tracker name, for INFO */
    int port;
} kv_store;

int64_t kv_mono_ms(void);
int64_t kv_store_now_ms(const kv_store *s);
uint64_t kv_store_rand(kv_store *s);

/* A connection as commands see it (the rest is the server's). */
typedef struct kv_client {
    uint64_t id;
    char name[128];
    bool close_after_reply;     /* QUIT */
    char addr[64];
    int64_t since_ms;
} kv_client;

typedef struct kv_ctx {
    kv_store *s;
    kv_heap *h;
    kv_out *out;
    kv_client *c;
    char *buf;                  /* the arguments are offsets into it */
    const kv_resp_arg *argv;
    size_t argc;
    int64_t now;                /* store clock when the command started */
    const struct kv_cmd *cmd;
} kv_ctx;

#define KV_ARG(x, i) ((x)->buf + (x)->argv[i].off)
#define KV_LEN(x, i) ((x)->argv[i].len)

enum {
    KV_CMD_WRITE = 1u << 0,
    KV_CMD_READONLY = 1u << 1,
    KV_CMD_DENYOOM = 1u << 2,
    KV_CMD_FAST = 1u << 3,
    KV_CMD_ADMIN = 1u << 4,
};

typedef void (*kv_cmd_fn)(kv_ctx *x);

typedef struct kv_cmd {
    const char *name;           /* lower case */
    int arity;                  /* N exactly, -N at least N (name counted) */
    unsigned flags;
    int first_key, last_key, step;
    kv_cmd_fn fn;
} kv_cmd;

/* Run the command in @x (argv[0] is its name): look it up, check arity
 * and memory, call it.  Replies go to x->out. */
void kv_cmd_run(kv_ctx *x);
/* The table (COMMAND). */
const kv_cmd *kv_cmd_table(size_t *n);

/* ---- a client's bytes in, replies out (kv-feed.c) ------------------------ */

typedef enum kv_feed_result {
    KV_FEED_MORE,       /* every complete request ran: read more */
    KV_FEED_CLOSE,      /* QUIT, or a protocol error whose reply is in
                           @out: send the replies, then close */
    KV_FEED_NOMEM,      /* the parser could not grow: close now */
    KV_FEED_TOO_BIG,    /* the pending request passed @query_limit:
                           close now */
} kv_feed_result;

/*
 * Run every complete request of client @c in @q[0, *@qlen) against @st,
 * replies appended to @out: what the server does with the bytes of one
 * read, and all of it (no socket), so the fuzzer and the server run the
 * same code.  @p is the client's parser (it remembers a partial request
 * across calls).  The bytes of the requests that ran are dropped from the
 * front of @q (*@qlen shrinks), except after KV_FEED_CLOSE, when nothing
 * more is read.  *@ncmds (may be NULL) gets the number of commands run;
 * each wrote exactly one reply.
 */
kv_feed_result kv_feed(kv_store *st, kv_client *c, kv_resp_parser *p,
                       char *q, size_t *qlen, size_t query_limit,
                       kv_out *out, uint64_t *ncmds);

/* Shared replies and argument parsing. */
#define KV_ERR_WRONGTYPE \
    "WRONGTYPE Operation against a key holding the wrong kind of value"
#define KV_ERR_NOTINT "ERR value is not an integer or out of range"
#define KV_ERR_SYNTAX "ERR syntax error"
#define KV_ERR_OOM "OOM command not allowed when used memory > 'maxmemory'."
#define KV_ERR_OVERFLOW "ERR increment or decrement would overflow"

void kv_reply_oom(kv_ctx *x);
bool kv_arg_ll(kv_ctx *x, size_t i, long long *v);   /* replies on error */
bool kv_parse_ll(const char *s, size_t len, long long *v);
bool kv_arg_is(kv_ctx *x, size_t i, const char *word);  /* case-insens. */
/* The live entry of key argv[i], counting hits and misses. */
kv_off kv_lookup(kv_ctx *x, size_t i);
/* The entry of argv[i] if it has @type; replies WRONGTYPE and returns
 * false when it has another type; *e = 0 when absent. */
bool kv_lookup_type(kv_ctx *x, size_t i, uint32_t type, kv_off *e);

/* Glob match (KEYS, SCAN MATCH, CONFIG GET), Redis's syntax. */
bool kv_glob(const char *pat, size_t plen, const char *s, size_t slen,
             bool nocase);

/* Command groups (kv-cmd-*.c). */
#define KV_CMD_DECL(n) void kv_cmd_##n(kv_ctx *x);
#define KV_CMDS(X) \
    X(ping) X(echo) X(select) X(quit) X(dbsize) X(flushdb) X(flushall)   \
    X(info) X(config) X(client) X(command)                                \
    X(get) X(set) X(setnx) X(setex) X(getset) X(getdel) X(mget) X(mset)  \
    X(incr) X(decr) X(incrby) X(decrby) X(append) X(strlen)               \
    X(del) X(exists) X(type) X(expire) X(pexpire) X(ttl) X(pttl)          \
    X(persist) X(keys) X(scan) X(rename)                                  \
    X(lpush) X(rpush) X(lpop) X(rpop) X(llen) X(lrange) X(lindex)         \
    X(hset) X(hget) X(hmget) X(hgetall) X(hdel) X(hlen) X(hincrby)        \
    X(sadd) X(srem) X(smembers) X(sismember) X(scard) X(spop)
KV_CMDS(KV_CMD_DECL)

/* ---- hooks INFO needs from the server and the glue ----------------------- */

typedef struct kv_server_info {
    uint64_t clients;
    uint64_t max_clients;
    uint64_t held_bytes;        /* replies waiting for a checkpoint */
    uint64_t out_limit;
    uint64_t dropped;           /* clients dropped for their output */
} kv_server_info;
void kv_server_get_info(struct kv_server *srv, kv_server_info *out);

/* "# Livemig" lines for INFO (role, migration status, epoch). */
void kv_guest_info(struct kv_guest *g, kv_out *o);

#endif
