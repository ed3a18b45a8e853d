/*
 * tls-creds.c - tls-creds-x509 and tls-creds-psk: the files of 'dir'
 * loaded into GnuTLS credentials when the object is added, so a missing
 * file or a bad key is an object-add error, not a failed migration.
 *
 * File names are QEMU's, so a directory made for QEMU works as is.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/x509.h>

#include "tls/tls-int.h"

#define DEFAULT_PRIORITY "NORMAL"
/* PSK needs its key exchanges named; ECDHE-PSK first for forward secrecy. */
#define PSK_PRIORITY_SUFFIX ":+ECDHE-PSK:+DHE-PSK:+PSK"

void lm_tls_creds_unref(lm_tls_creds *c)
{
    if (!c || atomic_fetch_sub(&c->ref, 1) != 1)
        return;
    if (c->cert)
        gnutls_certificate_free_credentials(c->cert);
    if (c->psk_server)
        gnutls_psk_free_server_credentials(c->psk_server);
    if (c->psk_client)
        gnutls_psk_free_client_credentials(c->psk_client);
    free(c);
}

bool lm_tls_creds_is_server(const lm_tls_creds *c) { return c->server; }
bool lm_tls_creds_is_x509(const lm_tls_creds *c) { return c->x509; }
bool lm_tls_creds_verify_peer(const lm_tls_creds *c) { return c->verify_peer; }
const char *lm_tls_creds_id(const lm_tls_creds *c) { return c->id; }

static void path_of(char *out, size_t len, const char *dir, const char *f)
{
    snprintf(out, len, "%s/%s", dir, f);
}

static bool file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* The certificate at @path must be valid now (QEMU's sanity-check). */
static bool check_dates(const char *id, const char *path, livemig_error *err)
{
    gnutls_datum_t d;
    if (gnutls_load_file(path, &d) < 0) {
        livemig_error_set(err, "'%s': cannot read '%s'", id, path);
        return false;
    }
    gnutls_x509_crt_t crt;
    gnutls_x509_crt_init(&crt);
    int rc = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
    gnutls_free(d.data);
    bool ok = rc >= 0;
    if (!ok)
        livemig_error_set(err, "'%s': '%s' is not a PEM certificate: %s", id,
                          path, gnutls_strerror(rc));
    time_t now = time(NULL);
    if (ok && gnutls_x509_crt_get_expiration_time(crt) < now) {
        livemig_error_set(err, "'%s': the certificate '%s' has expired; "
                          "make a new one (or set sanity-check false to "
                          "load it anyway)", id, path);
        ok = false;
    }
    if (ok && gnutls_x509_crt_get_activation_time(crt) > now) {
        livemig_error_set(err, "'%s': the certificate '%s' is not valid "
                          "yet; check the clocks (or set sanity-check "
                          "false)", id, path);
        ok = false;
    }
    gnutls_x509_crt_deinit(crt);
    return ok;
}

static bool load_x509(lm_tls_creds *c, lm_objects *o, const char *dir,
                      const char *passwordid, bool sanity,
                      livemig_error *err)
{
    char ca[4096], crl[4096], cert[4096], key[4096];
    const char *who = c->server ? "server" : "client";
    path_of(ca, sizeof(ca), dir, "ca-cert.pem");
    path_of(crl, sizeof(crl), dir, "ca-crl.pem");
    char f[32];
    snprintf(f, sizeof(f), "%s-cert.pem", who);
    path_of(cert, sizeof(cert), dir, f);
    snprintf(f, sizeof(f), "%s-key.pem", who);
    path_of(key, sizeof(key), dir, f);

    int rc = gnutls_certificate_allocate_credentials(&c->cert);
    if (rc < 0) {
        livemig_error_set(err, "'%s': %s", c->id, gnutls_strerror(rc));
        return false;
    }
    if (!file_exists(ca)) {
        livemig_error_set(err, "'%s': the CA certificate '%s' is missing: "
                          "'dir' must hold ca-cert.pem", c->id, ca);
        return false;
    }
    rc = gnutls_certificate_set_x509_trust_file(c->cert, ca,
                                                GNUTLS_X509_FMT_PEM);
    if (rc <= 0) {
        livemig_error_set(err, "'%s': cannot load the CA certificate '%s': "
                          "%s", c->id, ca, rc < 0 ? gnutls_strerror(rc)
                                                  : "no certificate in it");
        return false;
    }
    if (file_exists(crl)) {
        rc = gnutls_certificate_set_x509_crl_file(c->cert, crl,
                                                  GNUTLS_X509_FMT_PEM);
        if (rc < 0) {
            livemig_error_set(err, "'%s': cannot load the revocation list "
                              "'%s': %s", c->id, crl, gnutls_strerror(rc));
            return false;
        }
    }
    bool have = file_exists(cert) && file_exists(key);
    if (!have && (c->server || file_exists(cert) || file_exists(key))) {
        livemig_error_set(err, "'%s': '%s' and '%s' are both needed for a "
                          "%s endpoint", c->id, cert, key, who);
        return false;
    }
    if (have) {
        char *pass = NULL;
        if (passwordid &&
            !(pass = lm_objects_secret(o, passwordid, c->id, err)))
            return false;
        if (sanity && !check_dates(c->id, cert, err)) {
            lm_secret_free(pass);
            return false;
        }
        rc = gnutls_certificate_set_x509_key_file2(
            c->cert, cert, key, GNUTLS_X509_FMT_PEM, pass, 0);
        lm_secret_free(pass);
        if (rc < 0) {
            livemig_error_set(err, "'%s': cannot load '%s' with '%s': %s%s",
                              c->id, cert, key, gnutls_strerror(rc),
                              rc == GNUTLS_E_DECRYPTION_FAILED ||
                              rc == GNUTLS_E_PK_DECRYPTION_FAILED
                                  ? "; check the secret 'passwordid' names"
                                  : "");
            return false;
        }
    }
    if (sanity && !check_dates(c->id, ca, err))
        return false;
    if (c->server)
        gnutls_certificate_set_known_dh_params(c->cert,
                                               GNUTLS_SEC_PARAM_MEDIUM);
    return true;
}

/* The hex key of @user in keys.psk ("user:hexkey" lines), as QEMU reads
 * it for a client. */
static bool psk_client_key(const char *path, const char *user, char *hex,
                           size_t len, livemig_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        livemig_error_set(err, "cannot read the PSK file '%s': %s; 'dir' "
                          "must hold keys.psk", path, strerror(errno));
        return false;
    }
    char line[1024];
    bool found = false;
    size_t ulen = strlen(user);
    while (!found && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, user, ulen) == 0 && line[ulen] == ':') {
            snprintf(hex, len, "%s", line + ulen + 1);
            found = true;
        }
    }
    explicit_bzero(line, sizeof(line));
    fclose(f);
    if (!found)
        livemig_error_set(err, "the PSK file '%s' has no key for username "
                          "'%s'; add a line '%s:HEXKEY'", path, user, user);
    return found;
}

