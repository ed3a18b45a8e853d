/*
 * reader.c - decodes the migration stream (format: writer.c, docs/stream.md).
 *
 * Everything that comes off the wire is untrusted: every length, block
 * index and page range is checked against the header and the local RAM
 * blocks before a byte is stored, and anything else fails the migration
 * with a message naming the record and the rule.  Page data of RAM_RAW
 * records is read straight into guest memory (what is already buffered is
 * copied, the rest goes through read() into the pages).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/compress.h"
#include "codec/xbzrle.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "stream/stream.h"
#include "tls/tls.h"
#include "transport/transport.h"

#define RD_BUF (256 * 1024)
/* With TLS the session already holds the decrypted record (up to 16 KiB)
 * and every read is a copy out of it, never a syscall: going through
 * r->buf as well would copy each byte twice.  So only small pieces
 * (record headers, page indexes) go through the buffer, in small
 * refills, and anything of this size or more is read straight into
 * place (a multifd page into guest memory). */
#define RD_TLS_DIRECT 1024
#define RD_TLS_REFILL 4096

bool lm_reader_init(lm_reader *r, int fd, livemig_error *err)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->cap = RD_BUF;
    r->buf = malloc(r->cap);
    if (!r->buf) {
        livemig_error_set(err, "out of memory for the stream reader");
        return false;
    }
    return true;
}

bool lm_reader_init_conn(lm_reader *r, const lm_conn *c, livemig_error *err)
{
    if (!lm_reader_init(r, c->rfd, err))
        return false;
    r->tls = c->tls;
    return true;
}

void lm_reader_destroy(lm_reader *r)
{
    free(r->buf);
    free(r->section);
    free(r->mf_cbuf);
    free(r->mf_raw);
    r->buf = r->section = r->mf_cbuf = r->mf_raw = NULL;
    for (uint32_t i = 0; i < LM_STREAM_MAX_BLOCKS; i++) {
        free(r->received[i]);
        r->received[i] = NULL;
    }
}

static uint64_t block_pages(const lm_reader *r, uint32_t block)
{
    return r->hdr.blocks[block].size / r->page_size;
}

/* Pages [first, first + n) of @block arrived (ranges already checked). */
static void mark_received(lm_reader *r, uint32_t block, uint64_t first,
                          uint64_t n)
{
    uint64_t *bm = r->received[block];
    for (uint64_t p = first; p < first + n; p++)
        bm[p >> 6] |= 1ull << (p & 63);
}

static bool io_fail(lm_reader *r, int rc, const char *what,
                    livemig_error *err)
{
    if (r->timed_out)
        livemig_error_set(err, "no data from the source for %d ms while "
                          "waiting for %s", r->timeout_ms, what);
    else if (rc > 0 && r->from_file) {
        r->eof = true;
        livemig_error_set(err, "the migration stream file is truncated: it "
                          "ends while this side waited for %s (after byte "
                          "%llu); it was not saved completely (an "
                          "interrupted save or a partial copy): save it "
                          "again", what, (unsigned long long)r->total);
    } else if (rc > 0) {
        r->eof = true;
        livemig_error_set(err, "the source closed the migration stream "
                          "while this side waited for %s (after %llu "
                          "bytes): it stopped or the connection broke",
                          what, (unsigned long long)r->total);
    } else if (r->tls && lm_tls_last_error(r->tls)[0])
        livemig_error_set(err, "reading the migration stream failed in %s: "
                          "%s", what, lm_tls_last_error(r->tls));
    else
        livemig_error_set(err, "reading the migration stream failed in %s: "
                          "%s", what, strerror(errno));
    return false;
}

/* Wait for data when a timeout is set; false (timed_out) if none came. */
static bool wait_data(lm_reader *r)
{
    if (r->timeout_ms <= 0)
        return true;
    if (lm_io_wait_readable(r->fd, r->tls, r->timeout_ms) != 0)
        return true;
    r->timed_out = true;
    errno = ETIMEDOUT;
    return false;
}

/* A read found nothing on a non-blocking fd (an incoming FIFO whose
 * writer is slow): wait a step, giving up on cancel.  True: read again. */
