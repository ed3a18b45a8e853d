/*
 * tracker-mprotect.c - the mprotect dirty tracker: works on any Linux.
 *
 * start: mprotect(PROT_READ) the block.  A write faults; our SIGSEGV
 *        handler finds the block in a process-wide registry, sets the
 *        page's bit in the tracker's pending bitmap, makes the page
 *        writable again, sets the bit once more, and the write is retried
 *        and succeeds.
 * sync:  harvest first (atomic exchange of each pending word with 0), THEN
 *        re-protect the harvested pages, one mprotect per run of adjacent
 *        pages.  This never loses a write:
 *          - the bit set after the unprotect: a handler whose unprotect
 *            comes after our re-protect sets it after our harvest, so the
 *            next sync reports the page and re-protects it;
 *          - a handler whose unprotect comes before our re-protect: the
 *            retried write either lands before the re-protect (visible to
 *            the caller, who reads after sync returns) or faults again.
 *        The other order (re-protect, then harvest) loses the writes to a
 *        page that faults in between: its bit is harvested, nothing
 *        protects it any more, and later writes leave no trace.
 *        The bit set before the unprotect keeps the promise of
 *        lm_tracker_sync (every page written before a sync starts is
 *        reported by it): once the page is writable, other threads write
 *        it without faulting; if the handler were preempted between its
 *        unprotect and its only bit (a loaded machine), a sync in that
 *        window would miss those completed writes until the next sync.
 * stop:  mprotect(PROT_READ | PROT_WRITE) the block, unregister.  The
 *        block must have been read-write before start.
 *
 * The registry is the one process global of the library, because a signal
 * handler has nothing else to reach: MPROTECT_SLOTS fixed slots, published
 * with atomics, each with a count of handlers inside it so unregister can wait
 * until no handler still uses the tracker's bitmap (no locks, nothing the
 * handler does can block).
 *
 * Faults that are not ours (another address, or SEGV_MAPERR) go to the
 * handler that was installed before ours, or, if that was the default,
 * the default action is restored and the fault repeats and kills the
 * process as it would have without us (a SIGSEGV sent by kill() is
 * re-raised).  A fault on a block whose tracker stopped between the fault
 * and our lookup is retried once before it counts as a crash (see
 * mprotect_is_stale_fault).
 *
 * The handler is (re)installed by every start if someone else's handler
 * replaced it (test frameworks install theirs per test); while a tracker
 * runs, SIGSEGV must stay ours.  Under AddressSanitizer run with
 * ASAN_OPTIONS=handle_segv=0:allow_user_segv_handler=1.
 *
 * vm.max_map_count: every run of unprotected pages inside a protected
 * block is its own VMA.  If the handler's mprotect fails (ENOMEM), it
 * unprotects the enclosing 2 MiB and marks all of it, and failing that
 * the whole block: over-reporting, never a lost write or a fault loop.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ram/tracker-impl.h"

#define MPROTECT_SLOTS 64
#define MPROTECT_GROUP (2u << 20)    /* fallback unprotect granule */

enum { MPROTECT_FREE, MPROTECT_BUSY, MPROTECT_LIVE };

typedef struct mprotect_slot {
    _Atomic int state;          /* FREE -> BUSY -> LIVE -> BUSY -> FREE */
    _Atomic unsigned users;     /* handlers currently inside this slot */
    /* Written while MPROTECT_BUSY, read by handlers once MPROTECT_LIVE. */
    uintptr_t start, end;
    unsigned shift;
    size_t page_size;
    _Atomic uint64_t *pending;
} mprotect_slot;

static mprotect_slot mprotect_slots[MPROTECT_SLOTS];
/* Bumped by every unregister, before the slot leaves MPROTECT_LIVE. */
static _Atomic unsigned mprotect_unreg_gen;

/* The handler installed before ours: two copies, the live one indexed by
 * mprotect_old_idx, so a reinstall never rewrites what a handler may be
 * reading (unless two reinstalls race one slow crashing handler). */
static pthread_mutex_t mprotect_install_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction mprotect_old[2];
static _Atomic int mprotect_old_idx;

typedef struct mprotect_state {
    _Atomic uint64_t *pending;  /* set by the handler, harvested by sync */
    int slot;                   /* registry slot while started, else -1 */
} mprotect_state;

/* ---- the signal handler (async-signal-safe code only) ------------------ */

static void mprotect_set_bits(_Atomic uint64_t *pending, size_t first,
                              size_t n)
{
    size_t p = first, end = first + n;
    while (p < end) {
        size_t b = p & 63;
        size_t take = 64 - b < end - p ? 64 - b : end - p;
        uint64_t bits = take == 64 ? ~0ull : ((1ull << take) - 1) << b;
        atomic_fetch_or(&pending[p >> 6], bits);
        p += take;
    }
}

/* Make [@from, @to) of @s writable, its bits set both before and after
 * (see the top of the file).  False if mprotect failed; the bits set
 * before then only over-report. */
