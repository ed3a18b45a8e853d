/*
 * xbzrle.c - XOR-based zero-run-length page delta codec.
 *
 * Format
 * ------
 * Let X = old XOR new, a page of page_size bytes.  X is a sequence of
 * maximal runs of zero bytes ("zero runs": unchanged) and of non-zero bytes
 * ("data runs": changed).  The encoding is a sequence of pairs
 *
 *     Z  D  b[0] .. b[D-1]
 *
 * where Z and D are unsigned LEB128 varints (7 bits per byte, least
 * significant group first, high bit set on every byte but the last) and
 * b[] are the D bytes of the NEW page at the data run's position.  Each
 * pair moves the page position forward by Z + D.  The encoding ends right
 * after the data bytes of a pair; an unchanged tail of the page is simply
 * not encoded, and identical pages encode to nothing at all.
 *
 * The decoder accepts exactly this grammar, with these rules:
 *   - a varint is at most as long as the varint of page_size itself
 *     (2 bytes for 4 KiB pages) and in its shortest form (a multi-byte
 *     varint may not end in a 0x00 byte);
 *   - Z is 0 only in the first pair (a page that changes at byte 0);
 *     elsewhere a zero run is at least 1 byte long;
 *   - D is at least 1;
 *   - every run ends at or before the page end, and after a pair that ends
 *     at the page end no byte may follow;
 *   - all D data bytes of a pair are present.
 *
 * A data run may contain bytes that did not change: the encoder folds a
 * single unchanged byte between two changed ones into the data run, since
 * that is never longer than starting a new pair (which costs at least a
 * 1-byte Z and a 1-byte D).  Longer unchanged stretches start a new pair.
 *
 * Shape follows QEMU's XBZRLE (migration/xbzrle.c); this is an independent
 * implementation with a stricter decoder.  Two identical pages give an
 * empty encoding, where QEMU's encoder returns 0 and sends nothing.
 *
 * Speed
 * -----
 * The encoder's common case is a page with a few changed bytes: almost all
 * time is spent finding the end of zero runs, which it does 32 bytes per
 * step (four 8-byte XORs ORed together), then 8 bytes per step, and the
 * first differing byte from the XOR word itself.  Data runs are scanned 8
 * bytes at a time with the "has a zero byte" bit trick.  The encoder never
 * decides a bound from a second read of a byte, so a page that changes
 * under it cannot push it out of its buffers.
 */
#include "codec/xbzrle.h"

#include <stdbool.h>
#include <string.h>

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* Non-zero iff some byte of @x is zero (exact, not just a hint). */
static inline uint64_t has_zero_byte(uint64_t x)
{
    return (x - ONES) & ~x & HIGHS;
}

/* Index (in memory order) of the first non-zero byte of @x, x != 0. */
static inline unsigned first_nonzero_byte(uint64_t x)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (unsigned)__builtin_clzll(x) / 8;
#else
    return (unsigned)__builtin_ctzll(x) / 8;
#endif
}

/* Bytes of the ULEB128 form of @v. */
static inline size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Length of the run of equal bytes starting at @i (up to @n). */
static inline size_t zero_run(const uint8_t *a, const uint8_t *b, size_t i,
                              size_t n)
{
    size_t s = i;

    while (i + 32 <= n) {
        uint64_t x = (load64(a + i) ^ load64(b + i)) |
                     (load64(a + i + 8) ^ load64(b + i + 8)) |
                     (load64(a + i + 16) ^ load64(b + i + 16)) |
                     (load64(a + i + 24) ^ load64(b + i + 24));
        if (x)
            break;
        i += 32;
    }
    while (i + 8 <= n) {
        uint64_t x = load64(a + i) ^ load64(b + i);
        if (x)
            return i + first_nonzero_byte(x) - s;
        i += 8;
    }
    while (i < n && a[i] == b[i])
        i++;
    return i - s;
}

/*
 * Length of the data run starting at @i (a[i] != b[i]), folding in single
 * equal bytes that sit between two changed bytes.  Byte @i is always taken,
 * so the result is at least 1.  Scanning stops once the run reaches @limit
 * (i < limit <= n): the result is then >= limit - i, possibly limit - i + 1,
 * never past @n.
 */
