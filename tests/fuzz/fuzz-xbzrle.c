/*
 * fuzz-xbzrle.c - the xbzrle delta decoder (src/codec/xbzrle.c).
 *
 * Mode byte 0 (even): the rest is a delta applied to a known page.  The
 * decoder must agree with the validator, and a refused delta must leave
 * the page exactly as it was.  Mode odd: the rest builds an old and a
 * new page; whatever the encoder makes of them must decode back to the
 * new page.
 */
#include <string.h>

#include "codec/xbzrle.h"
#include "fuzz.h"

#define PS 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t page[PS], before[PS], old_p[PS], new_p[PS], enc[PS];
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    if (!(mode & 1)) {
        for (size_t i = 0; i < PS; i++)
            page[i] = (uint8_t)(i * 31 + mode);
        memcpy(before, page, PS);
        int valid = lm_xbzrle_validate(data, size, PS);
        int rc = lm_xbzrle_decode(data, size, page, PS);
        FZ_CHECK(rc == valid);
        if (rc != 0)
            FZ_CHECK(memcmp(page, before, PS) == 0);
        return 0;
    }
    /* old = a pattern; new = old with the input's bytes laid over it at
     * offsets the input chooses (pairs of u16 offset, then bytes). */
    for (size_t i = 0; i < PS; i++)
        old_p[i] = (uint8_t)(i * 7 + (mode >> 1));
    memcpy(new_p, old_p, PS);
    size_t i = 0;
    while (i + 3 <= size) {
        size_t off = ((size_t)data[i] << 8 | data[i + 1]) % PS;
        size_t len = data[i + 2] % 64;
        i += 3;
        for (size_t k = 0; k < len && i < size && off + k < PS; k++)
            new_p[off + k] = data[i++];
    }
    ssize_t n = lm_xbzrle_encode(old_p, new_p, PS, enc, sizeof(enc));
    if (n < 0)
        return 0;
    FZ_CHECK((size_t)n < PS);
    memcpy(page, old_p, PS);
    FZ_CHECK(lm_xbzrle_decode(enc, (size_t)n, page, PS) == 0);
    FZ_CHECK(memcmp(page, new_p, PS) == 0);
    return 0;
}
