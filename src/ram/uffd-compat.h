/*
 * uffd-compat.h - userfaultfd and PAGEMAP_SCAN definitions missing from
 * older userspace headers.
 *
 * The uffd-wp-async tracker needs Linux >= 6.7 (UFFD_FEATURE_WP_ASYNC and
 * the PAGEMAP_SCAN ioctl on /proc/PID/pagemap); Debian 12 ships 6.1-era
 * headers.  Everything here is the kernel's uapi ABI (include/uapi/linux/
 * userfaultfd.h and fs.h), each item guarded so a newer header wins.  Only
 * the one guard per group matters: the values are fixed ABI.
 *
 * The kernel decides at run time; see lm_tracker_available().
 */
#ifndef LIVEMIG_RAM_UFFD_COMPAT_H
#define LIVEMIG_RAM_UFFD_COMPAT_H

#include <linux/fs.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

/* ---- userfaultfd (include/uapi/linux/userfaultfd.h) -------------------- */

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1                     /* Linux 5.11 */
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)     /* Linux 6.4 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)           /* Linux 6.7 */
#endif

/* ---- PAGEMAP_SCAN (include/uapi/linux/fs.h, Linux 6.7) ----------------- */

#ifndef PAGEMAP_SCAN

/* Categories: masks in struct pm_scan_arg, reported in page_region. */
#define PAGE_IS_WPALLOWED  (1 << 0)
#define PAGE_IS_WRITTEN    (1 << 1)
#define PAGE_IS_FILE       (1 << 2)
#define PAGE_IS_PRESENT    (1 << 3)
#define PAGE_IS_SWAPPED    (1 << 4)
#define PAGE_IS_PFNZERO    (1 << 5)
#define PAGE_IS_HUGE       (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

/* One output region: [start, end) with the categories it has. */
struct page_region {
    __u64 start;
    __u64 end;
    __u64 categories;
};

/* Flags of struct pm_scan_arg. */
#define PM_SCAN_WP_MATCHING   (1 << 0)   /* write-protect the matched pages */
#define PM_SCAN_CHECK_WPASYNC (1 << 1)   /* fail (EPERM) on a page without
                                            async write protection */

struct pm_scan_arg {
    __u64 size;                 /* sizeof(struct pm_scan_arg) */
    __u64 flags;                /* PM_SCAN_* */
    __u64 start;                /* range to walk, page aligned */
    __u64 end;
    __u64 walk_end;             /* out: where the walk stopped */
    __u64 vec;                  /* struct page_region[vec_len] */
    __u64 vec_len;
    __u64 max_pages;            /* 0 = no limit */
    __u64 category_inverted;    /* categories that match when 0 */
    __u64 category_mask;        /* all of these must match */
    __u64 category_anyof_mask;  /* one of these must match (0 = any) */
    __u64 return_mask;          /* categories reported in page_region */
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)

#endif /* PAGEMAP_SCAN */

#endif /* LIVEMIG_RAM_UFFD_COMPAT_H */
