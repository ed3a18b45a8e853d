/*
 * test-kv-store.c - unit tests of the store inside its block: the
 * allocator, the hash table across resizes (SCAN's guarantee), the block
 * read at another address (offsets, not pointers), and that every byte
 * the commands write is on a page they marked dirty (what manual
 * tracking relies on), and that kv_db_check notices a damaged store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "guest/kv/kv-int.h"

#define BLOCK (16u << 20)

static uint8_t *block_new(void)
{
    uint8_t *b = aligned_alloc(KV_PAGE, BLOCK);
    assert_non_null(b);
    memset(b, 0, BLOCK);
    return b;
}

static void test_allocator(void **state)
{
    (void)state;
    uint8_t *b = block_new();
    kv_heap h;
    kv_heap_init(&h, b, BLOCK, NULL, true);
    char why[256];
    assert_true(kv_heap_check(&h, why, sizeof(why)));
    enum { N = 4000 };
    static kv_off offs[N];
    static size_t lens[N];
    srand(1);
    /* Random sizes, each filled with its own byte; frees in between. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            if (offs[i])
                continue;
            lens[i] = (size_t)(rand() % 3000) + 1;
            offs[i] = kv_alloc(&h, lens[i]);
            assert_true(offs[i] != 0);
            assert_true(kv_alloc_size(&h, offs[i]) >= lens[i]);
            memset(kv_ptr(&h, offs[i]), i & 0xff, lens[i]);
        }
        for (int i = 0; i < N; i++) {
            const uint8_t *p = kv_ptr(&h, offs[i]);
            for (size_t k = 0; k < lens[i]; k++)
                if (p[k] != (i & 0xff))
                    fail_msg("chunk %d overlaps another", i);
        }
        for (int i = 0; i < N; i += 2 + round) {
            kv_free(&h, offs[i]);
            offs[i] = 0;
        }
    }
    for (int i = 0; i < N; i++)
        kv_free(&h, offs[i]);
    assert_int_equal(h.root->used, 0);
    assert_int_equal(h.root->chunks, 0);
    /* Full: allocation fails cleanly, and freed room is used again. */
    kv_off last = 0, o;
    size_t n = 0;
    while ((o = kv_alloc(&h, 60000)) != 0) {
        last = o;
        n++;
    }
    assert_true(n > BLOCK / 65536 / 2);
    assert_int_equal(kv_alloc(&h, 60000), 0);
    kv_free(&h, last);
    assert_true(kv_alloc(&h, 60000) != 0);
    /* A double free is refused, not a corruption. */
    uint64_t used = h.root->used;
    kv_free(&h, last);
    kv_free(&h, last);
    assert_int_equal(h.root->used, used - kv_alloc_size(&h, last) - 8);
    free(b);
}

static bool collect_cb(kv_heap *h, kv_off e, void *opaque)
{
    char *seen = opaque;
    kv_str *k = kv_ptr(h, ((kv_entry *)kv_ptr(h, e))->key);
    char t[32];                       /* kv strings are not terminated */
    snprintf(t, sizeof(t), "%.*s", (int)k->len, k->data);
    seen[atoi(t + 1)] = 1;
    return true;
}

static void test_dict_resize_and_scan(void **state)
{
    (void)state;
    uint8_t *b = block_new();
    kv_heap h;
    kv_heap_init(&h, b, BLOCK, NULL, true);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        int l = snprintf(key, sizeof(key), "k%d", i);
        assert_true(kv_db_add(&h, key, (size_t)l, KV_T_STRING, 0) != 0);
    }
    /* SCAN while the table grows twice over: every key present for the
     * whole scan is seen. */
    static char seen[200000];
    memset(seen, 0, sizeof(seen));
    uint64_t cur = 0;
    int next = 1000, steps = 0;
    do {
        cur = kv_dict_scan(&h, &h.root->db, cur, collect_cb, seen);
        for (int j = 0; j < 3 && next < 20000; j++, next++) {
            int l = snprintf(key, sizeof(key), "k%d", next);
            assert_true(kv_db_add(&h, key, (size_t)l, KV_T_STRING, 0) != 0);
        }
        assert_true(++steps < 100000);
    } while (cur);
    for (int i = 0; i < 1000; i++)
        if (!seen[i])
            fail_msg("SCAN missed k%d across a resize", i);
    assert_true(next > 4000);   /* it did grow during the scan */
    /* Every key is found; deleting most shrinks the table. */
    for (int i = 0; i < next; i++) {
        int l = snprintf(key, sizeof(key), "k%d", i);
        assert_true(kv_db_lookup(&h, key, (size_t)l, 0, NULL) != 0);
    }
    uint64_t big = h.root->db.size[0] + h.root->db.size[1];
    for (int i = 0; i < next - 10; i++) {
        int l = snprintf(key, sizeof(key), "k%d", i);
        assert_true(kv_db_delete(&h, key, (size_t)l));
        kv_dict_rehash(&h, &h.root->db, 1);
    }
    while (kv_dict_rehash(&h, &h.root->db, 100))
        ;
    assert_int_equal(kv_dict_size(&h.root->db), 10);
    assert_true(h.root->db.size[0] < big / 8);
    for (int i = next - 10; i < next; i++) {
        int l = snprintf(key, sizeof(key), "k%d", i);
        assert_true(kv_db_lookup(&h, key, (size_t)l, 0, NULL) != 0);
    }
    free(b);
}

