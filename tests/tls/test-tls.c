/*
 * test-tls.c - TLS on every migration channel, with real livemigd
 * processes: credentials as objects, full x509 and PSK migrations that
 * verify, and every way it should fail (wrong CA, wrong or missing
 * tls-hostname, an expired certificate, a client that tls-authz denies, a
 * PSK mismatch, plain into TLS and TLS into plain, bytes flipped or
 * injected by a proxy between the two).  Each failure must name its
 * cause, leave the source guest running and whole, and be followed by a
 * migration with good credentials that completes.  Failures run over
 * tcp with multifd and over unix without it.
 *
 * Certificates are made with certtool once per run (tlscerts.c); the test
 * skips, saying why, when certtool is missing.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "itest.h"
#include "tlscerts.h"

#define MiB (1024LL * 1024LL)
#define SPEC "pattern,size=32M,dirty-rate=5M"
#define GUEST_BYTES (32 * MiB)

static char root[128];     /* certificates of this run */
static bool have_certs;

/* ---- setup ---------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    return tlsc_group_setup(root, sizeof(root), "tls", &have_certs);
}

static int group_teardown(void **state)
{
    (void)state;
    return tlsc_group_teardown(root);
}

#define NEED_CERTS() TLSC_NEED_CERTS(have_certs)

/* ---- QMP helpers ---------------------------------------------------------- */

static void add_x509(lmh_daemon *d, const char *id, const char *sub,
                     const char *endpoint, const char *extra)
{
    json_object *a = lmh_json("{\"qom-type\":\"tls-creds-x509\",\"id\":\"%s\","
                              "\"dir\":\"%s/%s\",\"endpoint\":\"%s\"%s%s}",
                              id, root, sub, endpoint, extra ? "," : "",
                              extra ? extra : "");
    json_object_put(lmh_ok_obj(d->qmp, "object-add", a));
}

static void add_psk(lmh_daemon *d, const char *id, const char *sub,
                    const char *endpoint)
{
    json_object *a = lmh_json("{\"qom-type\":\"tls-creds-psk\",\"id\":\"%s\","
                              "\"dir\":\"%s/%s\",\"endpoint\":\"%s\"}",
                              id, root, sub, endpoint);
    json_object_put(lmh_ok_obj(d->qmp, "object-add", a));
}

static void set_str(lmh_daemon *d, const char *name, const char *v)
{
    char j[256];
    snprintf(j, sizeof(j), "{\"%s\":\"%s\"}", name, v);
    it_set_params(d, j);
}

static void incoming(lmh_daemon *dst, const char *uri)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
}

/* A transport of the matrix: tcp with multifd 2, or unix without. */
typedef struct variant {
    bool unix_sock;
    bool multifd;
} variant;

static const variant TCP_MF = { false, true };
static const variant UNIX_1 = { true, false };

typedef struct pair {
    lmh_daemon *src, *dst;
    char uri[320];
    char dir[256];
} pair;

static void pair_start(pair *p, const variant *v)
{
    snprintf(p->dir, sizeof(p->dir), "%s/XXXXXX", root);
    assert_non_null(mkdtemp(p->dir));
    if (v->unix_sock)
        snprintf(p->uri, sizeof(p->uri), "unix:%s/mig.sock", p->dir);
    else
        it_tcp_uri(lmh_port(), p->uri, sizeof(p->uri));
    p->src = it_start(SPEC, NULL, NULL);
    p->dst = it_start(SPEC, "defer", NULL);
    if (v->multifd) {
        it_set_cap(p->src, "multifd", true);
        it_set_cap(p->dst, "multifd", true);
    }
    if (v->unix_sock)
        set_str(p->src, "tls-hostname", "localhost");
    /* Checked against the limit by it_check_completed.  The switchover
     * estimate does not count what is still in the socket buffers (up to
     * 4 MiB per connection); a TLS destination drains them more slowly,
     * and in a sanitizer build on a loaded machine that alone took up
     * to 0.7 s.  These tests are about TLS, not the estimate. */
    it_set_params(p->src, "{\"downtime-limit\": 2000}");
}

