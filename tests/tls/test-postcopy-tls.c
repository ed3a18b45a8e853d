/*
 * test-postcopy-tls.c - postcopy over TLS (x509), on loopback only:
 *
 *  - a pattern guest that dirties everything switches to postcopy and
 *    completes; the destination asked for pages over the TLS return path
 *    while the stream came over TLS, and the guest verifies there;
 *  - the same with postcopy-preempt (the preempt channel does its own
 *    handshake);
 *  - migrate-pause, migrate-recover and migrate {resume: true}: the
 *    recovery connection (and, with preempt, the new preempt channel)
 *    runs the TLS handshake like the first, and the guest verifies;
 *  - a plain connection into the recovery port of a TLS destination is
 *    refused, saying TLS is required, on both ends; the destination stays
 *    in postcopy-recover and the real source's TLS resume then works.
 *
 * A stream sent in plain into a TLS session (or the reverse) fails the
 * migration, so each case fails if a postcopy channel skips TLS.
 * Certificates come from certtool (tlscerts.c); skipped without it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"
#include "tlscerts.h"

#define SPEC "pattern,size=128M,threads=1,dirty-rate=max,fill=random"
#define SLOW_DST "pattern,size=128M,threads=1,dirty-rate=1M,fill=random"

static char root[128];
static bool have_certs;

static int group_setup(void **state)
{
    (void)state;
    return tlsc_group_setup(root, sizeof(root), "pctls", &have_certs);
}

static int group_teardown(void **state)
{
    (void)state;
    return tlsc_group_teardown(root);
}

#define NEED_CERTS() TLSC_NEED_CERTS(have_certs)

static void add_x509(lmh_daemon *d, const char *sub, const char *endpoint)
{
    json_object *a = lmh_json("{\"qom-type\":\"tls-creds-x509\",\"id\":"
                              "\"tls0\",\"dir\":\"%s/%s\",\"endpoint\":"
                              "\"%s\"}", root, sub, endpoint);
    json_object_put(lmh_ok_obj(d->qmp, "object-add", a));
    it_set_params(d, "{\"tls-creds\": \"tls0\"}");
}

typedef struct pair {
    lmh_daemon *src, *dst;
    char uri[64];
} pair;

static pair start_pair(const char *dst_spec, bool preempt)
{
    pair p;
    it_tcp_uri(lmh_port(), p.uri, sizeof(p.uri));
    p.src = it_start(SPEC, NULL, NULL);
    p.dst = it_start(dst_spec, "defer", NULL);
    add_x509(p.dst, "server", "server");
    add_x509(p.src, "client", "client");
    lmh_daemon *both[2] = { p.src, p.dst };
    for (int i = 0; i < 2; i++) {
        it_set_cap(both[i], "postcopy-ram", true);
        if (preempt)
            it_set_cap(both[i], "postcopy-preempt", true);
    }
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(p.uri));
    json_object_put(lmh_ok_obj(p.dst->qmp, "migrate-incoming", a));
    it_wait_guest_writes(p.src, "source", 5000);
    return p;
}

static void finish_and_verify(pair *p)
{
    it_set_params(p->src, "{\"max-postcopy-bandwidth\": 0}");
    it_wait_status(p->src, "completed", 120000);
    it_wait_status(p->dst, "completed", 60000);
    it_verify_ok(p->dst, "destination");
    it_wait_guest_writes(p->dst, "destination", 5000);
    char rs[64];
    if (it_running(p->src, rs, sizeof(rs)) || strcmp(rs, "postmigrate"))
        it_fail("source after postcopy: '%s', not stopped in postmigrate",
                rs);
}

static void postcopy_over_tls(bool preempt)
{
    pair p = start_pair(SPEC, preempt);
    /* Over loopback, uncapped, what is left at the switch can all be on
     * its way before the guest asks for a page: a cap keeps postcopy
     * running until pages came over the return path (and, with preempt,
     * its channel); finish_and_verify lifts it. */
    it_set_params(p.src, "{\"max-postcopy-bandwidth\": 67108864}");
    it_migrate(p.src, p.uri);
    json_object_put(lmh_ok(p.src->qmp, "migrate-start-postcopy", NULL));
    it_wait_status(p.dst, "postcopy-active", 60000);
    it_wait_qm_above(p.dst, preempt ? "ram.postcopy-preempt-pages"
                                    : "ram.postcopy-requests", 0, 30000);
    finish_and_verify(&p);
    long long req = it_qm_int(p.dst, "ram.postcopy-requests", 0);
    long long pre = it_qm_int(p.dst, "ram.postcopy-preempt-pages", 0);
    printf("postcopy over TLS%s: %lld pages asked for, %lld placed from "
           "the preempt channel\n", preempt ? " with preempt" : "", req,
           pre);
    if (req <= 0)
        it_fail("the destination asked for no page: the return path over "
                "TLS was not exercised");
    if (preempt && pre <= 0)
        it_fail("no page came over the TLS preempt channel");
}