/* Run a command line against @s. */
static void cmd(kv_store *s, kv_out *out, const char *line)
{
    static char buf[4096];
    kv_resp_arg argv[32];
    size_t argc = 0, n = strlen(line);
    memcpy(buf, line, n + 1);
    for (size_t i = 0; i < n;) {
        while (i < n && buf[i] == ' ')
            i++;
        size_t st = i;
        while (i < n && buf[i] != ' ')
            i++;
        if (i > st)
            argv[argc++] = (kv_resp_arg){ st, i - st };
    }
    kv_client cl = { .id = 1 };
    kv_ctx x = { .s = s, .h = &s->heap, .out = out, .c = &cl, .buf = buf,
                 .argv = argv, .argc = argc };
    kv_cmd_run(&x);
}

static void test_dirty_marks_cover_every_write(void **state)
{
    (void)state;
    uint8_t *a = block_new(), *snap = block_new();
    uint64_t *bitmap = calloc(BLOCK / KV_PAGE / 64, sizeof(uint64_t));
    kv_store s = { 0 };
    s.oom_reserve = 65536;
    kv_heap_init(&s.heap, a, BLOCK, bitmap, true);
    kv_out out = { 0 };
    srand(7);
    for (int round = 0; round < 40; round++) {
        /* A checkpoint: the backup's copy and a clean bitmap. */
        memcpy(snap, a, BLOCK);
        memset(bitmap, 0, BLOCK / KV_PAGE / 8);
        for (int i = 0; i < 500; i++) {
            char line[256];
            int k = rand() % 3000, v = rand();
            switch (rand() % 16) {
            case 0: snprintf(line, sizeof(line), "SET s%d %d", k, v); break;
            case 1: snprintf(line, sizeof(line), "INCR c%d", k % 50); break;
            case 2: snprintf(line, sizeof(line), "APPEND s%d xyz%d", k, v);
                break;
            case 3: snprintf(line, sizeof(line), "DEL s%d l%d h%d", k, k, k);
                break;
            case 4: snprintf(line, sizeof(line), "RPUSH l%d a%d b c", k % 100,
                             v); break;
            case 5: snprintf(line, sizeof(line), "LPOP l%d 2", k % 100);
                break;
            case 6: snprintf(line, sizeof(line), "HSET h%d f%d %d", k % 100,
                             v % 20, v); break;
            case 7: snprintf(line, sizeof(line), "HDEL h%d f%d", k % 100,
                             v % 20); break;
            case 8: snprintf(line, sizeof(line), "SADD t%d m%d m%d", k % 100,
                             v % 50, k); break;
            case 9: snprintf(line, sizeof(line), "SPOP t%d", k % 100); break;
            case 10: snprintf(line, sizeof(line), "EXPIRE s%d %d", k,
                              v % 2 ? 100 : -1); break;
            case 11: snprintf(line, sizeof(line), "RENAME s%d s%d", k,
                              rand() % 3000); break;
            case 12: snprintf(line, sizeof(line), "HINCRBY h%d n 3", k % 100);
                break;
            case 13: snprintf(line, sizeof(line), "GETDEL s%d", k); break;
            case 14: snprintf(line, sizeof(line), "SET s%d v PX 1 GET", k);
                break;
            default: snprintf(line, sizeof(line), "MSET m%d 1 m%d 2", k, v);
                break;
            }
            cmd(&s, &out, line);
            kv_out_reset(&out);
        }
        if (round % 10 == 9) {
            cmd(&s, &out, "FLUSHALL");
            kv_out_reset(&out);
        }
        kv_db_expire_cycle(&s.heap, kv_store_now_ms(&s) + 1000, 16);
        kv_dict_rehash(&s.heap, &s.heap.root->db, 64);
        char why[256];
        if (!kv_db_check(&s.heap, NULL, why, sizeof(why)))
            fail_msg("round %d: store inconsistent: %s", round, why);
        /* Send only the marked pages: the copy must equal the store. */
        for (size_t pg = 0; pg < BLOCK / KV_PAGE; pg++)
            if (bitmap[pg / 64] & (1ull << (pg % 64)))
                memcpy(snap + pg * KV_PAGE, a + pg * KV_PAGE, KV_PAGE);
        for (size_t pg = 0; pg < BLOCK / KV_PAGE; pg++)
            if (memcmp(snap + pg * KV_PAGE, a + pg * KV_PAGE, KV_PAGE))
                fail_msg("round %d: page %zu was written but not marked "
                         "dirty", round, pg);
    }
    /* The copy, mapped elsewhere, is the same store. */
    kv_store t = { 0 };
    kv_heap_init(&t.heap, snap, BLOCK, NULL, false);
    char why[256];
    assert_true(kv_heap_check(&t.heap, why, sizeof(why)));
    cmd(&s, &out, "DBSIZE");
    char want[32];
    snprintf(want, sizeof(want), "%.*s", (int)out.len, out.p);
    kv_out_reset(&out);
    cmd(&t, &out, "DBSIZE");
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.p, want, out.len);
    kv_out_reset(&out);
    cmd(&t, &out, "SET fresh 1");
    assert_memory_equal(out.p, "+OK\r\n", 5);
    kv_out_free(&out);
    free(bitmap);
    free(a);
    free(snap);
}

