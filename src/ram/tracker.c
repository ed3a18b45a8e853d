/*
 * tracker.c - dirty tracker dispatch and the cached kernel probe.
 *
 * Checks arguments and the start/stop state here once, so the
 * implementations only do their job.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ram/tracker-impl.h"

/* ---- probe ------------------------------------------------------------- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool uffd_ok;
static livemig_error uffd_why;   /* written once under probe_once */

static void probe_run(void)
{
    uffd_ok = lm_tracker_uffd_probe(&uffd_why);
}

bool lm_tracker_available(livemig_tracker_kind kind, livemig_error *why_not)
{
    switch (kind) {
    case LIVEMIG_TRACKER_AUTO:
    case LIVEMIG_TRACKER_MPROTECT:
    case LIVEMIG_TRACKER_MANUAL:
        return true;
    case LIVEMIG_TRACKER_UFFD_WP_ASYNC:
        pthread_once(&probe_once, probe_run);
        if (!uffd_ok)
            livemig_error_set(why_not, "%s", uffd_why.desc);
        return uffd_ok;
    }
    livemig_error_set(why_not, "unknown dirty tracker kind %d", (int)kind);
    return false;
}

/* ---- helpers shared by the implementations ----------------------------- */

size_t lm_tracker_set_range(uint64_t *dirty, size_t first, size_t n)
{
    size_t added = 0;
    size_t p = first, end = first + n;

    while (p < end) {
        size_t w = p >> 6, b = p & 63;
        size_t take = 64 - b < end - p ? 64 - b : end - p;
        uint64_t bits = take == 64 ? ~0ull : ((1ull << take) - 1) << b;
        added += lm_tracker_or_word(dirty, w, bits);
        p += take;
    }
    return added;
}

/* ---- dispatch ---------------------------------------------------------- */

/* Our own copy of the names: livemig_tracker_name() belongs to the public
 * API module, and messages here must not depend on link order. */
static const char *kind_name(livemig_tracker_kind kind)
{
    switch (kind) {
    case LIVEMIG_TRACKER_AUTO:
        return "auto";
    case LIVEMIG_TRACKER_UFFD_WP_ASYNC:
        return "uffd-wp-async";
    case LIVEMIG_TRACKER_MPROTECT:
        return "mprotect";
    case LIVEMIG_TRACKER_MANUAL:
        return "manual";
    }
    return "?";
}

static const lm_tracker_ops *ops_for(livemig_tracker_kind kind)
{
    switch (kind) {
    case LIVEMIG_TRACKER_UFFD_WP_ASYNC:
        return &lm_tracker_uffd_ops;
    case LIVEMIG_TRACKER_MPROTECT:
        return &lm_tracker_mprotect_ops;
    case LIVEMIG_TRACKER_MANUAL:
        return &lm_tracker_manual_ops;
    case LIVEMIG_TRACKER_AUTO:
        break;
    }
    return NULL;
}

lm_tracker *lm_tracker_new(livemig_tracker_kind kind, void *host, size_t size,
                           size_t page_size, livemig_error *err)
{
    long sys_page = sysconf(_SC_PAGESIZE);
    livemig_error why;
    lm_tracker *t;

    if (kind == LIVEMIG_TRACKER_AUTO)
        kind = lm_tracker_available(LIVEMIG_TRACKER_UFFD_WP_ASYNC, NULL)
                   ? LIVEMIG_TRACKER_UFFD_WP_ASYNC
                   : LIVEMIG_TRACKER_MPROTECT;
    if (!ops_for(kind)) {
        livemig_error_set(err, "unknown dirty tracker kind %d", (int)kind);
        return NULL;
    }
    livemig_error_clear(&why);
    if (!lm_tracker_available(kind, &why)) {
        livemig_error_set(err, "dirty tracker '%s' is not available: %s; "
                          "use 'mprotect' or 'auto'",
                          kind_name(kind), why.desc);
        return NULL;
    }
    if (page_size == 0 || (page_size & (page_size - 1))) {
        livemig_error_set(err, "dirty tracker page size %zu is not a power "
                          "of two", page_size);
        return NULL;
    }
    if (kind != LIVEMIG_TRACKER_MANUAL && page_size != (size_t)sys_page) {
        livemig_error_set(err, "dirty tracker '%s' needs the host page size "
                          "%ld, not %zu; use 'manual' for other sizes",
                          kind_name(kind), sys_page, page_size);
        return NULL;
    }
    if (!host || size == 0 || (uintptr_t)host % page_size ||
        size % page_size) {
        livemig_error_set(err, "dirty tracker block %p+%zu is not aligned to "
                          "its page size %zu", host, size, page_size);
        return NULL;
    }

    t = calloc(1, sizeof(*t));
    if (!t) {
        livemig_error_set(err, "out of memory for a dirty tracker");
        return NULL;
    }
    t->ops = ops_for(kind);
    t->host = host;
    t->size = size;
    t->page_size = page_size;
    t->page_shift = (unsigned)__builtin_ctzl(page_size);
    t->npages = size / page_size;
    t->nwords = (t->npages + 63) / 64;
    if (!t->ops->init(t, err)) {
        free(t);
        return NULL;
    }
    return t;
}

void lm_tracker_free(lm_tracker *t)
{
    if (!t)
        return;
    lm_tracker_stop(t);
    t->ops->fini(t);
    free(t);
}

livemig_tracker_kind lm_tracker_kind(const lm_tracker *t)
{
    return t->ops->kind;
}

bool lm_tracker_start(lm_tracker *t, livemig_error *err)
{
    if (t->started) {
        livemig_error_set(err, "dirty tracker '%s' is already started",
                          kind_name(t->ops->kind));
        return false;
    }
    if (!t->ops->start(t, err))
        return false;
    t->started = true;
    return true;
}

void lm_tracker_set_quiesced(lm_tracker *t, bool quiesced)
{
    t->quiesced = quiesced;
}

bool lm_tracker_sync(lm_tracker *t, uint64_t *dirty, size_t *count,
                     livemig_error *err)
{
    size_t n = 0;
    bool ok;

    if (!t->started) {
        livemig_error_set(err, "dirty tracker '%s' is not started",
                          kind_name(t->ops->kind));
        return false;
    }
    ok = t->ops->sync(t, dirty, &n, err);
    if (count)
        *count = n;
    return ok;
}

void lm_tracker_stop(lm_tracker *t)
{
    if (!t->started)
        return;
    t->ops->stop(t);
    t->started = false;
}

uint64_t *lm_tracker_manual_bitmap(lm_tracker *t)
{
    if (t->ops->kind != LIVEMIG_TRACKER_MANUAL)
        return NULL;
    return t->priv;
}