static bool wait_nonblocking(lm_reader *r)
{
    if (errno != EAGAIN || !(fcntl(r->fd, F_GETFL) & O_NONBLOCK))
        return false;   /* a receive timeout: an error */
    if (r->cancel && atomic_load(r->cancel)) {
        errno = ECANCELED;
        return false;
    }
    struct pollfd pf = { .fd = r->fd, .events = POLLIN };
    (void)poll(&pf, 1, 50);
    return true;
}

/* Copy @len bytes out; 0 ok, 1 EOF, -1 error. */
static int rd(lm_reader *r, void *out, size_t len)
{
    uint8_t *o = out;
    while (len > 0) {
        if (r->pos == r->len) {
            if (!wait_data(r))
                return -1;
            if (len >= (r->tls ? RD_TLS_DIRECT : r->cap / 2)) {
                /* Big reads bypass the buffer. */
                ssize_t n = lm_io_read(r->fd, r->tls, o, len);
                if (n < 0 && wait_nonblocking(r))
                    continue;
                if (n <= 0)
                    return n == 0 ? 1 : -1;
                o += n;
                len -= (size_t)n;
                r->total += (uint64_t)n;
                continue;
            }
            ssize_t n = lm_io_read(r->fd, r->tls, r->buf,
                                   r->tls ? RD_TLS_REFILL : r->cap);
            if (n < 0 && wait_nonblocking(r))
                continue;
            if (n <= 0)
                return n == 0 ? 1 : -1;
            r->pos = 0;
            r->len = (size_t)n;
        }
        size_t n = r->len - r->pos;
        if (n > len)
            n = len;
        memcpy(o, r->buf + r->pos, n);
        r->pos += n;
        o += n;
        len -= n;
        r->total += n;
    }
    return 0;
}

#define RD(r, p, n, what)                                   \
    do {                                                    \
        int rc_ = rd((r), (p), (n));                        \
        if (rc_ != 0)                                       \
            return io_fail((r), rc_, (what), err);          \
    } while (0)

/* Names from the wire end up in messages and QMP replies: they must be
 * text (valid UTF-8, no control characters). */
static bool name_ok(const char *name, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return lm_utf8_valid(name, n, NULL);
}

bool lm_rd_header(lm_reader *r, livemig_error *err)
{
    uint8_t b[36];
    RD(r, b, sizeof(b), "the stream header");
    lm_stream_header *h = &r->hdr;
    uint32_t magic = lm_get_be32(b);
    if (magic != LM_STREAM_MAGIC) {
        livemig_error_set(err, "not a livemig migration stream (magic "
                          "0x%08x, expected 0x%08x); check that the source "
                          "is a livemig engine", magic, LM_STREAM_MAGIC);
        return false;
    }
    h->version = lm_get_be32(b + 4);
    if (h->version != LM_STREAM_VERSION) {
        livemig_error_set(err, "migration stream version %u is not "
                          "supported (this build reads version %u); use the "
                          "same livemig version on both ends", h->version,
                          LM_STREAM_VERSION);
        return false;
    }
    h->page_size = lm_get_be32(b + 8);
    if (h->page_size != 4096) {
        livemig_error_set(err, "the source uses %u-byte pages, this host "
                          "4096-byte pages", h->page_size);
        return false;
    }
    r->page_size = h->page_size;
    h->role = b[12];
    h->index = b[13];
    h->compression = b[14];
    h->pc_preempt = (b[15] & 2) != 0;
    memcpy(h->uuid, b + 16, 16);
    h->nblocks = lm_get_be32(b + 32);
    if (h->nblocks == 0 || h->nblocks > LM_STREAM_MAX_BLOCKS) {
        livemig_error_set(err, "migration stream declares %u RAM blocks "
                          "(1 to %u allowed)", h->nblocks,
                          LM_STREAM_MAX_BLOCKS);
        return false;
    }
    for (uint32_t i = 0; i < h->nblocks; i++) {
        uint8_t n;
        RD(r, &n, 1, "the stream header");
        RD(r, h->blocks[i].name, n, "the stream header");
        h->blocks[i].name[n] = '\0';
        if (strlen(h->blocks[i].name) != n) {
            livemig_error_set(err, "RAM block %u has a name with a NUL byte "
                              "in the stream header", i);
            return false;
        }
        if (!name_ok(h->blocks[i].name, n)) {
            livemig_error_set(err, "RAM block %u has a name that is not "
                              "printable UTF-8 text in the stream header; "
                              "the stream is corrupt", i);
            return false;
        }
        uint8_t sz[8];
        RD(r, sz, 8, "the stream header");
        h->blocks[i].size = lm_get_be64(sz);
        h->blocks[i].host = NULL;
        if (h->blocks[i].size == 0 || h->blocks[i].size % h->page_size) {
            livemig_error_set(err, "RAM block '%s' has size %llu, not a "
                              "positive multiple of the page size",
                              h->blocks[i].name,
                              (unsigned long long)h->blocks[i].size);
            return false;
        }
    }
    return true;
}

