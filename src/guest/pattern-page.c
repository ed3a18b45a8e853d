/*
 * pattern-page.c - the page format of the pattern guest.
 *
 * A page is a 32-byte header {index, generation, checksum, timestamp} and a
 * 4064-byte body that is a pure function of (fill, index, generation):
 *
 *   seed    = mix(index * GOLDEN ^ mix(generation + salt(fill)))
 *   random: word j = mix(seed + (j + 1) * GOLDEN)   (splitmix64, counter
 *           based: no serial dependency, several GB/s, incompressible)
 *   text:   words of a 64-word vocabulary, each pick 6 bits of the same
 *           counter stream, separated by spaces (zstd -1: about 3.4x)
 *   zero:   word 0 = seed, the rest zero (mostly zero but never a zero page,
 *           so it still carries a checkable identity)
 *
 * The checksum is four interleaved multiply-rotate lanes over the body's
 * words, finished with the splitmix mixer: a change of any one word always
 * changes it, and the lanes keep the writer fast.
 */
#include <stdio.h>
#include <string.h>

#include "guest/pattern-int.h"

#define GOLDEN 0x9e3779b97f4a7c15ull
#define CSUM_MUL 0xff51afd7ed558ccdull

_Static_assert(sizeof(lm_pattern_hdr) == 32, "page header is 32 bytes");
_Static_assert(LM_PATTERN_BODY_WORDS % 4 == 0, "checksum lanes");

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t v, unsigned r)
{
    return (v << r) | (v >> (64 - r));
}

static inline uint64_t page_seed(lm_pattern_fill fill, uint64_t index,
                                 uint64_t gen)
{
    return mix64(index * GOLDEN ^ mix64(gen + 0x100000001b3ull * (fill + 1)));
}

#define CSUM_LANE(h, w) ((h) = rotl(((h) ^ (w)) * CSUM_MUL, 29))

static inline uint64_t csum_finish(const uint64_t h[4])
{
    uint64_t r = mix64(h[0]);
    r = mix64(r ^ h[1]);
    r = mix64(r ^ h[2]);
    return mix64(r ^ h[3]);
}

#define CSUM_INIT { 0x243f6a8885a308d3ull, 0x13198a2e03707344ull, \
                    0xa4093822299f31d0ull, 0x082efa98ec4e6c89ull }

uint64_t lm_pattern_body_checksum(const void *body)
{
    const uint64_t *w = body;
    uint64_t h[4] = CSUM_INIT;
    for (size_t i = 0; i < LM_PATTERN_BODY_WORDS; i += 4) {
        CSUM_LANE(h[0], w[i]);
        CSUM_LANE(h[1], w[i + 1]);
        CSUM_LANE(h[2], w[i + 2]);
        CSUM_LANE(h[3], w[i + 3]);
    }
    return csum_finish(h);
}

/* Vocabulary of the text fill: 64 words of at most 7 letters, each stored
 * with its trailing space in 8 bytes so a pick is one 8-byte copy. */
static const char vocab[64][8] = {
    "the ", "of ", "and ", "to ", "in ", "is ", "that ", "for ",
    "it ", "as ", "was ", "with ", "be ", "by ", "on ", "not ",
    "he ", "this ", "are ", "or ", "his ", "from ", "at ", "which ",
    "but ", "have ", "an ", "had ", "they ", "you ", "were ", "their ",
    "one ", "all ", "we ", "can ", "her ", "has ", "there ", "been ",
    "if ", "more ", "when ", "will ", "would ", "who ", "so ", "no ",
    "page ", "memory ", "guest ", "dirty ", "migrate ", "host ", "copy ",
    "stream ", "engine ", "pattern ", "check ", "write ", "state ",
    "round ", "thread ", "buffer ",
};
static unsigned char vocab_len[64];

static void vocab_init(void)
{
    /* Idempotent and race-free in effect: every thread stores the same
     * values; done on first use. */
    if (__atomic_load_n(&vocab_len[63], __ATOMIC_ACQUIRE))
        return;
    for (int i = 0; i < 64; i++) {
        size_t n = strnlen(vocab[i], 8);
        __atomic_store_n(&vocab_len[i], (unsigned char)n, __ATOMIC_RELEASE);
    }
}

static uint64_t fill_random(uint64_t seed, uint64_t *w)
{
    uint64_t h[4] = CSUM_INIT;
    uint64_t x = seed;
    for (size_t i = 0; i < LM_PATTERN_BODY_WORDS; i += 4) {
        uint64_t a = mix64(x + GOLDEN), b = mix64(x + 2 * GOLDEN);
        uint64_t c = mix64(x + 3 * GOLDEN), d = mix64(x + 4 * GOLDEN);
        x += 4 * GOLDEN;
        w[i] = a; w[i + 1] = b; w[i + 2] = c; w[i + 3] = d;
        CSUM_LANE(h[0], a);
        CSUM_LANE(h[1], b);
        CSUM_LANE(h[2], c);
        CSUM_LANE(h[3], d);
    }
    return csum_finish(h);
}

