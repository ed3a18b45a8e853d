/* test-compress.c - the multifd page-batch compressors (none, zlib, zstd,
 * lz4): round trips on random, zero, text-like and mixed pages in batches
 * of 1 and 128 pages; decompressors that refuse truncated, wrong-length
 * and mutated input without reading outside the input or writing outside
 * the expected output (guard bytes here, ASan in CI); the compression
 * ratio of text that users are promised.
 *
 * LM_TEST_SEED=N reruns with another seed (the seed is printed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/compress.h"

#define PS 4096u
#define GUARD 64u
#define GUARD_BYTE 0xa5

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

/* ---- page fills ---------------------------------------------------------- */

typedef enum fill { FILL_RANDOM, FILL_ZERO, FILL_TEXT, FILL_MIXED } fill;
static const char *const fill_names[] = { "random", "zero", "text", "mixed" };

static void page_random(uint8_t *p)
{
    for (size_t i = 0; i < PS; i += 8) {
        uint64_t v = rnd();
        memcpy(p + i, &v, 8);
    }
}

/* Text as a guest's page cache or a log holds it: lines of words from a
 * small vocabulary, numbers and punctuation. */
static const char *const words[] = {
    "the", "a", "page", "is", "was", "dirty", "clean", "sent", "again",
    "memory", "guest", "host", "channel", "batch", "of", "and", "to", "in",
    "migration", "stream", "for", "with", "every", "pass", "not", "yet",
    "kernel:", "info:", "warning:", "error:", "request", "from", "client",
    "completed", "in", "ms", "bytes", "status", "active", "device", "eth0",
    "link", "up", "down", "user", "session", "opened", "closed", "by",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

static void page_text(uint8_t *p)
{
    size_t pos = 0;
    char tmp[64];
    while (pos < PS) {
        int n;
        switch (rnd_below(16)) {
        case 0:
            n = snprintf(tmp, sizeof(tmp), "%u ", (unsigned)rnd_below(1000));
            break;
        case 1:
            n = snprintf(tmp, sizeof(tmp), ".\n");
            break;
        case 2:
            n = snprintf(tmp, sizeof(tmp), ", ");
            break;
        default:
            n = snprintf(tmp, sizeof(tmp), "%s ", words[rnd_below(NWORDS)]);
        }
        size_t len = (size_t)n;
        if (len > PS - pos)
            len = PS - pos;
        memcpy(p + pos, tmp, len);
        pos += len;
    }
}

static void fill_pages(uint8_t *buf, size_t npages, fill f)
{
    for (size_t i = 0; i < npages; i++) {
        uint8_t *p = buf + i * PS;
        fill pf = f == FILL_MIXED ? (fill)rnd_below(3) : f;
        switch (pf) {
        case FILL_RANDOM: page_random(p); break;
        case FILL_ZERO: memset(p, 0, PS); break;
        default: page_text(p); break;
        }
    }
}

/* ---- guarded buffers ----------------------------------------------------- */

/* @len usable bytes with GUARD bytes of GUARD_BYTE on each side. */
static uint8_t *guarded_new(size_t len)
{
    uint8_t *b = malloc(len + 2 * GUARD);
    assert_non_null(b);
    memset(b, GUARD_BYTE, len + 2 * GUARD);
    return b + GUARD;
}

static void guarded_check(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < GUARD; i++) {
        assert_int_equal(p[-(ptrdiff_t)GUARD + (ptrdiff_t)i], GUARD_BYTE);
        assert_int_equal(p[len + i], GUARD_BYTE);
    }
}

static void guarded_free(uint8_t *p)
{
    if (p)
        free(p - GUARD);
}

/* An exact-size heap copy: ASan flags any read past it. */
static uint8_t *exact_copy(const void *src, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    assert_non_null(b);
    memcpy(b, src, len);
    return b;
}

static const int all_methods[] = {
    LM_COMPRESS_NONE, LM_COMPRESS_ZLIB, LM_COMPRESS_ZSTD, LM_COMPRESS_LZ4,
};
#define NMETHODS 4

