/*
 * fuzz-kv.c - the kv store as its clients' bytes meet it: the RESP parser
 * and the commands (kv_feed, src/guest/kv/kv-feed.c, what the server runs
 * for each read) against a store in a small block of plain memory; no
 * socket, no engine.
 *
 * Input: a mode byte, then the clients' bytes.
 *   bit 0   0: one client sends the rest, in reads of (mode >> 3) bytes
 *              (0: all at once);
 *           1: up to four clients, the rest is frames
 *              [client byte (& 3)] [length byte] [that many bytes], one
 *              read each, interleaved as they come.
 *   bit 1   a tight store: a 20 KiB block and small limits (256-byte
 *           inline requests, 1 KiB bulks, 4 KiB pending request), so
 *           "-OOM" and the limits are reached by small inputs.
 *   bit 2   run the store's cron (expiry, rehash steps) between reads.
 *
 * Invariants, after every read:
 *   - the replies are well-formed RESP, exactly one per command run (plus
 *     the protocol error's, when the connection ends with one), status
 *     and error lines at most 512 bytes;
 *   - the store is consistent (kv_db_check: dicts, lists, counts, every
 *     chunk accounted for) and DBSIZE's count equals the keys walked;
 *   - every byte of the block a command changed is on a page it marked
 *     dirty (what manual tracking, and so a migration, relies on);
 * and in one-client mode the parser, fed the same bytes a byte at a time,
 * returns the same requests as when fed all at once.
 *
 * FZ_KV_TRACE=1 replay-kv FILE prints what each read did.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "guest/kv/kv-int.h"
#include "fuzz.h"

#define BIG_BLOCK (256u << 10)
#define TIGHT_BLOCK (20u << 10)
#define MAX_CLIENTS 4
#define MAX_ERROR_LINE 512      /* kv_out_error's bound */
#define MAX_NEST 4              /* the deepest reply: COMMAND */

static uint8_t *block, *shadow;
static uint64_t *bitmap;
/* FZ_KV_TRACE=1 in the environment: print every read's replies (to see
 * what a corpus file does: replay-kv FILE). */
static bool trace;

static void setup(void)
{
    block = aligned_alloc(KV_PAGE, BIG_BLOCK);
    shadow = aligned_alloc(KV_PAGE, BIG_BLOCK);
    bitmap = calloc(BIG_BLOCK / KV_PAGE / 64 + 1, sizeof(uint64_t));
    if (!block || !shadow || !bitmap)
        abort();
    trace = getenv("FZ_KV_TRACE") != NULL;
}

/* ---- replies ------------------------------------------------------------ */

/* The CRLF-terminated line at @p (before @end): its length without CRLF,
 * or -1. */
static long line_len(const char *p, const char *end)
{
    for (const char *q = p; q + 1 < end; q++) {
        if (*q == '\r')
            return q[1] == '\n' ? q - p : -1;
        if (*q == '\n')
            return -1;
    }
    return -1;
}

static bool parse_int(const char *p, long n, long long *v)
{
    return kv_parse_ll(p, (size_t)n, v);
}

/* One reply at *@p: advance past it, false if malformed. */
static bool one_reply(const char **p, const char *end, int depth)
{
    if (*p >= end || depth > MAX_NEST)
        return false;
    char type = **p;
    long n = line_len(*p + 1, end);
    if (n < 0)
        return false;
    const char *body = *p + 1;
    *p = body + n + 2;
    long long v;
    switch (type) {
    case '+':
    case '-':
        return n + 3 <= MAX_ERROR_LINE;
    case ':':
        return parse_int(body, n, &v);
    case '$':
        if (!parse_int(body, n, &v) || v < -1 || v > (long long)KV_STR_MAX)
            return false;
        if (v < 0)
            return true;
        if (end - *p < v + 2 || (*p)[v] != '\r' || (*p)[v + 1] != '\n')
            return false;
        *p += v + 2;
        return true;
    case '*':
        if (!parse_int(body, n, &v) || v < -1)
            return false;
        for (long long i = 0; i < v; i++)
            if (!one_reply(p, end, depth + 1))
                return false;
        return true;
    default:
        return false;
    }
}

/* The number of replies in @o, or -1 if it is not a sequence of
 * well-formed ones. */
static long count_replies(const kv_out *o)
{
    if (!o->len)
        return 0;           /* o->p may still be NULL */
    const char *p = o->p, *end = o->p + o->len;
    long n = 0;
    while (p < end) {
        if (!one_reply(&p, end, 0))
            return -1;
        n++;
    }
    return n;
}

/* ---- the store ---------------------------------------------------------- */

