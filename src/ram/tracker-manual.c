/*
 * tracker-manual.c - the manual dirty tracker: the host marks its writes.
 *
 * The host stores into a page, then calls livemig_dirty_mark(bitmap, page),
 * which sets the page's bit only if it reads it clear (a hot page costs a
 * load, not an atomic).  sync exchanges every word with 0, ORs what it got
 * into the caller's bitmap, and then issues
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) before returning.
 *
 * Why the membarrier.  A writer does "store data; load bit; if clear, set
 * it".  On any CPU with a store buffer (x86 included) the load may be
 * satisfied before the data store is visible to other CPUs.  So a writer
 * can read its bit as still set (we have not cleared it yet), skip the
 * mark, and have its data store still sitting in its store buffer when we
 * clear the bit and the caller reads the page: the caller copies the old
 * data, the bit is clear, and the write is lost for good.  A fence on our
 * side cannot help (the reordering is on the writer's CPU) and a fence on
 * every writer's store is what the check-then-set avoids.  membarrier
 * makes every running thread of this process execute a full memory barrier
 * before it returns (an IPI to the CPUs running them; a thread not running
 * is already ordered by its context switch).  For each writer, its barrier
 * point is either after its skipped load -- then its data store, which
 * preceded that load in program order, is visible once membarrier returns,
 * so the caller's read sees it -- or before its load, and then the load
 * comes after our exchange and sees the bit clear, so it sets the bit and
 * the next sync reports the page.  This is the asymmetric (Dekker) fence.
 *
 * Registration (MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) is per process,
 * done once, when the first manual tracker is created.  Kernels without it
 * (< 4.14, or membarrier filtered by seccomp) get a full fence instead,
 * which is NOT enough for the reason above: there a host must mark with a
 * full barrier between its store and its check (or use an atomic OR every
 * time).  lm_tracker_manual_has_membarrier() tells which; the engine can
 * report it.
 */
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ram/tracker-impl.h"

static pthread_once_t manual_once = PTHREAD_ONCE_INIT;
static bool manual_membarrier_ok;

static long manual_membarrier(int cmd)
{
    return syscall(SYS_membarrier, cmd, 0, 0);
}

static void manual_register(void)
{
    long cmds = manual_membarrier(MEMBARRIER_CMD_QUERY);

    manual_membarrier_ok =
        cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        manual_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

bool lm_tracker_manual_has_membarrier(void)
{
    pthread_once(&manual_once, manual_register);
    return manual_membarrier_ok;
}

static bool manual_init(lm_tracker *t, livemig_error *err)
{
    pthread_once(&manual_once, manual_register);
    t->priv = calloc(t->nwords, sizeof(uint64_t));
    if (!t->priv) {
        livemig_error_set(err, "out of memory for a dirty bitmap of %zu "
                          "pages", t->npages);
        return false;
    }
    return true;
}

static void manual_fini(lm_tracker *t)
{
    free(t->priv);
}

static bool manual_start(lm_tracker *t, livemig_error *err)
{
    uint64_t *bm = t->priv;

    (void)err;
    for (size_t w = 0; w < t->nwords; w++)
        __atomic_store_n(&bm[w], 0, __ATOMIC_RELAXED);
    /* Marks in flight from before start may still land: harmless, they
     * over-report once. */
    atomic_thread_fence(memory_order_seq_cst);
    return true;
}

static bool manual_sync(lm_tracker *t, uint64_t *dirty, size_t *count,
                        livemig_error *err)
{
    uint64_t *bm = t->priv;
    size_t added = 0;

    (void)err;
    for (size_t w = 0; w < t->nwords; w++) {
        if (!__atomic_load_n(&bm[w], __ATOMIC_RELAXED))
            continue;
        /* Acquire pairs with the release in livemig_dirty_mark(): the
         * store before a mark that we harvest is visible. */
        uint64_t bits = __atomic_exchange_n(&bm[w], 0, __ATOMIC_ACQ_REL);
        added += lm_tracker_or_word(dirty, w, bits);
    }
    /* After clearing, before the caller reads: see the top of the file.
     * Writers that are stopped (quiesced) are ordered already. */
    if (t->quiesced)
        atomic_thread_fence(memory_order_seq_cst);
    else if (!manual_membarrier_ok ||
        manual_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
        atomic_thread_fence(memory_order_seq_cst);
    *count = added;
    return true;
}

static void manual_stop(lm_tracker *t)
{
    (void)t;    /* nothing is protected; marks keep landing harmlessly */
}

const lm_tracker_ops lm_tracker_manual_ops = {
    .kind = LIVEMIG_TRACKER_MANUAL,
    .init = manual_init,
    .fini = manual_fini,
    .start = manual_start,
    .sync = manual_sync,
    .stop = manual_stop,
};
