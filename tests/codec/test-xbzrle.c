/* test-xbzrle.c - the XBZRLE codec and its page cache.
 *
 * Codec: round trips on random and edge pages, exact sizes of known
 * encodings, the out_cap bound, and a decoder that refuses every malformed
 * input.  The decoder is checked against a slow reference parser written
 * here from the format description (xbzrle.c), on thousands of random and
 * mutated inputs; every input lives in a malloc'd buffer of exactly its
 * length (ASan catches an over-read) and the page sits between guard bytes
 * (checked after each call).  Cache: insert, lookup, eviction, invalidate,
 * resize, budget and counters, and the whole send flow over several passes
 * against a simulated destination. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codec/xbzrle-cache.h"
#include "codec/xbzrle.h"

#define PS 4096
#define GUARD 64
#define GUARD_BYTE 0xa5

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static size_t rndn(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* A page of @ps bytes inside guard bytes on both sides. */
typedef struct guarded {
    uint8_t *mem;
    uint8_t *page;
    size_t ps;
} guarded;

static guarded guarded_new(size_t ps)
{
    guarded g = { malloc(ps + 2 * GUARD), NULL, ps };
    assert_non_null(g.mem);
    memset(g.mem, GUARD_BYTE, ps + 2 * GUARD);
    g.page = g.mem + GUARD;
    return g;
}

static void guarded_check(const guarded *g)
{
    for (size_t i = 0; i < GUARD; i++) {
        assert_int_equal(g->mem[i], GUARD_BYTE);
        assert_int_equal(g->page[g->ps + i], GUARD_BYTE);
    }
}

/* Decode @enc (@len bytes) copied into a buffer of exactly @len bytes,
 * into a guarded copy of @old; returns the result, page left in @out. */
static int decode_exact(const uint8_t *enc, size_t len, const uint8_t *old,
                        size_t ps, uint8_t *out)
{
    uint8_t *e = malloc(len ? len : 1);
    assert_non_null(e);
    if (len)
        memcpy(e, enc, len);
    guarded g = guarded_new(ps);
    memcpy(g.page, old, ps);
    int r = lm_xbzrle_decode(e, len, g.page, ps);
    guarded_check(&g);
    if (r != 0)
        assert_memory_equal(g.page, old, ps);   /* refusal changes nothing */
    memcpy(out, g.page, ps);
    free(g.mem);
    free(e);
    return r;
}

/* Encode into a buffer with guard bytes after @cap; checks the guard. */
static ssize_t encode_guarded(const uint8_t *old, const uint8_t *new_,
                              size_t ps, uint8_t *out, size_t cap)
{
    uint8_t *buf = malloc(cap + GUARD);
    assert_non_null(buf);
    memset(buf, GUARD_BYTE, cap + GUARD);
    ssize_t n = lm_xbzrle_encode(old, new_, ps, buf, cap);
    for (size_t i = 0; i < GUARD; i++)
        assert_int_equal(buf[cap + i], GUARD_BYTE);
    if (n > 0) {
        assert_true((size_t)n <= cap);
        memcpy(out, buf, (size_t)n);
    }
    free(buf);
    return n;
}

/* Reference parser, written independently of xbzrle.c from the format:
 * byte at a time, no shortcuts.  Returns true and applies to @page (a
 * copy) if @enc is well formed. */
static bool ref_apply(const uint8_t *enc, size_t len, uint8_t *page,
                      size_t ps)
{
    size_t maxb = 0;
    for (uint64_t v = ps; ; v >>= 7) {
        maxb++;
        if (v < 0x80)
            break;
    }
    uint8_t *tmp = malloc(ps);
    assert_non_null(tmp);
    memcpy(tmp, page, ps);
    size_t p = 0, pos = 0;
    bool ok = true;
    bool first = true;
    while (ok && p < len) {
        uint64_t val[2];
        for (int k = 0; k < 2 && ok; k++) {
            uint64_t v = 0;
            size_t nb = 0;
            for (;;) {
                if (p >= len || nb == maxb) {
                    ok = false;
                    break;
                }
                uint8_t c = enc[p++];
                v |= (uint64_t)(c & 0x7f) << (7 * nb);
                nb++;
                if (!(c & 0x80)) {
                    if (nb > 1 && c == 0)
                        ok = false;
                    break;
                }
            }
            val[k] = v;
        }
        if (!ok)
            break;
        uint64_t z = val[0], d = val[1];
        if ((z == 0 && !first) || d == 0 || pos + z + d > ps ||
            p + d > len) {
            ok = false;
            break;
        }
        pos += z;
        for (uint64_t i = 0; i < d; i++)
            tmp[pos++] = enc[p++];
        first = false;
        if (pos == ps && p < len)
            ok = false;
    }
    if (ok)
        memcpy(page, tmp, ps);
    free(tmp);
    return ok;
}