static inline size_t data_run(const uint8_t *a, const uint8_t *b, size_t i,
                              size_t limit, size_t n)
{
    size_t s = i++;

    while (i < limit) {
        if (i + 8 <= limit && !has_zero_byte(load64(a + i) ^ load64(b + i))) {
            i += 8;
            continue;
        }
        if (a[i] != b[i]) {
            i++;
            continue;
        }
        /* a[i] == b[i]: fold it in only if the next byte changed. */
        if (i + 1 < n && a[i + 1] != b[i + 1]) {
            i += 2;
            continue;
        }
        break;
    }
    return i - s;
}

ssize_t lm_xbzrle_encode(const uint8_t *old_page, const uint8_t *new_page,
                         size_t page_size, uint8_t *out, size_t out_cap)
{
    size_t pos = 0, o = 0;

    if (page_size == 0 || page_size > LM_XBZRLE_PAGE_SIZE_MAX)
        return -1;

    while (pos < page_size) {
        size_t z = zero_run(old_page, new_page, pos, page_size);
        if (z == 0 && pos > 0)
            z = 1;      /* only if the page changed under us: stay valid */
        if (z >= page_size - pos)
            break;                              /* unchanged tail: omit */
        size_t start = pos + z;

        /* Room left for data once both varints are written; a varint
         * of a length <= page_size is at most 4 bytes. */
        size_t zl = varint_len(z);
        if (o + zl + 1 >= out_cap)
            return -1;                          /* not even 1 data byte */
        size_t room = out_cap - o - zl - 1;     /* data + D's extra bytes */
        size_t limit = start + (room < page_size - start
                                ? room + 1 : page_size - start);

        size_t d = data_run(old_page, new_page, start, limit, page_size);
        size_t need = zl + varint_len(d) + d;
        if (need > out_cap - o)
            return -1;

        o += put_varint(out + o, z);
        o += put_varint(out + o, d);
        memcpy(out + o, new_page + start, d);
        o += d;
        pos = start + d;
    }
    return (ssize_t)o;
}

/*
 * Read one varint at *@p of at most @maxb bytes and in shortest form.
 * false if truncated, too long or not minimal.
 */
static inline bool get_varint(const uint8_t *enc, size_t len, size_t *p,
                              size_t maxb, uint64_t *v)
{
    uint64_t r = 0;
    size_t i = *p;

    for (size_t k = 0; k < maxb; k++) {
        if (i >= len)
            return false;                       /* truncated */
        uint8_t c = enc[i++];
        r |= (uint64_t)(c & 0x7f) << (7 * k);
        if (!(c & 0x80)) {
            if (c == 0 && k > 0)
                return false;                   /* not shortest form */
            *p = i;
            *v = r;
            return true;
        }
    }
    return false;                               /* longer than @maxb */
}

/* Walk @enc; write into @page only when it is not NULL. */
static int walk(const uint8_t *enc, size_t len, uint8_t *page,
                size_t page_size)
{
    size_t p = 0, pos = 0;

    if (page_size == 0 || page_size > LM_XBZRLE_PAGE_SIZE_MAX)
        return -1;
    if (len > 0 && !enc)
        return -1;

    size_t maxb = varint_len(page_size);
    while (p < len) {
        uint64_t z, d;

        if (pos >= page_size)
            return -1;                          /* bytes after page end */
        if (!get_varint(enc, len, &p, maxb, &z))
            return -1;
        if (z == 0 && pos > 0)
            return -1;                          /* empty inner zero run */
        if (z >= page_size - pos)
            return -1;                          /* no room for data */
        pos += (size_t)z;
        if (!get_varint(enc, len, &p, maxb, &d))
            return -1;
        if (d == 0)
            return -1;                          /* empty data run */
        if (d > page_size - pos)
            return -1;                          /* run past page end */
        if (d > len - p)
            return -1;                          /* data truncated */
        if (page)
            memcpy(page + pos, enc + p, (size_t)d);
        p += (size_t)d;
        pos += (size_t)d;
    }
    return 0;
}

int lm_xbzrle_validate(const uint8_t *enc, size_t len, size_t page_size)
{
    return walk(enc, len, NULL, page_size);
}

int lm_xbzrle_decode(const uint8_t *enc, size_t len, uint8_t *page,
                     size_t page_size)
{
    if (!page)
        return -1;
    /* Validate everything first so a refused encoding leaves @page as it
     * was; the second walk cannot fail. */
    if (walk(enc, len, NULL, page_size) < 0)
        return -1;
    return walk(enc, len, page, page_size);
}