static bool mprotect_open(const mprotect_slot *s, uintptr_t from,
                          uintptr_t to)
{
    size_t first = (from - s->start) >> s->shift;
    size_t n = (to - from) >> s->shift;

    mprotect_set_bits(s->pending, first, n);
    if (mprotect((void *)from, to - from, PROT_READ | PROT_WRITE) != 0)
        return false;
    mprotect_set_bits(s->pending, first, n);
    return true;
}

/* Record a write fault at @a inside @s. */
static void mprotect_record(const mprotect_slot *s, uintptr_t a)
{
    size_t page = (a - s->start) >> s->shift;
    uintptr_t pa = s->start + (page << s->shift);

    if (mprotect_open(s, pa, pa + s->page_size))
        return;
    /* Out of VMAs (or memory): unprotect bigger, report all of it. */
    uintptr_t gs = pa & ~(uintptr_t)(MPROTECT_GROUP - 1);
    uintptr_t ge = gs + MPROTECT_GROUP;
    if (gs < s->start)
        gs = s->start;
    if (ge > s->end)
        ge = s->end;
    if (!mprotect_open(s, gs, ge)) {
        /* If even this fails the write faults again and we retry. */
        (void)mprotect_open(s, s->start, s->end);
    }
}

/* A fault at an address no live tracker covers may still be a write to a
 * block that was protected when it faulted and was unprotected and
 * unregistered by lm_tracker_stop() before this handler looked.  Retry such
 * a fault once: if the page is writable now the write goes through.  The
 * same address faulting again with no unregister in between is real. */
static __thread uintptr_t mprotect_miss_addr
    __attribute__((tls_model("initial-exec")));
static __thread unsigned mprotect_miss_gen
    __attribute__((tls_model("initial-exec")));

static bool mprotect_is_stale_fault(uintptr_t a)
{
    unsigned gen = atomic_load(&mprotect_unreg_gen);
    if (gen == 0)
        return false;           /* nothing was ever unregistered */
    if (mprotect_miss_addr == a && mprotect_miss_gen == gen)
        return false;
    mprotect_miss_addr = a;
    mprotect_miss_gen = gen;
    return true;
}

static void mprotect_chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old =
        &mprotect_old[atomic_load(&mprotect_old_idx)];

    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uc);
        return;
    }
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    /* Default (an ignored fault is fatal anyway): restore it and let the
     * faulting instruction run again; a sent signal is sent again. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (si->si_code <= 0)
        raise(sig);
}

static void mprotect_on_segv(int sig, siginfo_t *si, void *uc)
{
    int saved_errno = errno;
    uintptr_t a = (uintptr_t)si->si_addr;

    if (si->si_code == SEGV_ACCERR) {
        for (int i = 0; i < MPROTECT_SLOTS; i++) {
            mprotect_slot *s = &mprotect_slots[i];
            if (atomic_load(&s->state) != MPROTECT_LIVE)
                continue;
            /* Enter, then re-check: unregister sets the state, then waits
             * for users == 0 (both seq_cst, so one of us sees the other). */
            atomic_fetch_add(&s->users, 1);
            if (atomic_load(&s->state) == MPROTECT_LIVE && a >= s->start &&
                a < s->end) {
                mprotect_record(s, a);
                atomic_fetch_sub(&s->users, 1);
                errno = saved_errno;
                return;
            }
            atomic_fetch_sub(&s->users, 1);
        }
        if (mprotect_is_stale_fault(a)) {
            errno = saved_errno;
            return;
        }
    }
    mprotect_chain(sig, si, uc);
    errno = saved_errno;
}

/* ---- registry ---------------------------------------------------------- */

static bool mprotect_install(livemig_error *err)
{
    struct sigaction cur, sa;
    bool ok = true;

    pthread_mutex_lock(&mprotect_install_lock);
    if (sigaction(SIGSEGV, NULL, &cur) != 0) {
        livemig_error_set(err, "cannot query the SIGSEGV handler: %s",
                          strerror(errno));
        ok = false;
    } else if (!(cur.sa_flags & SA_SIGINFO) ||
               cur.sa_sigaction != mprotect_on_segv) {
        int next = 1 - atomic_load(&mprotect_old_idx);
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = mprotect_on_segv;
        sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        mprotect_old[next] = cur;
        atomic_store(&mprotect_old_idx, next);
        if (sigaction(SIGSEGV, &sa, NULL) != 0) {
            livemig_error_set(err, "cannot install the SIGSEGV handler of "
                              "the mprotect dirty tracker: %s",
                              strerror(errno));
            ok = false;
        }
    }
    pthread_mutex_unlock(&mprotect_install_lock);
    return ok;
}