/* Check lm_xbzrle_decode against the reference on (@enc, @len, @old). */
static int check_decode(const uint8_t *enc, size_t len, const uint8_t *old,
                        size_t ps)
{
    uint8_t *got = malloc(ps), *want = malloc(ps);
    assert_non_null(got);
    assert_non_null(want);
    memcpy(want, old, ps);
    bool ok = ref_apply(enc, len, want, ps);
    int r = decode_exact(enc, len, old, ps, got);
    assert_int_equal(r, ok ? 0 : -1);
    assert_int_equal(lm_xbzrle_validate(enc, len, ps), r);
    assert_memory_equal(got, want, ps);
    free(got);
    free(want);
    return r;
}

/* Encode with a roomy cap, check it decodes back to @new_; returns len. */
static size_t round_trip(const uint8_t *old, const uint8_t *new_, size_t ps)
{
    size_t cap = 2 * ps + 16;
    uint8_t *enc = malloc(cap), *out = malloc(ps);
    assert_non_null(enc);
    assert_non_null(out);
    ssize_t n = encode_guarded(old, new_, ps, enc, cap);
    assert_true(n >= 0);
    assert_int_equal(decode_exact(enc, (size_t)n, old, ps, out), 0);
    assert_memory_equal(out, new_, ps);
    assert_true(ref_apply(enc, (size_t)n, memcpy(out, old, ps), ps));
    assert_memory_equal(out, new_, ps);

    /* the same encoding with the tight cap: fits iff smaller than raw */
    ssize_t m = encode_guarded(old, new_, ps, enc, ps - 1);
    if ((size_t)n < ps)
        assert_int_equal(m, n);
    else
        assert_int_equal(m, -1);
    /* and exactly its own length is enough, one byte less is not */
    if (n > 0) {
        assert_int_equal(encode_guarded(old, new_, ps, enc, (size_t)n), n);
        assert_int_equal(encode_guarded(old, new_, ps, enc, (size_t)n - 1),
                         -1);
    }
    free(enc);
    free(out);
    return (size_t)n;
}

/* ---- codec: round trips and edge pages --------------------------------- */

static void test_identical(void **state)
{
    (void)state;
    uint8_t old[PS], enc[PS], out[PS];
    fill_random(old, PS);
    assert_int_equal(lm_xbzrle_encode(old, old, PS, enc, PS - 1), 0);
    assert_int_equal(lm_xbzrle_encode(old, old, PS, enc, 0), 0);
    assert_int_equal(decode_exact(enc, 0, old, PS, out), 0);
    assert_memory_equal(out, old, PS);
}

static void test_first_last_byte(void **state)
{
    (void)state;
    uint8_t old[PS], new_[PS], enc[PS];
    fill_random(old, PS);

    memcpy(new_, old, PS);
    new_[0] ^= 0x5a;
    assert_int_equal(round_trip(old, new_, PS), 3);     /* 0, 1, byte */
    assert_int_equal(lm_xbzrle_encode(old, new_, PS, enc, PS - 1), 3);
    assert_int_equal(enc[0], 0);
    assert_int_equal(enc[1], 1);
    assert_int_equal(enc[2], new_[0]);

    memcpy(new_, old, PS);
    new_[PS - 1] ^= 0x01;
    assert_int_equal(round_trip(old, new_, PS), 4);     /* 4095 is 2 bytes */
    assert_int_equal(lm_xbzrle_encode(old, new_, PS, enc, PS - 1), 4);
    assert_int_equal(enc[0], 0xff);
    assert_int_equal(enc[1], 0x1f);
    assert_int_equal(enc[2], 1);
    assert_int_equal(enc[3], new_[PS - 1]);

    new_[0] ^= 0x80;
    assert_int_equal(round_trip(old, new_, PS), 3 + 4);
}

