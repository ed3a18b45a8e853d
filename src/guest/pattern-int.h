/*
 * pattern-int.h - internals of the pattern guest shared by its files:
 * the guest (pattern.c), its state section (pattern-state.c), the spec
 * (pattern-spec.c) and the page format (pattern-page.c).
 */
#ifndef LM_GUEST_PATTERN_INT_H
#define LM_GUEST_PATTERN_INT_H

#include <pthread.h>
#include <stdatomic.h>
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

/* ---- the guest (see pattern.c for the thread model) -------------------- */

typedef struct pattern_worker {
    lm_pattern *p;
    pthread_t tid;
    unsigned idx;
    uint64_t first;                    /* slice: [first, first + npages) */
    uint64_t npages;
    /* Written by the worker only (and by load while it is parked). */
    _Atomic uint64_t generation;
    _Atomic uint64_t cursor;           /* relative to first, 1..npages */
    _Atomic uint64_t written;
} pattern_worker;

struct lm_pattern {
    /* Set at creation, then read-only. */
    lm_pattern_spec spec;
    uint64_t npages;
    uint8_t *host;
    livemig *lm;
    livemig_ram *ram;
    uint64_t *bitmap;                  /* manual tracker, else NULL */
    pattern_worker *workers;           /* spec.threads of them */
    unsigned nworkers_started;         /* threads running (0 when idle) */
    int outputs_fd;                    /* spec.outputs opened for append */
    bool incoming;

    /* Control state, protected by lock. */
    pthread_mutex_t lock;
    pthread_cond_t wake;               /* parked workers wait here, and
                                          sleepers that a pause holds */
    pthread_cond_t sleep_cv;           /* pacing / throttle sleeps (both
                                          CLOCK_MONOTONIC) */
    pthread_cond_t parked_cv;          /* stoppers wait here */
    bool engine_stopped;
    unsigned holds;
    bool quit;
    bool retire;                       /* workers exit (a reshape) */
    unsigned parked;
    atomic_bool pause_req;
    _Atomic unsigned throttle;

    /* Write statistics (atomics, any writer). */
    _Atomic uint64_t base_written;     /* fill + pages written before load */
    _Atomic uint64_t last_write_ns;
    _Atomic uint64_t max_gap_ns;

    /* Incoming migration (set by load with the guest stopped). */
    atomic_bool migrated;              /* release-stored after the rest */
    uint64_t resumed_generation, resumed_cursor;
    atomic_bool gap_pending;
    _Atomic uint64_t migration_gap_ns;
};

/* Give the guest the workload an incoming state describes (worker count,
 * fill, dirty rate): when it differs, the workers exit and new ones start
 * (parked while the guest is stopped), every slice at the end of the
 * fill; the caller then sets their positions.  Called with the guest
 * stopped (a section load). */
bool lm_pattern_reshape(lm_pattern *p, unsigned threads, lm_pattern_fill fill,
                        uint64_t dirty_rate, livemig_error *err);

/* Pages written so far, the fill and the source's writes included. */
uint64_t lm_pattern_pages_written(lm_pattern *p);

/* Worker @i of @n's slice of @npages pages: its first page and length.
 * The one split the workers, the state checks and the loader share. */
static inline void lm_pattern_slice(uint64_t npages, unsigned n, unsigned i,
                                    uint64_t *first, uint64_t *len)
{
    *first = npages * i / n;
    *len = npages * (i + 1) / n - *first;
}

#endif