static const char *error_desc(lmh_daemon *d)
{
    static char buf[600];
    json_object *r = it_qm(d);
    snprintf(buf, sizeof(buf), "%s", lmh_get_str(r, "error-desc") ?: "");
    json_object_put(r);
    return buf;
}

/* The migration (the destination listening already) must fail on the source (error naming @src_words) and on
 * the destination (naming @dst_words, if given); the source guest runs
 * on and verifies. */
static void expect_failure(pair *p, const char *src_words,
                           const char *dst_words)
{
    it_migrate(p->src, p->uri);
    const char *end = it_wait_end(p->src, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("the source ended '%s', expected 'failed'", end);
    const char *e = error_desc(p->src);
    printf("source: %s\n", e);
    if (!strstr(e, src_words))
        it_fail("the source's error should name the cause (\"%s\"): %s",
                src_words, e);
    end = it_wait_end(p->dst, 30000);
    if (strcmp(end, "failed") != 0)
        it_fail("the destination ended '%s', expected 'failed'", end);
    e = error_desc(p->dst);
    printf("destination: %s\n", e);
    if (dst_words && !strstr(e, dst_words))
        it_fail("the destination's error should name the cause (\"%s\"): %s",
                dst_words, e);
    if (it_running(p->dst, NULL, 0))
        it_fail("the destination guest runs after a failed migration");
    if (!it_running(p->src, NULL, 0))
        it_fail("the source guest stopped after a failed migration");
    it_wait_guest_writes(p->src, "source", 10000);
    it_verify_ok(p->src, "source");
}

/* A second migration, with whatever the caller fixed, completes. */
static void expect_success(pair *p)
{
    incoming(p->dst, p->uri);
    it_migrate(p->src, p->uri);
    it_check_completed(p->src, p->dst, GUEST_BYTES, true);
}

/* Destination with good x509 server credentials, source with @sub as its
 * client credentials "bad" and the good ones as "good". */
static void x509_pair(pair *p, const variant *v, const char *src_sub)
{
    pair_start(p, v);
    add_x509(p->dst, "tls0", "server", "server", NULL);
    set_str(p->dst, "tls-creds", "tls0");
    add_x509(p->src, "good", "client", "client", NULL);
    if (src_sub)
        add_x509(p->src, "bad", src_sub, "client", NULL);
    set_str(p->src, "tls-creds", src_sub ? "bad" : "good");
}

/* ---- objects ------------------------------------------------------------- */

static void test_objects(void **state)
{
    (void)state;
    NEED_CERTS();
    lmh_daemon *d = it_start(SPEC, NULL, NULL);
    add_x509(d, "tls0", "server", "server", NULL);
    json_object *a = lmh_json("{\"qom-type\":\"secret\",\"id\":\"sec0\","
                              "\"data\":\"hunter2-do-not-echo\"}");
    json_object_put(lmh_ok_obj(d->qmp, "object-add", a));
    a = lmh_json("{\"qom-type\":\"authz-list\",\"id\":\"auth0\","
                 "\"rules\":[{\"match\":\"CN=*\",\"policy\":\"allow\","
                 "\"format\":\"glob\"}]}");
    json_object_put(lmh_ok_obj(d->qmp, "object-add", a));

    json_object *r = lmh_ok(d->qmp, "query-objects", NULL);
    const char *txt = json_object_to_json_string(r);
    printf("query-objects: %s\n", txt);
    if (!strstr(txt, "\"tls0\"") || !strstr(txt, "child<tls-creds-x509>") ||
        !strstr(txt, "\"sec0\"") || !strstr(txt, "child<secret>") ||
        !strstr(txt, "\"auth0\"") || !strstr(txt, "child<authz-list>"))
        it_fail("query-objects should list tls0, sec0 and auth0 with their "
                "types: %s", txt);
    if (strstr(txt, "hunter2"))
        it_fail("query-objects echoes a secret: %s", txt);
    json_object_put(r);

    /* The parameters are rows of the table: set, queried, introspected. */
    set_str(d, "tls-creds", "tls0");
    r = lmh_ok(d->qmp, "query-migrate-parameters", NULL);
    assert_string_equal(lmh_get_str(r, "tls-creds"), "tls0");
    assert_string_equal(lmh_get_str(r, "tls-hostname"), "");
    assert_string_equal(lmh_get_str(r, "tls-authz"), "");
    json_object_put(r);
    r = lmh_ok(d->qmp, "query-qmp-schema", NULL);
    txt = json_object_to_json_string(r);
    if (!strstr(txt, "\"object-add\"") || !strstr(txt, "\"tls-creds\"") ||
        !strstr(txt, "\"write-only\""))
        it_fail("query-qmp-schema should have object-add, tls-creds and "
                "mark the secret's data write-only");
    json_object_put(r);

    /* Errors name the object and the fix. */
    lmh_err(d->qmp, "object-add", "{\"qom-type\":\"secret\",\"id\":\"sec0\","
            "\"data\":\"x\"}", "GenericError", "already exists");
    char j[512];
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-x509\",\"id\":\"t1\","
             "\"dir\":\"%s/nowhere\",\"endpoint\":\"server\"}", root);
    lmh_err(d->qmp, "object-add", j, "GenericError", "ca-cert.pem");
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-x509\",\"id\":\"t1\","
             "\"dir\":\"%s/server\",\"endpoint\":\"sideways\"}", root);
    lmh_err(d->qmp, "object-add", j, "GenericError", "'endpoint'");
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-x509\",\"id\":\"t1\","
             "\"dir\":\"%s/server-expired\",\"endpoint\":\"server\"}", root);
    lmh_err(d->qmp, "object-add", j, "GenericError", "expired");
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-psk\",\"id\":\"t1\","
             "\"dir\":\"%s/psk-client\",\"username\":\"nobody\"}", root);
    lmh_err(d->qmp, "object-add", j, "GenericError", "'nobody'");
    lmh_err(d->qmp, "object-add", "{\"qom-type\":\"authz-list\",\"id\":\"a1\","
            "\"rules\":[{\"match\":\"x\",\"policy\":\"maybe\"}]}",
            "GenericError", "'allow' or 'deny'");
    lmh_err(d->qmp, "object-add", "{\"qom-type\":\"memory-backend-ram\","
            "\"id\":\"m\"}", "GenericError", "unknown object type");
    lmh_err(d->qmp, "object-del", "{\"id\":\"nope\"}", "GenericError",
            "no object");
    /* tls-creds naming a server endpoint cannot migrate out. */
    char uri[64];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    snprintf(j, sizeof(j), "{\"uri\":\"%s\"}", uri);
    lmh_err(d->qmp, "migrate", j, "GenericError", "endpoint");
    set_str(d, "tls-creds", "missing");
    lmh_err(d->qmp, "migrate", j, "GenericError", "no object 'missing'");
    json_object_put(lmh_ok(d->qmp, "object-del", "{\"id\":\"sec0\"}"));
    r = lmh_ok(d->qmp, "query-objects", NULL);
    if (strstr(json_object_to_json_string(r), "sec0"))
        it_fail("object-del left sec0 in query-objects");
    json_object_put(r);
}

