/*
 * secure.c - puts the engine's migration connections under TLS when the
 * tls-creds parameter names a credentials object.
 *
 * Every channel of a migration (main stream with its return path, each
 * multifd channel, and any later one) is secured the same way: the source
 * calls lm_secure_client() right after connecting, the destination
 * lm_secure_server() right after accepting, both on the thread that owns
 * the connection (never the monitor's: a handshake may wait for seconds).
 *
 * A destination looks at the first bytes a client sends before anything
 * else: a TLS handshake record into a plain destination, or a plain
 * stream into a TLS destination, is refused with a return-path error in
 * plain bytes that the source shows as the reason (a plain source reads it
 * as the destination's error; a TLS source sees that the peer answered
 * without TLS).
 */
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "engine/engine-int.h"
#include "stream/stream.h"
#include "tls/tls.h"

#define HANDSHAKE_MS 10000
#define TLS_HANDSHAKE_RECORD 0x16

static void plain_refusal(const lm_conn *c, const char *msg)
{
    size_t n = strlen(msg);
    uint8_t b[3 + 256];
    if (n > 256)
        n = 256;
    b[0] = LM_RP_ERROR;
    lm_put_be16(b + 1, (uint16_t)n);
    memcpy(b + 3, msg, n);
    (void)lm_write_all(c->wfd, b, 3 + n);
}

static bool uri_is_socket(const char *uri)
{
    return strncmp(uri, "tcp:", 4) == 0 || strncmp(uri, "unix:", 5) == 0;
}

/* The host of a tcp: URI ("" for others), brackets of IPv6 removed. */
static void uri_host(const char *uri, char *out, size_t len)
{
    out[0] = '\0';
    if (strncmp(uri, "tcp:", 4) != 0)
        return;
    const char *h = uri + 4, *colon = strrchr(h, ':');
    if (!colon)
        return;
    size_t n = (size_t)(colon - h);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    snprintf(out, len, "%.*s", (int)n, h);
}

bool lm_secure_check(livemig *lm, const char *uri, bool incoming,
                     livemig_error *err)
{
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    if (!p.tls_creds[0]) {
        if (incoming && p.tls_authz[0]) {
            livemig_error_set(err, "tls-authz '%s' is set but tls-creds is "
                              "not; set tls-creds too, or clear tls-authz",
                              p.tls_authz);
            return false;
        }
        return true;
    }
    if (!uri_is_socket(uri)) {
        livemig_error_set(err, "TLS (tls-creds '%s') needs a tcp: or unix: "
                          "URI, not '%s'; clear tls-creds for it",
                          p.tls_creds, uri);
        return false;
    }
    lm_tls_creds *c = lm_objects_creds(lm->objects, p.tls_creds, err);
    if (!c)
        return false;
    bool ok = lm_tls_creds_is_server(c) == incoming;
    if (!ok)
        livemig_error_set(err, "tls-creds '%s' has endpoint '%s', but this "
                          "side %s; add credentials with endpoint '%s'",
                          p.tls_creds, incoming ? "client" : "server",
                          incoming ? "receives" : "sends",
                          incoming ? "server" : "client");
    if (ok && !incoming && lm_tls_creds_is_x509(c) &&
        lm_tls_creds_verify_peer(c) && !p.tls_hostname[0] &&
        strncmp(uri, "tcp:", 4) != 0) {
        livemig_error_set(err, "'%s' names no host to check the "
                          "destination's certificate against; set "
                          "tls-hostname", uri);
        ok = false;
    }
    lm_tls_creds_unref(c);
    if (ok && incoming && p.tls_authz[0]) {
        lm_tls_authz *a = lm_objects_authz(lm->objects, p.tls_authz, err);
        ok = a != NULL;
        lm_tls_authz_unref(a);
    }
    return ok;
}

bool lm_secure_client(livemig *lm, lm_conn *c, livemig_error *err)
{
    return lm_secure_client_to(lm, c, lm->uri, err);
}

bool lm_secure_client_to(livemig *lm, lm_conn *c, const char *uri,
                         livemig_error *err)
{
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    if (!p.tls_creds[0])
        return true;
    if (!c->is_socket) {
        livemig_error_set(err, "TLS needs a tcp: or unix: URI; clear "
                          "tls-creds for '%s'", uri);
        return false;
    }
    lm_tls_creds *cr = lm_objects_creds(lm->objects, p.tls_creds, err);
    if (!cr)
        return false;
    char host[256];
    if (p.tls_hostname[0])
        snprintf(host, sizeof(host), "%s", p.tls_hostname);
    else
        uri_host(uri, host, sizeof(host));
    c->tls = lm_tls_handshake(c->wfd, cr, NULL, host[0] ? host : NULL,
                              HANDSHAKE_MS, err);
    lm_tls_creds_unref(cr);
    return c->tls != NULL;
}

bool lm_secure_server(livemig *lm, lm_conn *c, livemig_error *err)
{
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    if (!c->is_socket)
        return true;   /* file: and exec: carry no TLS (refused at start) */
    uint8_t first = 0;
    ssize_t n = lm_conn_peek(c, &first, 1, HANDSHAKE_MS);
    bool peeked = n == 1;
    bool tls_hello = peeked && first == TLS_HANDSHAKE_RECORD;
    if (!peeked) {
        if (n == 0)
            livemig_error_set(err, "a client connected to the migration "
                              "port and closed it without sending anything");
        else
            livemig_error_set(err, "a client connected to the migration "
                              "port but sent nothing for %d ms; is it a "
                              "livemig source?", HANDSHAKE_MS);
        return false;
    }
    if (!p.tls_creds[0]) {
        if (tls_hello) {
            plain_refusal(c, "this destination does not use TLS (its "
                          "tls-creds is not set); clear tls-creds on the "
                          "source or set it on the destination");
            livemig_error_set(err, "a source connected with TLS, but "
                              "tls-creds is not set here; set tls-creds on "
                              "this destination or clear it on the source");
            return false;
        }
        return true;
    }
    if (!tls_hello) {
        plain_refusal(c, "this destination requires TLS; set tls-creds on "
                      "the source to credentials with endpoint 'client'");
        livemig_error_set(err, "a source connected without TLS, but this "
                          "destination requires it (tls-creds '%s'); set "
                          "tls-creds on the source", p.tls_creds);
        return false;
    }
    lm_tls_creds *cr = lm_objects_creds(lm->objects, p.tls_creds, err);
    if (!cr)
        return false;
    lm_tls_authz *az = NULL;
    if (p.tls_authz[0] &&
        !(az = lm_objects_authz(lm->objects, p.tls_authz, err))) {
        lm_tls_creds_unref(cr);
        return false;
    }
    c->tls = lm_tls_handshake(c->rfd, cr, az, NULL, HANDSHAKE_MS, err);
    lm_tls_creds_unref(cr);
    lm_tls_authz_unref(az);
    return c->tls != NULL;
}
