/*
 * compress-zstd.c - the "zstd" multifd compressor.
 *
 * Format: one zstd frame (RFC 8878) per batch, with the content size in
 * the frame header and a content checksum (the low 32 bits of XXH64) at
 * its end.  The checksum costs 4 bytes and a hash pass that runs at many
 * GB/s, negligible next to compression; in exchange a corrupted batch is
 * refused instead of landing in guest memory as wrong bytes.
 *
 * Each compressor keeps one ZSTD_CCtx and one ZSTD_DCtx for its life.  The
 * compression parameters (level, checksum, content size) are set on the
 * CCtx once, and every batch is one ZSTD_compress2() call, the one-shot
 * API that keeps those parameters; ZSTD_compressCCtx() would reset them to
 * the level's defaults (no checksum).  Decompression is one
 * ZSTD_decompressDCtx() into exactly expect_len bytes: a frame that claims
 * or produces any other size is refused.
 */
#include <stdlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "codec/compress.h"

#define BAD_STREAM_HINT "the stream is corrupt or the source uses another " \
                        "multifd-compression"

typedef struct zstd_state {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
} zstd_state;

static size_t zstd_bound(size_t in_len)
{
    return ZSTD_compressBound(in_len);
}

static void zstd_free(void *state)
{
    zstd_state *s = state;
    ZSTD_freeCCtx(s->cctx);
    ZSTD_freeDCtx(s->dctx);
    free(s);
}

static bool set_param(ZSTD_CCtx *cctx, ZSTD_cParameter p, int v,
                      const char *what, livemig_error *err)
{
    size_t rc = ZSTD_CCtx_setParameter(cctx, p, v);
    if (ZSTD_isError(rc)) {
        livemig_error_set(err, "zstd: setting the %s to %d failed: %s",
                          what, v, ZSTD_getErrorName(rc));
        return false;
    }
    return true;
}

static void *zstd_new(int level, livemig_error *err)
{
    zstd_state *s = calloc(1, sizeof(*s));
    if (!s) {
        livemig_error_set(err, "zstd: out of memory for a compressor");
        return NULL;
    }
    s->cctx = ZSTD_createCCtx();
    s->dctx = ZSTD_createDCtx();
    if (!s->cctx || !s->dctx) {
        livemig_error_set(err, "zstd: out of memory for a compression "
                          "context");
        zstd_free(s);
        return NULL;
    }
    if (!set_param(s->cctx, ZSTD_c_compressionLevel, level,
                   "compression level", err) ||
        !set_param(s->cctx, ZSTD_c_checksumFlag, 1, "checksum flag", err) ||
        !set_param(s->cctx, ZSTD_c_contentSizeFlag, 1, "content size flag",
                   err)) {
        zstd_free(s);
        return NULL;
    }
    return s;
}

static size_t zstd_compress(void *state, const void *in, size_t in_len,
                            void *out, size_t out_cap, livemig_error *err)
{
    zstd_state *s = state;
    size_t rc = ZSTD_compress2(s->cctx, out, out_cap, in, in_len);
    if (!ZSTD_isError(rc))
        return rc;
    if (ZSTD_getErrorCode(rc) == ZSTD_error_dstSize_tooSmall)
        livemig_error_set(err, "zstd: output buffer of %zu bytes is too "
                          "small to compress a batch of %zu bytes; size it "
                          "with lm_compress_bound()", out_cap, in_len);
    else
        livemig_error_set(err, "zstd: compressing a batch of %zu bytes "
                          "failed: %s", in_len, ZSTD_getErrorName(rc));
    return 0;
}

static bool zstd_decompress(void *state, const void *in, size_t in_len,
                            void *out, size_t expect_len, livemig_error *err)
{
    zstd_state *s = state;
    /* Exactly one frame and nothing after it (ZSTD_decompressDCtx would
     * also take concatenated and skippable frames). */
    size_t fsz = ZSTD_findFrameCompressedSize(in, in_len);
    if (ZSTD_isError(fsz)) {
        livemig_error_set(err, "zstd: compressed batch of %zu bytes is not "
                          "a complete zstd frame (%s); " BAD_STREAM_HINT,
                          in_len, ZSTD_getErrorName(fsz));
        return false;
    }
    if (fsz != in_len) {
        livemig_error_set(err, "zstd: %zu bytes of garbage after the "
                          "compressed batch; " BAD_STREAM_HINT,
                          in_len - fsz);
        return false;
    }
    size_t rc = ZSTD_decompressDCtx(s->dctx, out, expect_len, in, in_len);
    if (ZSTD_isError(rc)) {
        if (ZSTD_getErrorCode(rc) == ZSTD_error_dstSize_tooSmall)
            livemig_error_set(err, "zstd: batch decodes to more than the "
                              "%zu bytes expected; " BAD_STREAM_HINT,
                              expect_len);
        else
            livemig_error_set(err, "zstd: corrupt compressed batch of %zu "
                              "bytes (%s); " BAD_STREAM_HINT, in_len,
                              ZSTD_getErrorName(rc));
        return false;
    }
    if (rc != expect_len) {
        livemig_error_set(err, "zstd: batch decodes to %zu bytes where %zu "
                          "were expected; " BAD_STREAM_HINT, rc, expect_len);
        return false;
    }
    return true;
}

const lm_compress_ops lm_compress_zstd_ops = {
    .method = LM_COMPRESS_ZSTD,
    .name = "zstd",
    .level_min = LM_COMPRESS_ZSTD_LEVEL_MIN,
    .level_max = LM_COMPRESS_ZSTD_LEVEL_MAX,
    .bound = zstd_bound,
    .new = zstd_new,
    .free = zstd_free,
    .compress = zstd_compress,
    .decompress = zstd_decompress,
};