static void fill_text(uint64_t seed, uint8_t *b)
{
    vocab_init();
    size_t pos = 0;
    uint64_t x = seed;
    while (pos + 8 <= LM_PATTERN_BODY_SIZE) {
        x += GOLDEN;
        uint64_t r = mix64(x);
        for (int k = 0; k < 10 && pos + 8 <= LM_PATTERN_BODY_SIZE; k++) {
            unsigned i = r & 63;
            r >>= 6;
            memcpy(b + pos, vocab[i], 8);
            pos += vocab_len[i];
        }
    }
    memset(b + pos, ' ', LM_PATTERN_BODY_SIZE - pos);
}

uint64_t lm_pattern_body_fill(lm_pattern_fill fill, uint64_t index,
                              uint64_t gen, void *body)
{
    uint64_t seed = page_seed(fill, index, gen);
    switch (fill) {
    case LM_PATTERN_FILL_TEXT:
        fill_text(seed, body);
        break;
    case LM_PATTERN_FILL_ZERO:
        memset(body, 0, LM_PATTERN_BODY_SIZE);
        ((uint64_t *)body)[0] = seed | 1;
        break;
    case LM_PATTERN_FILL_RANDOM:
    default:
        return fill_random(seed, body);
    }
    return lm_pattern_body_checksum(body);
}

void lm_pattern_page_write(lm_pattern_fill fill, void *page, uint64_t index,
                           uint64_t gen, uint64_t now_ns)
{
    lm_pattern_hdr *h = page;
    if (fill == LM_PATTERN_FILL_ZERO && gen == 1) {
        /* fill=zero starts as all-zero pages: the guest a migration
         * sends as zero-page flags until it writes them. */
        memset(page, 0, LM_PATTERN_PAGE_SIZE);
        return;
    }
    uint64_t csum = lm_pattern_body_fill(fill, index, gen, h + 1);
    h->index = index;
    h->generation = gen;
    h->checksum = csum;
    h->timestamp_ns = now_ns;
}

int lm_pattern_page_check(lm_pattern_fill fill, const void *page,
                          uint64_t index, uint64_t gen, char *why,
                          size_t why_len)
{
    const lm_pattern_hdr *h = page;
    const uint8_t *body = (const uint8_t *)(h + 1);
    unsigned long long idx = index;

    if (fill == LM_PATTERN_FILL_ZERO && gen == 1) {
        const uint64_t *w = page;
        for (size_t i = 0; i < LM_PATTERN_PAGE_SIZE / 8; i++) {
            if (w[i]) {
                snprintf(why, why_len, "page %llu: expected an all-zero page "
                         "(generation 1 of fill=zero), found data at byte "
                         "%zu", idx, i * 8);
                return LM_PATTERN_BAD_OTHER;
            }
        }
        return LM_PATTERN_GOOD;
    }
    if (!h->index && !h->generation && !h->checksum && !h->timestamp_ns) {
        snprintf(why, why_len, "page %llu: never written (zero header)", idx);
        return LM_PATTERN_BAD_OTHER;
    }
    if (h->index != index) {
        snprintf(why, why_len, "page %llu: header says page %llu (a page was "
                 "moved, swapped or written to the wrong place)", idx,
                 (unsigned long long)h->index);
        return LM_PATTERN_BAD_OTHER;
    }
    if (h->generation != gen) {
        snprintf(why, why_len, "page %llu: generation %llu, expected %llu",
                 idx, (unsigned long long)h->generation,
                 (unsigned long long)gen);
        return LM_PATTERN_BAD_GENERATION;
    }
    uint64_t csum = lm_pattern_body_checksum(body);
    if (csum != h->checksum) {
        snprintf(why, why_len, "page %llu: body checksum %016llx does not "
                 "match the header's %016llx (torn or corrupted body, "
                 "generation %llu)", idx, (unsigned long long)csum,
                 (unsigned long long)h->checksum, (unsigned long long)gen);
        return LM_PATTERN_BAD_OTHER;
    }
    uint64_t expect[LM_PATTERN_BODY_WORDS];
    lm_pattern_body_fill(fill, index, gen, expect);
    if (memcmp(expect, body, LM_PATTERN_BODY_SIZE)) {
        const uint8_t *e = (const uint8_t *)expect;
        size_t off = 0;
        while (off < LM_PATTERN_BODY_SIZE && e[off] == body[off])
            off++;
        snprintf(why, why_len, "page %llu: body differs from the pattern of "
                 "generation %llu at byte %zu (0x%02x, expected 0x%02x) "
                 "though its checksum matches", idx, (unsigned long long)gen,
                 sizeof(*h) + off, body[off], e[off]);
        return LM_PATTERN_BAD_OTHER;
    }
    return LM_PATTERN_GOOD;
}