typedef struct client {
    kv_client cl;
    kv_resp_parser p;
    char *q;
    size_t qlen, qcap;
    bool gone;
} client;

typedef struct world {
    kv_store st;
    size_t size;
    size_t query_limit;
    bool cron;
    kv_out out;
    client c[MAX_CLIENTS];
} world;

static void world_init(world *w, bool tight, bool cron)
{
    memset(w, 0, sizeof(*w));
    w->size = tight ? TIGHT_BLOCK : BIG_BLOCK;
    w->cron = cron;
    /* A known block, seed and clock: a crash replays the same way. */
    memset(block, 0xa5, w->size);
    memset(bitmap, 0, (w->size / KV_PAGE + 63) / 64 * sizeof(uint64_t));
    kv_heap_init(&w->st.heap, block, w->size, bitmap, true);
    w->st.heap.root->hash_seed = 0x5eed;
    w->st.rnd = 1;
    w->st.oom_reserve = tight ? 1024 : 16384;
    snprintf(w->st.tracker, sizeof(w->st.tracker), "manual");
    memcpy(shadow, block, w->size);
    memset(bitmap, 0, (w->size / KV_PAGE + 63) / 64 * sizeof(uint64_t));
    kv_resp_limits lim = {
        .max_bulk = tight ? 1024 : KV_RESP_MAX_BULK_DEFAULT,
        .max_inline = tight ? 256 : KV_RESP_MAX_INLINE_DEFAULT,
        .max_args = KV_RESP_MAX_ARGS_DEFAULT,
    };
    w->query_limit = tight ? 4096 : (1u << 20);
    for (int i = 0; i < MAX_CLIENTS; i++) {
        w->c[i].cl.id = (uint64_t)i + 1;
        kv_resp_init(&w->c[i].p, &lim);
    }
}

static void world_free(world *w)
{
    for (int i = 0; i < MAX_CLIENTS; i++) {
        kv_resp_free(&w->c[i].p);
        free(w->c[i].q);
    }
    kv_out_free(&w->out);
}

/* Every page that differs from the last check must be marked dirty;
 * then the shadow catches up and the marks are cleared, as a migration
 * pass would. */
static void check_dirty(world *w)
{
    for (size_t pg = 0; pg < w->size / KV_PAGE; pg++) {
        uint8_t *a = block + pg * KV_PAGE, *b = shadow + pg * KV_PAGE;
        bool marked = (bitmap[pg / 64] >> (pg % 64)) & 1;
        if (marked)
            memcpy(b, a, KV_PAGE);
        else
            FZ_CHECK(memcmp(a, b, KV_PAGE) == 0);
    }
    memset(bitmap, 0, (w->size / KV_PAGE + 63) / 64 * sizeof(uint64_t));
}

static void check_store(world *w)
{
    char why[256];
    uint64_t keys = 0;
    if (!kv_db_check(&w->st.heap, &keys, why, sizeof(why))) {
        fprintf(stderr, "kv store inconsistent: %s\n", why);
        FZ_CHECK(!"kv_db_check");
    }
    FZ_CHECK(keys == kv_dict_size(&w->st.heap.root->db));
    check_dirty(w);
}

/* One read of @len bytes by client @i. */
static void feed(world *w, int i, const uint8_t *data, size_t len)
{
    client *c = &w->c[i];
    if (c->gone || !len)
        return;
    if (c->qcap - c->qlen < len) {
        size_t cap = c->qcap ? c->qcap : 256;
        while (cap - c->qlen < len)
            cap *= 2;
        char *q = realloc(c->q, cap);
        if (!q)
            abort();
        c->q = q;
        c->qcap = cap;
    }
    memcpy(c->q + c->qlen, data, len);
    c->qlen += len;
    uint64_t ncmds = 0;
    kv_out_reset(&w->out);
    kv_feed_result r = kv_feed(&w->st, &c->cl, &c->p, c->q, &c->qlen,
                               w->query_limit, &w->out, &ncmds);
    FZ_CHECK(!w->out.oom);
    if (trace)
        fprintf(stderr, "client %d: %zu bytes in, %llu commands, result %d, "
                "replies: %.*s\n", i, len, (unsigned long long)ncmds, (int)r,
                (int)(w->out.len > 4000 ? 4000 : w->out.len), w->out.p);
    long replies = count_replies(&w->out);
    if (replies < 0) {
        fprintf(stderr, "malformed replies: %.*s\n",
                (int)(w->out.len > 2000 ? 2000 : w->out.len), w->out.p);
        FZ_CHECK(!"replies are well-formed RESP");
    }
    /* A protocol error adds its own reply; QUIT's is its command's. */
    long want = (long)ncmds +
                (r == KV_FEED_CLOSE && !c->cl.close_after_reply);
    if (replies != want) {
        fprintf(stderr, "%ld replies to %llu commands (result %d): %.*s\n",
                replies, (unsigned long long)ncmds, (int)r,
                (int)(w->out.len > 2000 ? 2000 : w->out.len), w->out.p);
        FZ_CHECK(!"one reply per command");
    }
    FZ_CHECK(r == KV_FEED_MORE || r == KV_FEED_CLOSE ||
             r == KV_FEED_TOO_BIG);
    if (r != KV_FEED_MORE)
        c->gone = true;
    else
        FZ_CHECK(kv_resp_pending_bytes(&c->p, c->qlen) <= w->query_limit);
    if (w->cron) {
        kv_heap *h = &w->st.heap;
        w->st.n.expired += kv_db_expire_cycle(h, kv_store_now_ms(&w->st), 16);
        kv_dict_rehash(h, &h->root->db, 4);
    }
    check_store(w);
}