/* A destination whose private key is encrypted: the password comes from
 * a secret object named by passwordid; without it, or with a wrong one,
 * object-add says so. */
static void test_passwordid(void **s)
{
    (void)s;
    NEED_CERTS();
    pair p;
    pair_start(&p, &TCP_MF);
    char j[512];
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-x509\",\"id\":\"t1\","
             "\"dir\":\"%s/server-enc\",\"endpoint\":\"server\"}", root);
    lmh_err(p.dst->qmp, "object-add", j, "GenericError", "server-key.pem");
    json_object_put(lmh_ok_obj(p.dst->qmp, "object-add", lmh_json(
        "{\"qom-type\":\"secret\",\"id\":\"wrong\",\"data\":\"nope\"}")));
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-x509\",\"id\":\"t1\","
             "\"dir\":\"%s/server-enc\",\"endpoint\":\"server\","
             "\"passwordid\":\"wrong\"}", root);
    lmh_err(p.dst->qmp, "object-add", j, "GenericError", "passwordid");
    json_object_put(lmh_ok_obj(p.dst->qmp, "object-add", lmh_json(
        "{\"qom-type\":\"secret\",\"id\":\"pw\",\"data\":\"%s\"}",
        TLSC_KEY_PASSWORD)));
    add_x509(p.dst, "tls0", "server-enc", "server", "\"passwordid\":\"pw\"");
    set_str(p.dst, "tls-creds", "tls0");
    add_x509(p.src, "good", "client", "client", NULL);
    set_str(p.src, "tls-creds", "good");
    incoming(p.dst, p.uri);
    it_migrate(p.src, p.uri);
    it_check_completed(p.src, p.dst, GUEST_BYTES, true);
}

