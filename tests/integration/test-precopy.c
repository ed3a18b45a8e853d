/*
 * test-precopy.c - issue 3, the happy paths: a running, dirtying pattern
 * guest migrated between two real livemigd processes over tcp, unix,
 * exec, file (save, then --incoming file:) and --incoming defer +
 * migrate-incoming.  After each: source completed and stopped in
 * postmigrate; destination completed, running, writing, guest-verify ok;
 * downtime within downtime-limit; ram.total is the guest size; a downtime
 * breakdown.  Over tcp also the events: MIGRATION setup, active, device,
 * completed in that order and MIGRATION_PASS 1, 2, ... (capability
 * events), STOP on the source, RESUME on the destination.  Then progress:
 * query-migrate shows bytes moving during a long first pass, and a
 * migration on a slow (8 MiB/s) link keeps moving and completes.
 */
#include "itest.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define SPEC "pattern,size=64M,threads=1,dirty-rate=50M,fill=random"
#define SIZE (64 * IT_MiB)

static const char *ev_name(json_object *ev)
{
    const char *s = lmh_get_str(ev, "event");
    return s ? s : "";
}

static void test_tcp_with_events(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_set_cap(src, "events", true);
    it_wait_guest_writes(src, "source", 30000);

    it_migrate(src, uri);
    it_check_completed(src, dst, SIZE, true);

    /* Source: MIGRATION statuses in order, passes counted from 1, STOP. */
    json_object *evs = it_drain_events(src->qmp, 300);
    const char *want[] = { "setup", "active", "device", "completed" };
    size_t nwant = 0, npass = 0, nstop = 0;
    long long last_pass = 0;
    char seen[512] = "";
    for (size_t i = 0; i < json_object_array_length(evs); i++) {
        json_object *ev = json_object_array_get_idx(evs, i);
        const char *name = ev_name(ev);
        if (strlen(seen) < sizeof(seen) - 40) {
            strcat(seen, name);
            const char *st = lmh_get_str(ev, "data.status");
            if (st) {
                strcat(seen, ":");
                strcat(seen, st);
            }
            strcat(seen, " ");
        }
        if (strcmp(name, "MIGRATION") == 0) {
            const char *st = lmh_get_str(ev, "data.status");
            if (nwant >= 4 || !st || strcmp(st, want[nwant]) != 0)
                it_fail("MIGRATION events out of order: %s", seen);
            nwant++;
        } else if (strcmp(name, "MIGRATION_PASS") == 0) {
            long long pass = lmh_get_int(ev, "data.pass");
            if (pass != last_pass + 1)
                it_fail("MIGRATION_PASS %lld after %lld: %s", pass,
                        last_pass, seen);
            last_pass = pass;
            npass++;
            /* as QEMU: every pass, the final stop-and-copy (device)
             * included */
            if (nwant != 2 && nwant != 3)
                it_fail("MIGRATION_PASS outside status active/device: %s",
                        seen);
        } else if (strcmp(name, "STOP") == 0) {
            nstop++;
            if (nwant != 2)
                it_fail("STOP on the source not between active and "
                        "device: %s", seen);
        }
    }
    if (nwant != 4)
        it_fail("expected MIGRATION setup, active, device, completed; got "
                "%s", seen);
    if (npass < 1)
        it_fail("no MIGRATION_PASS event with capability events: %s", seen);
    if (nstop != 1)
        it_fail("expected one STOP on the source, got %zu: %s", nstop, seen);
    long long syncs = it_qm_int(src, "ram.dirty-sync-count", -1);
    if (syncs != last_pass)
        it_fail("dirty-sync-count %lld but the last MIGRATION_PASS was "
                "%lld", syncs, last_pass);
    json_object_put(evs);

    /* Destination: RESUME (without any capability). */
    evs = it_drain_events(dst->qmp, 300);
    size_t nresume = 0;
    for (size_t i = 0; i < json_object_array_length(evs); i++)
        if (strcmp(ev_name(json_object_array_get_idx(evs, i)), "RESUME") ==
            0)
            nresume++;
    json_object_put(evs);
    if (nresume != 1)
        it_fail("expected one RESUME on the destination, got %zu", nresume);

    /* The guest felt the migration: the destination reports where it
     * resumed from and the gap across the migration. */
    json_object *g = lmh_ok(dst->qmp, "query-guest", NULL);
    if (!lmh_get(g, "resumed-from"))
        it_fail("destination query-guest has no resumed-from: %s",
                json_object_to_json_string(g));
    json_object_put(g);
}

static void test_unix(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", src->dir);
    char uri[320];
    snprintf(uri, sizeof(uri), "unix:%s/mig.sock", dir);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_migrate(src, uri);
    it_check_completed(src, dst, SIZE, true);
}

static void test_exec(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    char file[300], out[400], in[400];
    lmh_path(src, "stream.bin", file, sizeof(file));
    snprintf(out, sizeof(out), "exec:cat > %s", file);
    snprintf(in, sizeof(in), "exec:cat %s", file);
    it_migrate(src, out);
    it_wait_status(src, "completed", 30000);
    struct stat sb;
    assert_int_equal(stat(file, &sb), 0);
    if (sb.st_size < SIZE)
        it_fail("exec:cat wrote %lld bytes for a %lld-byte guest",
                (long long)sb.st_size, (long long)SIZE);
    lmh_daemon *dst = it_start(SPEC, in, NULL);
    it_check_completed(src, dst, SIZE, true);
}