bool lm_rd_bind(lm_reader *r, const lm_stream_block *local, uint32_t n,
                livemig_error *err)
{
    lm_stream_header *h = &r->hdr;
    if (h->nblocks != n) {
        livemig_error_set(err, "the source has %u RAM blocks, this "
                          "destination %u; start both with the same --guest",
                          h->nblocks, n);
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(h->blocks[i].name, local[i].name) != 0) {
            livemig_error_set(err, "RAM block %u is '%s' on the source but "
                              "'%s' here; start both with the same --guest",
                              i, h->blocks[i].name, local[i].name);
            return false;
        }
        if (h->blocks[i].size != local[i].size) {
            livemig_error_set(err, "RAM block '%s' is %llu bytes on the "
                              "source but %llu here; start both with the "
                              "same --guest size", local[i].name,
                              (unsigned long long)h->blocks[i].size,
                              (unsigned long long)local[i].size);
            return false;
        }
        h->blocks[i].host = local[i].host;
        free(r->received[i]);
        r->received[i] = calloc((local[i].size / r->page_size + 63) / 64,
                                sizeof(uint64_t));
        if (!r->received[i]) {
            livemig_error_set(err, "out of memory for the received-pages "
                              "map of RAM block '%s'", local[i].name);
            return false;
        }
    }
    return true;
}

void lm_rd_merge_received(lm_reader *into, const lm_reader *from)
{
    for (uint32_t b = 0; b < into->hdr.nblocks && b < from->hdr.nblocks;
         b++) {
        if (!into->received[b] || !from->received[b] ||
            into->hdr.blocks[b].size != from->hdr.blocks[b].size)
            continue;
        size_t words = (size_t)(block_pages(into, b) + 63) / 64;
        for (size_t i = 0; i < words; i++)
            into->received[b][i] |= from->received[b][i];
    }
}

bool lm_rd_all_received(const lm_reader *r, livemig_error *err)
{
    for (uint32_t b = 0; b < r->hdr.nblocks; b++) {
        const uint64_t *bm = r->received[b];
        uint64_t pages = block_pages(r, b), missing = 0, first = 0;
        for (uint64_t p = 0; p < pages; p++) {
            if (bm && p % 64 == 0 && p + 64 <= pages && bm[p / 64] == ~0ull) {
                p += 63;
                continue;
            }
            if (!bm || !(bm[p / 64] & (1ull << (p % 64)))) {
                if (!missing++)
                    first = p;
            }
        }
        if (missing) {
            livemig_error_set(err, "%llu page%s of block '%s' never arrived "
                              "(first: page %llu); the migration stream is "
                              "incomplete (cut short, or not written by a "
                              "livemig source): migrate again",
                              (unsigned long long)missing,
                              missing == 1 ? "" : "s", r->hdr.blocks[b].name,
                              (unsigned long long)first);
            return false;
        }
    }
    return true;
}

static bool ram_range(lm_reader *r, lm_rec *rec, livemig_error *err)
{
    uint8_t b[16];
    RD(r, b, 16, "a RAM record");
    rec->block = lm_get_be32(b);
    rec->first = lm_get_be64(b + 4);
    rec->npages = lm_get_be32(b + 12);
    if (rec->block >= r->hdr.nblocks || !r->hdr.blocks[rec->block].host) {
        livemig_error_set(err, "RAM record names block %u, but the stream "
                          "declared %u blocks", rec->block, r->hdr.nblocks);
        return false;
    }
    uint64_t pages = r->hdr.blocks[rec->block].size / r->page_size;
    if (rec->npages == 0 || rec->npages > LM_STREAM_MAX_RUN ||
        rec->first >= pages || rec->npages > pages - rec->first) {
        livemig_error_set(err, "RAM record for pages %llu+%u is outside "
                          "block '%s' (%llu pages) or longer than %u pages",
                          (unsigned long long)rec->first, rec->npages,
                          r->hdr.blocks[rec->block].name,
                          (unsigned long long)pages, LM_STREAM_MAX_RUN);
        return false;
    }
    return true;
}

