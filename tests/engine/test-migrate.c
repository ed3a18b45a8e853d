/* test-migrate.c - two engines in one process: a source whose writer
 * thread keeps dirtying RAM, migrated to a destination over each
 * transport; the destination's RAM and state must equal the source's at
 * the moment it stopped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "harness.h"
#include "livemig/livemig.h"

#define SIZE (16u << 20)
#define PS 4096u

typedef struct toy {
    livemig *lm;
    livemig_ram *ram;
    uint8_t *mem;
    uint64_t counter;          /* the "CPU state": pages written */
    pthread_t thr;
    bool has_thread;
    atomic_bool quit, stop_req, parked;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool loaded;
} toy;

static void toy_stop(void *o)
{
    toy *t = o;
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->stop_req, true);
    while (t->has_thread && !atomic_load(&t->parked))
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

static void toy_cont(void *o)
{
    toy *t = o;
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->stop_req, false);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void toy_throttle(void *o, unsigned pct) { (void)o; (void)pct; }

static void *writer(void *o)
{
    toy *t = o;
    unsigned seed = 7;
    uint64_t *bm = livemig_ram_manual_bitmap(t->ram);
    while (!atomic_load(&t->quit)) {
        if (atomic_load(&t->stop_req)) {
            pthread_mutex_lock(&t->mu);
            atomic_store(&t->parked, true);
            pthread_cond_broadcast(&t->cv);
            while (atomic_load(&t->stop_req) && !atomic_load(&t->quit))
                pthread_cond_wait(&t->cv, &t->mu);
            atomic_store(&t->parked, false);
            pthread_mutex_unlock(&t->mu);
            continue;
        }
        size_t page = (size_t)rand_r(&seed) % (SIZE / PS);
        if (page % 3 == 0)
            page = page ? page - 1 : 1;  /* every third page stays zero */
        t->counter++;
        memcpy(t->mem + page * PS + (t->counter % 500) * 8, &t->counter, 8);
        livemig_dirty_mark(bm, page);
        if ((t->counter & 63) == 0)
            usleep(100);
    }
    return NULL;
}

static bool toy_save(void *o, livemig_buf *out, livemig_error *err)
{
    (void)err;
    return livemig_buf_put_u64(out, ((toy *)o)->counter);
}

static bool toy_load(void *o, uint32_t v, livemig_cursor *in,
                     livemig_error *err)
{
    toy *t = o;
    if (v != 1 || !livemig_cursor_get_u64(in, &t->counter) || in->len) {
        livemig_error_set(err, "bad toy section");
        return false;
    }
    t->loaded = true;
    return true;
}

static void toy_init(toy *t, bool incoming, size_t size)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    livemig_error err = { 0 };
    t->lm = livemig_new(&err);
    assert_non_null(t->lm);
    t->mem = livemig_ram_alloc(size, &err);
    assert_non_null(t->mem);
    t->ram = livemig_ram_add(t->lm, "toy", t->mem, size,
                             LIVEMIG_TRACKER_MANUAL, &err);
    assert_non_null(t->ram);
    static const livemig_section_ops sops = { toy_save, toy_load };
    assert_true(livemig_section_add(t->lm, "toy", 1, &sops, t, &err));
    static const livemig_guest_ops gops = { toy_stop, toy_cont, toy_throttle };
    livemig_set_guest_ops(t->lm, &gops, t,
                          incoming ? LIVEMIG_RUN_INMIGRATE
                                   : LIVEMIG_RUN_RUNNING);
    if (!incoming) {
        for (size_t i = 0; i < size; i += PS)
            if ((i / PS) % 3)   /* every third page stays zero */
                memset(t->mem + i, 1 + (int)(i / PS % 251), PS);
        t->has_thread = true;
        pthread_create(&t->thr, NULL, writer, t);
    }
}

static void toy_fini(toy *t, size_t size)
{
    /* The writer first: it marks a bitmap the engine owns. */
    atomic_store(&t->quit, true);
    toy_cont(t);
    if (t->has_thread)
        pthread_join(t->thr, NULL);
    livemig_free(t->lm);
    livemig_ram_free(t->mem, size);
}