static void test_file(void **state)
{
    (void)state;
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    char file[300], uri[320];
    lmh_path(src, "saved.bin", file, sizeof(file));
    snprintf(uri, sizeof(uri), "file:%s", file);
    it_migrate(src, uri);
    it_wait_status(src, "completed", 30000);
    lmh_daemon *dst = it_start(SPEC, uri, NULL);
    it_check_completed(src, dst, SIZE, true);
}

static void test_defer(void **state)
{
    (void)state;
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(SPEC, NULL, NULL);
    lmh_daemon *dst = it_start(SPEC, "defer", NULL);
    char st[64];
    if (it_running(dst, st, sizeof(st)))
        it_fail("a --incoming defer guest runs before any migration");
    assert_string_equal(st, "inmigrate");
    assert_string_equal(it_status(dst), "none");
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
    it_migrate(src, uri);
    it_check_completed(src, dst, SIZE, true);
}

/*
 * Progress is visible while a pass runs: with max-bandwidth 32 MiB/s the
 * first pass of an idle 128M guest takes ~4 s.  A user polling
 * query-migrate (or livemig-ctl's progress bar, which shows
 * (total - remaining) / total) must see bytes move during it: after 1.5 s
 * ram.remaining is neither 0 (that reads as "100 % done") nor the whole
 * guest, ram.transferred is above 0, and the destination reports bytes
 * received.
 */
static void test_progress_during_first_pass(void **state)
{
    (void)state;
    const char *spec = "pattern,size=128M,threads=1,dirty-rate=0,"
                       "fill=random";
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(spec, NULL, NULL);
    lmh_daemon *dst = it_start(spec, uri, NULL);
    it_set_params(src, "{\"max-bandwidth\": 33554432}");
    it_migrate(src, uri);
    it_sleep_ms(1500);   /* a measurement point inside pass 1, not a sync */
    json_object *r = it_qm(src);
    char shown[1024];
    snprintf(shown, sizeof(shown), "%s",
             json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
    long long syncs = lmh_get_int(r, "ram.dirty-sync-count");
    long long sent = lmh_get_int(r, "ram.transferred");
    long long left = lmh_get_int(r, "ram.remaining");
    const char *st = lmh_get_str(r, "status");
    bool active = st && strcmp(st, "active") == 0;
    json_object_put(r);
    long long got = it_qm_int(dst, "ram.transferred", -1);
    if (!active || syncs != 1)   /* the pass being sent, as QEMU */
        it_fail("expected to be inside pass 1 after 1.5 s at 32 MiB/s: %s",
                shown);
    if (sent <= 0 || left <= 0 || left >= 128 * IT_MiB)
        it_fail("1.5 s into a 4 s first pass, query-migrate shows "
                "ram.transferred %lld and ram.remaining %lld (of %lld): no "
                "progress visible while a pass runs: %s", sent, left,
                128 * IT_MiB, shown);
    if (got <= 0)
        it_fail("1.5 s into the first pass the destination shows "
                "ram.transferred %lld", got);
    it_set_params(src, "{\"max-bandwidth\": 0}");
    it_check_completed(src, dst, 128 * IT_MiB, false);
}

/*
 * A migration on a slow link (max-bandwidth 8 MiB/s) of a 32M guest that
 * dirties 6 MB/s: passes of 4, 3, 2.3, ... s, whose dirty ranges wrap
 * around the end of guest RAM, so the stream's batches come in all sizes.
 * It must keep moving - no pass may take more than 8 s (the whole guest
 * needs 4 s at 8 MiB/s) - and complete (about 17 s of passes in all).
 */
static void test_slow_link_keeps_moving(void **state)
{
    (void)state;
    const char *spec = "pattern,size=32M,threads=1,dirty-rate=6M,"
                       "fill=random";
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start(spec, NULL, NULL);
    lmh_daemon *dst = it_start(spec, uri, NULL);
    it_set_params(src, "{\"max-bandwidth\": 8388608}");
    it_migrate(src, uri);
    long long last = 0, t_last = it_now_ms(), t0 = t_last;
    for (;;) {
        json_object *r = it_qm(src);
        char st[64];
        snprintf(st, sizeof(st), "%s", lmh_get_str(r, "status"));
        long long syncs = lmh_get_int(r, "ram.dirty-sync-count");
        json_object_put(r);
        long long now = it_now_ms();
        if (strcmp(st, "completed") == 0)
            break;
        if (it_is_terminal(st))
            it_fail("slow-link migration ended '%s'", st);
        if (syncs != last) {
            last = syncs;
            t_last = now;
        }
        if (now - t_last > 8000)
            it_fail("at max-bandwidth 8 MiB/s pass %lld has run for %lld "
                    "ms without ending (a whole pass of the 32M guest takes "
                    "4 s): the migration stalls", last + 1, now - t_last);
        if (now - t0 > 40000)
            it_fail("slow-link migration not completed after 40 s");
        it_sleep_ms(50);
    }
    fprintf(stderr, "slow link: completed in %lld ms after %lld passes\n",
            it_now_ms() - t0, last);
    it_check_completed(src, dst, 32 * IT_MiB, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tcp_with_events, it_teardown),
        cmocka_unit_test_teardown(test_unix, it_teardown),
        cmocka_unit_test_teardown(test_exec, it_teardown),
        cmocka_unit_test_teardown(test_file, it_teardown),
        cmocka_unit_test_teardown(test_defer, it_teardown),
        cmocka_unit_test_teardown(test_progress_during_first_pass,
                                  it_teardown),
        cmocka_unit_test_teardown(test_slow_link_keeps_moving, it_teardown),
    };
    return cmocka_run_group_tests_name("integration-precopy", tests, NULL,
                                       NULL);
}