static void test_all_different(void **state)
{
    (void)state;
    uint8_t old[PS], new_[PS], enc[PS];
    fill_random(old, PS);
    for (size_t i = 0; i < PS; i++)
        new_[i] = old[i] ^ (uint8_t)(1 + rndn(255));
    assert_int_equal(lm_xbzrle_encode(old, new_, PS, enc, PS - 1), -1);
    assert_int_equal(round_trip(old, new_, PS), 1 + 2 + PS);
}

static void test_alternating(void **state)
{
    (void)state;
    uint8_t old[PS], new_[PS], enc[PS];
    fill_random(old, PS);

    /* every other byte: single equal bytes fold into one data run */
    memcpy(new_, old, PS);
    for (size_t i = 0; i < PS; i += 2)
        new_[i] ^= 0xff;
    assert_int_equal(lm_xbzrle_encode(old, new_, PS, enc, PS - 1), -1);
    assert_int_equal(round_trip(old, new_, PS), 1 + 2 + (PS - 1));

    memcpy(new_, old, PS);
    for (size_t i = 1; i < PS; i += 2)
        new_[i] ^= 0xff;
    assert_int_equal(round_trip(old, new_, PS), 1 + 2 + (PS - 1));

    /* one changed byte in three: pairs of (2, 1, byte) */
    memcpy(new_, old, PS);
    for (size_t i = 2; i < PS; i += 3)
        new_[i] ^= 0x10;
    size_t n = round_trip(old, new_, PS);
    assert_int_equal(n, 3 * (PS / 3));

    /* one changed byte in 64: much smaller than the page */
    memcpy(new_, old, PS);
    for (size_t i = 7; i < PS; i += 64)
        new_[i] ^= 0x10;
    n = round_trip(old, new_, PS);
    assert_int_equal(n, 1 + 1 + 1 + (PS / 64 - 1) * 3);
}

static void test_random_few(void **state)
{
    (void)state;
    uint8_t old[PS], new_[PS];
    for (int it = 0; it < 3000; it++) {
        fill_random(old, PS);
        memcpy(new_, old, PS);
        size_t k = 1 + rndn(16);
        for (size_t j = 0; j < k; j++)
            new_[rndn(PS)] = (uint8_t)rnd();
        size_t n = round_trip(old, new_, PS);
        assert_true(n <= k * 4);          /* 2 + 1 varint bytes + 1 byte */
    }
}

static void test_random_many(void **state)
{
    (void)state;
    uint8_t old[PS], new_[PS];
    for (int it = 0; it < 1000; it++) {
        fill_random(old, PS);
        memcpy(new_, old, PS);
        size_t k = rndn(PS * 2);
        if (it % 3 == 0) {
            /* clustered changes: a few random runs */
            for (size_t r = 0; r < 1 + rndn(8); r++) {
                size_t at = rndn(PS), len = rndn(512);
                for (size_t j = at; j < at + len && j < PS; j++)
                    new_[j] = (uint8_t)rnd();
            }
        } else {
            for (size_t j = 0; j < k; j++)
                new_[rndn(PS)] = (uint8_t)rnd();
        }
        round_trip(old, new_, PS);
    }
}

static void test_odd_page_sizes(void **state)
{
    (void)state;
    uint8_t old[300], new_[300];
    for (size_t ps = 1; ps <= 300; ps++) {
        for (int it = 0; it < 20; it++) {
            fill_random(old, ps);
            memcpy(new_, old, ps);
            size_t k = rndn(ps + 1);
            for (size_t j = 0; j < k; j++)
                new_[rndn(ps)] ^= (uint8_t)(1 + rndn(255));
            round_trip(old, new_, ps);
        }
    }
    /* a 64 KiB page needs 3-byte varints */
    size_t big = 65536;
    uint8_t *o = malloc(big), *n = malloc(big);
    assert_non_null(o);
    assert_non_null(n);
    fill_random(o, big);
    memcpy(n, o, big);
    n[big - 1] ^= 1;
    n[20000] ^= 1;
    assert_int_equal(round_trip(o, n, big), 3 + 1 + 1 + 3 + 1 + 1);
    free(o);
    free(n);
}

