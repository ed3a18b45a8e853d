/* uffd-missing.c - see uffd-missing.h. */
#include "ram/uffd-missing.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ram/uffd-compat.h"

#define MAX_RANGES 64

struct lm_uffd_missing {
    int fd;
    size_t nranges;
    struct { uint64_t start, len; } ranges[MAX_RANGES];
};

static int open_uffd(int flags)
{
    return (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | flags);
}

lm_uffd_missing *lm_uffd_missing_open(livemig_error *err)
{
    /* Without UFFD_USER_MODE_ONLY first: a fault the kernel takes on the
     * guest's behalf (a read() into guest RAM) must wait for its page too,
     * not fail.  Unprivileged users only get the user-mode kind. */
    int fd = open_uffd(0);
    if (fd < 0 && (errno == EPERM || errno == EACCES))
        fd = open_uffd(UFFD_USER_MODE_ONLY);
    if (fd < 0) {
        livemig_error_set(err, "cannot open a userfaultfd for postcopy: %s; "
                          "postcopy needs userfaultfd (root, or "
                          "vm.unprivileged_userfaultfd=1)", strerror(errno));
        return NULL;
    }
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        livemig_error_set(err, "UFFDIO_API failed: %s; this kernel's "
                          "userfaultfd cannot serve postcopy",
                          strerror(errno));
        close(fd);
        return NULL;
    }
    lm_uffd_missing *u = calloc(1, sizeof(*u));
    if (!u) {
        close(fd);
        livemig_error_set(err, "out of memory");
        return NULL;
    }
    u->fd = fd;
    return u;
}

void lm_uffd_missing_close(lm_uffd_missing *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->nranges; i++) {
        struct uffdio_range r = { u->ranges[i].start, u->ranges[i].len };
        (void)ioctl(u->fd, UFFDIO_UNREGISTER, &r);
    }
    close(u->fd);
    free(u);
}

bool lm_uffd_missing_register(lm_uffd_missing *u, void *host, size_t size,
                              livemig_error *err)
{
    if (u->nranges == MAX_RANGES) {
        livemig_error_set(err, "more than %d RAM blocks for postcopy",
                          MAX_RANGES);
        return false;
    }
    struct uffdio_register reg = {
        .range = { (uint64_t)(uintptr_t)host, size },
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(u->fd, UFFDIO_REGISTER, &reg) < 0) {
        livemig_error_set(err, "UFFDIO_REGISTER (missing) of %p+%zu failed: "
                          "%s; is the RAM registered for dirty tracking "
                          "too?", host, size, strerror(errno));
        return false;
    }
    if (!(reg.ioctls & (1ull << _UFFDIO_COPY)) ||
        !(reg.ioctls & (1ull << _UFFDIO_ZEROPAGE))) {
        struct uffdio_range r = reg.range;
        (void)ioctl(u->fd, UFFDIO_UNREGISTER, &r);
        livemig_error_set(err, "the guest RAM at %p cannot take pages "
                          "through UFFDIO_COPY; postcopy needs anonymous "
                          "private memory", host);
        return false;
    }
    u->ranges[u->nranges].start = reg.range.start;
    u->ranges[u->nranges++].len = size;
    return true;
}

int lm_uffd_missing_read(lm_uffd_missing *u, int timeout_ms, uint64_t *addr,
                         livemig_error *err)
{
    struct pollfd pf = { .fd = u->fd, .events = POLLIN };
    int rc = poll(&pf, 1, timeout_ms);
    if (rc == 0 || (rc < 0 && errno == EINTR))
        return 0;
    if (rc < 0) {
        livemig_error_set(err, "poll on the userfaultfd failed: %s",
                          strerror(errno));
        return -1;
    }
    for (;;) {
        struct uffd_msg msg;
        ssize_t n = read(u->fd, &msg, sizeof(msg));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;   /* another reader, or the fault resolved itself */
        if (n != (ssize_t)sizeof(msg)) {
            livemig_error_set(err, "reading the userfaultfd failed: %s",
                              n < 0 ? strerror(errno) : "short read");
            return -1;
        }
        if (msg.event != UFFD_EVENT_PAGEFAULT)
            continue;   /* none other was asked for */
        *addr = msg.arg.pagefault.address;
        return 1;
    }
}

/* One ioctl over a run; on EEXIST (a page of it is present) fall back to
 * page by page so the others still land. */
static long place_run(lm_uffd_missing *u, uint64_t dst, const void *src,
                      size_t npages, size_t ps, livemig_error *err)
{
    for (;;) {
        int rc;
        long done;
        if (src) {
            struct uffdio_copy c = { .dst = dst, .src = (uint64_t)(uintptr_t)src,
                                     .len = npages * ps };
            rc = ioctl(u->fd, UFFDIO_COPY, &c);
            done = c.copy > 0 ? c.copy : 0;
        } else {
            struct uffdio_zeropage z = { .range = { dst, npages * ps } };
            rc = ioctl(u->fd, UFFDIO_ZEROPAGE, &z);
            done = z.zeropage > 0 ? z.zeropage : 0;
        }
        if (rc == 0)
            return (long)npages;
        if (errno == EAGAIN && done > 0 && (size_t)done < npages * ps) {
            /* Partial: go on with the rest. */
            long more = place_run(u, dst + (uint64_t)done,
                                  src ? (const uint8_t *)src + done : NULL,
                                  npages - (size_t)done / ps, ps, err);
            return more < 0 ? -1 : more + done / (long)ps;
        }
        if (errno == EAGAIN)
            continue;
        if (errno == EEXIST) {
            if (npages == 1)
                return 0;
            long placed = 0;
            for (size_t i = 0; i < npages; i++) {
                long one = place_run(u, dst + i * ps,
                                     src ? (const uint8_t *)src + i * ps : NULL,
                                     1, ps, err);
                if (one < 0)
                    return -1;
                placed += one;
            }
            return placed;
        }
        livemig_error_set(err, "placing %zu pages at 0x%llx failed: %s",
                          npages, (unsigned long long)dst, strerror(errno));
        return -1;
    }
}

long lm_uffd_missing_place(lm_uffd_missing *u, void *dst, const void *src,
                           size_t npages, size_t page_size,
                           livemig_error *err)
{
    return place_run(u, (uint64_t)(uintptr_t)dst, src, npages, page_size,
                     err);
}