/* A multifd batch: every page index is checked before any byte lands;
 * compressed batches are decompressed in full (exact length) first. */
static bool mf_pages(lm_reader *r, lm_rec *rec, livemig_error *err)
{
    uint8_t b[8], idx[LM_MF_BATCH * 8];
    RD(r, b, 8, "a multifd batch");
    rec->block = lm_get_be32(b);
    rec->npages = lm_get_be32(b + 4);
    if (r->stage || rec->block >= r->hdr.nblocks ||
        !r->hdr.blocks[rec->block].host || rec->npages == 0 ||
        rec->npages > LM_MF_BATCH) {
        livemig_error_set(err, "multifd batch of %u pages for block %u is "
                          "malformed (1 to %u pages of a declared block)",
                          rec->npages, rec->block, LM_MF_BATCH);
        return false;
    }
    uint8_t *host = r->hdr.blocks[rec->block].host;
    uint64_t pages = r->hdr.blocks[rec->block].size / r->page_size;
    RD(r, idx, (size_t)rec->npages * 8, "a multifd batch");
    uint32_t nz = 0;
    /* The non-zero pages are one run of adjacent pages (the usual case):
     * a compressed batch then decompresses straight into them. */
    bool run = true;
    uint64_t run_first = 0;
    for (uint32_t i = 0; i < rec->npages; i++) {
        uint64_t v = lm_get_be64(idx + 8 * i) & ~LM_MF_ZERO;
        if (!(lm_get_be64(idx + 8 * i) & LM_MF_ZERO)) {
            if (!nz)
                run_first = v;
            else if (v != run_first + nz)
                run = false;
        }
        if (v >= pages) {
            livemig_error_set(err, "multifd batch names page %llu of block "
                              "'%s', which has %llu pages",
                              (unsigned long long)v,
                              r->hdr.blocks[rec->block].name,
                              (unsigned long long)pages);
            return false;
        }
        nz += !(lm_get_be64(idx + 8 * i) & LM_MF_ZERO);
    }
    const uint8_t *raw = NULL;
    if (r->decomp && nz) {
        uint8_t lb[4];
        RD(r, lb, 4, "a multifd batch");
        uint32_t clen = lm_get_be32(lb);
        size_t want = (size_t)nz * r->page_size;
        size_t bound = lm_compress_bound(lm_compressor_method(r->decomp),
                                         LM_MF_BATCH * 4096u);
        if (clen == 0 || clen > bound) {
            livemig_error_set(err, "multifd batch has %u compressed bytes "
                              "(1 to %zu allowed)", clen, bound);
            return false;
        }
        if (!r->mf_cbuf && !(r->mf_cbuf = malloc(bound)))
            return io_fail(r, -1, "a multifd batch", err);
        if (!r->mf_raw && !(r->mf_raw = malloc(LM_MF_BATCH * 4096u)))
            return io_fail(r, -1, "a multifd batch", err);
        RD(r, r->mf_cbuf, clen, "a compressed multifd batch");
        /* Into the guest's pages (all checked above; a migration that
         * fails here never runs the guest), or staged and copied. */
        uint8_t *into = run ? host + run_first * r->page_size : r->mf_raw;
        if (!lm_decompress(r->decomp, r->mf_cbuf, clen, into, want, err))
            return false;
        raw = r->mf_raw;
    }
    for (uint32_t i = 0; i < rec->npages; i++) {
        uint64_t v = lm_get_be64(idx + 8 * i);
        uint8_t *dst = host + (v & ~LM_MF_ZERO) * r->page_size;
        if (v & LM_MF_ZERO) {
            if (!r->skip_zero)
                memset(dst, 0, r->page_size);
        } else if (raw && run) {
            /* decompressed in place */
        } else if (raw) {
            memcpy(dst, raw, r->page_size);
            raw += r->page_size;
        } else {
            RD(r, dst, r->page_size, "multifd page data");
        }
        mark_received(r, rec->block, v & ~LM_MF_ZERO, 1);
    }
    return true;
}