static bool load_psk(lm_tls_creds *c, const char *dir, const char *user,
                     livemig_error *err)
{
    char path[4096];
    path_of(path, sizeof(path), dir, "keys.psk");
    int rc;
    if (c->server) {
        if (!file_exists(path)) {
            livemig_error_set(err, "'%s': the PSK file '%s' is missing: "
                              "'dir' must hold keys.psk", c->id, path);
            return false;
        }
        rc = gnutls_psk_allocate_server_credentials(&c->psk_server);
        if (rc >= 0)
            rc = gnutls_psk_set_server_credentials_file(c->psk_server, path);
        if (rc >= 0)
            gnutls_psk_set_server_known_dh_params(c->psk_server,
                                                  GNUTLS_SEC_PARAM_MEDIUM);
    } else {
        char hex[1024];
        if (!psk_client_key(path, user, hex, sizeof(hex), err))
            return false;
        gnutls_datum_t k = { (unsigned char *)hex, (unsigned)strlen(hex) };
        rc = gnutls_psk_allocate_client_credentials(&c->psk_client);
        if (rc >= 0)
            rc = gnutls_psk_set_client_credentials(c->psk_client, user, &k,
                                                   GNUTLS_PSK_KEY_HEX);
        explicit_bzero(hex, sizeof(hex));
    }
    if (rc < 0) {
        livemig_error_set(err, "'%s': cannot load the PSK file '%s': %s",
                          c->id, path, gnutls_strerror(rc));
        return false;
    }
    return true;
}

lm_tls_creds *lm_tls_creds_new(lm_objects *o, const char *type,
                               const char *id, json_object *args,
                               livemig_error *err)
{
    static const char *const x509_props[] = {
        "dir", "endpoint", "verify-peer", "priority", "passwordid",
        "sanity-check", NULL };
    static const char *const psk_props[] = {
        "dir", "endpoint", "verify-peer", "priority", "username", NULL };
    bool x509 = strcmp(type, "tls-creds-x509") == 0;
    const char *dir = NULL, *endpoint = "client", *priority = NULL;
    const char *passwordid = NULL, *username = "qemu";
    bool verify = true, sanity = true;
    if (!lm_props_known(args, type, x509 ? x509_props : psk_props, err) ||
        !lm_prop_str(args, type, "dir", true, &dir, err) ||
        !lm_prop_str(args, type, "endpoint", false, &endpoint, err) ||
        !lm_prop_str(args, type, "priority", false, &priority, err) ||
        !lm_prop_bool(args, type, "verify-peer", &verify, err) ||
        (x509 && (!lm_prop_str(args, type, "passwordid", false, &passwordid,
                               err) ||
                  !lm_prop_bool(args, type, "sanity-check", &sanity, err))) ||
        (!x509 && !lm_prop_str(args, type, "username", false, &username,
                               err)))
        return NULL;
    bool server = strcmp(endpoint, "server") == 0;
    if (!server && strcmp(endpoint, "client") != 0) {
        livemig_error_set(err, "'%s': 'endpoint' must be 'client' or "
                          "'server', not '%s'", id, endpoint);
        return NULL;
    }
    if (!x509 && (!username[0] || strchr(username, ':'))) {
        livemig_error_set(err, "'%s': 'username' must be non-empty and "
                          "without ':'", id);
        return NULL;
    }
    lm_tls_creds *c = calloc(1, sizeof(*c));
    if (!c) {
        livemig_error_set(err, "out of memory for '%s'", id);
        return NULL;
    }
    atomic_init(&c->ref, 1);
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->server = server;
    c->x509 = x509;
    c->verify_peer = verify;
    snprintf(c->priority, sizeof(c->priority), "%s%s",
             priority ? priority : DEFAULT_PRIORITY,
             x509 ? "" : PSK_PRIORITY_SUFFIX);
    /* The priority string is checked now, not at the first handshake. */
    gnutls_priority_t prio;
    const char *where = NULL;
    int rc = gnutls_priority_init(&prio, c->priority, &where);
    if (rc < 0) {
        livemig_error_set(err, "'%s': bad 'priority' '%s' near '%s': %s", id,
                          c->priority, where ? where : "", gnutls_strerror(rc));
        lm_tls_creds_unref(c);
        return NULL;
    }
    gnutls_priority_deinit(prio);
    bool ok = x509 ? load_x509(c, o, dir, passwordid, sanity, err)
                   : load_psk(c, dir, username, err);
    if (!ok) {
        lm_tls_creds_unref(c);
        return NULL;
    }
    return c;
}
