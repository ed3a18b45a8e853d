/*
 * xbzrle.h - XOR-based zero-run-length page delta codec (the "xbzrle"
 * capability).
 *
 * A page that was sent before is sent again as the difference between the
 * copy the destination already has (@old) and its new content (@new): the
 * XOR of the two pages is cut into alternating runs of zero bytes
 * (unchanged) and non-zero bytes (changed), and only the changed bytes
 * travel.  The exact format is described at the top of xbzrle.c; in short,
 * an encoding is a sequence of
 *
 *     zero-run length (ULEB128)  data-run length (ULEB128)  data bytes
 *
 * where the data bytes are the NEW bytes (not the XOR), so the decoder
 * copies them straight into the page.  An unchanged tail of the page is
 * omitted, and two identical pages encode to zero bytes.
 *
 * Both functions are pure: no allocation, no global state, safe to call
 * from any thread on distinct buffers.  Page sizes from 1 to
 * LM_XBZRLE_PAGE_SIZE_MAX bytes are accepted; the migration uses 4 KiB.
 */
#ifndef LM_XBZRLE_H
#define LM_XBZRLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Largest page the codec accepts (run lengths then fit 4 varint bytes). */
#define LM_XBZRLE_PAGE_SIZE_MAX (1u << 24)

/*
 * Encode @new_page against @old_page (both @page_size bytes) into @out,
 * which has room for @out_cap bytes.
 *
 * Returns the encoded length (0 when the pages are identical: the
 * destination already has the page and nothing needs to be sent), or -1
 * when the encoding does not fit in @out_cap bytes, or when @page_size is 0
 * or above LM_XBZRLE_PAGE_SIZE_MAX.  Pass @out_cap = @page_size - 1 to get
 * -1 exactly when the encoding would not be smaller than the raw page: the
 * caller then sends the page raw.  Never writes past @out + @out_cap (the
 * bytes of @out are unspecified after -1).
 *
 * @new_page should be a stable snapshot (a copy of the guest page, see
 * xbzrle-cache.h for the flow).  If it is modified concurrently the encoder
 * still stays inside its buffers, but what it encodes is then a mix of old
 * and new contents of the page.
 *
 * The buffers must not overlap.  Compares 8 bytes at a time; it is meant
 * for the migration thread's hot path.
 */
ssize_t lm_xbzrle_encode(const uint8_t *old_page, const uint8_t *new_page,
                         size_t page_size, uint8_t *out, size_t out_cap);

/*
 * Apply the encoding @enc (@len bytes) to @page, which holds the old
 * content (@page_size bytes) and receives the new content in place.
 *
 * Returns 0 on success, -1 if @enc is malformed: a varint longer than
 * needed for @page_size or not in its shortest form, a zero run of length 0
 * anywhere but at the start, a data run of length 0, a run that goes past
 * the end of the page, data bytes missing at the end of @enc, bytes left
 * over after the page end, or @page_size 0 or above LM_XBZRLE_PAGE_SIZE_MAX.
 *
 * On -1, @page is left exactly as it was: the whole encoding is validated
 * before the first byte of @page is written.  The decoder never reads
 * outside @enc[0..@len) nor writes outside @page[0..@page_size).  An empty
 * encoding (@len == 0) is valid and leaves the page unchanged.
 *
 * @enc and @page must not overlap.
 */
int lm_xbzrle_decode(const uint8_t *enc, size_t len, uint8_t *page,
                     size_t page_size);

/* 0 if @enc (@len bytes) is a well-formed encoding for a page of
 * @page_size bytes, else -1 (same rules as lm_xbzrle_decode; no write). */
int lm_xbzrle_validate(const uint8_t *enc, size_t len, size_t page_size);

#endif