/* A postcopy discard bitmap: the words must lie inside the block's
 * bitmap; they are decoded into the section buffer. */
static bool pc_discard(lm_reader *r, lm_rec *rec, livemig_error *err)
{
    uint8_t b[16];
    RD(r, b, 16, "a postcopy discard record");
    rec->block = lm_get_be32(b);
    rec->first = lm_get_be64(b + 4);
    rec->npages = lm_get_be32(b + 12);   /* words */
    if (rec->block >= r->hdr.nblocks || !r->hdr.blocks[rec->block].host) {
        livemig_error_set(err, "postcopy discard record names block %u, "
                          "but the stream declared %u blocks", rec->block,
                          r->hdr.nblocks);
        return false;
    }
    uint64_t pages = r->hdr.blocks[rec->block].size / r->page_size;
    uint64_t words = (pages + 63) / 64;
    if (rec->npages == 0 || rec->npages > LM_PC_DISCARD_MAX_WORDS ||
        rec->first >= words || rec->npages > words - rec->first) {
        livemig_error_set(err, "postcopy discard record for bitmap words "
                          "%llu+%u is outside block '%s' (%llu words) or "
                          "longer than %u words",
                          (unsigned long long)rec->first, rec->npages,
                          r->hdr.blocks[rec->block].name,
                          (unsigned long long)words, LM_PC_DISCARD_MAX_WORDS);
        return false;
    }
    size_t len = (size_t)rec->npages * 8;
    if (len > r->section_cap) {
        uint8_t *p = realloc(r->section, len);
        if (!p) {
            livemig_error_set(err, "out of memory for a discard record");
            return false;
        }
        r->section = p;
        r->section_cap = len;
    }
    RD(r, r->section, len, "a postcopy discard record");
    uint64_t *w = (uint64_t *)(void *)r->section;
    for (uint32_t i = 0; i < rec->npages; i++)
        w[i] = lm_get_be64(r->section + (size_t)i * 8);
    /* The last word may not name pages past the end of the block. */
    if (rec->first + rec->npages == words && pages % 64 &&
        (w[rec->npages - 1] >> (pages % 64))) {
        livemig_error_set(err, "postcopy discard record names pages past "
                          "the end of block '%s'",
                          r->hdr.blocks[rec->block].name);
        return false;
    }
    rec->words = w;
    return true;
}