static bool wait_status(livemig *lm, livemig_status want, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (livemig_get_status(lm) == want)
            return true;
        usleep(10000);
    }
    return livemig_get_status(lm) == want;
}

/* Wait until the source finished @passes passes (a held migration keeps
 * making them); bounded, polled. */
static bool wait_passes(livemig *lm, uint64_t passes, int ms)
{
    for (int i = 0; i <= ms / 10; i++) {
        json_object *q = livemig_query_migrate(lm);
        json_object *ram = json_object_object_get(q, "ram");
        uint64_t n = json_object_get_uint64(
            json_object_object_get(ram, "dirty-sync-count"));
        json_object_put(q);
        if (n >= passes)
            return true;
        usleep(10000);
    }
    return false;
}

static void migrate_over(const char *uri)
{
    toy src, dst;
    toy_init(&src, false, SIZE);
    toy_init(&dst, true, SIZE);
    livemig_error err = { 0 };
    /* Listening when livemig_incoming returns: no wait needed. */
    if (!livemig_incoming(dst.lm, uri, &err))
        fail_msg("migrate-incoming %s: %s", uri, err.desc);
    assert_true(livemig_migrate(src.lm, uri, &err));
    assert_true(wait_status(src.lm, LIVEMIG_STATUS_COMPLETED, 30000));
    assert_true(wait_status(dst.lm, LIVEMIG_STATUS_COMPLETED, 30000));
    /* Source stays stopped after completion: its memory is final. */
    assert_int_equal(livemig_vm_runstate(src.lm), LIVEMIG_RUN_POSTMIGRATE);
    assert_int_equal(livemig_vm_runstate(dst.lm), LIVEMIG_RUN_RUNNING);
    assert_true(dst.loaded);
    assert_int_equal(dst.counter, src.counter);
    assert_memory_equal(dst.mem, src.mem, SIZE);

    json_object *q = livemig_query_migrate(src.lm);
    json_object *ram = json_object_object_get(q, "ram");
    assert_true(json_object_get_uint64(json_object_object_get(ram, "total")) == SIZE);
    assert_true(json_object_get_uint64(json_object_object_get(ram, "duplicate")) > 0);
    assert_non_null(json_object_object_get(q, "downtime"));
    json_object_put(q);
    toy_fini(&src, SIZE);
    toy_fini(&dst, SIZE);
}

static void test_migrate_unix(void **state)
{
    (void)state;
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:/tmp/lm-test-%d.sock", getpid());
    migrate_over(uri);
}

static void test_migrate_tcp(void **state)
{
    (void)state;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", lmh_port());
    migrate_over(uri);
}

/* A destination with another RAM size refuses; the source fails with the
 * destination's reason and its guest keeps running. */
static void test_size_mismatch(void **state)
{
    (void)state;
    toy src, dst;
    toy_init(&src, false, SIZE);
    toy_init(&dst, true, SIZE / 2);
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:/tmp/lm-test-mm-%d.sock", getpid());
    livemig_error err = { 0 };
    assert_true(livemig_incoming(dst.lm, uri, &err));
    assert_true(livemig_migrate(src.lm, uri, &err));
    assert_true(wait_status(src.lm, LIVEMIG_STATUS_FAILED, 30000));
    assert_true(wait_status(dst.lm, LIVEMIG_STATUS_FAILED, 30000));
    json_object *q = livemig_query_migrate(src.lm);
    const char *desc = json_object_get_string(json_object_object_get(q, "error-desc"));
    assert_non_null(desc);
    assert_non_null(strstr(desc, "bytes on the source"));
    json_object_put(q);
    assert_int_equal(livemig_vm_runstate(src.lm), LIVEMIG_RUN_RUNNING);
    assert_int_equal(livemig_vm_runstate(dst.lm), LIVEMIG_RUN_INMIGRATE);
    toy_fini(&src, SIZE);
    toy_fini(&dst, SIZE / 2);
}

