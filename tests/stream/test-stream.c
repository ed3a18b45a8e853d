/* test-stream.c - the stream writer and reader: round trips, and a reader
 * that refuses every truncated or corrupted stream without touching
 * memory outside the target blocks (ASan watches). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec/compress.h"
#include "stream/stream.h"

#define PAGES 64
#define PS 4096

static uint8_t src[PAGES * PS];

/* Write a small valid stream to a memory buffer via a temp file. */
static uint8_t *make_stream(size_t *len)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    lm_writer *w = malloc(sizeof(*w));
    lm_writer_init(w, fileno(f), NULL);
    lm_stream_header h = { .version = LM_STREAM_VERSION, .page_size = PS,
                           .nblocks = 1 };
    strcpy(h.blocks[0].name, "ram");
    h.blocks[0].size = sizeof(src);
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(i * 7 + i / PS);
    memset(src + 10 * PS, 0, 3 * PS);
    assert_true(lm_wr_header(w, &h));
    assert_true(lm_wr_ram_raw(w, 0, 0, 10, src));
    assert_true(lm_wr_ram_zero(w, 0, 10, 3));
    assert_true(lm_wr_ram_raw(w, 0, 13, PAGES - 13, src + 13 * PS));
    assert_true(lm_wr_end_pass(w, 1));
    assert_true(lm_wr_section(w, "cpu", 2, "hello", 5));
    assert_true(lm_wr_end_stream(w));
    free(w);
    *len = (size_t)ftell(f);
    uint8_t *buf = malloc(*len);
    rewind(f);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

/* Feed @len bytes of @buf to a reader bound to @dst; returns true if the
 * whole stream decoded up to END_STREAM. */
static bool decode(const uint8_t *buf, size_t len, uint8_t *dst,
                   uint64_t dst_size, livemig_error *err, int *sections)
{
    FILE *f = tmpfile();
    fwrite(buf, 1, len, f);
    fflush(f);
    rewind(f);
    lm_reader r;
    bool ok = lm_reader_init(&r, fileno(f), err) && lm_rd_header(&r, err);
    lm_stream_block local = { .size = dst_size, .host = dst };
    strcpy(local.name, "ram");
    ok = ok && lm_rd_bind(&r, &local, 1, err);
    lm_rec rec;
    while (ok) {
        ok = lm_rd_record(&r, &rec, err);
        if (ok && rec.type == LM_REC_SECTION && sections) {
            assert_string_equal(rec.name, "cpu");
            assert_int_equal(rec.len, 5);
            assert_memory_equal(rec.data, "hello", 5);
            (*sections)++;
        }
        if (ok && rec.type == LM_REC_END_STREAM)
            break;
    }
    lm_reader_destroy(&r);
    fclose(f);
    return ok;
}

static void test_round_trip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_stream(&len);
    uint8_t *dst = malloc(sizeof(src));
    memset(dst, 0xaa, sizeof(src));
    livemig_error err = { 0 };
    int sections = 0;
    assert_true(decode(buf, len, dst, sizeof(src), &err, &sections));
    assert_int_equal(sections, 1);
    assert_memory_equal(dst, src, sizeof(src));
    free(dst);
    free(buf);
}

static void test_every_truncation_fails_cleanly(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_stream(&len);
    uint8_t *dst = malloc(sizeof(src));
    for (size_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 97)) {
        livemig_error err = { 0 };
        assert_false(decode(buf, cut, dst, sizeof(src), &err, NULL));
        assert_true(livemig_error_is_set(&err));
        assert_non_null(strstr(err.desc, "stream"));
    }
    free(dst);
    free(buf);
}

static void test_wrong_block_size_is_named(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_stream(&len);
    uint8_t *dst = malloc(sizeof(src) * 2);
    livemig_error err = { 0 };
    assert_false(decode(buf, len, dst, sizeof(src) * 2, &err, NULL));
    assert_non_null(strstr(err.desc, "'ram' is 262144 bytes on the source "
                                     "but 524288 here"));
    free(dst);
    free(buf);
}

static void test_bad_magic_and_version(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_stream(&len);
    uint8_t *dst = malloc(sizeof(src));
    livemig_error err = { 0 };
    buf[0] ^= 0xff;
    assert_false(decode(buf, len, dst, sizeof(src), &err, NULL));
    assert_non_null(strstr(err.desc, "not a livemig migration stream"));
    buf[0] ^= 0xff;
    buf[7] = 99;
    livemig_error_clear(&err);
    assert_false(decode(buf, len, dst, sizeof(src), &err, NULL));
    assert_non_null(strstr(err.desc, "version 99"));
    free(dst);
    free(buf);
}