static int mprotect_register(const lm_tracker *t, _Atomic uint64_t *pending,
                       livemig_error *err)
{
    for (int i = 0; i < MPROTECT_SLOTS; i++) {
        mprotect_slot *s = &mprotect_slots[i];
        int expect = MPROTECT_FREE;
        if (!atomic_compare_exchange_strong(&s->state, &expect, MPROTECT_BUSY))
            continue;
        s->start = (uintptr_t)t->host;
        s->end = (uintptr_t)t->host + t->size;
        s->shift = t->page_shift;
        s->page_size = t->page_size;
        s->pending = pending;
        atomic_store(&s->state, MPROTECT_LIVE);
        return i;
    }
    livemig_error_set(err, "too many mprotect dirty trackers running (at "
                      "most %d); use 'uffd-wp-async'", MPROTECT_SLOTS);
    return -1;
}

static void mprotect_unregister(int i)
{
    mprotect_slot *s = &mprotect_slots[i];

    atomic_fetch_add(&mprotect_unreg_gen, 1);
    atomic_store(&s->state, MPROTECT_BUSY);
    while (atomic_load(&s->users) != 0)
        sched_yield();
    atomic_store(&s->state, MPROTECT_FREE);
}

/* ---- ops --------------------------------------------------------------- */

static bool mprotect_init(lm_tracker *t, livemig_error *err)
{
    mprotect_state *st = calloc(1, sizeof(*st));

    if (st)
        st->pending = calloc(t->nwords, sizeof(*st->pending));
    if (!st || !st->pending) {
        free(st);
        livemig_error_set(err, "out of memory for a dirty tracker");
        return false;
    }
    st->slot = -1;
    t->priv = st;
    return true;
}

static void mprotect_fini(lm_tracker *t)
{
    mprotect_state *st = t->priv;
    free((void *)st->pending);
    free(st);
}

static bool mprotect_start(lm_tracker *t, livemig_error *err)
{
    mprotect_state *st = t->priv;

    for (size_t w = 0; w < t->nwords; w++)
        atomic_store_explicit(&st->pending[w], 0, memory_order_relaxed);
    if (!mprotect_install(err))
        return false;
    st->slot = mprotect_register(t, st->pending, err);
    if (st->slot < 0)
        return false;
    if (mprotect(t->host, t->size, PROT_READ) != 0) {
        livemig_error_set(err, "mprotect(PROT_READ) of %p+%zu failed: %s",
                          (void *)t->host, t->size, strerror(errno));
        mprotect_unregister(st->slot);
        st->slot = -1;
        return false;
    }
    return true;
}

/* Re-protect pages [@first, @first + @n).  If that fails the pages stay
 * writable and untracked, so put their bits back: they are reported again
 * until a re-protect succeeds. */
static void mprotect_reprotect(lm_tracker *t, mprotect_state *st,
                               size_t first, size_t n)
{
    if (mprotect(t->host + (first << t->page_shift), n << t->page_shift,
                 PROT_READ) != 0)
        mprotect_set_bits(st->pending, first, n);
}

static bool mprotect_sync(lm_tracker *t, uint64_t *dirty, size_t *count,
                    livemig_error *err)
{
    mprotect_state *st = t->priv;
    size_t added = 0;
    size_t run = 0, run_len = 0;    /* current run of harvested pages */

    (void)err;
    for (size_t w = 0; w < t->nwords; w++) {
        uint64_t bits;
        if (!atomic_load_explicit(&st->pending[w], memory_order_relaxed)) {
            bits = 0;
        } else {
            /* Harvest before re-protecting (see the top of the file). */
            bits = atomic_exchange(&st->pending[w], 0);
            added += lm_tracker_or_word(dirty, w, bits);
        }
        if (bits == ~0ull) {
            if (!run_len)
                run = w * 64;
            run_len += 64;
            continue;
        }
        for (unsigned b = 0; b < 64; b++) {
            if (bits & (1ull << b)) {
                if (!run_len)
                    run = w * 64 + b;
                run_len++;
            } else if (run_len) {
                mprotect_reprotect(t, st, run, run_len);
                run_len = 0;
            }
            if (!(bits >> b >> 1) && !run_len)
                break;      /* no more bits in this word, no open run */
        }
    }
    if (run_len)
        mprotect_reprotect(t, st, run, run_len);
    *count = added;
    return true;
}

static void mprotect_stop(lm_tracker *t)
{
    mprotect_state *st = t->priv;

    /* Unprotect first: a fault still in flight then finds a writable page
     * (or our slot, or retries once, see mprotect_is_stale_fault). */
    (void)mprotect(t->host, t->size, PROT_READ | PROT_WRITE);
    mprotect_unregister(st->slot);
    st->slot = -1;
}

const lm_tracker_ops lm_tracker_mprotect_ops = {
    .kind = LIVEMIG_TRACKER_MPROTECT,
    .init = mprotect_init,
    .fini = mprotect_fini,
    .start = mprotect_start,
    .sync = mprotect_sync,
    .stop = mprotect_stop,
};
