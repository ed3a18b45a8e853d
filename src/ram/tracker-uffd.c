/*
 * tracker-uffd.c - the uffd-wp-async dirty tracker (Linux >= 6.7).
 *
 * How it works.  The block is registered with a userfaultfd in
 * write-protect mode, with two features:
 *   UFFD_FEATURE_WP_ASYNC        a write to a protected page is resolved by
 *                                the kernel itself (it drops the protection
 *                                and lets the write through), so no thread
 *                                reads fault messages and the writer pays a
 *                                minor fault only;
 *   UFFD_FEATURE_WP_UNPOPULATED  pages not yet faulted in are protected too
 *                                (the kernel installs markers), so a first
 *                                write to a hole is caught as well.
 * A protected page has the uffd-wp bit in its page-table entry; a written
 * one does not, and PAGEMAP_SCAN reports it as PAGE_IS_WRITTEN.
 *
 *   start: UFFDIO_REGISTER (MODE_WP), then UFFDIO_WRITEPROTECT the block.
 *   sync:  one PAGEMAP_SCAN over the block with PM_SCAN_WP_MATCHING (re-
 *          protect what matched, under the page-table lock: a write either
 *          lands before and is reported now, or faults after and is
 *          reported next time) and PM_SCAN_CHECK_WPASYNC (refuse rather
 *          than silently report nothing for a range that is not tracked),
 *          for PAGE_IS_WRITTEN.  The output is runs of written pages; only
 *          if the output vector fills up do we continue from walk_end.
 *   stop:  unprotect, UFFDIO_UNREGISTER.
 *
 * UFFD_USER_MODE_ONLY keeps this working without root when
 * vm.unprivileged_userfaultfd is 0; async write faults from kernel mode
 * (read(2) into the block) are resolved by the kernel all the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ram/tracker-impl.h"
#include "ram/uffd-compat.h"

#define UFFD_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

/* 4096 regions (96 KiB): one ioctl covers 4096 separate runs of dirty
 * pages; more only costs another ioctl continuing from walk_end. */
#define UFFD_VEC_LEN 4096

typedef struct uffd_state {
    int uffd;                  /* API done, features UFFD_FEATURES */
    int pagemap;               /* /proc/self/pagemap */
    bool registered;
    struct page_region *vec;   /* PAGEMAP_SCAN output, UFFD_VEC_LEN */
} uffd_state;

/* Open a userfaultfd and enable UFFD_FEATURES on it; -1 and @err naming the
 * missing piece on failure. */