/* ---- migrations that work ------------------------------------------------ */

static void x509_ok(const variant *v)
{
    pair p;
    x509_pair(&p, v, NULL);
    json_object *a = lmh_json("{\"qom-type\":\"authz-list\",\"id\":\"auth0\","
                              "\"rules\":[{\"match\":\"CN=source.example,"
                              "O=Example\",\"policy\":\"allow\"}]}");
    json_object_put(lmh_ok_obj(p.dst->qmp, "object-add", a));
    set_str(p.dst, "tls-authz", "auth0");
    incoming(p.dst, p.uri);
    it_migrate(p.src, p.uri);
    it_check_completed(p.src, p.dst, GUEST_BYTES, true);
}

static void test_x509_tcp_multifd(void **s) { (void)s; NEED_CERTS(); x509_ok(&TCP_MF); }
static void test_x509_unix(void **s) { (void)s; NEED_CERTS(); x509_ok(&UNIX_1); }

static void psk_ok(const variant *v)
{
    pair p;
    pair_start(&p, v);
    add_psk(p.dst, "psk0", "psk-server", "server");
    add_psk(p.src, "psk0", "psk-client", "client");
    set_str(p.dst, "tls-creds", "psk0");
    set_str(p.src, "tls-creds", "psk0");
    incoming(p.dst, p.uri);
    it_migrate(p.src, p.uri);
    it_check_completed(p.src, p.dst, GUEST_BYTES, true);
}

static void test_psk_tcp_multifd(void **s) { (void)s; NEED_CERTS(); psk_ok(&TCP_MF); }
static void test_psk_unix(void **s) { (void)s; NEED_CERTS(); psk_ok(&UNIX_1); }

/* A TLS migration held before switchover is cancelled: the source runs
 * on and verifies, and the next one completes. */
static void test_cancel(void **s)
{
    (void)s;
    NEED_CERTS();
    pair p;
    x509_pair(&p, &TCP_MF, NULL);
    it_set_params(p.src, "{\"switchover-hold\": true}");
    incoming(p.dst, p.uri);
    it_migrate(p.src, p.uri);
    it_wait_qm_above(p.src, "ram.transferred", 8 * MiB, 30000);
    json_object_put(lmh_ok(p.src->qmp, "migrate_cancel", NULL));
    const char *end = it_wait_end(p.src, 30000);
    if (strcmp(end, "cancelled") != 0)
        it_fail("the source ended '%s' after migrate_cancel", end);
    it_wait_end(p.dst, 30000);
    if (!it_running(p.src, NULL, 0))
        it_fail("the source guest stopped after a cancelled migration");
    it_wait_guest_writes(p.src, "source", 10000);
    it_verify_ok(p.src, "source");
    it_set_params(p.src, "{\"switchover-hold\": false}");
    expect_success(&p);
}