static void test_bad_args(void **state)
{
    (void)state;
    uint8_t a[8] = { 0 }, b[8] = { 1 }, out[32];
    assert_int_equal(lm_xbzrle_encode(a, b, 0, out, sizeof(out)), -1);
    assert_int_equal(lm_xbzrle_decode(out, 0, a, 0), -1);
    assert_int_equal(lm_xbzrle_decode(out, 0, NULL, 8), -1);
    assert_int_equal(lm_xbzrle_encode(a, b, (size_t)LM_XBZRLE_PAGE_SIZE_MAX
                                      + 1, out, sizeof(out)), -1);
    assert_int_equal(lm_xbzrle_encode(a, b, 8, out, 0), -1);
    assert_int_equal(lm_xbzrle_encode(a, b, 8, out, 2), -1);
    assert_int_equal(lm_xbzrle_encode(a, b, 8, out, 3), 3);
}

/* ---- codec: the decoder refuses malformed input ------------------------ */

static void test_decode_malformed_cases(void **state)
{
    (void)state;
    uint8_t old[PS], out[PS];
    fill_random(old, PS);
    static const struct {
        const char *what;
        uint8_t enc[8];
        size_t len;
        int want;
    } cases[] = {
        { "one pair", { 5, 2, 'a', 'b' }, 4, 0 },
        { "zero run 0 at start", { 0, 1, 'a' }, 3, 0 },
        { "zero data run", { 5, 0 }, 2, -1 },
        { "zero inner zero run", { 0, 1, 'a', 0, 1, 'b' }, 6, -1 },
        { "varint 3 bytes", { 0x80, 0x80, 0x01, 1, 'a' }, 5, -1 },
        { "varint not minimal", { 0x85, 0x00, 1, 'a' }, 4, -1 },
        { "varint truncated", { 0x85 }, 1, -1 },
        { "data length missing", { 5 }, 1, -1 },
        { "data truncated", { 5, 3, 'a', 'b' }, 4, -1 },
        { "zero run to page end", { 0x80, 0x20, 1, 'a' }, 4, -1 },
        { "zero run past end", { 0xff, 0x7f, 1, 'a' }, 4, -1 },
        { "data run past end", { 0xff, 0x1f, 2, 'a', 'b' }, 5, -1 },
        { "last byte", { 0xff, 0x1f, 1, 'a' }, 4, 0 },
        { "garbage after page end", { 0xff, 0x1f, 1, 'a', 1 }, 5, -1 },
        { "garbage zero after end", { 0xff, 0x1f, 1, 'a', 0 }, 5, -1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = decode_exact(cases[i].enc, cases[i].len, old, PS, out);
        if (r != cases[i].want)
            fail_msg("case '%s': got %d, want %d", cases[i].what, r,
                     cases[i].want);
        check_decode(cases[i].enc, cases[i].len, old, PS);
    }

    /* a full-page data run, then anything more */
    uint8_t *enc = malloc(PS + 8);
    assert_non_null(enc);
    enc[0] = 0;
    enc[1] = 0x80;
    enc[2] = 0x20;
    memset(enc + 3, 0x77, PS);
    assert_int_equal(check_decode(enc, 3 + PS, old, PS), 0);
    assert_int_equal(check_decode(enc, 3 + PS - 1, old, PS), -1);
    enc[3 + PS] = 1;
    assert_int_equal(check_decode(enc, 3 + PS + 1, old, PS), -1);
    enc[2] = 0x21;                                   /* 4224 bytes */
    assert_int_equal(check_decode(enc, 3 + PS, old, PS), -1);
    free(enc);
}

/* Mutate a valid encoding: flip, overwrite, truncate, extend, splice. */
static size_t mutate(uint8_t *e, size_t n, size_t cap)
{
    int nmut = 1 + (int)rndn(4);
    for (int m = 0; m < nmut; m++) {
        switch (rndn(7)) {
        case 0:                                   /* flip a bit */
            if (n)
                e[rndn(n)] ^= (uint8_t)(1u << rndn(8));
            break;
        case 1:                                   /* random byte */
            if (n)
                e[rndn(n)] = (uint8_t)rnd();
            break;
        case 2:                                   /* truncate */
            n = rndn(n + 1);
            break;
        case 3:                                   /* extend */
            for (size_t k = 1 + rndn(6); k && n < cap; k--)
                e[n++] = (uint8_t)rnd();
            break;
        case 4:                                   /* interesting value */
            if (n) {
                static const uint8_t v[] = { 0, 1, 0x7f, 0x80, 0xff, 0x20,
                                             0x1f, 0x81 };
                e[rndn(n)] = v[rndn(sizeof(v))];
            }
            break;
        case 5:                                   /* delete a byte */
            if (n) {
                size_t at = rndn(n);
                memmove(e + at, e + at + 1, n - at - 1);
                n--;
            }
            break;
        default:                                  /* duplicate a byte */
            if (n && n < cap) {
                size_t at = rndn(n);
                memmove(e + at + 1, e + at, n - at);
                n++;
            }
            break;
        }
    }
    return n;
}

static void test_decode_fuzz_mutated(void **state)
{
    (void)state;
    uint8_t old[PS], new_[PS];
    size_t cap = 2 * PS + 64;
    uint8_t *enc = malloc(cap), *e = malloc(cap);
    assert_non_null(enc);
    assert_non_null(e);
    int refused = 0, total = 0;
    for (int it = 0; it < 400; it++) {
        fill_random(old, PS);
        memcpy(new_, old, PS);
        size_t k = 1 + rndn(it % 4 == 0 ? 1000 : 20);
        for (size_t j = 0; j < k; j++)
            new_[rndn(PS)] = (uint8_t)rnd();
        ssize_t n = lm_xbzrle_encode(old, new_, PS, enc, cap - 64);
        assert_true(n >= 0);
        assert_int_equal(check_decode(enc, (size_t)n, old, PS), 0);
        for (int m = 0; m < 25; m++) {
            memcpy(e, enc, (size_t)n);
            size_t len = mutate(e, (size_t)n, cap);
            refused += check_decode(e, len, old, PS) ? 1 : 0;
            total++;
        }
        /* every truncation point */
        if (it % 40 == 0)
            for (size_t len = 0; len < (size_t)n; len++, total++)
                refused += check_decode(enc, len, old, PS) ? 1 : 0;
    }
    print_message("mutated: %d inputs, %d refused\n", total, refused);
    assert_true(refused > total / 2);
    free(enc);
    free(e);
}

static void test_decode_fuzz_random(void **state)
{
    (void)state;
    uint8_t old[PS];
    uint8_t buf[64];
    int refused = 0, total = 0;
    fill_random(old, PS);
    for (int it = 0; it < 20000; it++, total++) {
        size_t len = rndn(sizeof(buf) + 1);
        for (size_t i = 0; i < len; i++) {
            /* bias towards small numbers so some inputs parse deep */
            uint64_t r = rnd();
            buf[i] = (r & 3) ? (uint8_t)(r >> 8) & 0x0f : (uint8_t)(r >> 8);
        }
        refused += check_decode(buf, len, old, PS) ? 1 : 0;
    }
    /* small pages, where runs past the end are easy to hit */
    for (int it = 0; it < 20000; it++, total++) {
        size_t ps = 1 + rndn(40);
        size_t len = rndn(24);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)(rnd() % 12);
        refused += check_decode(buf, len, old, ps) ? 1 : 0;
    }
    print_message("random: %d inputs, %d refused\n", total, refused);
    assert_true(refused > 0 && refused < total);
}