/* Random corruption: the reader may accept or refuse, but never writes
 * outside the target block (a guard area around it must stay intact) and
 * never crashes. */
static void test_random_corruption(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_stream(&len);
    uint8_t *copy = malloc(len);
    size_t guard = 64 * 1024;
    uint8_t *area = malloc(sizeof(src) + 2 * guard);
    unsigned seed = 12345;
    int refused = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(copy, buf, len);
        int flips = 1 + rand_r(&seed) % 8;
        for (int k = 0; k < flips; k++) {
            /* Mostly hit headers and record fields, where it matters. */
            size_t pos = (size_t)rand_r(&seed) % (rand_r(&seed) % 2 ? 120 : len);
            copy[pos] = (uint8_t)rand_r(&seed);
        }
        memset(area, 0x5c, sizeof(src) + 2 * guard);
        livemig_error err = { 0 };
        if (!decode(copy, len, area + guard, sizeof(src), &err, NULL)) {
            refused++;
            assert_true(err.desc[0] != '\0');
        }
        for (size_t i = 0; i < guard; i++) {
            assert_int_equal(area[i], 0x5c);
            assert_int_equal(area[guard + sizeof(src) + i], 0x5c);
        }
    }
    assert_true(refused > 100);
    free(area);
    free(copy);
    free(buf);
}

static void test_zero_page_detection(void **state)
{
    (void)state;
    static uint8_t page[4096] __attribute__((aligned(64)));
    memset(page, 0, sizeof(page));
    assert_true(lm_page_is_zero(page));
    for (size_t i = 0; i < sizeof(page); i += 511) {
        page[i] = 1;
        assert_false(lm_page_is_zero(page));
        page[i] = 0;
    }
    page[4095] = 1;
    assert_false(lm_page_is_zero(page));
}

/* A reader over @len bytes of @buf, bound to a PAGES-page block 'ram'. */
static lm_reader *open_reader(const uint8_t *buf, size_t len, uint8_t *dst,
                              FILE **f)
{
    *f = tmpfile();
    fwrite(buf, 1, len, *f);
    fflush(*f);
    rewind(*f);
    lm_reader *r = malloc(sizeof(*r));
    livemig_error err = { 0 };
    assert_true(lm_reader_init(r, fileno(*f), &err));
    assert_true(lm_rd_header(r, &err));
    lm_stream_block local = { .size = sizeof(src), .host = dst };
    strcpy(local.name, "ram");
    assert_true(lm_rd_bind(r, &local, 1, &err));
    return r;
}