/* ---- the parser alone: all at once vs. a byte at a time ---------------- */

typedef struct parsed {
    uint8_t *bytes;             /* every argument, length-prefixed */
    size_t len, cap;
    int end;                    /* the result that ended the parse */
} parsed;

static void parsed_put(parsed *s, const void *d, size_t n)
{
    if (!n)
        return;
    if (s->cap - s->len < n) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap - s->len < n)
            cap *= 2;
        uint8_t *b = realloc(s->bytes, cap);
        if (!b)
            abort();
        s->bytes = b;
        s->cap = cap;
    }
    memcpy(s->bytes + s->len, d, n);
    s->len += n;
}

/* Parse @data (a copy: inline requests are unescaped in place) handing
 * it over @step bytes at a time (0: at once). */
static void parse_all(const uint8_t *data, size_t size, size_t step,
                      parsed *out)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        abort();
    memcpy(buf, data, size);
    kv_resp_parser p;
    kv_resp_init(&p, NULL);
    size_t have = step ? 0 : size;
    out->end = KV_RESP_NEED_MORE;
    for (;;) {
        kv_resp_result r = kv_resp_parse(&p, buf, have);
        if (r == KV_RESP_COMMAND) {
            parsed_put(out, &p.argc, sizeof(p.argc));
            for (size_t i = 0; i < p.argc; i++) {
                parsed_put(out, &p.argv[i].len, sizeof(size_t));
                parsed_put(out, buf + p.argv[i].off, p.argv[i].len);
            }
            kv_resp_next(&p);
            continue;
        }
        if (r != KV_RESP_NEED_MORE || have == size) {
            out->end = r;
            break;
        }
        have = have + step < size ? have + step : size;
    }
    kv_resp_free(&p);
    free(buf);
}

static void check_resumable(const uint8_t *data, size_t size)
{
    parsed once = { 0 }, bytewise = { 0 };
    parse_all(data, size, 0, &once);
    parse_all(data, size, 1, &bytewise);
    FZ_CHECK(once.end == bytewise.end);
    FZ_CHECK(once.len == bytewise.len);
    FZ_CHECK(!once.len || memcmp(once.bytes, bytewise.bytes, once.len) == 0);
    free(once.bytes);
    free(bytewise.bytes);
}

/* ---- entry --------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!block)
        setup();
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    static world w;
    world_init(&w, mode & 2, mode & 4);
    if (!(mode & 1)) {
        size_t step = mode >> 3;
        if (!step)
            step = size ? size : 1;
        for (size_t off = 0; off < size; off += step)
            feed(&w, 0, data + off, size - off < step ? size - off : step);
        check_resumable(data, size);
    } else {
        size_t off = 0;
        while (off + 2 <= size) {
            int who = data[off] & (MAX_CLIENTS - 1);
            size_t n = data[off + 1];
            off += 2;
            if (n > size - off)
                n = size - off;
            feed(&w, who, data + off, n);
            off += n;
        }
    }
    /* Everything with a time to live expires; the store must hold up. */
    kv_heap *h = &w.st.heap;
    /* A cycle takes at most 64 keys per bucket it visits and may start
     * mid-table: a few cycles clear any store this block can hold. */
    for (int i = 0; i < 1000 && h->root->expires; i++)
        kv_db_expire_cycle(h, INT64_MAX / 2, 1u << 20);
    for (int i = 0; i < 100000 && kv_dict_rehash(h, &h->root->db, 64); i++)
        ;
    check_store(&w);
    FZ_CHECK(h->root->expires == 0);
    world_free(&w);
    return 0;
}
