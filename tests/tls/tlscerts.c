/* tlscerts.c - see tlscerts.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tlscerts.h"

const char *tlsc_certtool(void)
{
    static const char *const paths[] = { "/usr/bin/certtool",
                                         "/usr/local/bin/certtool" };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

static bool write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static bool certtool(const char *const *args)
{
    const char *argv[24];
    int n = 0;
    argv[n++] = tlsc_certtool();
    for (; args[n - 1] && n < 23; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    char *err = NULL;
    int rc = lmh_run(argv, NULL, NULL, &err, 60000);
    if (rc != 0)
        fprintf(stderr, "certtool %s failed (%d): %s\n", args[0], rc,
                err ? err : "");
    free(err);
    return rc == 0;
}

static const char *key_password;   /* encrypt the next leaf key */

static bool key(const char *path)
{
    const char *a[] = { "--generate-privkey", "--key-type", "ecdsa",
                        "--outfile", path, NULL };
    const char *e[] = { "--generate-privkey", "--key-type", "ecdsa",
                        "--pkcs8", "--password", key_password, "--outfile",
                        path, NULL };
    return certtool(key_password ? e : a);
}

/* A CA in @root/@name-key.pem, @name-cert.pem. */
static bool make_ca(const char *root, const char *name, const char *cn)
{
    char k[512], c[512], t[512], tmpl[256];
    snprintf(k, sizeof(k), "%s/%s-key.pem", root, name);
    snprintf(c, sizeof(c), "%s/%s-cert.pem", root, name);
    snprintf(t, sizeof(t), "%s/%s.tmpl", root, name);
    snprintf(tmpl, sizeof(tmpl), "cn = \"%s\"\nca\ncert_signing_key\n"
             "crl_signing_key\nexpiration_days = 30\n", cn);
    const char *a[] = { "--generate-self-signed", "--load-privkey", k,
                        "--template", t, "--outfile", c, NULL };
    return write_file(t, tmpl) && key(k) && certtool(a);
}

/* @dir/@who-{key,cert}.pem signed by CA @ca, and @dir/ca-cert.pem a copy
 * of CA @trust's certificate. */
static bool make_leaf(const char *root, const char *dir, const char *who,
                      const char *ca, const char *trust, const char *tmpl)
{
    char d[512], k[600], c[600], t[600], cak[512], cac[512], tr[512], cp[600];
    snprintf(d, sizeof(d), "%s/%s", root, dir);
    mkdir(d, 0700);
    snprintf(k, sizeof(k), "%s/%s-key.pem", d, who);
    snprintf(c, sizeof(c), "%s/%s-cert.pem", d, who);
    snprintf(t, sizeof(t), "%s/%s.tmpl", d, who);
    snprintf(cak, sizeof(cak), "%s/%s-key.pem", root, ca);
    snprintf(cac, sizeof(cac), "%s/%s-cert.pem", root, ca);
    snprintf(tr, sizeof(tr), "%s/%s-cert.pem", root, trust);
    snprintf(cp, sizeof(cp), "%s/ca-cert.pem", d);
    const char *a[] = { "--generate-certificate", "--load-privkey", k,
                        "--load-ca-certificate", cac, "--load-ca-privkey",
                        cak, "--template", t, "--outfile", c,
                        key_password ? "--password" : NULL, key_password,
                        NULL };
    bool made = write_file(t, tmpl) && key(k);
    key_password = NULL;   /* the CA's key is never encrypted */
    if (!made || !certtool(a))
        return false;
    FILE *in = fopen(tr, "r"), *out = fopen(cp, "w");
    bool ok = in && out;
    char buf[4096];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        ok = false;
    return ok;
}

static bool psk_dir(const char *root, const char *dir, const char *keyhex)
{
    char d[512], f[600], line[256];
    snprintf(d, sizeof(d), "%s/%s", root, dir);
    mkdir(d, 0700);
    snprintf(f, sizeof(f), "%s/keys.psk", d);
    snprintf(line, sizeof(line), "qemu:%s\n", keyhex);
    return write_file(f, line);
}

bool tlsc_make(const char *root)
{
    if (!tlsc_certtool()) {
        printf("certtool is not installed (Debian package gnutls-bin)\n");
        return false;
    }
    static const char server[] =
        "cn = \"localhost\"\ndns_name = \"localhost\"\n"
        "ip_address = \"127.0.0.1\"\ntls_www_server\nencryption_key\n"
        "signing_key\nexpiration_days = 30\n";
    static const char expired[] =
        "cn = \"localhost\"\ndns_name = \"localhost\"\n"
        "ip_address = \"127.0.0.1\"\ntls_www_server\nencryption_key\n"
        "signing_key\nactivation_date = \"2020-01-01 00:00:00 UTC\"\n"
        "expiration_date = \"2021-01-01 00:00:00 UTC\"\n";
    static const char other[] =
        "cn = \"other.example\"\ndns_name = \"other.example\"\n"
        "tls_www_server\nencryption_key\nsigning_key\n"
        "expiration_days = 30\n";
    static const char client[] =
        "cn = \"source.example\"\norganization = \"Example\"\n"
        "tls_www_client\nencryption_key\nsigning_key\n"
        "expiration_days = 30\n";
    static const char intruder[] =
        "cn = \"intruder\"\norganization = \"Elsewhere\"\n"
        "tls_www_client\nencryption_key\nsigning_key\n"
        "expiration_days = 30\n";
    return make_ca(root, "good", "livemig test CA") &&
           make_ca(root, "other", "some other CA") &&
           make_leaf(root, "server", "server", "good", "good", server) &&
           make_leaf(root, "server-expired", "server", "good", "good",
                     expired) &&
           (key_password = TLSC_KEY_PASSWORD) &&
           make_leaf(root, "server-enc", "server", "good", "good", server) &&
           make_leaf(root, "server-other", "server", "good", "good", other) &&
           make_leaf(root, "client", "client", "good", "good", client) &&
           make_leaf(root, "client-intruder", "client", "good", "good",
                     intruder) &&
           make_leaf(root, "client-wrongca", "client", "other", "other",
                     client) &&
           psk_dir(root, "psk-server",
                   "9f1c2a7e5b3d4c6a8e0f1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f506") &&
           psk_dir(root, "psk-client",
                   "9f1c2a7e5b3d4c6a8e0f1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f506") &&
           psk_dir(root, "psk-wrong",
                   "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
}

int tlsc_group_setup(char *root, size_t len, const char *tag, bool *have)
{
    snprintf(root, len, "/tmp/livemig-%s-XXXXXX", tag);
    if (!mkdtemp(root))
        return -1;
    *have = tlsc_make(root);
    return 0;
}

int tlsc_group_teardown(const char *root)
{
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}