/* ---- failures ------------------------------------------------------------ */

static void wrong_ca(const variant *v)
{
    pair p;
    x509_pair(&p, v, "client-wrongca");
    incoming(p.dst, p.uri);
    expect_failure(&p, "not signed by the CA", "certificate");
    set_str(p.src, "tls-creds", "good");
    expect_success(&p);
}

static void wrong_hostname(const variant *v)
{
    pair p;
    x509_pair(&p, v, NULL);
    set_str(p.src, "tls-hostname", "wrong.example");
    incoming(p.dst, p.uri);
    expect_failure(&p, "not for host 'wrong.example'", NULL);
    set_str(p.src, "tls-hostname", "localhost");
    expect_success(&p);
}

/* The destination's certificate holds only other.example: without
 * tls-hostname the URI's host is checked and refused. */
static void missing_hostname(void **s)
{
    (void)s;
    NEED_CERTS();
    pair p;
    pair_start(&p, &TCP_MF);
    add_x509(p.dst, "tls0", "server-other", "server", NULL);
    set_str(p.dst, "tls-creds", "tls0");
    add_x509(p.src, "good", "client", "client", NULL);
    set_str(p.src, "tls-creds", "good");
    incoming(p.dst, p.uri);
    expect_failure(&p, "not for host '127.0.0.1'", NULL);
    set_str(p.src, "tls-hostname", "other.example");
    expect_success(&p);

    /* unix: has no host, so tls-hostname is required up front. */
    lmh_daemon *d = it_start(SPEC, NULL, NULL);
    add_x509(d, "good", "client", "client", NULL);
    set_str(d, "tls-creds", "good");
    char j[400];
    snprintf(j, sizeof(j), "{\"uri\":\"unix:%s/x.sock\"}", p.dir);
    lmh_err(d->qmp, "migrate", j, "GenericError", "set tls-hostname");
}

static void expired(const variant *v)
{
    pair p;
    pair_start(&p, v);
    add_x509(p.dst, "old", "server-expired", "server", "\"sanity-check\":false");
    add_x509(p.dst, "tls0", "server", "server", NULL);
    set_str(p.dst, "tls-creds", "old");
    add_x509(p.src, "good", "client", "client", NULL);
    set_str(p.src, "tls-creds", "good");
    incoming(p.dst, p.uri);
    expect_failure(&p, "has expired", NULL);
    set_str(p.dst, "tls-creds", "tls0");
    expect_success(&p);
}

static void authz_denied(const variant *v)
{
    pair p;
    x509_pair(&p, v, "client-intruder");
    json_object *a = lmh_json("{\"qom-type\":\"authz-list\",\"id\":\"auth0\","
                              "\"policy\":\"deny\",\"rules\":[{\"match\":"
                              "\"CN=source.*,O=Example\",\"policy\":\"allow\","
                              "\"format\":\"glob\"}]}");
    json_object_put(lmh_ok_obj(p.dst->qmp, "object-add", a));
    set_str(p.dst, "tls-authz", "auth0");
    incoming(p.dst, p.uri);
    expect_failure(&p, "tls-authz", "'CN=intruder,O=Elsewhere' is not "
                   "allowed by tls-authz 'auth0'");
    set_str(p.src, "tls-creds", "good");
    expect_success(&p);
}

static void psk_mismatch(const variant *v)
{
    pair p;
    pair_start(&p, v);
    add_psk(p.dst, "psk0", "psk-server", "server");
    add_psk(p.src, "wrong", "psk-wrong", "client");
    add_psk(p.src, "psk0", "psk-client", "client");
    set_str(p.dst, "tls-creds", "psk0");
    set_str(p.src, "tls-creds", "wrong");
    incoming(p.dst, p.uri);
    expect_failure(&p, "pre-shared key", "keys.psk");
    set_str(p.src, "tls-creds", "psk0");
    expect_success(&p);
}

