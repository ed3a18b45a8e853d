/*
 * test-tls-unit.c - src/tls in one process: authz-list matching, the
 * object registry (references outlive object-del, secrets never listed),
 * and a PSK session over a socketpair carrying a stream of mixed small
 * and large pieces byte for byte, both ways, with the read-ahead seen as
 * pending data.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "tls/tls.h"

static bool add(lm_objects *o, const char *json, livemig_error *err)
{
    json_object *a = json_tokener_parse(json);
    assert_non_null(a);
    bool ok = lm_objects_add(o, a, err);
    json_object_put(a);
    return ok;
}

static void test_authz(void **state)
{
    (void)state;
    lm_objects *o = lm_objects_new();
    livemig_error err = { 0 };
    assert_true(add(o, "{\"qom-type\":\"authz-list\",\"id\":\"a\","
                "\"rules\":[{\"match\":\"CN=bad,O=Example\",\"policy\":"
                "\"deny\"},{\"match\":\"CN=*,O=Example\",\"policy\":\"allow\","
                "\"format\":\"glob\"},{\"match\":\"CN=x\",\"policy\":"
                "\"allow\"}]}", &err));
    lm_tls_authz *a = lm_objects_authz(o, "a", &err);
    assert_non_null(a);
    assert_true(lm_tls_authz_allows(a, "CN=src,O=Example"));
    assert_false(lm_tls_authz_allows(a, "CN=bad,O=Example"));  /* first rule */
    assert_true(lm_tls_authz_allows(a, "CN=x"));
    assert_false(lm_tls_authz_allows(a, "CN=x,O=Other"));      /* default deny */
    assert_false(lm_tls_authz_allows(a, "CN=src,O=Example2")); /* glob is whole */
    lm_tls_authz_unref(a);

    assert_true(add(o, "{\"qom-type\":\"authz-list\",\"id\":\"b\","
                "\"policy\":\"allow\"}", &err));
    a = lm_objects_authz(o, "b", &err);
    assert_true(lm_tls_authz_allows(a, "anything"));
    lm_tls_authz_unref(a);

    assert_false(add(o, "{\"qom-type\":\"authz-list\",\"id\":\"c\","
                 "\"rules\":[{\"match\":\"x\",\"policy\":\"allow\","
                 "\"format\":\"regex\"}]}", &err));
    assert_non_null(strstr(err.desc, "'exact' or 'glob'"));
    livemig_error_clear(&err);
    assert_false(add(o, "{\"qom-type\":\"authz-list\",\"id\":\"c\","
                 "\"rules\":[{\"policy\":\"allow\"}]}", &err));
    assert_non_null(strstr(err.desc, "'match'"));
    livemig_error_clear(&err);
    assert_false(add(o, "{\"qom-type\":\"authz-list\",\"id\":\"c\","
                 "\"colour\":\"red\"}", &err));
    assert_non_null(strstr(err.desc, "no property 'colour'"));
    lm_objects_free(o);
}

static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/livemig-tlsunit-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char p[128];
    snprintf(p, sizeof(p), "%s/keys.psk", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "other:00112233445566778899aabbccddeeff\n"
               "qemu:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0\n");
    fclose(f);
    snprintf(p, sizeof(p), "%s/secret.txt", dir);
    f = fopen(p, "w");
    fprintf(f, "from-a-file");
    fclose(f);
    return 0;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_registry(void **state)
{
    (void)state;
    lm_objects *o = lm_objects_new();
    livemig_error err = { 0 };
    char j[256];
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-psk\",\"id\":\"p\","
             "\"dir\":\"%s\",\"endpoint\":\"server\"}", dir);
    assert_true(add(o, j, &err));
    assert_true(add(o, "{\"qom-type\":\"secret\",\"id\":\"s\",\"data\":"
                "\"aHVudGVyMg==\",\"format\":\"base64\"}", &err));
    snprintf(j, sizeof(j), "{\"qom-type\":\"secret\",\"id\":\"f\","
             "\"file\":\"%s/secret.txt\"}", dir);
    assert_true(add(o, j, &err));
    json_object *q = lm_objects_query(o);
    const char *txt = json_object_to_json_string(q);
    assert_non_null(strstr(txt, "child<tls-creds-psk>"));
    assert_non_null(strstr(txt, "child<secret>"));
    assert_null(strstr(txt, "aHVudGVyMg"));
    assert_null(strstr(txt, "hunter2"));
    assert_null(strstr(txt, "from-a-file"));
    json_object_put(q);

    /* A reference outlives object-del. */
    lm_tls_creds *c = lm_objects_creds(o, "p", &err);
    assert_non_null(c);
    assert_true(lm_objects_del(o, "p", &err));
    assert_string_equal(lm_tls_creds_id(c), "p");
    assert_true(lm_tls_creds_is_server(c));
    assert_false(lm_tls_creds_is_x509(c));
    lm_tls_creds_unref(c);
    assert_null(lm_objects_creds(o, "p", &err));
    assert_non_null(strstr(err.desc, "no object 'p'"));
    livemig_error_clear(&err);
    assert_null(lm_objects_creds(o, "s", &err));
    assert_non_null(strstr(err.desc, "is a 'secret'"));
    livemig_error_clear(&err);

    assert_false(add(o, "{\"qom-type\":\"secret\",\"id\":\"9bad\","
                 "\"data\":\"x\"}", &err));
    assert_non_null(strstr(err.desc, "not valid"));
    livemig_error_clear(&err);
    assert_false(add(o, "{\"qom-type\":\"secret\",\"id\":\"t\"}", &err));
    assert_non_null(strstr(err.desc, "exactly one of 'data' and 'file'"));
    livemig_error_clear(&err);
    assert_false(lm_objects_del(o, "p", &err));
    lm_objects_free(o);
}

