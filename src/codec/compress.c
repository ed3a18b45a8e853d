/*
 * compress.c - the compressor ops lookup, the checks every method shares,
 * and the "none" method.
 *
 * The shared checks live here so that each compress-<method>.c only deals
 * with its library: buffers present, lengths within 1..LM_COMPRESS_MAX_LEN
 * (an empty batch never travels, and a 0 return of lm_compress must mean
 * failure), level within the method's range.
 */
#include <stdlib.h>
#include <string.h>

#include "codec/compress.h"

/* ---- none: the batch as is --------------------------------------------- */

static size_t none_bound(size_t in_len)
{
    return in_len;
}

static size_t none_compress(void *state, const void *in, size_t in_len,
                            void *out, size_t out_cap, livemig_error *err)
{
    (void)state;
    if (out_cap < in_len) {
        livemig_error_set(err, "none: output buffer of %zu bytes is too "
                          "small for a batch of %zu bytes", out_cap, in_len);
        return 0;
    }
    memcpy(out, in, in_len);
    return in_len;
}

static bool none_decompress(void *state, const void *in, size_t in_len,
                            void *out, size_t expect_len, livemig_error *err)
{
    (void)state;
    if (in_len != expect_len) {
        livemig_error_set(err, "none: batch of %zu bytes where %zu were "
                          "expected; the stream is corrupt or the source "
                          "uses another multifd-compression",
                          in_len, expect_len);
        return false;
    }
    memcpy(out, in, in_len);
    return true;
}

static const lm_compress_ops none_ops = {
    .method = LM_COMPRESS_NONE,
    .name = "none",
    .bound = none_bound,
    .compress = none_compress,
    .decompress = none_decompress,
};

/* ---- lookup -------------------------------------------------------------- */

static const lm_compress_ops *const ops_table[LM_COMPRESS__MAX] = {
    [LM_COMPRESS_NONE] = &none_ops,
    [LM_COMPRESS_ZLIB] = &lm_compress_zlib_ops,
    [LM_COMPRESS_ZSTD] = &lm_compress_zstd_ops,
    [LM_COMPRESS_LZ4] = &lm_compress_lz4_ops,
};

static const char *const method_names[LM_COMPRESS__MAX] = {
#define NAME_(e, s) [LM_COMPRESS_##e] = s,
    LM_COMPRESS_METHOD_LIST(NAME_)
#undef NAME_
};

static const lm_compress_ops *ops_of(lm_compress_method m)
{
    if ((unsigned)m >= LM_COMPRESS__MAX)
        return NULL;
    return ops_table[m];
}

const char *lm_compress_name(lm_compress_method m)
{
    if ((unsigned)m >= LM_COMPRESS__MAX)
        return "unknown";
    return method_names[m];
}

bool lm_compress_method_from_name(const char *name, lm_compress_method *m)
{
    if (!name)
        return false;
    for (unsigned i = 0; i < LM_COMPRESS__MAX; i++) {
        if (strcmp(name, method_names[i]) == 0) {
            if (m)
                *m = (lm_compress_method)i;
            return true;
        }
    }
    return false;
}

size_t lm_compress_bound(lm_compress_method m, size_t in_len)
{
    const lm_compress_ops *ops = ops_of(m);
    if (!ops || in_len > LM_COMPRESS_MAX_LEN)
        return 0;
    return ops->bound(in_len);
}

/* ---- compressor ---------------------------------------------------------- */

struct lm_compressor {
    const lm_compress_ops *ops;
    void *state;   /* the method's library contexts; NULL for none */
};

lm_compressor *lm_compressor_new(lm_compress_method m, int level,
                                 livemig_error *err)
{
    const lm_compress_ops *ops = ops_of(m);
    if (!ops) {
        livemig_error_set(err, "unknown compression method %d; use none, "
                          "zlib, zstd or lz4", (int)m);
        return NULL;
    }
    if ((ops->level_min || ops->level_max) &&
        (level < ops->level_min || level > ops->level_max)) {
        livemig_error_set(err, "%s: compression level %d is out of range; "
                          "use %d to %d", ops->name, level, ops->level_min,
                          ops->level_max);
        return NULL;
    }
    lm_compressor *c = calloc(1, sizeof(*c));
    if (!c) {
        livemig_error_set(err, "%s: out of memory for a compressor",
                          ops->name);
        return NULL;
    }
    c->ops = ops;
    if (ops->new) {
        c->state = ops->new(level, err);
        if (!c->state) {
            free(c);
            return NULL;
        }
    }
    return c;
}

void lm_compressor_free(lm_compressor *c)
{
    if (!c)
        return;
    if (c->ops->free)
        c->ops->free(c->state);
    free(c);
}

lm_compress_method lm_compressor_method(const lm_compressor *c)
{
    return c->ops->method;
}

size_t lm_compress(lm_compressor *c, const void *in, size_t in_len,
                   void *out, size_t out_cap, livemig_error *err)
{
    const char *name = c ? c->ops->name : "compress";
    if (!c || !in || !out) {
        livemig_error_set(err, "%s: compress called without a compressor "
                          "or buffer", name);
        return 0;
    }
    if (in_len == 0 || in_len > LM_COMPRESS_MAX_LEN) {
        livemig_error_set(err, "%s: batch of %zu bytes is not within 1 to "
                          "%u bytes", name, in_len, LM_COMPRESS_MAX_LEN);
        return 0;
    }
    return c->ops->compress(c->state, in, in_len, out, out_cap, err);
}

bool lm_decompress(lm_compressor *c, const void *in, size_t in_len,
                   void *out, size_t expect_len, livemig_error *err)
{
    const char *name = c ? c->ops->name : "decompress";
    if (!c || !out || (!in && in_len)) {
        livemig_error_set(err, "%s: decompress called without a "
                          "compressor or buffer", name);
        return false;
    }
    if (expect_len == 0 || expect_len > LM_COMPRESS_MAX_LEN) {
        livemig_error_set(err, "%s: expected batch size %zu is not within "
                          "1 to %u bytes", name, expect_len,
                          LM_COMPRESS_MAX_LEN);
        return false;
    }
    if (in_len == 0) {
        livemig_error_set(err, "%s: empty compressed batch where %zu bytes "
                          "were expected", name, expect_len);
        return false;
    }
    /* No well-formed batch is larger than the bound (zlib relies on this
     * to fit in_len in a uInt). */
    size_t bound = c->ops->bound(expect_len);
    if (in_len > bound) {
        livemig_error_set(err, "%s: compressed batch of %zu bytes is larger "
                          "than any compression of %zu bytes (%zu); the "
                          "stream is corrupt or the source uses another "
                          "multifd-compression", name, in_len, expect_len,
                          bound);
        return false;
    }
    return c->ops->decompress(c->state, in, in_len, out, expect_len, err);
}