/* ---- cache ------------------------------------------------------------- */

static void fill_key(uint8_t *p, uint32_t block, uint64_t page)
{
    for (size_t i = 0; i < PS; i += 8) {
        uint64_t v = ((uint64_t)block << 40) ^ page ^ (i << 20);
        memcpy(p + i, &v, 8);
    }
}

static void test_cache_new(void **state)
{
    (void)state;
    livemig_error err = { 0 };
    assert_null(lm_xbzrle_cache_new(PS - 1, PS, &err));
    assert_true(livemig_error_is_set(&err));
    assert_non_null(strstr(err.desc, "smaller than one page"));
    livemig_error_clear(&err);
    assert_null(lm_xbzrle_cache_new(1 << 20, 0, &err));
    assert_true(livemig_error_is_set(&err));
    assert_null(lm_xbzrle_cache_new(0, PS, NULL));

    static const uint64_t sizes[] = { PS, PS + 1, 3 * PS - 1, 10 * PS + 7,
                                      64ull << 20 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        lm_xbzrle_cache *c = lm_xbzrle_cache_new(sizes[i], PS, NULL);
        assert_non_null(c);
        lm_xbzrle_cache_stats st;
        lm_xbzrle_cache_get_stats(c, &st);
        assert_int_equal(st.cache_size, sizes[i]);
        assert_int_equal(st.slots, sizes[i] / PS);
        assert_true(st.slots * PS <= sizes[i]);
        assert_int_equal(st.used, 0);
        assert_int_equal(lm_xbzrle_cache_page_size(c), PS);
        lm_xbzrle_cache_free(c);
    }
    lm_xbzrle_cache_free(NULL);
}

