/*
 * bench-tls - migration over TLS against this machine's limits.
 *
 * Measures, in one run: AES-256-GCM encryption speed (GnuTLS's AEAD API,
 * 16 KiB records, in this process), loopback TCP throughput (one stream,
 * 1 MiB writes), and the TLS handshake (x509 and PSK, median of 20 over
 * loopback); then migrates a 1 GiB random pattern guest between two
 * engines of this process over loopback TCP, plain and with TLS
 * (TLS 1.3, AES-256-GCM), with one channel and with multifd 2.
 *
 * The limit of one TLS channel is 1 / (1/aes + 1/loopback): every byte is
 * encrypted and then sent by the one sending thread.  Targets: one TLS
 * channel >= 0.9x that limit; multifd 2 with TLS >= 0.6x multifd 2 plain.
 * Certificates are made with certtool in a temporary directory.
 *
 *   bench-tls [--size 1G] [--runs 2]
 *   bench-tls --stream-only     the limits and the record layer alone
 *   bench-tls --only tls-1|plain-1|tls-multifd|plain-multifd [--size S]
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "engine/engine.h"
#include "tls/tls.h"
#include "tunables/tunables.h"

/* AES-GCM only; PSK in TLS 1.3 binds to SHA-256, so it gets AES-128-GCM. */
#define PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM"

static char dir[64];

/* ---- limits ------------------------------------------------------------- */

/* AES-256-GCM through GnuTLS's AEAD API on 16 KiB records, hot buffers:
 * encryption (the limit's term), and decryption into *@dec_gbps (what
 * the destination pays on top of a plain receive, which the limit does
 * not count). */
static double aes_gcm_gbps(double *dec_gbps)
{
    size_t rec = 16384, total = 1u << 30;
    unsigned char key[32] = { 1 }, iv[12] = { 2 };
    gnutls_datum_t k = { key, sizeof(key) };
    gnutls_aead_cipher_hd_t h;
    if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &k) < 0)
        return 0;
    unsigned char *in = malloc(rec), *out = malloc(rec + 16),
                  *back = malloc(rec + 16);
    memset(in, 0x5a, rec);
    double best = 0, best_dec = 0;
    for (int r = 0; r < 3; r++) {
        double t = bu_now();
        for (size_t done = 0; done < total; done += rec) {
            size_t olen = rec + 16;
            iv[0]++;
            gnutls_aead_cipher_encrypt(h, iv, sizeof(iv), NULL, 0, 16, in,
                                       rec, out, &olen);
        }
        t = bu_now() - t;
        if ((double)total / t / 1e9 > best)
            best = (double)total / t / 1e9;
    }
    for (int r = 0; r < 3; r++) {
        double t = bu_now();
        for (size_t done = 0; done < total; done += rec) {
            size_t blen = rec + 16;
            if (gnutls_aead_cipher_decrypt(h, iv, sizeof(iv), NULL, 0, 16,
                                           out, rec + 16, back, &blen) < 0)
                break;
        }
        t = bu_now() - t;
        if ((double)total / t / 1e9 > best_dec)
            best_dec = (double)total / t / 1e9;
    }
    gnutls_aead_cipher_deinit(h);
    free(in);
    free(out);
    free(back);
    *dec_gbps = best_dec;
    return best;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct { int fd; size_t total; double cpu_s; } sink_arg;

/* CPU time of each side of the last tcp_gbps / tls_stream_gbps, as a
 * fraction of its wall time: which side is the bottleneck. */
static double tcp_tx_busy, tcp_rx_busy;