static int default_level(lm_compress_method m)
{
    return m == LM_COMPRESS_NONE || m == LM_COMPRESS_LZ4 ? 0 : 1;
}

/* A compressed batch: @npages pages of @f compressed with @c. */
typedef struct batch {
    uint8_t *raw;
    size_t raw_len;
    uint8_t *comp;
    size_t comp_len;
} batch;

static batch make_batch(lm_compressor *c, size_t npages, fill f)
{
    batch b = { .raw_len = npages * PS };
    b.raw = malloc(b.raw_len);
    assert_non_null(b.raw);
    fill_pages(b.raw, npages, f);
    size_t cap = lm_compress_bound(lm_compressor_method(c), b.raw_len);
    assert_true(cap >= b.raw_len);
    uint8_t *out = guarded_new(cap);
    livemig_error err = {0};
    b.comp_len = lm_compress(c, b.raw, b.raw_len, out, cap, &err);
    assert_true(b.comp_len > 0);
    assert_true(b.comp_len <= cap);
    assert_false(livemig_error_is_set(&err));
    guarded_check(out, cap);
    b.comp = exact_copy(out, b.comp_len);
    guarded_free(out);
    return b;
}

static void batch_free(batch *b)
{
    free(b->raw);
    free(b->comp);
}

/* Decompress @in into a guarded @expect_len buffer; check the guards and
 * that a refusal explains itself, naming the method.  Returns the result;
 * *@same tells whether the output equals @want (if given). */
static bool try_decompress(lm_compressor *c, const uint8_t *in, size_t in_len,
                           size_t expect_len, const uint8_t *want,
                           bool *same)
{
    uint8_t *cin = exact_copy(in, in_len);
    uint8_t *out = guarded_new(expect_len);
    livemig_error err = {0};
    bool ok = lm_decompress(c, cin, in_len, out, expect_len, &err);
    guarded_check(out, expect_len);
    if (ok) {
        assert_false(livemig_error_is_set(&err));
    } else {
        assert_true(livemig_error_is_set(&err));
        const char *name = lm_compress_name(lm_compressor_method(c));
        assert_true(strncmp(err.desc, name, strlen(name)) == 0);
    }
    if (same)
        *same = ok && want && memcmp(out, want, expect_len) == 0;
    guarded_free(out);
    free(cin);
    return ok;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    static const char *const want[] = { "none", "zlib", "zstd", "lz4" };
    for (int i = 0; i < NMETHODS; i++) {
        lm_compress_method m;
        assert_string_equal(lm_compress_name(all_methods[i]), want[i]);
        assert_true(lm_compress_method_from_name(want[i], &m));
        assert_int_equal(m, all_methods[i]);
        assert_int_equal(all_methods[i], i);  /* tunable enum order */
    }
    lm_compress_method m = LM_COMPRESS_ZSTD;
    assert_false(lm_compress_method_from_name("ZSTD", &m));
    assert_false(lm_compress_method_from_name("gzip", &m));
    assert_false(lm_compress_method_from_name("", &m));
    assert_false(lm_compress_method_from_name(NULL, &m));
    assert_int_equal(m, LM_COMPRESS_ZSTD);
    assert_string_equal(lm_compress_name((lm_compress_method)4), "unknown");
    assert_string_equal(lm_compress_name((lm_compress_method)-1), "unknown");
}