static uint8_t *write_pages(const uint64_t *runs, size_t nruns, size_t *len)
{
    FILE *f = tmpfile();
    lm_writer *w = malloc(sizeof(*w));
    lm_writer_init(w, fileno(f), NULL);
    lm_stream_header h = { .version = LM_STREAM_VERSION, .page_size = PS,
                           .nblocks = 1 };
    strcpy(h.blocks[0].name, "ram");
    h.blocks[0].size = sizeof(src);
    assert_true(lm_wr_header(w, &h));
    for (size_t i = 0; i < nruns; i++) {
        uint64_t first = runs[i] >> 32, n = runs[i] & 0xffffffff;
        if (i % 2)
            assert_true(lm_wr_ram_zero(w, 0, first, (uint32_t)n));
        else
            assert_true(lm_wr_ram_raw(w, 0, first, (uint32_t)n,
                                      src + first * PS));
    }
    assert_true(lm_wr_end_stream(w));
    assert_true(lm_wr_flush(w));
    free(w);
    *len = (size_t)ftell(f);
    uint8_t *buf = malloc(*len);
    rewind(f);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void read_to_end(lm_reader *r)
{
    lm_rec rec;
    livemig_error err = { 0 };
    do
        assert_true(lm_rd_record(r, &rec, &err));
    while (rec.type != LM_REC_END_STREAM);
}

#define RUN(first, n) ((uint64_t)(first) << 32 | (n))

static void test_every_page_must_arrive(void **state)
{
    (void)state;
    static uint8_t dst[sizeof(src)];
    livemig_error err = { 0 };
    FILE *f;

    /* Header and end only: every page is missing. */
    size_t len;
    uint8_t *buf = write_pages(NULL, 0, &len);
    lm_reader *r = open_reader(buf, len, dst, &f);
    read_to_end(r);
    assert_false(lm_rd_all_received(r, &err));
    assert_string_equal(err.desc, "64 pages of block 'ram' never arrived "
                        "(first: page 0); the migration stream is "
                        "incomplete (cut short, or not written by a livemig "
                        "source): migrate again");
    lm_reader_destroy(r);
    free(r);
    fclose(f);
    free(buf);

    /* Raw and zero runs with page 37 left out. */
    uint64_t runs[] = { RUN(0, 30), RUN(30, 7), RUN(38, 26) };
    buf = write_pages(runs, 3, &len);
    r = open_reader(buf, len, dst, &f);
    read_to_end(r);
    livemig_error_clear(&err);
    assert_false(lm_rd_all_received(r, &err));
    assert_non_null(strstr(err.desc, "1 page of block 'ram' never arrived "
                                     "(first: page 37)"));

    /* A second channel that brings page 37 (a multifd channel's share)
     * completes it. */
    uint64_t rest[] = { RUN(37, 1) };
    FILE *f2;
    size_t len2;
    uint8_t *buf2 = write_pages(rest, 1, &len2);
    lm_reader *r2 = open_reader(buf2, len2, dst, &f2);
    read_to_end(r2);
    livemig_error_clear(&err);
    assert_false(lm_rd_all_received(r2, &err));
    assert_non_null(strstr(err.desc, "63 pages"));
    lm_rd_merge_received(r, r2);
    livemig_error_clear(&err);
    assert_true(lm_rd_all_received(r, &err));
    lm_reader_destroy(r2);
    free(r2);
    fclose(f2);
    free(buf2);
    lm_reader_destroy(r);
    free(r);
    fclose(f);
    free(buf);
}

/* Postcopy records: a discard bitmap round-trips; one naming words or
 * pages outside the block is refused with the reason. */
static bool pc_stream(uint64_t first, const uint64_t *words, uint32_t n,
                      uint64_t *got, livemig_error *err)
{
    FILE *f = tmpfile();
    lm_writer *w = malloc(sizeof(*w));
    lm_writer_init(w, fileno(f), NULL);
    lm_stream_header h = { .version = LM_STREAM_VERSION, .page_size = PS,
                           .nblocks = 1 };
    strcpy(h.blocks[0].name, "ram");
    h.blocks[0].size = 100 * PS;   /* 100 pages: 2 words, 36 bits in the last */
    assert_true(lm_wr_header(w, &h));
    assert_true(lm_wr_pc(w, LM_REC_PC_ADVISE));
    assert_true(lm_wr_pc_discard(w, 0, first, words, n));
    assert_true(lm_wr_pc(w, LM_REC_PC_RUN));
    assert_true(lm_wr_end_stream(w));
    lm_writer_destroy(w);
    free(w);
    rewind(f);
    static uint8_t dst[100 * PS];
    lm_reader r;
    bool ok = lm_reader_init(&r, fileno(f), err) && lm_rd_header(&r, err);
    lm_stream_block local = { .size = sizeof(dst), .host = dst };
    strcpy(local.name, "ram");
    ok = ok && lm_rd_bind(&r, &local, 1, err);
    lm_rec rec;
    int seen = 0;
    while (ok && lm_rd_record(&r, &rec, err)) {
        if (rec.type == LM_REC_PC_DISCARD) {
            memcpy(got, rec.words, rec.npages * sizeof(uint64_t));
            seen++;
        } else if (rec.type == LM_REC_PC_ADVISE || rec.type == LM_REC_PC_RUN) {
            seen++;
        } else if (rec.type == LM_REC_END_STREAM) {
            break;
        }
        if (rec.type == LM_REC_END_STREAM)
            break;
    }
    ok = ok && !livemig_error_is_set(err) && seen == 3;
    lm_reader_destroy(&r);
    fclose(f);
    return ok;
}

static void test_postcopy_records(void **state)
{
    (void)state;
    uint64_t words[2] = { 0x8000000000000001ull, 0xfffffffffull }, got[2];
    livemig_error err = { 0 };
    assert_true(pc_stream(0, words, 2, got, &err));
    assert_memory_equal(got, words, sizeof(words));
    livemig_error_clear(&err);
    uint64_t past[1] = { 1ull << 36 };   /* page 100 of a 100-page block */
    assert_false(pc_stream(1, past, 1, got, &err));
    assert_non_null(strstr(err.desc, "past the end of block 'ram'"));
    livemig_error_clear(&err);
    assert_false(pc_stream(2, words, 1, got, &err));
    assert_non_null(strstr(err.desc, "outside block 'ram'"));
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(long ms)
{
    struct timespec ts = { 0, ms * 1000000L };
    nanosleep(&ts, NULL);
}

/* Write @pages raw pages at @rate with pacing @pace_us (0: default) after
 * the sender was idle for 100 ms, on a SOCK_SEQPACKET pair (every writev
 * arrives as one message); return the seconds it took, and the largest
 * message in *largest. */
static double paced_write(uint64_t rate, uint32_t pace_us, unsigned pages,
                          size_t *largest)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    int big = 8 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    lm_writer *w = malloc(sizeof(*w));
    lm_writer_init(w, sv[0], NULL);
    lm_writer_set_rate(w, rate);
    lm_writer_set_pacing(w, pace_us);
    nap_ms(100);   /* idle: the bucket fills up to its cap */
    double t0 = mono_s();
    assert_true(lm_wr_ram_raw(w, 0, 0, pages, src));
    assert_true(lm_wr_flush(w));
    double dt = mono_s() - t0;
    lm_writer_destroy(w);
    free(w);
    close(sv[0]);
    static uint8_t buf[1 << 20];
    size_t total = 0;
    *largest = 0;
    ssize_t n;
    while ((n = recv(sv[1], buf, sizeof(buf), 0)) > 0) {
        total += (size_t)n;
        if ((size_t)n > *largest)
            *largest = (size_t)n;
    }
    assert_int_equal(total, 17 + (size_t)pages * PS);
    close(sv[1]);
    return dt;
}

/* max-postcopy-bandwidth's fine pacing: slices (and bursts) of about
 * 1 ms of the rate, where precopy keeps 50 ms; bytes charged from
 * outside the bucket. */
static void test_pacing_slices(void **state)
{
    (void)state;
    lm_writer *w = malloc(sizeof(*w));
    lm_writer_init(w, -1, NULL);
    assert_int_equal(lm_writer_slice(w), SIZE_MAX);   /* no rate */
    lm_writer_set_rate(w, 10000000);
    assert_int_equal(lm_writer_slice(w), 500000);     /* 50 ms default */
    lm_writer_set_pacing(w, 1000);
    assert_int_equal(lm_writer_slice(w), 10000);      /* 1 ms */
    lm_writer_set_pacing(w, 0);
    assert_int_equal(lm_writer_slice(w), 500000);
    lm_writer_set_rate(w, 100000);
    lm_writer_set_pacing(w, 1000);
    assert_int_equal(lm_writer_slice(w), 4096);       /* at least a page */
    /* the bucket, asked without charging */
    lm_writer_set_rate(w, 10000000);   /* a new rate: the bucket is empty */
    uint64_t wait = lm_writer_pace_wait_us(w, 10000);
    assert_true(wait > 0 && wait <= 1001);
    nap_ms(5);
    assert_int_equal(lm_writer_pace_wait_us(w, 10000), 0);
    /* it saved up one slice, and one more as it had waited, not 5 ms:
     * 40 kB is ~2 ms away */
    assert_true(lm_writer_pace_wait_us(w, 40000) >= 1900);
    /* a late wakeup after a wait is not thrown away: the bucket may
     * then hold one slice more (not after idling: see above) */
    lm_writer_set_rate(w, 20000000);
    lm_writer_set_rate(w, 10000000);   /* empty */
    assert_true(lm_writer_pace_wait_us(w, 10000) > 0);   /* waits */
    nap_ms(2);
    assert_int_equal(lm_writer_pace_wait_us(w, 10000), 0);
    assert_true(w->tokens > 15000 && w->tokens <= 20000);
    nap_ms(5);   /* no wait in between: idle, one slice at most */
    assert_int_equal(lm_writer_pace_wait_us(w, 10000), 0);
    assert_true(w->tokens <= 10000);
    /* bytes sent outside the bucket are charged to it: 20 kB of debt
     * delay the next 10 kB by ~3 ms; the debt stops at 100 ms of the
     * rate (1 MB) however much is charged */
    lm_writer_set_rate(w, 20000000);
    lm_writer_set_rate(w, 10000000);   /* empty again */
    lm_writer_charge(w, 20000);
    assert_true(lm_writer_pace_wait_us(w, 10000) >= 2900);
    lm_writer_charge(w, 1000000000);
    uint64_t debt = lm_writer_pace_wait_us(w, 1);
    assert_true(debt >= 99000 && debt <= 100200);
    lm_writer_set_rate(w, 0);
    lm_writer_charge(w, 1000000);   /* no rate: nothing to pay */
    assert_int_equal(lm_writer_pace_wait_us(w, 1u << 30), 0);
    free(w);

    /* 64 pages (256 KiB) at 10 MB/s after 100 ms idle: with 1 ms pacing
     * no write is larger than 10 kB and the bucket saved only 10 kB, so
     * it takes about 25 ms; with the default the whole batch (within
     * 50 ms = 500 kB saved) goes out in one write. */
    size_t largest;
    double fine = paced_write(10000000, 1000, PAGES, &largest);
    assert_true(largest <= 10000);
    assert_true(fine >= 0.020);
    (void)paced_write(10000000, 0, PAGES, &largest);
    assert_int_equal(largest, 17 + (size_t)PAGES * PS);
}

/* Compressed multifd batches decode into the right pages: a run of
 * adjacent pages (decompressed in place), pages out of order, and a run
 * with zero pages among its indices. */
static void test_mf_compressed_batches(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)((i % 251) ^ (i / PS) * 13);
    memset(src + 40 * PS, 0, PS);   /* a zero page */
    livemig_error err = { 0 };
    lm_compressor *c = lm_compressor_new(LM_COMPRESS_ZSTD, 1, &err);
    assert_non_null(c);
    size_t cap = lm_compress_bound(LM_COMPRESS_ZSTD, PAGES * PS);
    uint8_t *cb = malloc(cap), *raw = malloc(PAGES * PS);
    FILE *f = tmpfile();
    lm_writer *w = malloc(sizeof(*w));
    lm_writer_init(w, fileno(f), NULL);
    lm_stream_header h = { .version = LM_STREAM_VERSION, .page_size = PS,
                           .nblocks = 1 };
    strcpy(h.blocks[0].name, "ram");
    h.blocks[0].size = sizeof(src);
    assert_true(lm_wr_header(w, &h));
    /* batches: pages 0-31 in order (a run); 50, 33, 63, 32 (scattered);
     * 34-49 with page 40 zero (no run: 39 and 41 around a gap) */
    uint64_t b1[32], b2[4] = { 50, 33, 63, 32 }, b3[16];
    for (unsigned i = 0; i < 32; i++)
        b1[i] = i;
    for (unsigned i = 0; i < 16; i++)
        b3[i] = 34 + i;
    const uint64_t *bs[] = { b1, b2, b3 };
    uint32_t ns[] = { 32, 4, 16 };
    for (unsigned k = 0; k < 3; k++) {
        bool zero[32];
        size_t nz = 0;
        for (uint32_t i = 0; i < ns[k]; i++) {
            zero[i] = lm_page_is_zero(src + bs[k][i] * PS);
            if (!zero[i])
                memcpy(raw + nz++ * PS, src + bs[k][i] * PS, PS);
        }
        size_t clen = lm_compress(c, raw, nz * PS, cb, cap, &err);
        assert_true(clen > 0);
        assert_true(lm_wr_mf_pages(w, 0, bs[k], zero, ns[k], src, cb,
                                   (uint32_t)clen));
    }
    assert_true(lm_wr_end_stream(w));
    lm_writer_destroy(w);
    free(w);
    fflush(f);
    rewind(f);
    uint8_t *dst = malloc(sizeof(src));
    memset(dst, 0xaa, sizeof(src));
    lm_reader r;
    assert_true(lm_reader_init(&r, fileno(f), &err) &&
                lm_rd_header(&r, &err));
    lm_stream_block local = { .size = sizeof(src), .host = dst };
    strcpy(local.name, "ram");
    assert_true(lm_rd_bind(&r, &local, 1, &err));
    r.decomp = lm_compressor_new(LM_COMPRESS_ZSTD, 1, &err);
    assert_non_null(r.decomp);
    lm_rec rec;
    do {
        assert_true(lm_rd_record(&r, &rec, &err));
    } while (rec.type != LM_REC_END_STREAM);
    /* 0-50 and 63 arrived; 51-62 were never sent */
    assert_memory_equal(dst, src, 51 * PS);
    assert_memory_equal(dst + 63 * PS, src + 63 * PS, PS);
    assert_int_equal(dst[55 * PS], 0xaa);
    lm_compressor_free(r.decomp);
    r.decomp = NULL;
    lm_reader_destroy(&r);
    fclose(f);
    lm_compressor_free(c);
    free(dst);
    free(cb);
    free(raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_every_truncation_fails_cleanly),
        cmocka_unit_test(test_wrong_block_size_is_named),
        cmocka_unit_test(test_bad_magic_and_version),
        cmocka_unit_test(test_random_corruption),
        cmocka_unit_test(test_zero_page_detection),
        cmocka_unit_test(test_every_page_must_arrive),
        cmocka_unit_test(test_postcopy_records),
        cmocka_unit_test(test_pacing_slices),
        cmocka_unit_test(test_mf_compressed_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