static void test_postcopy_x509(void **s)
{
    (void)s;
    NEED_CERTS();
    postcopy_over_tls(false);
}

static void test_postcopy_preempt_x509(void **s)
{
    (void)s;
    NEED_CERTS();
    postcopy_over_tls(true);
}

/* Running in postcopy, paced so that it lasts: then paused by hand. */
static pair paused_pair(bool preempt)
{
    pair p = start_pair(SLOW_DST, preempt);
    it_set_params(p.src, "{\"max-postcopy-bandwidth\": 8388608}");
    it_migrate(p.src, p.uri);
    json_object_put(lmh_ok(p.src->qmp, "migrate-start-postcopy", NULL));
    it_wait_status(p.src, "postcopy-active", 60000);
    it_wait_status(p.dst, "postcopy-active", 60000);
    it_wait_qm_above(p.dst, "ram.postcopy-bytes", 1 << 20, 30000);
    json_object_put(lmh_ok(p.src->qmp, "migrate-pause", NULL));
    it_wait_status(p.src, "postcopy-paused", 30000);
    it_wait_status(p.dst, "postcopy-paused", 30000);
    return p;
}

static void listen_recover(pair *p)
{
    char args[128];
    it_tcp_uri(lmh_port(), p->uri, sizeof(p->uri));
    snprintf(args, sizeof(args), "{\"uri\": \"%s\"}", p->uri);
    json_object_put(lmh_ok(p->dst->qmp, "migrate-recover", args));
    it_wait_status(p->dst, "postcopy-recover", 10000);
}

static void resume(pair *p)
{
    char args[128];
    long long b0 = it_qm_int(p->dst, "ram.postcopy-bytes", 0);
    snprintf(args, sizeof(args), "{\"uri\": \"%s\", \"resume\": true}",
             p->uri);
    json_object_put(lmh_ok(p->src->qmp, "migrate", args));
    /* Pages flow again over the new (TLS) connection. */
    it_wait_qm_above(p->dst, "ram.postcopy-bytes", b0 + (1 << 20), 30000);
}

static void recover_over_tls(bool preempt)
{
    pair p = paused_pair(preempt);
    listen_recover(&p);
    resume(&p);
    finish_and_verify(&p);
}

static void test_recover_x509(void **s)
{
    (void)s;
    NEED_CERTS();
    recover_over_tls(false);
}

static void test_recover_preempt_x509(void **s)
{
    (void)s;
    NEED_CERTS();
    recover_over_tls(true);
}

static const char *error_desc(lmh_daemon *d, char *buf, size_t len)
{
    json_object *r = it_qm(d);
    snprintf(buf, len, "%s", lmh_get_str(r, "error-desc") ?: "");
    json_object_put(r);
    return buf;
}

/* A source without TLS knocks on the recovery port of a TLS destination:
 * refused with the reason on both ends; nothing else changes. */
static void test_recover_plain_refused(void **s)
{
    (void)s;
    NEED_CERTS();
    pair p = paused_pair(false);
    listen_recover(&p);
    lmh_daemon *plain = it_start(SPEC, NULL, NULL);
    it_migrate(plain, p.uri);
    const char *end = it_wait_end(plain, 30000);
    char e[600];
    error_desc(plain, e, sizeof(e));
    printf("plain source: %s: %s\n", end, e);
    if (strcmp(end, "failed") != 0 || !strstr(e, "requires TLS"))
        it_fail("a plain connection into the TLS recovery port: '%s', %s",
                end, e);
    error_desc(p.dst, e, sizeof(e));
    printf("destination: %s\n", e);
    if (!strstr(e, "without TLS") || !strstr(e, "tls-creds"))
        it_fail("the destination does not say it refused a plain "
                "connection and what to do: '%s'", e);
    if (strcmp(it_status(p.dst), "postcopy-recover") != 0)
        it_fail("the destination left postcopy-recover after refusing a "
                "plain connection: '%s'", it_status(p.dst));
    if (strcmp(it_status(p.src), "postcopy-paused") != 0)
        it_fail("the source left postcopy-paused: '%s'", it_status(p.src));
    char st[64];
    if (!it_running(p.dst, st, sizeof(st)))
        it_fail("the destination guest stopped ('%s')", st);
    it_stop(plain);
    resume(&p);
    finish_and_verify(&p);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
#define T(f) cmocka_unit_test_teardown(f, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_postcopy_x509),
        T(test_postcopy_preempt_x509),
        T(test_recover_x509),
        T(test_recover_preempt_x509),
        T(test_recover_plain_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