static void test_cache_insert_lookup(void **state)
{
    (void)state;
    uint8_t page[PS], check[PS];
    lm_xbzrle_cache *c = lm_xbzrle_cache_new(16 * PS, PS, NULL);
    assert_non_null(c);

    assert_null(lm_xbzrle_cache_lookup(c, 0, 3));
    fill_key(page, 0, 3);
    uint8_t *copy = lm_xbzrle_cache_insert(c, 0, 3, page);
    assert_non_null(copy);
    assert_ptr_not_equal(copy, page);
    assert_memory_equal(copy, page, PS);
    memcpy(check, page, PS);
    memset(page, 0, PS);                          /* the cache has a copy */
    assert_ptr_equal(lm_xbzrle_cache_lookup(c, 0, 3), copy);
    assert_memory_equal(copy, check, PS);
    assert_true(lm_xbzrle_cache_contains(c, 0, 3));
    assert_false(lm_xbzrle_cache_contains(c, 1, 3)); /* block is in the key */
    assert_null(lm_xbzrle_cache_lookup(c, 1, 3));

    /* update in place, also from the cached copy itself */
    assert_ptr_equal(lm_xbzrle_cache_insert(c, 0, 3, page), copy);
    assert_memory_equal(copy, page, PS);
    copy[0] = 0x42;
    assert_ptr_equal(lm_xbzrle_cache_insert(c, 0, 3, copy), copy);
    assert_int_equal(lm_xbzrle_cache_lookup(c, 0, 3)[0], 0x42);

    lm_xbzrle_cache_stats st;
    lm_xbzrle_cache_get_stats(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.used, 1);
    assert_int_equal(st.evictions, 0);
    assert_true(st.miss_rate > 0.49 && st.miss_rate < 0.51);

    lm_xbzrle_cache_invalidate(c, 0, 3);
    lm_xbzrle_cache_invalidate(c, 0, 3);
    assert_false(lm_xbzrle_cache_contains(c, 0, 3));
    lm_xbzrle_cache_get_stats(c, &st);
    assert_int_equal(st.used, 0);
    lm_xbzrle_cache_free(c);
}