static void test_new_levels(void **state)
{
    (void)state;
    static const struct { lm_compress_method m; int level; bool ok; } cases[] = {
        { LM_COMPRESS_ZLIB, 0, false }, { LM_COMPRESS_ZLIB, 1, true },
        { LM_COMPRESS_ZLIB, 9, true }, { LM_COMPRESS_ZLIB, 10, false },
        { LM_COMPRESS_ZLIB, -1, false },
        { LM_COMPRESS_ZSTD, 0, false }, { LM_COMPRESS_ZSTD, 1, true },
        { LM_COMPRESS_ZSTD, 20, true }, { LM_COMPRESS_ZSTD, 21, false },
        { LM_COMPRESS_ZSTD, -5, false },
        { LM_COMPRESS_LZ4, 0, true }, { LM_COMPRESS_LZ4, 99, true },
        { LM_COMPRESS_LZ4, -1, true },
        { LM_COMPRESS_NONE, 0, true }, { LM_COMPRESS_NONE, 1234, true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        livemig_error err = {0};
        lm_compressor *c = lm_compressor_new(cases[i].m, cases[i].level, &err);
        if (cases[i].ok) {
            assert_non_null(c);
            assert_false(livemig_error_is_set(&err));
            assert_int_equal(lm_compressor_method(c), cases[i].m);
        } else {
            assert_null(c);
            assert_true(livemig_error_is_set(&err));
            assert_non_null(strstr(err.desc, lm_compress_name(cases[i].m)));
            assert_non_null(strstr(err.desc, "level"));
        }
        lm_compressor_free(c);
    }
    livemig_error err = {0};
    assert_null(lm_compressor_new((lm_compress_method)7, 1, &err));
    assert_true(livemig_error_is_set(&err));
    assert_null(lm_compressor_new((lm_compress_method)7, 1, NULL));
    lm_compressor_free(NULL);
}

static void test_bound(void **state)
{
    (void)state;
    for (int i = 0; i < NMETHODS; i++) {
        lm_compress_method m = all_methods[i];
        assert_true(lm_compress_bound(m, PS) >= PS);
        assert_true(lm_compress_bound(m, 128 * PS) >= 128 * PS);
        assert_true(lm_compress_bound(m, LM_COMPRESS_MAX_LEN) >=
                    LM_COMPRESS_MAX_LEN);
        assert_int_equal(lm_compress_bound(m, (size_t)LM_COMPRESS_MAX_LEN + 1),
                         0);
    }
    assert_int_equal(lm_compress_bound(LM_COMPRESS_NONE, PS), PS);
    assert_int_equal(lm_compress_bound((lm_compress_method)9, PS), 0);
}

/* Every method, every fill, batches of 1 and 128 pages, the lowest and
 * highest level: decompression gives back the batch, exactly, and a
 * compressor reused for many batches keeps working. */
static void test_round_trip(void **state)
{
    (void)state;
    static const size_t sizes[] = { 1, 128 };
    for (int i = 0; i < NMETHODS; i++) {
        lm_compress_method m = all_methods[i];
        int levels[2] = { default_level(m), default_level(m) };
        if (m == LM_COMPRESS_ZLIB)
            levels[1] = LM_COMPRESS_ZLIB_LEVEL_MAX;
        if (m == LM_COMPRESS_ZSTD)
            levels[1] = LM_COMPRESS_ZSTD_LEVEL_MAX;
        for (int l = 0; l < 2; l++) {
            lm_compressor *c = lm_compressor_new(m, levels[l], NULL);
            assert_non_null(c);
            for (int f = FILL_RANDOM; f <= FILL_MIXED; f++) {
                for (size_t s = 0; s < 2; s++) {
                    batch b = make_batch(c, sizes[s], (fill)f);
                    bool same = false;
                    assert_true(try_decompress(c, b.comp, b.comp_len,
                                               b.raw_len, b.raw, &same));
                    assert_true(same);
                    if (f == FILL_ZERO && m != LM_COMPRESS_NONE)
                        assert_true(b.comp_len * 20 < b.raw_len);
                    if (m == LM_COMPRESS_NONE)
                        assert_int_equal(b.comp_len, b.raw_len);
                    batch_free(&b);
                }
            }
            lm_compressor_free(c);
        }
    }
}

/* lm_compress into a buffer too small fails cleanly (no write past it);
 * and argument checks. */
static void test_compress_small_out(void **state)
{
    (void)state;
    uint8_t *raw = malloc(16 * PS);
    assert_non_null(raw);
    fill_pages(raw, 16, FILL_RANDOM);
    for (int i = 0; i < NMETHODS; i++) {
        lm_compress_method m = all_methods[i];
        lm_compressor *c = lm_compressor_new(m, default_level(m), NULL);
        assert_non_null(c);
        size_t cap = 16 * PS / 2;
        uint8_t *out = guarded_new(cap);
        livemig_error err = {0};
        assert_int_equal(lm_compress(c, raw, 16 * PS, out, cap, &err), 0);
        assert_true(livemig_error_is_set(&err));
        assert_non_null(strstr(err.desc, lm_compress_name(m)));
        guarded_check(out, cap);

        livemig_error_clear(&err);
        assert_int_equal(lm_compress(c, raw, 0, out, cap, &err), 0);
        assert_true(livemig_error_is_set(&err));
        livemig_error_clear(&err);
        assert_false(lm_decompress(c, out, 10, out, 0, &err));
        assert_true(livemig_error_is_set(&err));
        livemig_error_clear(&err);
        assert_false(lm_decompress(c, out, 0, out, PS, &err));
        assert_true(livemig_error_is_set(&err));
        livemig_error_clear(&err);
        assert_false(lm_decompress(c, out, 10, out,
                                   (size_t)LM_COMPRESS_MAX_LEN + 1, &err));
        assert_true(livemig_error_is_set(&err));
        guarded_check(out, cap);
        guarded_free(out);
        lm_compressor_free(c);
    }
    free(raw);
}

/* Every prefix (sampled) of a batch is refused, and so is every wrong
 * expected length, and trailing garbage. */
static void test_refuse_truncated_and_wrong_length(void **state)
{
    (void)state;
    static const fill fills[] = { FILL_TEXT, FILL_RANDOM, FILL_ZERO,
                                  FILL_MIXED };
    static const size_t sizes[] = { 1, 128 };
    for (int i = 0; i < NMETHODS; i++) {
        lm_compress_method m = all_methods[i];
        lm_compressor *c = lm_compressor_new(m, default_level(m), NULL);
        assert_non_null(c);
        for (size_t fi = 0; fi < 4; fi++) {
            for (size_t s = 0; s < 2; s++) {
                batch b = make_batch(c, sizes[s], fills[fi]);
                /* truncation: the short ones, the nearly whole ones, and
                 * random ones in between */
                for (size_t k = 0; k < 300; k++) {
                    size_t cut;
                    if (k < 40)
                        cut = k;
                    else if (k < 80)
                        cut = b.comp_len - 1 - (k - 40);
                    else
                        cut = rnd_below(b.comp_len);
                    if (cut >= b.comp_len)
                        continue;
                    assert_false(try_decompress(c, b.comp, cut, b.raw_len,
                                                NULL, NULL));
                }
                /* wrong expected length */
                const size_t wrong[] = {
                    b.raw_len - 1, b.raw_len + 1, b.raw_len - PS / 2,
                    b.raw_len + PS, b.raw_len / 2, b.raw_len * 2, 1,
                    b.raw_len - 4095,
                };
                for (size_t w = 0; w < sizeof(wrong) / sizeof(wrong[0]); w++)
                    assert_false(try_decompress(c, b.comp, b.comp_len,
                                                wrong[w], NULL, NULL));
                /* trailing garbage (zeros, random bytes) */
                uint8_t *longer = malloc(b.comp_len + 16);
                assert_non_null(longer);
                memcpy(longer, b.comp, b.comp_len);
                memset(longer + b.comp_len, 0, 16);
                assert_false(try_decompress(c, longer, b.comp_len + 1,
                                            b.raw_len, NULL, NULL));
                for (size_t g = 0; g < 16; g++)
                    longer[b.comp_len + g] = (uint8_t)rnd();
                assert_false(try_decompress(c, longer, b.comp_len + 16,
                                            b.raw_len, NULL, NULL));
                free(longer);
                /* and the intact batch still decodes after all that */
                bool same = false;
                assert_true(try_decompress(c, b.comp, b.comp_len, b.raw_len,
                                           b.raw, &same));
                assert_true(same);
                batch_free(&b);
            }
        }
        lm_compressor_free(c);
    }
}

/* Apply one random mutation to @buf (length *@len, capacity @cap). */
static void mutate(uint8_t *buf, size_t *len, size_t cap)
{
    size_t n = *len;
    switch (rnd_below(6)) {
    case 0:   /* one bit */
        buf[rnd_below(n)] ^= (uint8_t)(1u << rnd_below(8));
        break;
    case 1: { /* a few bits anywhere */
        size_t k = 2 + rnd_below(7);
        for (size_t i = 0; i < k; i++)
            buf[rnd_below(n)] ^= (uint8_t)(1u << rnd_below(8));
        break;
    }
    case 2: { /* a random run of bytes */
        size_t at = rnd_below(n), k = 1 + rnd_below(16);
        for (size_t i = 0; i < k && at + i < n; i++)
            buf[at + i] = (uint8_t)rnd();
        break;
    }
    case 3:   /* the header area, where lengths and flags live */
        buf[rnd_below(n < 16 ? n : 16)] ^= (uint8_t)(1u + rnd_below(255));
        break;
    case 4: { /* delete bytes */
        size_t at = rnd_below(n), k = 1 + rnd_below(8);
        if (k >= n - at)
            k = n - at;
        if (k >= n)
            k = n - 1;
        memmove(buf + at, buf + at + k, n - at - k);
        *len = n - k;
        break;
    }
    default: { /* insert bytes */
        size_t at = rnd_below(n), k = 1 + rnd_below(8);
        if (n + k > cap)
            k = cap - n;
        memmove(buf + at + k, buf + at, n - at);
        for (size_t i = 0; i < k; i++)
            buf[at + i] = (uint8_t)rnd();
        *len = n + k;
        break;
    }
    }
}

/* Hundreds of random mutations per method.  Nothing may crash, read or
 * write out of bounds (guards, ASan).  zlib (adler32) and zstd (XXH64)
 * must never accept a mutation that changes the decoded pages: they either
 * refuse it or the mutation hit bits the format ignores and the output is
 * the original.  lz4 (no checksum, documented) and none (raw bytes) may
 * accept flipped literal bytes of the right length; for them a mutated
 * batch is accepted only with exactly the expected length. */
static void test_refuse_mutations(void **state)
{
    (void)state;
    static const struct { size_t npages; fill f; int rounds; } shapes[] = {
        { 1, FILL_TEXT, 300 },
        { 8, FILL_MIXED, 400 },
        { 128, FILL_TEXT, 100 },
        { 2, FILL_ZERO, 200 },
    };
    for (int i = 0; i < NMETHODS; i++) {
        lm_compress_method m = all_methods[i];
        lm_compressor *c = lm_compressor_new(m, default_level(m), NULL);
        assert_non_null(c);
        unsigned total = 0, refused = 0, harmless = 0;
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            batch b = make_batch(c, shapes[s].npages, shapes[s].f);
            size_t cap = b.comp_len + 64;
            uint8_t *buf = malloc(cap);
            assert_non_null(buf);
            for (int r = 0; r < shapes[s].rounds; r++) {
                size_t len = b.comp_len;
                memcpy(buf, b.comp, len);
                size_t nmut = 1 + rnd_below(3);
                for (size_t k = 0; k < nmut; k++)
                    mutate(buf, &len, cap);
                bool same = false;
                bool ok = try_decompress(c, buf, len, b.raw_len, b.raw, &same);
                total++;
                if (!ok)
                    refused++;
                else if (same)
                    harmless++;
                if (ok && (m == LM_COMPRESS_ZLIB || m == LM_COMPRESS_ZSTD))
                    assert_true(same);
            }
            /* the context is still good after all the refusals */
            bool same = false;
            assert_true(try_decompress(c, b.comp, b.comp_len, b.raw_len,
                                       b.raw, &same));
            assert_true(same);
            free(buf);
            batch_free(&b);
        }
        print_message("    %-4s: %u mutations, %u refused, %u harmless, "
                      "%u accepted with changed bytes\n", lm_compress_name(m),
                      total, refused, harmless, total - refused - harmless);
        if (m != LM_COMPRESS_NONE)
            assert_true(refused * 2 > total);
        lm_compressor_free(c);
    }
}