static void *sink(void *p)
{
    sink_arg *a = p;
    char *buf = malloc(1 << 20);
    size_t got = 0;
    double c0 = thread_cpu_s();
    while (got < a->total) {
        ssize_t n = read(a->fd, buf, 1 << 20);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    a->cpu_s = thread_cpu_s() - c0;
    free(buf);
    return NULL;
}

static void tcp_pair(int *c, int *s)
{
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1, sz = 4 << 20;
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(l, 1) != 0)
        exit(1);
    getsockname(l, (struct sockaddr *)&sa, &sl);
    *c = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(*c, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    /* As the migration transport sets it: no Nagle delay on the small
     * handshake messages. */
    setsockopt(*c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(*c, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        exit(1);
    *s = accept(l, NULL, NULL);
    setsockopt(*s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    close(l);
}

static double tcp_gbps(void)
{
    int c, s;
    tcp_pair(&c, &s);
    size_t total = 2ull << 30;
    sink_arg a = { s, total, 0 };
    pthread_t t;
    pthread_create(&t, NULL, sink, &a);
    char *buf = malloc(1 << 20);
    memset(buf, 0x5a, 1 << 20);
    double t0 = bu_now(), c0 = thread_cpu_s();
    for (size_t sent = 0; sent < total;) {
        ssize_t n = write(c, buf, 1 << 20);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    double tx_cpu = thread_cpu_s() - c0;
    pthread_join(t, NULL);
    double dt = bu_now() - t0;
    tcp_tx_busy = tx_cpu / dt;
    tcp_rx_busy = a.cpu_s / dt;
    free(buf);
    close(c);
    close(s);
    return (double)total / dt / 1e9;
}

/* ---- credentials -------------------------------------------------------- */

static void sh(const char *cmd)
{
    if (system(cmd) != 0) {
        fprintf(stderr, "bench-tls: '%s' failed (is gnutls-bin installed?)\n",
                cmd);
        exit(1);
    }
}

static void make_certs(void)
{
    snprintf(dir, sizeof(dir), "/tmp/livemig-bench-tls-XXXXXX");
    if (!mkdtemp(dir))
        exit(1);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
        "(cd %s && mkdir srv cli psk && "
        "printf 'cn = \"ca\"\\nca\\ncert_signing_key\\nexpiration_days = 2\\n' > ca.t && "
        "printf 'cn = \"localhost\"\\nip_address = \"127.0.0.1\"\\ntls_www_server\\n"
        "encryption_key\\nsigning_key\\nexpiration_days = 2\\n' > s.t && "
        "printf 'cn = \"src\"\\ntls_www_client\\nencryption_key\\nsigning_key\\n"
        "expiration_days = 2\\n' > c.t && "
        "certtool -p --key-type ecdsa --outfile ca.key && "
        "certtool -s --load-privkey ca.key --template ca.t --outfile ca.pem && "
        "certtool -p --key-type ecdsa --outfile srv/server-key.pem && "
        "certtool -c --load-privkey srv/server-key.pem --load-ca-certificate ca.pem "
        "--load-ca-privkey ca.key --template s.t --outfile srv/server-cert.pem && "
        "certtool -p --key-type ecdsa --outfile cli/client-key.pem && "
        "certtool -c --load-privkey cli/client-key.pem --load-ca-certificate ca.pem "
        "--load-ca-privkey ca.key --template c.t --outfile cli/client-cert.pem && "
        "cp ca.pem srv/ca-cert.pem && cp ca.pem cli/ca-cert.pem && "
        "echo qemu:$(od -An -N32 -tx1 /dev/urandom | tr -d ' \\n') > psk/keys.psk"
        ") >/dev/null 2>&1", dir);
    sh(cmd);
}

static void remove_certs(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    sh(cmd);
}

static void add_creds(livemig *lm, bool server, bool psk)
{
    char j[512];
    snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-%s\",\"id\":\"t\","
             "\"dir\":\"%s/%s\",\"endpoint\":\"%s\",\"priority\":\"%s\"}",
             psk ? "psk" : "x509", dir, psk ? "psk" : server ? "srv" : "cli",
             server ? "server" : "client", PRIORITY);
    json_object *o = json_tokener_parse(j);
    livemig_error err = { 0 };
    if (!livemig_object_add(lm, o, &err)) {
        fprintf(stderr, "bench-tls: %s\n", err.desc);
        exit(1);
    }
    json_object_put(o);
    bu_params(lm, "{\"tls-creds\":\"t\"}");
}

/* ---- handshake ---------------------------------------------------------- */

typedef struct hs_arg {
    int fd;
    lm_tls_creds *creds;
    lm_tls *t;
} hs_arg;

static void *server_side(void *p)
{
    hs_arg *a = p;
    livemig_error err = { 0 };
    a->t = lm_tls_handshake(a->fd, a->creds, NULL, NULL, 10000, &err);
    return NULL;
}

/* Median ms of @n handshakes over loopback, x509 or PSK. */
static double handshake_ms(bool psk, int n)
{
    lm_objects *o = lm_objects_new();
    char j[512];
    livemig_error err = { 0 };
    for (int side = 0; side < 2; side++) {
        snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-%s\",\"id\":\"%s\","
                 "\"dir\":\"%s/%s\",\"endpoint\":\"%s\",\"priority\":\"%s\"}",
                 psk ? "psk" : "x509", side ? "s" : "c", dir,
                 psk ? "psk" : side ? "srv" : "cli",
                 side ? "server" : "client", PRIORITY);
        json_object *a = json_tokener_parse(j);
        if (!lm_objects_add(o, a, &err)) {
            fprintf(stderr, "bench-tls: %s\n", err.desc);
            exit(1);
        }
        json_object_put(a);
    }
    lm_tls_creds *cc = lm_objects_creds(o, "c", &err);
    lm_tls_creds *sc = lm_objects_creds(o, "s", &err);
    double ms[64];
    for (int i = 0; i < n; i++) {
        int c, s;
        tcp_pair(&c, &s);
        hs_arg a = { s, sc, NULL };
        pthread_t t;
        double t0 = bu_now();
        pthread_create(&t, NULL, server_side, &a);
        lm_tls *ct = lm_tls_handshake(c, cc, NULL, "127.0.0.1", 10000, &err);
        pthread_join(t, NULL);
        ms[i] = (bu_now() - t0) * 1000;
        if (!ct || !a.t) {
            fprintf(stderr, "bench-tls: handshake failed: %s\n", err.desc);
            exit(1);
        }
        lm_tls_free(ct);
        lm_tls_free(a.t);
        close(c);
        close(s);
    }
    lm_tls_creds_unref(cc);
    lm_tls_creds_unref(sc);
    lm_objects_free(o);
    qsort(ms, (size_t)n, sizeof(double), bu_cmp_double);
    return ms[n / 2];
}

/* One TLS stream over loopback, 1 MiB writes and reads: what the record
 * layer itself moves here, without the engine. */
typedef struct rx_arg {
    int fd;
    lm_tls_creds *creds;
    size_t total;
    double cpu_s;           /* the receiving thread's CPU time */
} rx_arg;

static char stream_cipher[96];
static double stream_tx_busy, stream_rx_busy;

static void *rx_side(void *p)
{
    rx_arg *a = p;
    livemig_error err = { 0 };
    lm_tls *t = lm_tls_handshake(a->fd, a->creds, NULL, NULL, 10000, &err);
    char *buf = malloc(1 << 20);
    double c0 = thread_cpu_s();
    for (size_t got = 0; t && got < a->total;) {
        ssize_t n = lm_tls_recv(t, buf, 1 << 20);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    a->cpu_s = thread_cpu_s() - c0;
    free(buf);
    lm_tls_free(t);
    return NULL;
}

static double tls_stream_gbps(void)
{
    lm_objects *o = lm_objects_new();
    livemig_error err = { 0 };
    for (int side = 0; side < 2; side++) {
        char j[512];
        snprintf(j, sizeof(j), "{\"qom-type\":\"tls-creds-x509\",\"id\":\"%s\","
                 "\"dir\":\"%s/%s\",\"endpoint\":\"%s\",\"priority\":\"%s\"}",
                 side ? "s" : "c", dir, side ? "srv" : "cli",
                 side ? "server" : "client", PRIORITY);
        json_object *a = json_tokener_parse(j);
        lm_objects_add(o, a, &err);
        json_object_put(a);
    }
    lm_tls_creds *cc = lm_objects_creds(o, "c", &err);
    lm_tls_creds *sc = lm_objects_creds(o, "s", &err);
    int c, s;
    tcp_pair(&c, &s);
    size_t total = 1ull << 30;
    rx_arg a = { s, sc, total, 0 };
    pthread_t t;
    pthread_create(&t, NULL, rx_side, &a);
    lm_tls *ct = lm_tls_handshake(c, cc, NULL, "127.0.0.1", 10000, &err);
    snprintf(stream_cipher, sizeof(stream_cipher), "%s",
             ct ? lm_tls_cipher(ct) : "");
    char *buf = malloc(1 << 20);
    memset(buf, 0x5a, 1 << 20);
    double t0 = bu_now(), c0 = thread_cpu_s();
    for (size_t sent = 0; ct && sent < total; sent += 1 << 20) {
        struct iovec iov = { buf, 1 << 20 };
        if (!lm_tls_writev_all(ct, &iov, 1))
            break;
    }
    double tx_cpu = thread_cpu_s() - c0;
    pthread_join(t, NULL);
    double dt = bu_now() - t0;
    stream_tx_busy = tx_cpu / dt;
    stream_rx_busy = a.cpu_s / dt;
    free(buf);
    lm_tls_free(ct);
    close(c);
    close(s);
    lm_tls_creds_unref(cc);
    lm_tls_creds_unref(sc);
    lm_objects_free(o);
    return (double)total / dt / 1e9;
}

/* ---- one migration ------------------------------------------------------ */

static json_object *run_one(const char *spec, bool tls, int multifd)
{
    bu_pair p;
    memset(&p, 0, sizeof(p));
    livemig_error err = { 0 };
    p.src = livemig_new(&err);
    p.dst = livemig_new(&err);
    if (!p.src || !p.dst ||
        !(p.psrc = lm_pattern_new(spec, p.src, false, LIVEMIG_TRACKER_MANUAL,
                                  &err)) ||
        !(p.pdst = lm_pattern_new(spec, p.dst, true, LIVEMIG_TRACKER_MANUAL,
                                  &err))) {
        fprintf(stderr, "bench-tls: %s\n", err.desc);
        exit(1);
    }
    if (tls) {
        add_creds(p.dst, true, false);
        add_creds(p.src, false, false);
    }
    if (multifd) {
        char j[96];
        const char *caps = "{\"capabilities\":[{\"capability\":\"multifd\",\"state\":true}]}";
        bu_caps(p.src, caps);
        bu_caps(p.dst, caps);
        snprintf(j, sizeof(j), "{\"multifd-channels\":%d}", multifd);
        bu_params(p.src, j);
        bu_params(p.dst, j);
    }
    snprintf(p.uri, sizeof(p.uri), "tcp:127.0.0.1:%d", bu_free_port());
    if (!livemig_incoming(p.dst, p.uri, &err)) {
        fprintf(stderr, "bench-tls: %s\n", err.desc);
        exit(1);
    }
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    double t0 = bu_now();
    bu_migrate(&p);
    bool ok = bu_wait_status(p.src, LIVEMIG_STATUS_COMPLETED, 120);
    double wall = bu_now() - t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) +
                 (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    ok = ok && bu_wait_status(p.dst, LIVEMIG_STATUS_COMPLETED, 10);
    json_object *q = livemig_query_migrate(p.src);
    json_object *v = lm_pattern_verify(p.pdst, &err);
    uint64_t bytes = bu_u64(q, "ram.transferred");
    json_object *r = json_object_new_object();
    json_object_object_add(r, "status", json_object_get(bu_get(q, "status")));
    json_object_object_add(r, "error", json_object_get(bu_get(q, "error-desc")));
    json_object_object_add(r, "wall-s", json_object_new_double(wall));
    json_object_object_add(r, "transferred", json_object_new_uint64(bytes));
    json_object_object_add(r, "GBps", json_object_new_double(
                               (double)bytes / wall / 1e9));
    /* CPU seconds of both engines per GB moved: what the migration costs
     * whatever else runs on the machine (with others' jobs taking CPU,
     * the rate follows this more than the limits). */
    json_object_object_add(r, "cpu-s-per-GB", json_object_new_double(
                               cpu / ((double)bytes / 1e9)));
    json_object_object_add(r, "verify-ok", json_object_new_boolean(
                               ok && v && json_object_get_boolean(
                                   bu_get(v, "ok"))));
    json_object_put(q);
    json_object_put(v);
    bu_pair_free(&p);
    return r;
}

/* Best of @runs (the machine is shared: the best run is the one least
 * disturbed by others); every run must complete and verify. */
static double scenario(json_object *scen, const char *name, const char *spec,
                       bool tls, int multifd, int runs, bool *all_ok)
{
    json_object *arr = json_object_new_array();
    double best = 0;
    for (int r = 0; r < runs; r++) {
        json_object *o = run_one(spec, tls, multifd);
        if (!json_object_get_boolean(bu_get(o, "verify-ok")))
            *all_ok = false;
        double g = json_object_get_double(bu_get(o, "GBps"));
        if (g > best)
            best = g;
        json_object_array_add(arr, o);
    }
    json_object *so = json_object_new_object();
    json_object_object_add(so, "best-GBps", json_object_new_double(best));
    json_object_object_add(so, "runs", arr);
    json_object_object_add(scen, name, so);
    return best;
}

int main(int argc, char **argv)
{
    const char *size = "1G";
    int runs = 2;
    const char *only = NULL;
    bool stream_only = argc > 1 && !strcmp(argv[1], "--stream-only");
    for (int i = 1 + stream_only; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size"))
            size = argv[i + 1];
        else if (!strcmp(argv[i], "--only"))
            only = argv[i + 1];
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
    }
    if (runs < 1 || runs > 10)
        runs = 2;
    make_certs();
    if (only) {   /* one scenario, for profiling */
        char sp[128];
        snprintf(sp, sizeof(sp), "pattern,size=%s,threads=1,fill=random,"
                 "dirty-rate=0", size);
        json_object *o = run_one(sp, strstr(only, "tls") != NULL,
                                 strstr(only, "multifd") ? 2 : 0);
        printf("%s\n", json_object_to_json_string(o));
        json_object_put(o);
        remove_certs();
        return 0;
    }
    if (stream_only) {
        double dec, a = aes_gcm_gbps(&dec), tc = tcp_gbps(),
                    st = tls_stream_gbps();
        printf("%s: aes %.2f (decrypt %.2f) tcp %.2f (busy: sender %.0f%%, receiver %.0f%%) "
               "limit %.2f stream %.2f (busy: sender %.0f%%, receiver %.0f%%) "
               "ratio %.2f\n", stream_cipher, a, dec, tc, tcp_tx_busy * 100, tcp_rx_busy * 100,
               1 / (1 / a + 1 / tc), st, stream_tx_busy * 100,
               stream_rx_busy * 100, st / (1 / (1 / a + 1 / tc)));
        remove_certs();
        return 0;
    }
    double aes_dec, aes = aes_gcm_gbps(&aes_dec), tcp = tcp_gbps();
    double limit1 = 1.0 / (1.0 / aes + 1.0 / tcp);
    json_object *out = json_object_new_object();
    json_object *lim = json_object_new_object();
    json_object_object_add(lim, "aes-256-gcm-GBps", json_object_new_double(aes));
    json_object_object_add(lim, "aes-256-gcm-decrypt-GBps",
                           json_object_new_double(aes_dec));
    json_object_object_add(lim, "loopback-tcp-GBps", json_object_new_double(tcp));
    json_object_object_add(lim, "tls-one-channel-limit-GBps",
                           json_object_new_double(limit1));
    json_object_object_add(out, "limits", lim);
    json_object *hs = json_object_new_object();
    json_object_object_add(hs, "x509-median-ms",
                           json_object_new_double(handshake_ms(false, 20)));
    json_object_object_add(hs, "psk-median-ms",
                           json_object_new_double(handshake_ms(true, 20)));
    json_object_object_add(out, "handshake", hs);
    json_object_object_add(lim, "tls-stream-GBps",
                           json_object_new_double(tls_stream_gbps()));
    json_object_object_add(lim, "tls-stream-cipher",
                           json_object_new_string(stream_cipher));
    json_object_object_add(lim, "tls-stream-sender-busy",
                           json_object_new_double(stream_tx_busy));
    json_object_object_add(lim, "tls-stream-receiver-busy",
                           json_object_new_double(stream_rx_busy));

    char spec[128];
    snprintf(spec, sizeof(spec), "pattern,size=%s,threads=1,fill=random,"
             "dirty-rate=0", size);
    json_object *scen = json_object_new_object();
    bool ok = true;
    double plain1 = scenario(scen, "plain-1", spec, false, 0, runs, &ok);
    double tls1 = scenario(scen, "tls-1", spec, true, 0, runs, &ok);
    double plain2 = scenario(scen, "plain-multifd-2", spec, false, 2, runs, &ok);
    double tls2 = scenario(scen, "tls-multifd-2", spec, true, 2, runs, &ok);
    json_object_object_add(out, "scenarios", scen);

    json_object *tg = json_object_new_object();
    double r1 = tls1 / limit1, r2 = tls2 / plain2;
    json_object_object_add(tg, "tls-1-ratio-to-limit", json_object_new_double(r1));
    json_object_object_add(tg, "tls-1-target", json_object_new_double(0.9));
    json_object_object_add(tg, "tls-1-met", json_object_new_boolean(r1 >= 0.9));
    json_object_object_add(tg, "tls-multifd-2-ratio-to-plain", json_object_new_double(r2));
    json_object_object_add(tg, "tls-multifd-2-target", json_object_new_double(0.6));
    json_object_object_add(tg, "tls-multifd-2-met", json_object_new_boolean(r2 >= 0.6));
    json_object_object_add(tg, "tls-1-ratio-to-plain-1",
                           json_object_new_double(tls1 / plain1));
    json_object_object_add(tg, "all-completed-and-verified",
                           json_object_new_boolean(ok));
    json_object_object_add(out, "targets", tg);
    printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY));
    json_object_put(out);
    remove_certs();
    return ok ? 0 : 1;
}
