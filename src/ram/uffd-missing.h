/*
 * uffd-missing.h - userfaultfd in MISSING mode for postcopy: the
 * destination registers its guest RAM, drops the pages it does not have,
 * learns of every access to one of them (the faulting thread sleeps in the
 * kernel), and places each page atomically when it arrives (UFFDIO_COPY /
 * UFFDIO_ZEROPAGE), which wakes exactly the threads waiting for it.
 *
 * One lm_uffd_missing per migration; it may cover several ranges.  Reads
 * (lm_uffd_missing_read) belong to one thread, placement to another;
 * both are plain ioctls on the same fd, which the kernel allows.
 */
#ifndef LM_RAM_UFFD_MISSING_H
#define LM_RAM_UFFD_MISSING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "livemig/livemig.h"

typedef struct lm_uffd_missing lm_uffd_missing;

/* Open a userfaultfd for missing-page faults; NULL with @err saying why
 * (no userfaultfd, vm.unprivileged_userfaultfd). */
lm_uffd_missing *lm_uffd_missing_open(livemig_error *err);
void lm_uffd_missing_close(lm_uffd_missing *u);   /* unregisters all */

/* Register @host+@size (page-aligned) for missing faults. */
bool lm_uffd_missing_register(lm_uffd_missing *u, void *host, size_t size,
                              livemig_error *err);

/* Wait up to @timeout_ms for a fault: 1 with its address in *@addr, 0 on
 * timeout, -1 with @err on an error. */
int lm_uffd_missing_read(lm_uffd_missing *u, int timeout_ms, uint64_t *addr,
                         livemig_error *err);

/* Place @npages pages at @dst from @src (NULL: zero pages).  Pages that
 * are already present are left alone (a page may arrive twice: once
 * asked for, once in the background).  Returns the pages placed, or -1
 * with @err. */
long lm_uffd_missing_place(lm_uffd_missing *u, void *dst, const void *src,
                           size_t npages, size_t page_size,
                           livemig_error *err);

#endif
