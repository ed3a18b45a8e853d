/*
 * compress-zlib.c - the "zlib" multifd compressor.
 *
 * Format: one complete deflate stream in the zlib wrapper (RFC 1950), as
 * QEMU's multifd zlib method sends it.  Raw deflate would save 6 bytes per
 * batch; the wrapper's adler32 is worth them, because it turns most
 * corruption into an error instead of wrong guest memory.  The window is
 * 32 KiB (windowBits 15) and memLevel 8, the defaults that compressBound()
 * is computed for, so lm_compress_bound() holds.
 *
 * Each compressor keeps one deflate and one inflate z_stream and resets
 * them per batch (deflateReset/inflateReset): the state allocation (about
 * 256 KiB for deflate) happens once per channel, not once per batch.
 */
#define ZLIB_CONST
#include <limits.h>
#include <stdlib.h>
#include <zlib.h>

#include "codec/compress.h"

#define BAD_STREAM_HINT "the stream is corrupt or the source uses another " \
                        "multifd-compression"

typedef struct zlib_state {
    z_stream def;
    z_stream inf;
} zlib_state;

static size_t zlib_bound(size_t in_len)
{
    return compressBound((uLong)in_len);
}

static void *zlib_new(int level, livemig_error *err)
{
    zlib_state *s = calloc(1, sizeof(*s));
    if (!s) {
        livemig_error_set(err, "zlib: out of memory for a compressor");
        return NULL;
    }
    int rc = deflateInit2(&s->def, level, Z_DEFLATED, 15, 8,
                          Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
        livemig_error_set(err, "zlib: deflateInit2 at level %d failed: %s",
                          level, zError(rc));
        free(s);
        return NULL;
    }
    /* windowBits 15: the zlib wrapper only (no gzip auto-detection). */
    rc = inflateInit2(&s->inf, 15);
    if (rc != Z_OK) {
        livemig_error_set(err, "zlib: inflateInit2 failed: %s", zError(rc));
        deflateEnd(&s->def);
        free(s);
        return NULL;
    }
    return s;
}

static void zlib_free(void *state)
{
    zlib_state *s = state;
    deflateEnd(&s->def);
    inflateEnd(&s->inf);
    free(s);
}

static size_t zlib_compress(void *state, const void *in, size_t in_len,
                            void *out, size_t out_cap, livemig_error *err)
{
    zlib_state *s = state;
    z_stream *z = &s->def;
    int rc = deflateReset(z);
    if (rc != Z_OK) {
        livemig_error_set(err, "zlib: deflateReset failed: %s", zError(rc));
        return 0;
    }
    /* in_len <= LM_COMPRESS_MAX_LEN < UINT_MAX (checked by compress.c). */
    z->next_in = in;
    z->avail_in = (uInt)in_len;
    z->next_out = out;
    z->avail_out = out_cap > UINT_MAX ? UINT_MAX : (uInt)out_cap;
    rc = deflate(z, Z_FINISH);
    if (rc == Z_STREAM_END)
        return (size_t)z->total_out;
    if (rc == Z_OK || rc == Z_BUF_ERROR)
        livemig_error_set(err, "zlib: output buffer of %zu bytes is too "
                          "small to compress a batch of %zu bytes; size it "
                          "with lm_compress_bound()", out_cap, in_len);
    else
        livemig_error_set(err, "zlib: compressing a batch of %zu bytes "
                          "failed: %s", in_len, z->msg ? z->msg : zError(rc));
    return 0;
}

static bool zlib_decompress(void *state, const void *in, size_t in_len,
                            void *out, size_t expect_len, livemig_error *err)
{
    zlib_state *s = state;
    z_stream *z = &s->inf;
    int rc = inflateReset(z);
    if (rc != Z_OK) {
        livemig_error_set(err, "zlib: inflateReset failed: %s", zError(rc));
        return false;
    }
    /* Both lengths are below UINT_MAX: compress.c bounds them. */
    z->next_in = in;
    z->avail_in = (uInt)in_len;
    z->next_out = out;
    z->avail_out = (uInt)expect_len;
    rc = inflate(z, Z_FINISH);
    switch (rc) {
    case Z_STREAM_END:
        if (z->total_out != expect_len) {
            livemig_error_set(err, "zlib: batch decodes to %lu bytes where "
                              "%zu were expected; " BAD_STREAM_HINT,
                              (unsigned long)z->total_out, expect_len);
            return false;
        }
        if (z->avail_in != 0) {
            livemig_error_set(err, "zlib: %u bytes of garbage after the "
                              "compressed batch; " BAD_STREAM_HINT,
                              (unsigned)z->avail_in);
            return false;
        }
        return true;
    case Z_NEED_DICT:
        livemig_error_set(err, "zlib: batch asks for a preset dictionary, "
                          "which multifd never uses; " BAD_STREAM_HINT);
        return false;
    case Z_DATA_ERROR:
        livemig_error_set(err, "zlib: corrupt compressed batch (%s); "
                          BAD_STREAM_HINT, z->msg ? z->msg : "bad data");
        return false;
    case Z_MEM_ERROR:
        livemig_error_set(err, "zlib: out of memory decompressing a batch");
        return false;
    case Z_OK:
    case Z_BUF_ERROR:
        if (z->avail_out == 0)
            livemig_error_set(err, "zlib: batch decodes to more than the "
                              "%zu bytes expected; " BAD_STREAM_HINT,
                              expect_len);
        else
            livemig_error_set(err, "zlib: compressed batch of %zu bytes is "
                              "truncated (decoded %lu of %zu bytes); "
                              BAD_STREAM_HINT, in_len,
                              (unsigned long)z->total_out, expect_len);
        return false;
    default:
        livemig_error_set(err, "zlib: decompressing a batch failed: %s",
                          z->msg ? z->msg : zError(rc));
        return false;
    }
}

const lm_compress_ops lm_compress_zlib_ops = {
    .method = LM_COMPRESS_ZLIB,
    .name = "zlib",
    .level_min = LM_COMPRESS_ZLIB_LEVEL_MIN,
    .level_max = LM_COMPRESS_ZLIB_LEVEL_MAX,
    .bound = zlib_bound,
    .new = zlib_new,
    .free = zlib_free,
    .compress = zlib_compress,
    .decompress = zlib_decompress,
};
