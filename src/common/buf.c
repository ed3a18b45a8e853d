/* buf.c - growable output buffer and bounded input cursor. */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

bool lm_buf_reserve(livemig_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return false;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

void lm_buf_reset(livemig_buf *b) { b->len = 0; }

void lm_buf_release(livemig_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

bool livemig_buf_put(livemig_buf *b, const void *data, size_t len)
{
    if (!lm_buf_reserve(b, len))
        return false;
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return true;
}

bool livemig_buf_put_u64(livemig_buf *b, uint64_t v)
{
    uint8_t tmp[8];
    lm_put_be64(tmp, v);
    return livemig_buf_put(b, tmp, sizeof(tmp));
}

bool livemig_buf_put_u32(livemig_buf *b, uint32_t v)
{
    uint8_t tmp[4];
    lm_put_be32(tmp, v);
    return livemig_buf_put(b, tmp, sizeof(tmp));
}

bool livemig_cursor_get(livemig_cursor *c, void *out, size_t len)
{
    if (len > c->len)
        return false;
    if (len)
        memcpy(out, c->p, len);
    c->p += len;
    c->len -= len;
    return true;
}

bool livemig_cursor_get_u64(livemig_cursor *c, uint64_t *v)
{
    uint8_t tmp[8];
    if (!livemig_cursor_get(c, tmp, sizeof(tmp)))
        return false;
    *v = lm_get_be64(tmp);
    return true;
}

bool livemig_cursor_get_u32(livemig_cursor *c, uint32_t *v)
{
    uint8_t tmp[4];
    if (!livemig_cursor_get(c, tmp, sizeof(tmp)))
        return false;
    *v = lm_get_be32(tmp);
    return true;
}
