/*
 * compress.h - page-batch compressors for multifd channels.
 *
 * A multifd channel sends guest pages in batches (whole pages, typically
 * 128 x 4 KiB).  With multifd-compression other than "none" the channel
 * compresses each batch into one buffer before sending it, and the
 * receiving channel decompresses it straight into a buffer of exactly the
 * batch's size.  The receiver knows that size from the batch's page count,
 * never from the compressed data.
 *
 * Methods, in the order of the multifd-compression enum (the enum values
 * are the tunable's values, so keep the order):
 *
 *   none  the batch as is; decompress is a length-checked copy.
 *   zlib  deflate in the zlib format (RFC 1950: 2-byte header, adler32
 *         trailer), as QEMU's multifd-zlib; the adler32 refuses most
 *         corruption.  Levels 1-9.
 *   zstd  one zstd frame (RFC 8878) with the content size and a content
 *         checksum (XXH64), so corruption and wrong lengths are refused.
 *         Levels 1-20.
 *   lz4   one LZ4 block (no frame, no checksum: fastest; bit flips inside
 *         literals decode to wrong bytes of the right length and are not
 *         detected - rely on the transport, TLS, for integrity).  No level.
 *
 * Untrusted input: lm_decompress() is fed bytes straight from the network.
 * Whatever they are, it never reads outside [in, in + in_len) nor writes
 * outside [out, out + expect_len), and it returns true only when the input
 * is one well-formed compressed unit that decodes to exactly @expect_len
 * bytes (with nothing left over).  On false, the contents of @out are
 * unspecified.
 *
 * Threads: a compressor is one channel's context.  It is NOT thread-safe:
 * use one per thread (each multifd channel creates its own); different
 * compressors may be used concurrently.  Its library contexts (z_stream,
 * ZSTD_CCtx/DCtx) are allocated once and reused for every batch.
 *
 * Ownership: lm_compressor_new() returns a compressor the caller frees
 * with lm_compressor_free().  Buffers are always the caller's.
 */
#ifndef LM_CODEC_COMPRESS_H
#define LM_CODEC_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "livemig/livemig.h"

/* X(ENUM, "name"): the methods in tunable order. */
#define LM_COMPRESS_METHOD_LIST(X) \
    X(NONE, "none")                \
    X(ZLIB, "zlib")                \
    X(ZSTD, "zstd")                \
    X(LZ4, "lz4")

typedef enum lm_compress_method {
#define LM_COMPRESS_ENUM_(e, s) LM_COMPRESS_##e,
    LM_COMPRESS_METHOD_LIST(LM_COMPRESS_ENUM_)
#undef LM_COMPRESS_ENUM_
    LM_COMPRESS__MAX
} lm_compress_method;

/* Level ranges (the multifd-zlib-level / multifd-zstd-level tunables should
 * use these as min/max); levels of lz4 and none are ignored. */
#define LM_COMPRESS_ZLIB_LEVEL_MIN 1
#define LM_COMPRESS_ZLIB_LEVEL_MAX 9
#define LM_COMPRESS_ZSTD_LEVEL_MIN 1
#define LM_COMPRESS_ZSTD_LEVEL_MAX 20

/* Largest batch (input of lm_compress, @expect_len of lm_decompress):
 * under every library's own limit (lz4: ~2 GiB, zlib: 4 GiB). */
#define LM_COMPRESS_MAX_LEN (1u << 30)

typedef struct lm_compressor lm_compressor;

/* A compressor for @m.  @level: zlib 1-9, zstd 1-20, ignored for lz4 and
 * none.  NULL with @err set on an unknown method, a level out of range or
 * out of memory. */
lm_compressor *lm_compressor_new(lm_compress_method m, int level,
                                 livemig_error *err);

/* Free @c and its library contexts; NULL is a no-op. */
void lm_compressor_free(lm_compressor *c);

/* The method of @c. */
lm_compress_method lm_compressor_method(const lm_compressor *c);

/* Worst-case compressed size of @in_len input bytes for @m: an @out of
 * this capacity never makes lm_compress fail for lack of room.  0 if
 * @in_len exceeds LM_COMPRESS_MAX_LEN or @m is unknown. */
size_t lm_compress_bound(lm_compress_method m, size_t in_len);

/* Compress @in (a batch of whole pages, 1..LM_COMPRESS_MAX_LEN bytes) into
 * @out (capacity @out_cap); returns the compressed length, or 0 on failure
 * with @err set (e.g. @out_cap below what the data needed: use
 * lm_compress_bound).  The result may be larger than @in_len for
 * incompressible data; sending such a batch raw is the caller's choice. */
size_t lm_compress(lm_compressor *c, const void *in, size_t in_len,
                   void *out, size_t out_cap, livemig_error *err);

/* Decompress @in (@in_len bytes, untrusted) into @out, which must decode
 * to exactly @expect_len bytes (1..LM_COMPRESS_MAX_LEN).  Returns false
 * with @err naming the method and what was wrong on any malformed,
 * truncated, oversized, undersized or trailing-garbage input; see the
 * guarantees above. */
bool lm_decompress(lm_compressor *c, const void *in, size_t in_len,
                   void *out, size_t expect_len, livemig_error *err);

/* "none", "zlib", "zstd", "lz4"; "unknown" for anything else. */
const char *lm_compress_name(lm_compress_method m);

/* The method called @name (exact, lower case); false if there is none. */
bool lm_compress_method_from_name(const char *name, lm_compress_method *m);

/* ---- implementation side (compress.c and compress-<method>.c only) ----- */

/*
 * One ops table per method, one file each (compress-zlib.c defines
 * lm_compress_zlib_ops, ...; "none" lives in compress.c).  compress.c has
 * already checked the arguments that every method shares (non-NULL
 * buffers, lengths within 1..LM_COMPRESS_MAX_LEN, level within range), so
 * the methods check only what is theirs.  @state is what new() returned.
 * Errors are set with the method name first.
 */
typedef struct lm_compress_ops {
    lm_compress_method method;
    const char *name;
    int level_min, level_max;  /* both 0: the level is ignored */
    size_t (*bound)(size_t in_len);
    void *(*new)(int level, livemig_error *err);
    void (*free)(void *state);
    size_t (*compress)(void *state, const void *in, size_t in_len,
                       void *out, size_t out_cap, livemig_error *err);
    bool (*decompress)(void *state, const void *in, size_t in_len,
                       void *out, size_t expect_len, livemig_error *err);
} lm_compress_ops;

extern const lm_compress_ops lm_compress_zlib_ops;
extern const lm_compress_ops lm_compress_zstd_ops;
extern const lm_compress_ops lm_compress_lz4_ops;

#endif /* LM_CODEC_COMPRESS_H */