/* Pure garbage and other methods' batches. */
static void test_refuse_garbage(void **state)
{
    (void)state;
    lm_compressor *cs[NMETHODS];
    for (int i = 0; i < NMETHODS; i++) {
        cs[i] = lm_compressor_new(all_methods[i],
                                  default_level(all_methods[i]), NULL);
        assert_non_null(cs[i]);
    }
    uint8_t junk[2048];
    for (int r = 0; r < 300; r++) {
        size_t len = 1 + rnd_below(sizeof(junk));
        for (size_t k = 0; k < len; k++)
            junk[k] = (uint8_t)(r % 3 == 0 ? rnd_below(4) : rnd());
        for (int i = 0; i < NMETHODS; i++) {
            /* none legitimately takes any bytes of the right length */
            size_t expect = all_methods[i] == LM_COMPRESS_NONE ? len + 1
                                                               : 8 * PS;
            if (all_methods[i] == LM_COMPRESS_LZ4)
                try_decompress(cs[i], junk, len, expect, NULL, NULL);
            else
                assert_false(try_decompress(cs[i], junk, len, expect,
                                            NULL, NULL));
        }
    }
    /* zlib and zstd recognise their own format; a batch of another method
     * is refused. */
    for (int from = 0; from < NMETHODS; from++) {
        batch b = make_batch(cs[from], 4, FILL_TEXT);
        for (int to = 0; to < NMETHODS; to++) {
            if (to == from || all_methods[to] == LM_COMPRESS_NONE ||
                all_methods[to] == LM_COMPRESS_LZ4)
                continue;
            assert_false(try_decompress(cs[to], b.comp, b.comp_len,
                                        b.raw_len, NULL, NULL));
        }
        batch_free(&b);
    }
    for (int i = 0; i < NMETHODS; i++)
        lm_compressor_free(cs[i]);
}