static int uffd_open(livemig_error *err)
{
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    int fd, probe;

    fd = (int)syscall(SYS_userfaultfd,
                      O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0) {
        int e = errno;
        livemig_error_set(err, "userfaultfd(UFFD_USER_MODE_ONLY) failed: %s%s",
                          strerror(e),
                          e == ENOSYS ? " (kernel without CONFIG_USERFAULTFD)"
                          : e == EPERM ? " (not permitted here)" : "");
        return -1;
    }
    /* Ask what the kernel has (features 0 = query) on a throwaway fd, so
     * the error can name the missing feature: UFFDIO_API may only succeed
     * once per fd. */
    probe = (int)syscall(SYS_userfaultfd,
                         O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (probe >= 0) {
        if (ioctl(probe, UFFDIO_API, &api) == 0) {
            const char *missing = NULL;
            if (!(api.features & UFFD_FEATURE_WP_ASYNC))
                missing = "UFFD_FEATURE_WP_ASYNC";
            else if (!(api.features & UFFD_FEATURE_WP_UNPOPULATED))
                missing = "UFFD_FEATURE_WP_UNPOPULATED";
            if (missing) {
                livemig_error_set(err, "kernel lacks %s (needs Linux >= 6.7)",
                                  missing);
                close(probe);
                close(fd);
                return -1;
            }
        }
        close(probe);
    }
    api.api = UFFD_API;
    api.features = UFFD_FEATURES;
    api.ioctls = 0;
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        livemig_error_set(err, "UFFDIO_API with UFFD_FEATURE_WP_ASYNC and "
                          "UFFD_FEATURE_WP_UNPOPULATED failed: %s",
                          strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void uffd_unregister(int uffd, void *host, size_t size)
{
    struct uffdio_range r = { .start = (uintptr_t)host, .len = size };
    (void)ioctl(uffd, UFFDIO_UNREGISTER, &r);
}

static bool uffd_register(int uffd, void *host, size_t size,
                          livemig_error *err)
{
    struct uffdio_register reg = {
        .range = { .start = (uintptr_t)host, .len = size },
        .mode = UFFDIO_REGISTER_MODE_WP,
    };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
        livemig_error_set(err, "UFFDIO_REGISTER (write-protect) of %p+%zu "
                          "failed: %s", host, size, strerror(errno));
        return false;
    }
    if (!(reg.ioctls & ((__u64)1 << _UFFDIO_WRITEPROTECT))) {
        livemig_error_set(err, "UFFDIO_WRITEPROTECT is not offered for %p+%zu "
                          "(anonymous private memory is needed)", host, size);
        uffd_unregister(uffd, host, size);
        return false;
    }
    return true;
}

static bool uffd_protect(int uffd, void *host, size_t size, bool on,
                         livemig_error *err)
{
    struct uffdio_writeprotect wp = {
        .range = { .start = (uintptr_t)host, .len = size },
        .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };
    if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
        livemig_error_set(err, "UFFDIO_WRITEPROTECT(%s) of %p+%zu failed: %s",
                          on ? "on" : "off", host, size, strerror(errno));
        return false;
    }
    return true;
}

/* One PAGEMAP_SCAN call; returns regions or -1 with errno. */
static long uffd_scan(int pagemap, struct pm_scan_arg *a)
{
    long n;
    do {
        n = ioctl(pagemap, PAGEMAP_SCAN, a);
    } while (n < 0 && errno == EINTR);
    return n;
}

bool lm_tracker_uffd_probe(livemig_error *why_not)
{
    long psize = sysconf(_SC_PAGESIZE);
    struct page_region vec[1];
    struct pm_scan_arg a;
    int uffd, pagemap;
    void *mem;
    bool ok = false;

    uffd = uffd_open(why_not);
    if (uffd < 0)
        return false;
    pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0) {
        livemig_error_set(why_not, "cannot open '/proc/self/pagemap': %s",
                          strerror(errno));
        close(uffd);
        return false;
    }
    mem = mmap(NULL, (size_t)psize * 2, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        livemig_error_set(why_not, "mmap of a probe page failed: %s",
                          strerror(errno));
        goto out;
    }
    if (!uffd_register(uffd, mem, (size_t)psize * 2, why_not) ||
        !uffd_protect(uffd, mem, (size_t)psize * 2, true, why_not))
        goto out_unmap;
    ((volatile char *)mem)[0] = 1;

    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
    a.start = (uintptr_t)mem;
    a.end = (uintptr_t)mem + (size_t)psize * 2;
    a.vec = (uintptr_t)vec;
    a.vec_len = 1;
    a.category_mask = PAGE_IS_WRITTEN;
    a.return_mask = PAGE_IS_WRITTEN;
    long n = uffd_scan(pagemap, &a);
    if (n < 0) {
        livemig_error_set(why_not, "PAGEMAP_SCAN ioctl failed: %s "
                          "(needs Linux >= 6.7)", strerror(errno));
        goto out_unregister;
    }
    if (n != 1 || vec[0].start != (uintptr_t)mem ||
        vec[0].end != (uintptr_t)mem + (size_t)psize) {
        livemig_error_set(why_not, "PAGEMAP_SCAN did not report the one page "
                          "written under UFFD_FEATURE_WP_ASYNC");
        goto out_unregister;
    }
    ok = true;
out_unregister:
    uffd_unregister(uffd, mem, (size_t)psize * 2);
out_unmap:
    munmap(mem, (size_t)psize * 2);
out:
    close(pagemap);
    close(uffd);
    return ok;
}

