/*
 * fuzz-stream.c - the migration stream reader (src/stream/reader.c).
 *
 * Input: one mode byte, then the stream.  Mode bit 0: zero runs are
 * no-ops (pristine RAM); bit 1: RAM goes to a staging area (a backup's
 * checkpoint); bits 2-3: the multifd compression method of the batches.
 * Built with -DFZ_RECORDS (fuzz-record) the harness supplies a valid
 * header itself (one 16-page block "ram"), so every input byte is
 * records.  The local RAM blocks are whatever the header declares (up to
 * 8 MiB), so any real stream is a seed.
 *
 * Invariants: every RAM record the reader accepts lies inside its block;
 * every error message is valid UTF-8 (it reaches QMP replies).
 */
#include <stdio.h>
#include <string.h>

#include "codec/compress.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "stream/stream.h"
#include "fuzz.h"

#define ARENA (8u << 20)
#define MAX_RECORDS 100000

static uint8_t *arena, *staging;

static uint8_t *stage(void *opaque, uint32_t block, uint64_t first,
                      uint32_t npages, livemig_error *err)
{
    (void)opaque; (void)block; (void)first; (void)err;
    FZ_CHECK(npages >= 1 && npages <= LM_STREAM_MAX_RUN);
    return staging;
}

static size_t fixed_header(uint8_t *b)
{
    memset(b, 0, 64);
    lm_put_be32(b, LM_STREAM_MAGIC);
    lm_put_be32(b + 4, LM_STREAM_VERSION);
    lm_put_be32(b + 8, 4096);
    b[15] = 1;
    lm_put_be32(b + 32, 1);
    b[36] = 3;
    memcpy(b + 37, "ram", 3);
    lm_put_be64(b + 40, 16 * 4096);
    return 48;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!arena) {
        arena = malloc(ARENA);
        staging = malloc((size_t)LM_STREAM_MAX_RUN * 4096);
        if (!arena || !staging)
            abort();
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
#ifdef FZ_RECORDS
    uint8_t *in = malloc(64 + size);
    if (!in)
        return 0;
    size_t h = fixed_header(in);
    memcpy(in + h, data, size);
    int fd = fz_memfd(in, h + size);
    free(in);
#else
    (void)fixed_header;
    int fd = fz_memfd(data, size);
#endif
    lm_reader r;
    livemig_error err = { 0 };
    if (!lm_reader_init(&r, fd, &err))
        abort();
    lm_stream_block local[LM_STREAM_MAX_BLOCKS];
    uint64_t used = 0;
    bool ok = lm_rd_header(&r, &err);
    for (uint32_t i = 0; ok && i < r.hdr.nblocks; i++) {
        if (r.hdr.blocks[i].size > ARENA - used) {
            ok = false;
            break;
        }
        snprintf(local[i].name, sizeof(local[i].name), "%s",
                 r.hdr.blocks[i].name);
        local[i].size = r.hdr.blocks[i].size;
        local[i].host = arena + used;
        used += local[i].size;
    }
    ok = ok && lm_rd_bind(&r, local, r.hdr.nblocks, &err);
    r.skip_zero = mode & 1;
    if (mode & 2) {
        r.stage = stage;
        r.stage_opaque = NULL;
    }
    lm_compress_method m = (lm_compress_method)((mode >> 2) & 3);
    if (ok && m != LM_COMPRESS_NONE &&
        !(r.decomp = lm_compressor_new(m, 1, &err)))
        abort();
    lm_rec rec;
    for (int n = 0; ok && n < MAX_RECORDS; n++) {
        if (!lm_rd_record(&r, &rec, &err))
            break;
        if (rec.type == LM_REC_RAM_RAW || rec.type == LM_REC_RAM_ZERO ||
            rec.type == LM_REC_RAM_XBZRLE || rec.type == LM_REC_MF_PAGES) {
            FZ_CHECK(rec.block < r.hdr.nblocks);
            uint64_t pages = r.hdr.blocks[rec.block].size / 4096;
            if (rec.type != LM_REC_MF_PAGES)
                FZ_CHECK(rec.first < pages &&
                         rec.npages <= pages - rec.first);
        }
        if (rec.type == LM_REC_SECTION)
            FZ_CHECK(rec.len <= LM_STREAM_MAX_SECTION &&
                     strlen(rec.name) < sizeof(rec.name));
        if (rec.type == LM_REC_END_STREAM)
            break;
    }
    if (ok) {
        livemig_error_clear(&err);
        (void)lm_rd_all_received(&r, &err);
    }
    if (livemig_error_is_set(&err))
        FZ_CHECK(lm_utf8_valid(err.desc, strlen(err.desc), NULL));
    lm_compressor_free(r.decomp);
    r.decomp = NULL;
    lm_reader_destroy(&r);
    return 0;
}
