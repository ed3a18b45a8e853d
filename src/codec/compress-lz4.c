/*
 * compress-lz4.c - the "lz4" multifd compressor.
 *
 * Format: one raw LZ4 block per batch (the block format of lz4's
 * doc/lz4_Block_format.md), no frame: the receiver already knows the
 * batch size, and the frame's header and checksums would cost time that is
 * the reason to pick lz4 at all.  So a bit flip inside a literal run
 * decodes to wrong bytes of the right length and is NOT detected; every
 * other corruption - a token, a length or an offset that does not fit,
 * truncation, leftovers, a wrong decoded size - is refused by
 * LZ4_decompress_safe() plus the exact-size check here.  LZ4_decompress_safe
 * never reads or writes outside the buffers it is given, whatever the input.
 *
 * No state: LZ4_compress_fast() keeps its 16 KiB hash table on the stack
 * and clears it per call, so a compressor carries nothing between batches.
 */
#include <limits.h>
#include <lz4.h>

#include "codec/compress.h"

#define BAD_STREAM_HINT "the stream is corrupt or the source uses another " \
                        "multifd-compression"

/* LZ4's default speed/ratio trade-off. */
#define LZ4_ACCELERATION 1

/* LM_COMPRESS_MAX_LEN is below LZ4_MAX_INPUT_SIZE, so every length
 * compress.c lets through fits an int. */
_Static_assert(LM_COMPRESS_MAX_LEN <= LZ4_MAX_INPUT_SIZE,
               "batches must fit LZ4's int lengths");

static size_t lz4_bound(size_t in_len)
{
    return (size_t)LZ4_compressBound((int)in_len);
}

static size_t lz4_compress(void *state, const void *in, size_t in_len,
                           void *out, size_t out_cap, livemig_error *err)
{
    (void)state;
    int cap = out_cap > INT_MAX ? INT_MAX : (int)out_cap;
    int n = LZ4_compress_fast(in, out, (int)in_len, cap, LZ4_ACCELERATION);
    if (n <= 0) {
        livemig_error_set(err, "lz4: output buffer of %zu bytes is too "
                          "small to compress a batch of %zu bytes; size it "
                          "with lm_compress_bound()", out_cap, in_len);
        return 0;
    }
    return (size_t)n;
}

static bool lz4_decompress(void *state, const void *in, size_t in_len,
                           void *out, size_t expect_len, livemig_error *err)
{
    (void)state;
    int n = LZ4_decompress_safe(in, out, (int)in_len, (int)expect_len);
    if (n < 0) {
        livemig_error_set(err, "lz4: compressed batch of %zu bytes is "
                          "corrupt, truncated or decodes to more than the "
                          "%zu bytes expected; " BAD_STREAM_HINT,
                          in_len, expect_len);
        return false;
    }
    if ((size_t)n != expect_len) {
        livemig_error_set(err, "lz4: batch decodes to %d bytes where %zu "
                          "were expected; " BAD_STREAM_HINT, n, expect_len);
        return false;
    }
    return true;
}

const lm_compress_ops lm_compress_lz4_ops = {
    .method = LM_COMPRESS_LZ4,
    .name = "lz4",
    .bound = lz4_bound,
    .compress = lz4_compress,
    .decompress = lz4_decompress,
};