static void plain_into_tls(const variant *v)
{
    pair p;
    x509_pair(&p, v, NULL);
    set_str(p.src, "tls-creds", "");
    incoming(p.dst, p.uri);
    expect_failure(&p, "requires TLS", "without TLS");
    set_str(p.src, "tls-creds", "good");
    expect_success(&p);
}

static void tls_into_plain(const variant *v)
{
    pair p;
    x509_pair(&p, v, NULL);
    set_str(p.dst, "tls-creds", "");
    incoming(p.dst, p.uri);
    expect_failure(&p, "does not speak TLS", "with TLS, but tls-creds is "
                   "not set here");
    set_str(p.dst, "tls-creds", "tls0");
    expect_success(&p);
}

#define VARIANTS(name)                                                     \
    static void test_##name##_tcp_multifd(void **s)                        \
    {                                                                      \
        (void)s;                                                           \
        NEED_CERTS();                                                      \
        name(&TCP_MF);                                                     \
    }                                                                      \
    static void test_##name##_unix(void **s)                               \
    {                                                                      \
        (void)s;                                                           \
        NEED_CERTS();                                                      \
        name(&UNIX_1);                                                     \
    }

VARIANTS(wrong_ca)
VARIANTS(wrong_hostname)
VARIANTS(expired)
VARIANTS(authz_denied)
VARIANTS(psk_mismatch)
VARIANTS(plain_into_tls)
VARIANTS(tls_into_plain)

/* ---- a proxy that tampers ------------------------------------------------ */

/* Between source and destination: forwards every connection; on the
 * first to carry @at bytes from the source to the destination (the main
 * stream, or a multifd channel) it flips one byte there, or injects 64.  It also remembers
 * whether the guest's RAM block name crossed it in clear. */
typedef struct proxy {
    int lfd;
    char target[320];
    enum { PASS, FLIP, INJECT } mode;
    long long at;
    pthread_t tid;
    volatile bool stop;
    volatile bool saw_cleartext;
    pthread_mutex_t lock;        /* tampered, pumps */
    bool tampered;
    int npumps;
    struct pump {
        struct proxy *px;
        int from, to;
        bool upstream;           /* source to destination */
        pthread_t tid;
    } pumps[32];
} proxy;

static int connect_to(const char *uri)
{
    if (strncmp(uri, "unix:", 5) == 0) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", uri + 5);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    const char *colon = strrchr(uri, ':');
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)atoi(colon + 1)) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static bool write_all(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t m = send(fd, b, n, MSG_NOSIGNAL);
        if (m <= 0)
            return false;
        b += m;
        n -= (size_t)m;
    }
    return true;
}

/* One direction of one connection, on its own thread: blocking reads and
 * writes, so a full buffer on one connection never holds up another. */
static void *pump_main(void *arg)
{
    struct pump *pu = arg;
    proxy *px = pu->px;
    char *buf = malloc(65536);
    long long fwd = 0;
    for (;;) {
        ssize_t r = read(pu->from, buf, 65536);
        if (r <= 0)
            break;
        size_t off = (size_t)r;
        if (pu->upstream) {
            if (memmem(buf, (size_t)r, "pattern", 7))
                px->saw_cleartext = true;
            pthread_mutex_lock(&px->lock);
            bool now = px->mode != PASS && !px->tampered && fwd + r > px->at;
            if (now)
                px->tampered = true;
            pthread_mutex_unlock(&px->lock);
            if (now) {
                off = (size_t)(px->at - fwd);
                if (px->mode == FLIP) {
                    buf[off] ^= 0x5a;
                    off = (size_t)r;
                } else {
                    char junk[64];
                    memset(junk, 0xa5, sizeof(junk));
                    if (!write_all(pu->to, buf, off) ||
                        !write_all(pu->to, junk, sizeof(junk)))
                        break;
                    memmove(buf, buf + off, (size_t)r - off);
                    off = (size_t)r - off;
                }
            }
            fwd += r;
        }
        if (!write_all(pu->to, buf, off))
            break;
    }
    /* One side went away: end the connection both ways. */
    shutdown(pu->from, SHUT_RDWR);
    shutdown(pu->to, SHUT_RDWR);
    free(buf);
    return NULL;
}