/* What users are promised: text-like memory compresses more than 2x with
 * zstd (level 1) and lz4, and zlib-1 too. */
static void test_text_ratio(void **state)
{
    (void)state;
    static const lm_compress_method ms[] = {
        LM_COMPRESS_ZSTD, LM_COMPRESS_LZ4, LM_COMPRESS_ZLIB,
    };
    for (size_t i = 0; i < 3; i++) {
        lm_compressor *c = lm_compressor_new(ms[i], default_level(ms[i]),
                                             NULL);
        assert_non_null(c);
        batch b = make_batch(c, 128, FILL_TEXT);
        double ratio = (double)b.raw_len / (double)b.comp_len;
        print_message("    %-4s level %d: text ratio %.2f\n",
                      lm_compress_name(ms[i]), default_level(ms[i]), ratio);
        assert_true(ratio > 2.0);
        batch_free(&b);
        lm_compressor_free(c);
    }
}

int main(void)
{
    uint64_t seed = 0x6c6976656d6967ull;
    const char *env = getenv("LM_TEST_SEED");
    if (env && *env)
        seed = strtoull(env, NULL, 0);
    rng_state = seed;
    printf("# test-compress seed %llu (fills: %s %s %s %s)\n",
           (unsigned long long)seed, fill_names[0], fill_names[1],
           fill_names[2], fill_names[3]);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_new_levels),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_compress_small_out),
        cmocka_unit_test(test_refuse_truncated_and_wrong_length),
        cmocka_unit_test(test_refuse_mutations),
        cmocka_unit_test(test_refuse_garbage),
        cmocka_unit_test(test_text_ratio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