static void set_params(livemig *lm, const char *json)
{
    livemig_error err = { 0 };
    json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    bool ok = lm_tunables_set_parameters(lm_engine_tunables(lm), o, &err);
    json_object_put(o);
    if (!ok)
        fail_msg("%s", err.desc);
}

static void set_cap(livemig *lm, const char *cap)
{
    char json[160];
    snprintf(json, sizeof(json), "{\"capabilities\": [{\"capability\": "
             "\"%s\", \"state\": true}]}", cap);
    livemig_error err = { 0 };
    json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    bool ok = lm_tunables_set_capabilities(lm_engine_tunables(lm), o, &err);
    json_object_put(o);
    if (!ok)
        fail_msg("%s", err.desc);
}

/* Cancel while held by switchover-hold: source keeps running, status
 * cancelled, and a second migration completes. */
static void test_cancel_then_retry(void **state)
{
    (void)state;
    toy src, dst;
    toy_init(&src, false, SIZE);
    toy_init(&dst, true, SIZE);
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:/tmp/lm-test-c-%d.sock", getpid());
    livemig_error err = { 0 };
    set_params(src.lm, "{\"switchover-hold\": true}");
    assert_true(livemig_incoming(dst.lm, uri, &err));
    assert_true(livemig_migrate(src.lm, uri, &err));
    /* Held: it reaches active and stays there until the cancel. */
    assert_true(wait_passes(src.lm, 2, 30000));
    assert_int_equal(livemig_get_status(src.lm), LIVEMIG_STATUS_ACTIVE);
    assert_true(livemig_cancel(src.lm, &err));
    assert_true(wait_status(src.lm, LIVEMIG_STATUS_CANCELLED, 30000));
    assert_int_equal(livemig_vm_runstate(src.lm), LIVEMIG_RUN_RUNNING);
    assert_true(wait_status(dst.lm, LIVEMIG_STATUS_FAILED, 30000));

    set_params(src.lm, "{\"switchover-hold\": false}");
    assert_true(livemig_incoming(dst.lm, uri, &err));
    assert_true(livemig_migrate(src.lm, uri, &err));
    assert_true(wait_status(src.lm, LIVEMIG_STATUS_COMPLETED, 30000));
    assert_true(wait_status(dst.lm, LIVEMIG_STATUS_COMPLETED, 30000));
    assert_memory_equal(dst.mem, src.mem, SIZE);
    toy_fini(&src, SIZE);
    toy_fini(&dst, SIZE);
}

/* xbzrle: several passes re-send pages the writer changed by 8 bytes;
 * they go out as small deltas and the destination ends up identical. */
static void test_xbzrle(void **state)
{
    (void)state;
    toy src, dst;
    toy_init(&src, false, SIZE);
    toy_init(&dst, true, SIZE);
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:/tmp/lm-test-x-%d.sock", getpid());
    livemig_error err = { 0 };
    set_cap(src.lm, "xbzrle");
    set_params(src.lm, "{\"switchover-hold\": true, \"xbzrle-cache-size\": 33554432}");
    assert_true(livemig_incoming(dst.lm, uri, &err));
    assert_true(livemig_migrate(src.lm, uri, &err));
    /* Several passes re-send changed pages as deltas. */
    assert_true(wait_passes(src.lm, 20, 30000));
    set_params(src.lm, "{\"switchover-hold\": false}");
    if (!wait_status(src.lm, LIVEMIG_STATUS_COMPLETED, 30000)) {
        json_object *q = livemig_query_migrate(src.lm);
        fail_msg("not completed: %s", json_object_to_json_string(q));
    }
    assert_true(wait_status(dst.lm, LIVEMIG_STATUS_COMPLETED, 30000));
    assert_int_equal(dst.counter, src.counter);
    assert_memory_equal(dst.mem, src.mem, SIZE);
    json_object *q = livemig_query_migrate(src.lm);
    json_object *x = json_object_object_get(q, "xbzrle-cache");
    assert_non_null(x);
    uint64_t pages = json_object_get_uint64(json_object_object_get(x, "pages"));
    uint64_t bytes = json_object_get_uint64(json_object_object_get(x, "bytes"));
    assert_true(pages > 100);
    assert_true(bytes < pages * 512);   /* 8-byte changes: tiny deltas */
    json_object_put(q);
    toy_fini(&src, SIZE);
    toy_fini(&dst, SIZE);
}