/* kv_db_check finds what it claims to: a store built by commands passes,
 * and each kind of damage fails, named. */
static void test_check_finds_damage(void **state)
{
    (void)state;
    uint8_t *b = block_new();
    kv_store s = { 0 };
    s.oom_reserve = 65536;
    kv_heap_init(&s.heap, b, BLOCK, NULL, true);
    kv_out out = { 0 };
    cmd(&s, &out, "SET s v");
    cmd(&s, &out, "RPUSH l a b c");
    cmd(&s, &out, "HSET h f 1");
    cmd(&s, &out, "SADD t m n");
    cmd(&s, &out, "SET e 1 EX 100");
    kv_out_free(&out);
    char why[256];
    uint64_t keys = 0;
    assert_true(kv_db_check(&s.heap, &keys, why, sizeof(why)));
    assert_int_equal(keys, 5);
    kv_root *r = s.heap.root;
    struct { uint64_t *field; const char *says; } damage[] = {
        { &r->chunks, "chunks" },
        { &r->expires, "time to live" },
        { &r->db.used[0], "counts" },
    };
    for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
        (*damage[i].field)++;
        assert_false(kv_db_check(&s.heap, NULL, why, sizeof(why)));
        if (!strstr(why, damage[i].says))
            fail_msg("damage %zu reported as '%s'", i, why);
        (*damage[i].field)--;
        assert_true(kv_db_check(&s.heap, NULL, why, sizeof(why)));
    }
    /* A list whose length is off, and a value freed while in use. */
    kv_off e = kv_dict_find(&s.heap, &r->db, "l", 1);
    kv_list *l = kv_ptr(&s.heap, ((kv_entry *)kv_ptr(&s.heap, e))->val);
    l->len++;
    assert_false(kv_db_check(&s.heap, NULL, why, sizeof(why)));
    assert_non_null(strstr(why, "list"));
    l->len--;
    e = kv_dict_find(&s.heap, &r->db, "s", 1);
    kv_free(&s.heap, ((kv_entry *)kv_ptr(&s.heap, e))->val);
    assert_false(kv_db_check(&s.heap, NULL, why, sizeof(why)));
    assert_non_null(strstr(why, "not a live chunk"));
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocator),
        cmocka_unit_test(test_dict_resize_and_scan),
        cmocka_unit_test(test_dirty_marks_cover_every_write),
        cmocka_unit_test(test_check_finds_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