static void test_cache_evict_budget(void **state)
{
    (void)state;
    uint8_t page[PS];
    const uint64_t slots = 37;
    lm_xbzrle_cache *c = lm_xbzrle_cache_new(slots * PS + PS / 2, PS, NULL);
    assert_non_null(c);
    assert_int_equal(lm_xbzrle_cache_slots(c), slots);

    /* a block no larger than the cache never evicts itself */
    for (uint64_t p = 100; p < 100 + slots; p++) {
        fill_key(page, 2, p);
        lm_xbzrle_cache_insert(c, 2, p, page);
    }
    for (uint64_t p = 100; p < 100 + slots; p++) {
        uint8_t *got = lm_xbzrle_cache_lookup(c, 2, p);
        assert_non_null(got);
        fill_key(page, 2, p);
        assert_memory_equal(got, page, PS);
    }
    lm_xbzrle_cache_stats st;
    lm_xbzrle_cache_get_stats(c, &st);
    assert_int_equal(st.used, slots);
    assert_int_equal(st.evictions, 0);

    /* direct-mapped: page p + slots takes page p's slot */
    fill_key(page, 2, 100 + slots);
    lm_xbzrle_cache_insert(c, 2, 100 + slots, page);
    assert_false(lm_xbzrle_cache_contains(c, 2, 100));
    assert_true(lm_xbzrle_cache_contains(c, 2, 100 + slots));
    lm_xbzrle_cache_get_stats(c, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.used, slots);

    /* many keys of many blocks: never more than the budget, and every
     * cached copy is the content of its own key */
    for (int i = 0; i < 5000; i++) {
        uint32_t b = (uint32_t)rndn(5);
        uint64_t p = rndn(1000);
        fill_key(page, b, p);
        lm_xbzrle_cache_insert(c, b, p, page);
        lm_xbzrle_cache_get_stats(c, &st);
        assert_true(st.used <= slots);
        assert_true(st.slots * st.page_size <= st.cache_size);
    }
    int found = 0;
    for (uint32_t b = 0; b < 5; b++)
        for (uint64_t p = 0; p < 1000; p++) {
            uint8_t *got = lm_xbzrle_cache_lookup(c, b, p);
            if (!got)
                continue;
            found++;
            fill_key(page, b, p);
            assert_memory_equal(got, page, PS);
        }
    assert_int_equal(found, (int)slots);

    lm_xbzrle_cache_clear(c);
    lm_xbzrle_cache_get_stats(c, &st);
    assert_int_equal(st.used, 0);
    assert_false(lm_xbzrle_cache_contains(c, 2, 100 + slots));
    lm_xbzrle_cache_free(c);
}

static void test_cache_resize(void **state)
{
    (void)state;
    uint8_t page[PS];
    livemig_error err = { 0 };
    lm_xbzrle_cache *c = lm_xbzrle_cache_new(8 * PS, PS, NULL);
    assert_non_null(c);
    for (uint64_t p = 0; p < 8; p++) {
        fill_key(page, 0, p);
        lm_xbzrle_cache_insert(c, 0, p, page);
    }
    assert_non_null(lm_xbzrle_cache_lookup(c, 0, 1));
    assert_null(lm_xbzrle_cache_lookup(c, 0, 9));

    /* same size: a no-op that keeps the pages */
    assert_true(lm_xbzrle_cache_resize(c, 8 * PS, &err));
    assert_true(lm_xbzrle_cache_contains(c, 0, 1));

    /* too small: refused, nothing lost */
    assert_false(lm_xbzrle_cache_resize(c, PS - 1, &err));
    assert_true(livemig_error_is_set(&err));
    assert_true(lm_xbzrle_cache_contains(c, 0, 1));
    assert_int_equal(lm_xbzrle_cache_slots(c), 8);

    /* grow: drops everything, keeps counters */
    assert_true(lm_xbzrle_cache_resize(c, 20 * PS + 100, NULL));
    lm_xbzrle_cache_stats st;
    lm_xbzrle_cache_get_stats(c, &st);
    assert_int_equal(st.slots, 20);
    assert_int_equal(st.cache_size, 20 * PS + 100);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 1);
    for (uint64_t p = 0; p < 8; p++)
        assert_false(lm_xbzrle_cache_contains(c, 0, p));
    for (uint64_t p = 0; p < 20; p++) {
        fill_key(page, 1, p);
        lm_xbzrle_cache_insert(c, 1, p, page);
    }
    lm_xbzrle_cache_get_stats(c, &st);
    assert_int_equal(st.used, 20);
    assert_int_equal(st.evictions, 0);

    /* shrink to one page */
    assert_true(lm_xbzrle_cache_resize(c, PS, NULL));
    assert_int_equal(lm_xbzrle_cache_slots(c), 1);
    fill_key(page, 1, 5);
    lm_xbzrle_cache_insert(c, 1, 5, page);
    fill_key(page, 1, 6);
    lm_xbzrle_cache_insert(c, 1, 6, page);
    assert_false(lm_xbzrle_cache_contains(c, 1, 5));
    assert_memory_equal(lm_xbzrle_cache_lookup(c, 1, 6), page, PS);
    lm_xbzrle_cache_free(c);
}