static void *proxy_main(void *arg)
{
    proxy *px = arg;
    while (!px->stop) {
        struct pollfd pf = { px->lfd, POLLIN, 0 };
        if (poll(&pf, 1, 100) <= 0)
            continue;
        int c = accept(px->lfd, NULL, NULL);
        int t = c >= 0 ? connect_to(px->target) : -1;
        pthread_mutex_lock(&px->lock);
        bool room = px->npumps + 2 <= 32;
        if (c >= 0 && t >= 0 && room) {
            for (int d = 0; d < 2; d++) {
                struct pump *pu = &px->pumps[px->npumps++];
                *pu = (struct pump){ px, d ? t : c, d ? c : t, d == 0, 0 };
                pthread_create(&pu->tid, NULL, pump_main, pu);
            }
        } else {
            if (c >= 0)
                close(c);
            if (t >= 0)
                close(t);
        }
        pthread_mutex_unlock(&px->lock);
    }
    return NULL;
}

/* Listen on @front (a URI of the same kind as @target) and forward. */
static void proxy_start(proxy *px, const char *front, const char *target,
                        int mode)
{
    memset(px, 0, sizeof(*px));
    pthread_mutex_init(&px->lock, NULL);
    px->mode = mode;
    px->at = 256 * 1024;
    snprintf(px->target, sizeof(px->target), "%s", target);
    if (strncmp(front, "unix:", 5) == 0) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", front + 5);
        px->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(px->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    } else {
        const char *colon = strrchr(front, ':');
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)atoi(colon + 1)) };
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        px->lfd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(px->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        assert_int_equal(bind(px->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    assert_int_equal(listen(px->lfd, 16), 0);
    assert_int_equal(pthread_create(&px->tid, NULL, proxy_main, px), 0);
}

static void proxy_stop(proxy *px)
{
    px->stop = true;
    pthread_join(px->tid, NULL);
    close(px->lfd);
    for (int i = 0; i < px->npumps; i++)
        shutdown(px->pumps[i].from, SHUT_RDWR);
    for (int i = 0; i < px->npumps; i++)
        pthread_join(px->pumps[i].tid, NULL);
    /* Each connection's two sockets, once (pumps come in pairs). */
    for (int i = 0; i < px->npumps; i += 2) {
        close(px->pumps[i].from);
        close(px->pumps[i].to);
    }
    pthread_mutex_destroy(&px->lock);
}

static void front_uri(const pair *p, const variant *v, char *out, size_t len)
{
    if (v->unix_sock)
        snprintf(out, len, "unix:%s/proxy.sock", p->dir);
    else
        it_tcp_uri(lmh_port(), out, len);
}

static void tamper(const variant *v, int mode)
{
    pair p;
    x509_pair(&p, v, NULL);
    incoming(p.dst, p.uri);
    char front[320], direct[320];
    front_uri(&p, v, front, sizeof(front));
    proxy px;
    proxy_start(&px, front, p.uri, mode);
    snprintf(direct, sizeof(direct), "%s", p.uri);
    snprintf(p.uri, sizeof(p.uri), "%s", front);
    expect_failure(&p, "", mode == FLIP ? "integrity" : "TLS");
    proxy_stop(&px);
    if (!px.tampered)
        it_fail("the proxy never tampered with the stream");
    if (px.saw_cleartext)
        it_fail("the guest's RAM block name crossed the proxy in clear");
    snprintf(p.uri, sizeof(p.uri), "%s", direct);
    expect_success(&p);
}

static void flipped(const variant *v) { tamper(v, FLIP); }
static void injected(const variant *v) { tamper(v, INJECT); }
VARIANTS(flipped)
VARIANTS(injected)

/* The proxy's cleartext check can fail: a plain migration shows it. */
static void test_proxy_sees_plain(void **s)
{
    (void)s;
    NEED_CERTS();
    pair p;
    pair_start(&p, &TCP_MF);
    char front[320];
    front_uri(&p, &TCP_MF, front, sizeof(front));
    proxy px;
    proxy_start(&px, front, p.uri, PASS);
    incoming(p.dst, p.uri);
    it_migrate(p.src, front);
    it_check_completed(p.src, p.dst, GUEST_BYTES, true);
    proxy_stop(&px);
    if (!px.saw_cleartext)
        it_fail("a plain migration through the proxy should show the block "
                "name in clear");
}

/* livemigd warns when it listens for a migration where other hosts can
 * reach it without TLS.  Run in a network namespace of its own
 * (unshare -rn) so listening on 0.0.0.0 exposes nothing here. */
static char *daemon_stderr(const char *addr)
{
    char dir[] = "/tmp/livemig-warn-XXXXXX", qmp[64], inc[64];
    assert_non_null(mkdtemp(dir));
    snprintf(qmp, sizeof(qmp), "unix:%s/q.sock", dir);
    snprintf(inc, sizeof(inc), "tcp:%s:4444", addr);
    const char *argv[] = { "/usr/bin/unshare", "-rn", getenv("LIVEMIGD"),
                           "--guest", "pattern,size=4M", "--qmp", qmp,
                           "--incoming", inc, NULL };
    char *err = NULL;
    lmh_run(argv, NULL, NULL, &err, 3000);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", dir);
    return err ? err : strdup("");
}

static void test_warning(void **s)
{
    (void)s;
    const char *probe[] = { "/usr/bin/unshare", "-rn", "/bin/true", NULL };
    if (access("/usr/bin/unshare", X_OK) != 0 ||
        lmh_run(probe, NULL, NULL, NULL, 10000) != 0) {
        printf("skipped: no network namespace (unshare -rn) available\n");
        skip();
    }
    char *e = daemon_stderr("0.0.0.0");
    printf("0.0.0.0: %s\n", e);
    if (!strstr(e, "warning: listening for a migration on 0.0.0.0") ||
        !strstr(e, "without TLS") || !strstr(e, "tls-creds"))
        it_fail("no warning for --incoming on 0.0.0.0 without TLS: '%s'", e);
    free(e);
    e = daemon_stderr("127.0.0.1");
    if (strstr(e, "warning"))
        it_fail("a warning for --incoming on loopback: '%s'", e);
    free(e);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);   /* the proxy writes to closed peers */
#define T(f) cmocka_unit_test_teardown(f, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_objects),
        T(test_passwordid),
        T(test_x509_tcp_multifd),
        T(test_x509_unix),
        T(test_psk_tcp_multifd),
        T(test_psk_unix),
        T(test_cancel),
        T(test_wrong_ca_tcp_multifd),
        T(test_wrong_ca_unix),
        T(test_wrong_hostname_tcp_multifd),
        T(test_wrong_hostname_unix),
        T(missing_hostname),
        T(test_expired_tcp_multifd),
        T(test_expired_unix),
        T(test_authz_denied_tcp_multifd),
        T(test_authz_denied_unix),
        T(test_psk_mismatch_tcp_multifd),
        T(test_psk_mismatch_unix),
        T(test_plain_into_tls_tcp_multifd),
        T(test_plain_into_tls_unix),
        T(test_tls_into_plain_tcp_multifd),
        T(test_tls_into_plain_unix),
        T(test_flipped_tcp_multifd),
        T(test_flipped_unix),
        T(test_injected_tcp_multifd),
        T(test_injected_unix),
        T(test_proxy_sees_plain),
        T(test_warning),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