static bool uffd_init(lm_tracker *t, livemig_error *err)
{
    uffd_state *s = calloc(1, sizeof(*s));

    if (!s) {
        livemig_error_set(err, "out of memory for a dirty tracker");
        return false;
    }
    s->vec = calloc(UFFD_VEC_LEN, sizeof(*s->vec));
    if (!s->vec) {
        livemig_error_set(err, "out of memory for a dirty tracker");
        free(s);
        return false;
    }
    s->uffd = uffd_open(err);
    if (s->uffd < 0)
        goto fail;
    s->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (s->pagemap < 0) {
        livemig_error_set(err, "cannot open '/proc/self/pagemap': %s",
                          strerror(errno));
        close(s->uffd);
        goto fail;
    }
    t->priv = s;
    return true;
fail:
    free(s->vec);
    free(s);
    return false;
}

static void uffd_fini(lm_tracker *t)
{
    uffd_state *s = t->priv;
    close(s->pagemap);
    close(s->uffd);
    free(s->vec);
    free(s);
}

static bool uffd_start(lm_tracker *t, livemig_error *err)
{
    uffd_state *s = t->priv;

    if (!uffd_register(s->uffd, t->host, t->size, err))
        return false;
    s->registered = true;
    if (!uffd_protect(s->uffd, t->host, t->size, true, err)) {
        uffd_unregister(s->uffd, t->host, t->size);
        s->registered = false;
        return false;
    }
    return true;
}

static bool uffd_sync(lm_tracker *t, uint64_t *dirty, size_t *count,
                      livemig_error *err)
{
    uffd_state *s = t->priv;
    uintptr_t base = (uintptr_t)t->host;
    struct pm_scan_arg a;
    size_t added = 0;

    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
    a.start = base;
    a.end = base + t->size;
    a.vec = (uintptr_t)s->vec;
    a.vec_len = UFFD_VEC_LEN;
    a.category_mask = PAGE_IS_WRITTEN;
    a.return_mask = PAGE_IS_WRITTEN;

    for (;;) {
        long n = uffd_scan(s->pagemap, &a);
        if (n < 0) {
            livemig_error_set(err, "PAGEMAP_SCAN of %p+%zu failed: %s",
                              t->host, t->size, strerror(errno));
            *count = added;
            return false;
        }
        for (long i = 0; i < n; i++) {
            const struct page_region *r = &s->vec[i];
            size_t first = (size_t)(r->start - base) >> t->page_shift;
            size_t np = (size_t)(r->end - r->start) >> t->page_shift;
            added += lm_tracker_set_range(dirty, first, np);
        }
        if (a.walk_end >= a.end)
            break;
        /* The vector filled up: continue where the walk stopped (a.walk_end
         * is the first address not walked, so nothing is skipped or
         * re-protected unreported). */
        a.start = a.walk_end;
    }
    *count = added;
    return true;
}

static void uffd_stop(lm_tracker *t)
{
    uffd_state *s = t->priv;

    if (!s->registered)
        return;
    /* Unregistering drops the protection on current kernels; unprotect
     * first anyway so no stale uffd-wp bit can outlive the tracker. */
    (void)uffd_protect(s->uffd, t->host, t->size, false, NULL);
    uffd_unregister(s->uffd, t->host, t->size);
    s->registered = false;
}

const lm_tracker_ops lm_tracker_uffd_ops = {
    .kind = LIVEMIG_TRACKER_UFFD_WP_ASYNC,
    .init = uffd_init,
    .fini = uffd_fini,
    .start = uffd_start,
    .sync = uffd_sync,
    .stop = uffd_stop,
};
