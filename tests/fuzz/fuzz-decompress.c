/*
 * fuzz-decompress.c - one decompressor (src/codec/compress-*.c), chosen
 * at build time with -DFZ_METHOD=LM_COMPRESS_ZSTD (or ZLIB, LZ4).
 *
 * Input: a u8 page count (1..128 pages expected, as a multifd batch),
 * then the compressed bytes.  lm_decompress must stay inside both
 * buffers (ASan: they are exactly sized heap blocks) and, when it says
 * yes, have produced exactly the expected length.  A mode bit also
 * round-trips: what lm_compress makes of the input must decompress to
 * it.
 */
#include <string.h>

#include "codec/compress.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lm_compressor *c;
    livemig_error err = { 0 };
    if (!c && !(c = lm_compressor_new(FZ_METHOD, 1, &err)))
        abort();
    if (size < 1)
        return 0;
    size_t pages = (size_t)(data[0] & 0x7f) % 128 + 1;
    bool roundtrip = data[0] & 0x80;
    data++;
    size--;
    /* The output ends where a static buffer ends, so a write past
     * @want bytes is an overflow ASan reports, without a fresh 512 KiB
     * allocation (and its page faults) per input. */
    static uint8_t out_end[128 * 4096];
    size_t want = pages * 4096;
    uint8_t *out = out_end + sizeof(out_end) - want;
    if (!roundtrip) {
        uint8_t *in = malloc(size ? size : 1);   /* exact size for ASan */
        if (in) {
            memcpy(in, data, size);
            if (size)
                (void)lm_decompress(c, in, size, out, want, &err);
            free(in);
        }
        return 0;
    }
    /* The input, repeated to whole pages (at most 16), compressed and
     * back. */
    pages = pages % 16 + 1;
    want = pages * 4096;
    out = out_end + sizeof(out_end) - want;
    uint8_t *raw = malloc(want);
    size_t bound = lm_compress_bound(FZ_METHOD, want);
    uint8_t *z = malloc(bound ? bound : 1);
    if (raw && z) {
        for (size_t i = 0; i < want; i++)
            raw[i] = size ? data[i % size] : 0;
        size_t zl = lm_compress(c, raw, want, z, bound, &err);
        FZ_CHECK(zl > 0);
        livemig_error_clear(&err);
        FZ_CHECK(lm_decompress(c, z, zl, out, want, &err));
        FZ_CHECK(memcmp(out, raw, want) == 0);
    }
    free(raw);
    free(z);
    return 0;
}