static void test_cache_account(void **state)
{
    (void)state;
    lm_xbzrle_cache *c = lm_xbzrle_cache_new(4 * PS, PS, NULL);
    assert_non_null(c);
    lm_xbzrle_cache_stats st;
    lm_xbzrle_cache_get_stats(c, &st);
    assert_true(st.miss_rate == 0.0 && st.encoding_rate == 0.0);
    lm_xbzrle_cache_account(c, 100);
    lm_xbzrle_cache_account(c, 28);
    lm_xbzrle_cache_account(c, 0);
    lm_xbzrle_cache_account(c, -1);
    lm_xbzrle_cache_get_stats(c, &st);
    assert_int_equal(st.pages, 3);
    assert_int_equal(st.bytes, 128);
    assert_int_equal(st.overflow, 1);
    assert_true(st.encoding_rate > 95.99 && st.encoding_rate < 96.01);
    lm_xbzrle_cache_free(c);
}

/* The documented flow, pass after pass, against a destination that
 * applies what it receives: it ends with the source's exact content. */
static void test_cache_flow(void **state)
{
    (void)state;
    const size_t npages = 64;
    uint8_t *src = malloc(npages * PS), *dst = malloc(npages * PS);
    uint8_t snap[PS], enc[PS];
    assert_non_null(src);
    assert_non_null(dst);
    fill_random(src, npages * PS);
    memset(dst, 0, npages * PS);
    lm_xbzrle_cache *c = lm_xbzrle_cache_new(40 * PS, PS, NULL);
    assert_non_null(c);
    uint64_t wire = 0;

    for (int pass = 0; pass < 12; pass++) {
        if (pass == 6)
            assert_true(lm_xbzrle_cache_resize(c, 70 * PS, NULL));
        for (size_t p = 0; p < npages; p++) {
            uint8_t *guest = src + p * PS, *dpage = dst + p * PS;
            const uint8_t *old = lm_xbzrle_cache_lookup(c, 0, p);
            if (!old) {
                const uint8_t *copy = lm_xbzrle_cache_insert(c, 0, p, guest);
                memcpy(dpage, copy, PS);              /* raw */
                wire += PS;
                continue;
            }
            memcpy(snap, guest, PS);
            ssize_t n = lm_xbzrle_encode(old, snap, PS, enc, PS - 1);
            lm_xbzrle_cache_account(c, n);
            lm_xbzrle_cache_insert(c, 0, p, snap);
            if (n < 0) {
                memcpy(dpage, snap, PS);
                wire += PS;
            } else if (n > 0) {
                assert_int_equal(decode_exact(enc, (size_t)n, dpage, PS,
                                              dpage), 0);
                wire += (uint64_t)n;
            }
        }
        assert_memory_equal(dst, src, npages * PS);
        /* the guest dirties: a few bytes in most pages, a whole page in
         * some */
        for (size_t p = 0; p < npages; p++) {
            uint8_t *g = src + p * PS;
            if (rndn(8) == 0)
                fill_random(g, PS);
            else
                for (size_t k = rndn(10); k; k--)
                    g[rndn(PS)] = (uint8_t)rnd();
        }
    }
    lm_xbzrle_cache_stats st;
    lm_xbzrle_cache_get_stats(c, &st);
    assert_true(st.hits > 0 && st.misses > 0 && st.overflow > 0);
    assert_true(st.encoding_rate > 10.0);
    assert_true(wire < 12ull * npages * PS * 3 / 4);
    lm_xbzrle_cache_free(c);
    free(src);
    free(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical),
        cmocka_unit_test(test_first_last_byte),
        cmocka_unit_test(test_all_different),
        cmocka_unit_test(test_alternating),
        cmocka_unit_test(test_random_few),
        cmocka_unit_test(test_random_many),
        cmocka_unit_test(test_odd_page_sizes),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_decode_malformed_cases),
        cmocka_unit_test(test_decode_fuzz_mutated),
        cmocka_unit_test(test_decode_fuzz_random),
        cmocka_unit_test(test_cache_new),
        cmocka_unit_test(test_cache_insert_lookup),
        cmocka_unit_test(test_cache_evict_budget),
        cmocka_unit_test(test_cache_resize),
        cmocka_unit_test(test_cache_account),
        cmocka_unit_test(test_cache_flow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