/* ---- a session carries bytes exactly ------------------------------------- */

typedef struct peer {
    int fd;
    lm_tls_creds *creds;
    lm_tls *t;
    livemig_error err;
} peer;

static void *server(void *p)
{
    peer *s = p;
    s->t = lm_tls_handshake(s->fd, s->creds, NULL, NULL, 10000, &s->err);
    return NULL;
}

#define TOTAL (8u << 20)

static uint8_t pat(size_t i) { return (uint8_t)(i * 131u + (i >> 13)); }

typedef struct rx {
    lm_tls *t;
    uint8_t *buf;
    size_t got;
} rx;

/* Receive everything, in reads of varying size, some of them after
 * checking that read-ahead counts as pending. */
static void *receiver(void *p)
{
    rx *r = p;
    size_t want = 1;
    while (r->got < TOTAL) {
        size_t n = want < TOTAL - r->got ? want : TOTAL - r->got;
        ssize_t k = lm_tls_recv(r->t, r->buf + r->got, n);
        if (k <= 0)
            break;
        r->got += (size_t)k;
        want = want * 3 % 200003 + 1;
    }
    return NULL;
}

static void test_session_bytes(void **state)
{
    (void)state;
    lm_objects *o = lm_objects_new();
    livemig_error err = { 0 };
    char j[256];
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-psk\",\"id\":\"s\","
             "\"dir\":\"%s\",\"endpoint\":\"server\"}", dir);
    assert_true(add(o, j, &err));
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-psk\",\"id\":\"c\","
             "\"dir\":\"%s\",\"endpoint\":\"client\"}", dir);
    assert_true(add(o, j, &err));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    peer s = { sv[1], lm_objects_creds(o, "s", &err), NULL, { 0 } };
    pthread_t t;
    pthread_create(&t, NULL, server, &s);
    lm_tls_creds *cc = lm_objects_creds(o, "c", &err);
    lm_tls *c = lm_tls_handshake(sv[0], cc, NULL, NULL, 10000, &err);
    pthread_join(t, NULL);
    assert_non_null(c);
    assert_non_null(s.t);
    assert_non_null(strstr(lm_tls_cipher(c), "TLS1.3"));

    uint8_t *src = malloc(TOTAL), *dst = malloc(TOTAL);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < TOTAL; i++)
        src[i] = pat(i);
    rx r = { s.t, dst, 0 };
    pthread_create(&t, NULL, receiver, &r);

    /* Pieces of 1 to ~70000 bytes, most of them small, up to 64 per
     * write: the shape of the stream writer's batches. */
    size_t off = 0;
    unsigned seed = 7;
    while (off < TOTAL) {
        struct iovec iov[64];
        int n = 0;
        while (n < 64 && off < TOTAL) {
            seed = seed * 1103515245u + 12345u;
            size_t len = (seed >> 16) % 4 == 0 ? (seed >> 8) % 70000 + 1
                                               : (seed >> 8) % 24 + 1;
            if (len > TOTAL - off)
                len = TOTAL - off;
            iov[n].iov_base = src + off;
            iov[n++].iov_len = len;
            off += len;
        }
        assert_true(lm_tls_writev_all(c, iov, n));
    }
    pthread_join(t, NULL);
    assert_int_equal(r.got, TOTAL);
    assert_memory_equal(src, dst, TOTAL);

    /* The other way, two small records that arrive together: the first
     * one's body is read with the second one's header, so after the
     * first is read the second is pending, though GnuTLS has decrypted
     * nothing of it yet and the socket holds only its body. */
    assert_int_equal(lm_tls_send(s.t, "ack!", 4), 4);
    assert_int_equal(lm_tls_send(s.t, "more", 4), 4);
    uint8_t peek[256];
    ssize_t avail = 0;
    for (int i = 0; i < 5000 && avail < 2 * 26; i++) {
        avail = recv(sv[0], peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
        if (avail < 2 * 26)
            usleep(1000);
    }
    char b[4];
    assert_int_equal(lm_tls_recv(c, b, 4), 4);
    assert_memory_equal(b, "ack!", 4);
    assert_true(lm_tls_pending(c) > 0);
    assert_int_equal(recv(sv[0], peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT),
                     26 - 5);
    assert_int_equal(lm_tls_recv(c, b, 4), 4);
    assert_memory_equal(b, "more", 4);

    /* A flipped byte on the wire is an integrity failure, named. */
    uint8_t rec[64];
    assert_int_equal(lm_tls_send(s.t, "0123456789", 10), 10);
    ssize_t k = recv(sv[0], rec, sizeof(rec), 0);
    assert_true(k > 10);
    rec[k - 3] ^= 1;
    assert_int_equal(send(sv[1], rec, (size_t)k, 0), k);
    assert_int_equal(lm_tls_recv(c, b, 4), -1);
    assert_non_null(strstr(lm_tls_last_error(c), "integrity"));

    free(src);
    free(dst);
    lm_tls_free(c);
    lm_tls_free(s.t);
    lm_tls_creds_unref(cc);
    lm_tls_creds_unref(s.creds);
    close(sv[0]);
    close(sv[1]);
    lm_objects_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authz),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_session_bytes),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
