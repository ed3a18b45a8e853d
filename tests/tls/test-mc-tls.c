/*
 * test-mc-tls.c - micro-checkpointing over TLS on real daemons: the
 * checkpoint stream and its acknowledgements (the MC link: the main
 * connection and its return path) go through TLS, and a failover still
 * resumes a verified guest whose every output is backed.  x509 with
 * mc-failover on command; PSK with a SIGKILLed primary and the heartbeat
 * timeout.  The backup requires TLS, so a plain link would be refused.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mctest.h"
#include "tlscerts.h"

static char root[128];
static bool have_certs;

static int group_setup(void **state)
{
    (void)state;
    return tlsc_group_setup(root, sizeof(root), "mctls", &have_certs);
}

static int group_teardown(void **state)
{
    (void)state;
    return tlsc_group_teardown(root);
}

static void object_add(lmh_daemon *d, const char *json)
{
    json_object_put(lmh_ok_obj(d->qmp, "object-add", lmh_json("%s", json)));
}

static void secure(mct_pair *p, bool psk)
{
    char j[600];
    if (psk) {
        snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-psk\",\"id\":\"t\","
                 "\"dir\":\"%s/psk-server\",\"endpoint\":\"server\"}", root);
        object_add(p->bak, j);
        snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-psk\",\"id\":\"t\","
                 "\"dir\":\"%s/psk-client\",\"endpoint\":\"client\"}", root);
        object_add(p->pri, j);
    } else {
        snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-x509\",\"id\":\"t\","
                 "\"dir\":\"%s/server\",\"endpoint\":\"server\"}", root);
        object_add(p->bak, j);
        object_add(p->bak, "{\"qom-type\":\"authz-list\",\"id\":\"a\","
                   "\"rules\":[{\"match\":\"CN=source.example,O=Example\","
                   "\"policy\":\"allow\"}]}");
        mct_set_params(p->bak, "{\"tls-authz\":\"a\"}");
        snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-x509\",\"id\":\"t\","
                 "\"dir\":\"%s/client\",\"endpoint\":\"client\"}", root);
        object_add(p->pri, j);
    }
    mct_set_params(p->bak, "{\"tls-creds\":\"t\"}");
    mct_set_params(p->pri, "{\"tls-creds\":\"t\"}");
}

typedef struct ck_min {
    lmh_daemon *d;
    long long want;
} ck_min;

static bool has_checkpoints(void *opaque)
{
    ck_min *w = opaque;
    return mct_qm_int(w->d, "mc.checkpoints", 0) >= w->want;
}

static void took_over(mct_pair *p)
{
    mct_wait_status(p->bak, "completed", 10000);
    if (!mct_running(p->bak))
        mct_fail("the backup's guest does not run after the takeover");
    mct_verify_ok(p->bak, "backup");
    json_object *g = mct_guest(p->bak);
    long long gen = lmh_get_int(g, "resumed-from.generation");
    long long cur = lmh_get_int(g, "resumed-from.cursor");
    json_object_put(g);
    if (mct_outputs_backed(p->outputs, 0, gen, cur) == 0)
        mct_fail("the outputs file is empty after a protected run");
    mct_wait_writes(p->bak, "backup", 5000);
}

static void run(bool psk, bool kill_primary)
{
    if (!have_certs) {
        printf("skipped: certtool (gnutls-bin) is not installed\n");
        skip();
    }
    mct_conf c = { 64, "20M", 50, kill_primary ? 1000 : 0 };
    mct_pair *p = mct_pair_start(&c);
    /* The TLS parameters are setup-only: a backup must wait with
     * --incoming defer until they are set, as with QEMU. */
    mct_drop(p, &p->bak);
    p->bak = lmh_start("--guest", "pattern,size=64M,threads=1,dirty-rate=20M,"
                       "fill=random", "--incoming", "defer", NULL);
    secure(p, psk);
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(p->uri));
    json_object_put(lmh_ok_obj(p->bak->qmp, "migrate-incoming", a));
    mct_protect(p, 30000);
    ck_min w = { p->pri, 10 };
    if (!lmh_wait_for(has_checkpoints, &w, 30000, 20))
        mct_fail("fewer than 10 checkpoints acknowledged over TLS in 30 s");
    mct_wait_writes(p->pri, "primary", 5000);
    if (kill_primary) {
        mct_kill(p->pri);
    } else {
        /* Frozen first: a primary that loses its backup releases its
         * held outputs and runs on (by design), which is not what a
         * takeover test checks. */
        kill(p->pri->pid, SIGSTOP);
        json_object_put(lmh_ok(p->bak->qmp, "mc-failover", NULL));
    }
    json_object *ev = mct_wait_event(p->bak, "MC_FAILOVER", 15000);
    if (!ev)
        mct_fail("no MC_FAILOVER on the backup");
    printf("%s\n", json_object_to_json_string(ev));
    json_object_put(ev);
    took_over(p);
    if (!kill_primary)
        mct_kill(p->pri);
    mct_pair_finish(p);
}

static void x509_failover_on_command(void **s) { (void)s; run(false, false); }
static void psk_primary_killed(void **s) { (void)s; run(true, true); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(x509_failover_on_command, mct_teardown),
        cmocka_unit_test_teardown(psk_primary_killed, mct_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
