/*
 * pattern-int.h - internals of the pattern guest shared by its files:
 * the spec (pattern-spec.c) and the page format (pattern-page.c).
 */
#ifndef LM_GUEST_PATTERN_INT_H
#define LM_GUEST_PATTERN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "livemig/livemig.h"
#include "guest/pattern.h"

/* ---- spec ----------------------------------------------------------------*/

typedef enum lm_pattern_fill {
    LM_PATTERN_FILL_RANDOM,
    LM_PATTERN_FILL_TEXT,
    LM_PATTERN_FILL_ZERO,
} lm_pattern_fill;

#define LM_PATTERN_RATE_MAX UINT64_MAX   /* dirty-rate=max */

typedef struct lm_pattern_spec {
    uint64_t size;          /* bytes, multiple of the page size */
    unsigned threads;
    uint64_t dirty_rate;    /* bytes/s; 0 idle; LM_PATTERN_RATE_MAX */
    lm_pattern_fill fill;
    char *outputs;          /* malloc'd or NULL */
} lm_pattern_spec;

/* Parse @spec into @out (defaults filled in).  On failure @err names the
 * option and what is accepted; @out holds nothing to free. */
bool lm_pattern_spec_parse(const char *spec, lm_pattern_spec *out,
                           livemig_error *err);
void lm_pattern_spec_clear(lm_pattern_spec *s);
const char *lm_pattern_fill_name(lm_pattern_fill f);

/* ---- page format -----------------------------------------------------------*/

typedef struct lm_pattern_hdr {
    uint64_t index;
    uint64_t generation;
    uint64_t checksum;
    uint64_t timestamp_ns;
} lm_pattern_hdr;

#define LM_PATTERN_BODY_SIZE (LM_PATTERN_PAGE_SIZE - sizeof(lm_pattern_hdr))
#define LM_PATTERN_BODY_WORDS (LM_PATTERN_BODY_SIZE / 8)

/* Write the body of page (@index, @gen) for @fill into @body (8-aligned,
 * LM_PATTERN_BODY_SIZE bytes) and return its checksum. */
uint64_t lm_pattern_body_fill(lm_pattern_fill fill, uint64_t index,
                              uint64_t gen, void *body);

/* Checksum of a stored body. */
uint64_t lm_pattern_body_checksum(const void *body);

/* Write a whole page: body, then header.  The caller marks the page dirty
 * afterwards. */
void lm_pattern_page_write(lm_pattern_fill fill, void *page, uint64_t index,
                           uint64_t gen, uint64_t now_ns);

/* Result of checking one page. */
enum {
    LM_PATTERN_GOOD = 0,
    LM_PATTERN_BAD_GENERATION,  /* well-formed page of the wrong generation */
    LM_PATTERN_BAD_OTHER,       /* wrong index, torn/corrupted, never written */
};

/* Check one page against (@index, @gen).  Returns LM_PATTERN_GOOD, or a bad
 * code and "page I: ..." in @why (the caller adds the worker's cursor to a
 * generation mismatch). */
int lm_pattern_page_check(lm_pattern_fill fill, const void *page,
                          uint64_t index, uint64_t gen, char *why,
                          size_t why_len);

#endif
