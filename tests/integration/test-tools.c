/* test-tools.c - xbzrle and multifd through QMP on real livemigd
 * processes: the destination verifies, and query-migrate shows what the
 * tool did. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "itest.h"

/* fill=zero rewrites change a few bytes of a page: xbzrle's case. */
#define XSPEC "pattern,size=64M,threads=1,dirty-rate=100M,fill=zero"
/* multifd: a guest that keeps dirtying, but slowly enough that even a
 * loaded machine compressing with zlib under ASan (a few MB/s) sends more
 * than it dirties, so the held passes shrink instead of each resending
 * the whole guest. */
#define MSPEC "pattern,size=64M,threads=1,dirty-rate=2M,fill=text"
/* Bounds of the multifd waits: generous, as a loaded machine needs them;
 * a fast one is done in a second or two. */
#define MULTIFD_WAIT_MS 120000

static void test_xbzrle(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(XSPEC, NULL, NULL);
    lmh_daemon *dst = it_start(XSPEC, uri, NULL);
    it_set_cap(src, "xbzrle", true);
    it_set_params(src, "{\"switchover-hold\": true, "
                       "\"xbzrle-cache-size\": 134217728}");
    it_migrate(src, uri);
    it_wait_qm_above(src, "ram.dirty-sync-count", 10, 30000);
    /* Live: another size applies at the next pass (still larger than
     * the guest: a direct-mapped cache smaller than the pages a guest
     * sweeps through thrashes, and the test would show nothing). */
    it_set_params(src, "{\"xbzrle-cache-size\": 100663296}");
    it_wait_qm_above(src, "xbzrle-cache.pages", 1000, 30000);
    long long size = it_qm_int(src, "xbzrle-cache.cache-size", -1);
    long long t0 = it_now_ms();
    while (size != 100663296 && it_now_ms() - t0 < 10000) {
        it_sleep_ms(20);
        size = it_qm_int(src, "xbzrle-cache.cache-size", -1);
    }
    if (size != 100663296)
        it_fail("xbzrle-cache.cache-size is %lld, not the 96 MiB set", size);
    long long pages = it_qm_int(src, "xbzrle-cache.pages", 0);
    long long bytes = it_qm_int(src, "xbzrle-cache.bytes", 0);
    if (bytes >= pages * 512)
        it_fail("xbzrle sent %lld bytes for %lld pages: no saving", bytes,
                pages);
    it_set_params(src, "{\"switchover-hold\": false}");
    it_wait_status(src, "completed", 30000);
    it_check_completed(src, dst, 64 * IT_MiB, true);
}

static void multifd(const char *compression)
{
    char uri[64], params[160];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(MSPEC, NULL, NULL);
    lmh_daemon *dst = it_start(MSPEC, uri, NULL);
    it_set_cap(src, "multifd", true);
    snprintf(params, sizeof(params), "{\"multifd-channels\": 3, "
             "\"multifd-compression\": \"%s\", \"switchover-hold\": true}",
             compression);
    it_set_params(src, params);
    it_migrate(src, uri);
    it_wait_qm_above(src, "ram.dirty-sync-count", 5, MULTIFD_WAIT_MS);
    /* Setup-only while it runs: refused, naming the tunable. */
    lmh_err(src->qmp, "migrate-set-parameters", "{\"multifd-channels\": 4}",
            "GenericError", "multifd-channels");
    /* This test is about the channels and their compression, not the
     * downtime: with the largest limit, the next pass that ends switches
     * over however slowly this machine compresses (with the default
     * 300 ms, a loaded machine under ASan never converged). */
    it_set_params(src, "{\"downtime-limit\": 2000000, "
                       "\"switchover-hold\": false}");
    it_wait_status(src, "completed", MULTIFD_WAIT_MS);
    json_object *q = it_qm(src);
    json_object *chans = lmh_get(q, "multifd.channels");
    if (!chans || json_object_array_length(chans) != 3)
        it_fail("query-migrate does not show 3 multifd channels");
    for (size_t i = 0; i < 3; i++) {
        json_object *c = json_object_array_get_idx(chans, i);
        if (lmh_get_int(c, "bytes") <= 0)
            it_fail("multifd channel %zu sent nothing", i);
    }
    double ratio = json_object_get_double(lmh_get(q, "multifd.compression-ratio"));
    if (strcmp(compression, "none") != 0 && ratio < 1.5)
        it_fail("%s on fill=text: compression ratio %.2f", compression, ratio);
    json_object_put(q);
    /* Compressed: fewer bytes than the guest has, so check by hand. */
    it_wait_status(dst, "completed", MULTIFD_WAIT_MS);
    it_verify_ok(dst, "destination");
    it_wait_guest_writes(dst, "destination", MULTIFD_WAIT_MS);
}

static void test_multifd_none(void **state) { (void)state; multifd("none"); }
static void test_multifd_zstd(void **state) { (void)state; multifd("zstd"); }
static void test_multifd_lz4(void **state) { (void)state; multifd("lz4"); }
static void test_multifd_zlib(void **state) { (void)state; multifd("zlib"); }

/* multifd needs a socket: a file URI is refused with the reason. */
static void test_multifd_file_refused(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(MSPEC, NULL, NULL);
    it_set_cap(src, "multifd", true);
    char path[400], args[480];
    lmh_path(src, "out.bin", path, sizeof(path));
    snprintf(args, sizeof(args), "{\"uri\": \"file:%s\"}", path);
    lmh_err(src->qmp, "migrate", args, "GenericError", "multifd");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_xbzrle, it_teardown),
        cmocka_unit_test_teardown(test_multifd_none, it_teardown),
        cmocka_unit_test_teardown(test_multifd_zstd, it_teardown),
        cmocka_unit_test_teardown(test_multifd_lz4, it_teardown),
        cmocka_unit_test_teardown(test_multifd_zlib, it_teardown),
        cmocka_unit_test_teardown(test_multifd_file_refused, it_teardown),
    };
    return cmocka_run_group_tests_name("integration-tools", tests, NULL,
                                       NULL);
}