bool lm_rd_record(lm_reader *r, lm_rec *rec, livemig_error *err)
{
    uint8_t type;
    RD(r, &type, 1, "a record type");
    memset(rec, 0, sizeof(*rec));
    rec->type = type;
    switch (type) {
    case LM_REC_RAM_RAW: {
        if (!ram_range(r, rec, err))
            return false;
        uint8_t *dst = r->hdr.blocks[rec->block].host +
                       rec->first * r->page_size;
        if (r->stage &&
            !(dst = r->stage(r->stage_opaque, rec->block, rec->first,
                             rec->npages, err)))
            return false;
        RD(r, dst, (size_t)rec->npages * r->page_size, "RAM page data");
        mark_received(r, rec->block, rec->first, rec->npages);
        return true;
    }
    case LM_REC_RAM_XBZRLE: {
        uint8_t b[16];
        RD(r, b, 16, "an xbzrle record");
        rec->block = lm_get_be32(b);
        rec->first = lm_get_be64(b + 4);
        rec->npages = 1;
        uint32_t len = lm_get_be32(b + 12);
        if (rec->block >= r->hdr.nblocks || !r->hdr.blocks[rec->block].host ||
            rec->first >= r->hdr.blocks[rec->block].size / r->page_size) {
            livemig_error_set(err, "xbzrle record names page %llu of block "
                              "%u, outside the blocks the stream declared",
                              (unsigned long long)rec->first, rec->block);
            return false;
        }
        if (len == 0 || len >= r->page_size || r->stage) {
            livemig_error_set(err, "xbzrle record for page %llu has length "
                              "%u (1 to %u allowed, never in a checkpoint)",
                              (unsigned long long)rec->first, len,
                              r->page_size - 1);
            return false;
        }
        uint8_t enc[4096];
        RD(r, enc, len, "an xbzrle page");
        uint8_t *page = r->hdr.blocks[rec->block].host +
                        rec->first * r->page_size;
        if (lm_xbzrle_decode(enc, len, page, r->page_size) != 0) {
            livemig_error_set(err, "xbzrle delta for page %llu of block '%s' "
                              "is malformed; the stream is corrupt",
                              (unsigned long long)rec->first,
                              r->hdr.blocks[rec->block].name);
            return false;
        }
        mark_received(r, rec->block, rec->first, 1);
        return true;
    }
    case LM_REC_MF_PAGES:
        return mf_pages(r, rec, err);
    case LM_REC_MF_SYNC: {
        uint8_t b[8];
        RD(r, b, 8, "a multifd sync record");
        rec->pass = lm_get_be64(b);
        return true;
    }
    case LM_REC_RAM_ZERO:
        if (!ram_range(r, rec, err))
            return false;
        if (!r->skip_zero && !r->stage)
            memset(r->hdr.blocks[rec->block].host + rec->first * r->page_size,
                   0, (size_t)rec->npages * r->page_size);
        mark_received(r, rec->block, rec->first, rec->npages);
        return true;
    case LM_REC_SECTION: {
        uint8_t n, b[8];
        RD(r, &n, 1, "a section record");
        RD(r, rec->name, n, "a section record");
        rec->name[n] = '\0';
        if (strlen(rec->name) != n || !name_ok(rec->name, n)) {
            livemig_error_set(err, "a state section record at byte %llu has "
                              "a name that is not printable UTF-8 text; the "
                              "stream is corrupt",
                              (unsigned long long)(r->total - n - 2));
            return false;
        }
        RD(r, b, 8, "a section record");
        rec->version = lm_get_be32(b);
        rec->len = lm_get_be32(b + 4);
        if (rec->len > LM_STREAM_MAX_SECTION) {
            livemig_error_set(err, "state section '%s' is %u bytes, more "
                              "than the %u allowed", rec->name, rec->len,
                              LM_STREAM_MAX_SECTION);
            return false;
        }
        if (rec->len > r->section_cap) {
            uint8_t *p = realloc(r->section, rec->len);
            if (!p) {
                livemig_error_set(err, "out of memory for state section "
                                  "'%s' (%u bytes)", rec->name, rec->len);
                return false;
            }
            r->section = p;
            r->section_cap = rec->len;
        }
        RD(r, r->section, rec->len, "a section record");
        rec->data = r->section;
        return true;
    }
    case LM_REC_END_PASS: {
        uint8_t b[8];
        RD(r, b, 8, "an end-of-pass record");
        rec->pass = lm_get_be64(b);
        return true;
    }
    case LM_REC_END_STREAM:
    case LM_REC_HEARTBEAT:
    case LM_REC_MC_END:
        return true;
    case LM_REC_MC_START: {
        uint8_t b[4];
        RD(r, b, 4, "a micro-checkpointing start record");
        rec->heartbeat_ms = lm_get_be32(b);
        return true;
    }
    case LM_REC_RUNSTATE:
        RD(r, &rec->runstate, 1, "a run state record");
        if (rec->runstate != LM_RUN_PAUSED) {
            livemig_error_set(err, "run state %u in the migration stream is "
                              "unknown; is the source a newer livemig?",
                              rec->runstate);
            return false;
        }
        return true;
    case LM_REC_PC_ADVISE:
    case LM_REC_PC_RUN:
    case LM_REC_PC_RESUME:
        return true;
    case LM_REC_PC_DISCARD:
        return pc_discard(r, rec, err);
    case LM_REC_CKPT_BEGIN:
    case LM_REC_CKPT_END: {
        uint8_t b[8];
        RD(r, b, 8, "a checkpoint record");
        rec->pass = lm_get_be64(b);
        return true;
    }
    default:
        livemig_error_set(err, "unknown record type %u at byte %llu of the "
                          "migration stream; the stream is corrupt or from "
                          "another program", type,
                          (unsigned long long)(r->total - 1));
        return false;
    }
}
