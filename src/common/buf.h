/* buf.h - growable byte buffer (the livemig_buf of the public API). */
#ifndef LM_BUF_H
#define LM_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "livemig/livemig.h"

struct livemig_buf {
    uint8_t *p;
    size_t len;
    size_t cap;
};

#define LM_BUF_INIT { NULL, 0, 0 }

/* Make room for @extra more bytes; false on allocation failure. */
bool lm_buf_reserve(livemig_buf *b, size_t extra);
void lm_buf_reset(livemig_buf *b);     /* len = 0, keep memory */
void lm_buf_release(livemig_buf *b);   /* free memory */

/* Big-endian helpers for fixed-size encodes into raw memory. */
static inline void lm_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static inline void lm_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static inline void lm_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v;
}
static inline uint64_t lm_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}
static inline uint32_t lm_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}
static inline uint16_t lm_get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

#endif