/* multifd: pages over 2 extra channels, raw and zstd-compressed, with
 * the guest writing throughout: the destination ends up identical. */
static void migrate_multifd(const char *compression)
{
    toy src, dst;
    toy_init(&src, false, SIZE);
    toy_init(&dst, true, SIZE);
    char uri[128], params[160];
    snprintf(uri, sizeof(uri), "unix:/tmp/lm-test-mf-%d.sock", getpid());
    livemig_error err = { 0 };
    set_cap(src.lm, "multifd");
    snprintf(params, sizeof(params), "{\"multifd-channels\": 2, "
             "\"multifd-compression\": \"%s\", \"switchover-hold\": true}",
             compression);
    set_params(src.lm, params);
    assert_true(livemig_incoming(dst.lm, uri, &err));
    assert_true(livemig_migrate(src.lm, uri, &err));
    assert_true(wait_passes(src.lm, 3, 30000));   /* passes while held */
    set_params(src.lm, "{\"switchover-hold\": false}");
    if (!wait_status(src.lm, LIVEMIG_STATUS_COMPLETED, 30000)) {
        json_object *q = livemig_query_migrate(src.lm);
        fail_msg("not completed: %s", json_object_to_json_string(q));
    }
    assert_true(wait_status(dst.lm, LIVEMIG_STATUS_COMPLETED, 30000));
    assert_int_equal(dst.counter, src.counter);
    assert_memory_equal(dst.mem, src.mem, SIZE);
    json_object *q = livemig_query_migrate(src.lm);
    json_object *chans = json_object_object_get(
        json_object_object_get(q, "multifd"), "channels");
    assert_int_equal(json_object_array_length(chans), 2);
    for (size_t i = 0; i < 2; i++) {
        json_object *c = json_object_array_get_idx(chans, i);
        assert_true(json_object_get_uint64(json_object_object_get(c, "bytes")) > 0);
    }
    json_object_put(q);
    toy_fini(&src, SIZE);
    toy_fini(&dst, SIZE);
}

static void test_multifd_none(void **state)
{
    (void)state;
    migrate_multifd("none");
}

static void test_multifd_zstd(void **state)
{
    (void)state;
    migrate_multifd("zstd");
}

/* Save to a file, restore from it. */
static void test_file_save_restore(void **state)
{
    (void)state;
    toy src, dst;
    toy_init(&src, false, SIZE);
    toy_init(&dst, true, SIZE);
    char uri[128];
    snprintf(uri, sizeof(uri), "file:/tmp/lm-test-%d.bin", getpid());
    livemig_error err = { 0 };
    assert_true(livemig_migrate(src.lm, uri, &err));
    assert_true(wait_status(src.lm, LIVEMIG_STATUS_COMPLETED, 30000));
    assert_true(livemig_incoming(dst.lm, uri, &err));
    assert_true(wait_status(dst.lm, LIVEMIG_STATUS_COMPLETED, 30000));
    assert_int_equal(dst.counter, src.counter);
    assert_memory_equal(dst.mem, src.mem, SIZE);
    unlink(uri + 5);
    toy_fini(&src, SIZE);
    toy_fini(&dst, SIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_unix),
        cmocka_unit_test(test_migrate_tcp),
        cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_cancel_then_retry),
        cmocka_unit_test(test_file_save_restore),
        cmocka_unit_test(test_xbzrle),
        cmocka_unit_test(test_multifd_none),
        cmocka_unit_test(test_multifd_zstd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
