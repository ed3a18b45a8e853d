/*
 * tls-session.c - one connection's TLS session: the handshake, the peer
 * checks, and the record layer the stream reader and writer use.
 *
 * Peer checks run after the handshake, on both sides, so each side can
 * say exactly what it refused and tell the other with the matching TLS
 * alert (unknown_ca, certificate_expired, bad_certificate, access_denied);
 * the other side names the alert it got.  The first bytes received during
 * the handshake are kept: if they are not a TLS record, the peer does not
 * speak TLS and the error says so instead of GnuTLS's "unexpected packet".
 *
 * Writes: guest pages arrive as large iovecs and go straight to
 * gnutls_record_send, a full record (16 KiB) at a time; the small pieces
 * between them (record headers of the stream) are gathered into one
 * record so none of them costs a record of its own.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <gnutls/x509.h>

#include "tls/tls-int.h"

#define REC_MAX 16384u
#define HEAD_MAX 16u
#define IO_BUF (256u * 1024u)
#define RD_AHEAD 5u                /* a TLS record header */

struct lm_tls {
    gnutls_session_t s;
    int fd;
    lm_tls_creds *creds;
    lm_tls_authz *authz;
    bool handshaking;
    uint8_t head[HEAD_MAX];        /* first bytes received */
    size_t nhead;
    uint8_t *gather;               /* REC_MAX bytes of small pieces */
    size_t ngather;
    /* Receiving: the next record's header, read ahead with the body of
     * the one before, not yet given to GnuTLS. */
    uint8_t rbuf[RD_AHEAD];
    size_t rpos, rlen;
    /* Sending: encrypted records of one lm_tls_writev_all, sent together
     * (one sendmsg per IO_BUF instead of one per record). */
    uint8_t *wbuf;
    size_t wlen;
    bool batching;
    char rx_err[256], tx_err[256];
    char cipher[96];
};

/* ---- transport ---------------------------------------------------------- */

/* GnuTLS reads a record as its 5-byte header, then its body (up to
 * 16 KiB + 256) into a buffer of its own.  The body goes straight from
 * the socket into that buffer, and the same recvmsg reads ahead the next
 * record's header: one syscall per record and no copy of ours.  (Reading
 * ahead 256 KiB and copying out of it cost more CPU per byte than the
 * syscalls it saves.) */
static ssize_t pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    lm_tls *t = p;
    ssize_t n;
    if (t->rpos < t->rlen) {
        n = (ssize_t)(t->rlen - t->rpos < len ? t->rlen - t->rpos : len);
        memcpy(buf, t->rbuf + t->rpos, (size_t)n);
        t->rpos += (size_t)n;
    } else {
        size_t ahead = len > RD_AHEAD ? RD_AHEAD : 0;
        struct iovec v[2] = { { buf, len }, { t->rbuf, ahead } };
        struct msghdr mh = { .msg_iov = v, .msg_iovlen = ahead ? 2 : 1 };
        do
            n = recvmsg(t->fd, &mh, 0);
        while (n < 0 && errno == EINTR);
        if (n > (ssize_t)len) {
            t->rpos = 0;
            t->rlen = (size_t)n - len;
            n = (ssize_t)len;
        }
    }
    if (n < 0)
        gnutls_transport_set_errno(t->s, errno);
    else if (t->handshaking && t->nhead < HEAD_MAX) {
        size_t k = HEAD_MAX - t->nhead < (size_t)n ? HEAD_MAX - t->nhead
                                                   : (size_t)n;
        memcpy(t->head + t->nhead, buf, k);
        t->nhead += k;
    }
    return n;
}

static int pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
    lm_tls *t = p;
    if (t->rpos < t->rlen)
        return 1;
    struct pollfd pf = { .fd = t->fd, .events = POLLIN };
    int rc;
    do
        rc = poll(&pf, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -1 : rc;
}

static bool send_wbuf(lm_tls *t)
{
    size_t off = 0;
    while (off < t->wlen) {
        ssize_t n = send(t->fd, t->wbuf + off, t->wlen - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        off += (size_t)n;
    }
    t->wlen = 0;
    return true;
}

static ssize_t vec_push(gnutls_transport_ptr_t p, const giovec_t *iov,
                        int iovcnt)
{
    lm_tls *t = p;
    if (t->batching) {
        size_t total = 0;
        for (int i = 0; i < iovcnt; i++) {
            if (t->wlen + iov[i].iov_len > IO_BUF && !send_wbuf(t)) {
                gnutls_transport_set_errno(t->s, errno);
                return -1;
            }
            if (iov[i].iov_len > IO_BUF)
                break;   /* never: records are at most ~16 KiB */
            memcpy(t->wbuf + t->wlen, iov[i].iov_base, iov[i].iov_len);
            t->wlen += iov[i].iov_len;
            total += iov[i].iov_len;
        }
        if (total)
            return (ssize_t)total;
    }
    struct msghdr mh = { .msg_iov = (struct iovec *)iov,
                         .msg_iovlen = (size_t)iovcnt };
    ssize_t n;
    do
        n = sendmsg(t->fd, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        gnutls_transport_set_errno(t->s, errno);
    return n;
}

/* ---- errors ------------------------------------------------------------- */

static bool head_is_tls(const lm_tls *t)
{
    /* TLS content types: change_cipher_spec, alert, handshake, data. */
    return t->nhead == 0 || (t->head[0] >= 0x14 && t->head[0] <= 0x17);
}

static const char *alert_meaning(gnutls_alert_description_t a)
{
    switch (a) {
    case GNUTLS_A_UNKNOWN_CA:
        return "it does not trust the CA that signed this side's "
               "certificate; give both sides the same ca-cert.pem";
    case GNUTLS_A_CERTIFICATE_EXPIRED:
        return "it says this side's certificate has expired; make a new "
               "one";
    case GNUTLS_A_BAD_CERTIFICATE:
        return "it refused this side's certificate (not for the expected "
               "host name, or not valid yet)";
    case GNUTLS_A_CERTIFICATE_REVOKED:
        return "it says this side's certificate is revoked";
    case GNUTLS_A_ACCESS_DENIED:
        return "its tls-authz does not allow this side's certificate or "
               "PSK username";
    case GNUTLS_A_CERTIFICATE_REQUIRED:
        return "it requires a client certificate: put client-cert.pem and "
               "client-key.pem in this side's tls-creds 'dir'";
    case GNUTLS_A_DECRYPT_ERROR:
    case GNUTLS_A_BAD_RECORD_MAC:
    case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
    case GNUTLS_A_ILLEGAL_PARAMETER:
        return "the pre-shared key or username differs (PSK), or the "
               "handshake was tampered with";
    case GNUTLS_A_HANDSHAKE_FAILURE:
    case GNUTLS_A_INSUFFICIENT_SECURITY:
    case GNUTLS_A_PROTOCOL_VERSION:
        return "no common TLS version, cipher or credential type (x509 on "
               "one side and PSK on the other?)";
    default:
        return "see the peer's error for why";
    }
}

/* A GnuTLS failure @rc, in the user's terms, into @out. */
static void describe(lm_tls *t, int rc, char *out, size_t len)
{
    const char *psk = t->creds && !t->creds->x509
                          ? "; check that both sides hold the same key for "
                            "the same username in keys.psk"
                          : "";
    if (!head_is_tls(t)) {
        snprintf(out, len, "the peer does not speak TLS (it answered with "
                 "plain bytes): set tls-creds on both sides or on neither");
        return;
    }
    switch (rc) {
    case GNUTLS_E_FATAL_ALERT_RECEIVED: {
        gnutls_alert_description_t a = gnutls_alert_get(t->s);
        snprintf(out, len, "the peer refused the TLS session with the alert "
                 "'%s': %s", gnutls_alert_get_name(a), alert_meaning(a));
        return;
    }
    case GNUTLS_E_PREMATURE_TERMINATION:
    case GNUTLS_E_PULL_ERROR:
    case GNUTLS_E_PUSH_ERROR:
        snprintf(out, len, "the peer closed the connection during the TLS "
                 "handshake; is tls-creds set on it, and does it accept "
                 "these credentials (see its error)?");
        return;
    case GNUTLS_E_TIMEDOUT:
        snprintf(out, len, "the TLS handshake made no progress in time; the "
                 "peer does not answer TLS");
        return;
    case GNUTLS_E_DECRYPTION_FAILED:
    case GNUTLS_E_MAC_VERIFY_FAILED:
        snprintf(out, len, "a TLS record failed its integrity check: bytes "
                 "were changed or injected on the way%s", psk);
        return;
    case GNUTLS_E_NO_CERTIFICATE_FOUND:
    case GNUTLS_E_CERTIFICATE_REQUIRED:
        snprintf(out, len, "the peer sent no certificate signed by a CA in "
                 "this side's ca-cert.pem, but verify-peer requires one: "
                 "give it a certificate from this side's CA (wrong CA?)");
        return;
    default:
        snprintf(out, len, "TLS failed: %s%s", gnutls_strerror(rc), psk);
        return;
    }
}

/* The first failure is the cause; later calls only see the session it
 * invalidated. */
static void set_rc_error(lm_tls *t, int rc, char *buf, size_t len)
{
    if (!buf[0])
        describe(t, rc, buf, len);
}

/* ---- peer checks -------------------------------------------------------- */

/* Verify the peer's certificate chain (and @hostname on a client); false
 * with @err, after telling the peer with an alert. */
static bool verify_peer(lm_tls *t, const char *hostname, livemig_error *err)
{
    const char *peer = t->creds->server ? "the client's (source's)"
                                        : "the server's (destination's)";
    unsigned status = 0;
    int rc = gnutls_certificate_verify_peers3(t->s, hostname, &status);
    if (rc == GNUTLS_E_NO_CERTIFICATE_FOUND || rc == GNUTLS_E_INVALID_REQUEST) {
        livemig_error_set(err, "%s certificate is missing; give its "
                          "tls-creds 'dir' a certificate and key", peer);
        gnutls_alert_send(t->s, GNUTLS_AL_FATAL, GNUTLS_A_CERTIFICATE_REQUIRED);
        return false;
    }
    if (rc < 0) {
        livemig_error_set(err, "cannot verify %s certificate: %s", peer,
                          gnutls_strerror(rc));
        gnutls_alert_send(t->s, GNUTLS_AL_FATAL, GNUTLS_A_BAD_CERTIFICATE);
        return false;
    }
    if (status == 0)
        return true;
    gnutls_alert_description_t alert = GNUTLS_A_BAD_CERTIFICATE;
    if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) {
        livemig_error_set(err, "%s certificate is not signed by the CA in "
                          "this side's ca-cert.pem (wrong CA?); give both "
                          "sides certificates from the same CA", peer);
        alert = GNUTLS_A_UNKNOWN_CA;
    } else if (status & GNUTLS_CERT_EXPIRED) {
        livemig_error_set(err, "%s certificate has expired; make a new one",
                          peer);
        alert = GNUTLS_A_CERTIFICATE_EXPIRED;
    } else if (status & GNUTLS_CERT_NOT_ACTIVATED) {
        livemig_error_set(err, "%s certificate is not valid yet; check the "
                          "clocks of both hosts", peer);
    } else if (status & GNUTLS_CERT_REVOKED) {
        livemig_error_set(err, "%s certificate is revoked (ca-crl.pem)",
                          peer);
        alert = GNUTLS_A_CERTIFICATE_REVOKED;
    } else if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
        livemig_error_set(err, "%s certificate is not for host '%s'; set "
                          "tls-hostname to a name its certificate holds",
                          peer, hostname ? hostname : "");
    } else {
        gnutls_datum_t out = { NULL, 0 };
        gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509,
                                                     &out, 0);
        livemig_error_set(err, "%s certificate is not trusted: %s", peer,
                          out.data ? (const char *)out.data : "unknown");
        gnutls_free(out.data);
    }
    gnutls_alert_send(t->s, GNUTLS_AL_FATAL, alert);
    return false;
}

/* The name tls-authz judges: the client certificate's DN or the PSK
 * username. */
static bool peer_name(lm_tls *t, char *out, size_t len, livemig_error *err)
{
    if (!t->creds->x509) {
        const char *u = gnutls_psk_server_get_username(t->s);
        snprintf(out, len, "%s", u ? u : "");
        return true;
    }
    unsigned n = 0;
    const gnutls_datum_t *list = gnutls_certificate_get_peers(t->s, &n);
    gnutls_x509_crt_t crt;
    gnutls_datum_t dn = { NULL, 0 };
    bool ok = list && n > 0 && gnutls_x509_crt_init(&crt) >= 0;
    if (ok) {
        ok = gnutls_x509_crt_import(crt, &list[0], GNUTLS_X509_FMT_DER) >= 0 &&
             gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0;
        gnutls_x509_crt_deinit(crt);
    }
    if (!ok) {
        livemig_error_set(err, "tls-authz needs the client's certificate, "
                          "and it sent none; set verify-peer true on this "
                          "side's tls-creds");
        gnutls_alert_send(t->s, GNUTLS_AL_FATAL, GNUTLS_A_ACCESS_DENIED);
        return false;
    }
    snprintf(out, len, "%s", (const char *)dn.data);
    gnutls_free(dn.data);
    return true;
}

static bool authorize(lm_tls *t, livemig_error *err)
{
    char name[1024];
    if (!peer_name(t, name, sizeof(name), err))
        return false;
    if (lm_tls_authz_allows(t->authz, name))
        return true;
    livemig_error_set(err, "the client %s '%s' is not allowed by tls-authz "
                      "'%s'; add a rule that allows it", t->creds->x509
                          ? "certificate" : "PSK username",
                      name, t->authz->id);
    gnutls_alert_send(t->s, GNUTLS_AL_FATAL, GNUTLS_A_ACCESS_DENIED);
    return false;
}

/* ---- handshake ---------------------------------------------------------- */

void lm_tls_free(lm_tls *t)
{
    if (!t)
        return;
    if (t->s)
        gnutls_deinit(t->s);
    lm_tls_creds_unref(t->creds);
    lm_tls_authz_unref(t->authz);
    free(t->gather);
    free(t->wbuf);
    free(t);
}

static bool is_ip(const char *h)
{
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

lm_tls *lm_tls_handshake(int fd, lm_tls_creds *creds, lm_tls_authz *authz,
                         const char *hostname, int timeout_ms,
                         livemig_error *err)
{
    lm_tls *t = calloc(1, sizeof(*t));
    if (!t || !(t->gather = malloc(REC_MAX)) ||
        !(t->wbuf = malloc(IO_BUF))) {
        if (t)
            free(t->gather);
        free(t);
        livemig_error_set(err, "out of memory for a TLS session");
        return NULL;
    }
    t->fd = fd;
    t->creds = creds;
    atomic_fetch_add(&creds->ref, 1);
    if (authz) {
        t->authz = authz;
        atomic_fetch_add(&authz->ref, 1);
    }
    unsigned flags = (creds->server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
                     GNUTLS_NO_TICKETS;
    int rc = gnutls_init(&t->s, flags);
    if (rc >= 0)
        rc = gnutls_priority_set_direct(t->s, creds->priority, NULL);
    if (rc >= 0 && creds->x509)
        rc = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, creds->cert);
    else if (rc >= 0)
        rc = gnutls_credentials_set(t->s, GNUTLS_CRD_PSK,
                                    creds->server
                                        ? (void *)creds->psk_server
                                        : (void *)creds->psk_client);
    if (rc >= 0 && creds->x509 && creds->server && creds->verify_peer)
        gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
    if (rc >= 0 && !creds->server && hostname && hostname[0] &&
        !is_ip(hostname))
        rc = gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, hostname,
                                    strlen(hostname));
    if (rc < 0) {
        livemig_error_set(err, "cannot set up a TLS session with '%s': %s",
                          creds->id, gnutls_strerror(rc));
        lm_tls_free(t);
        return NULL;
    }
    gnutls_transport_set_ptr(t->s, t);
    gnutls_transport_set_pull_function(t->s, pull);
    gnutls_transport_set_pull_timeout_function(t->s, pull_timeout);
    gnutls_transport_set_vec_push_function(t->s, vec_push);
    gnutls_handshake_set_timeout(t->s, (unsigned)timeout_ms);

    t->handshaking = true;
    do
        rc = gnutls_handshake(t->s);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    t->handshaking = false;
    if (rc < 0) {
        char why[256];
        describe(t, rc, why, sizeof(why));
        /* Tell the peer why, so its error names the cause too. */
        if (rc != GNUTLS_E_FATAL_ALERT_RECEIVED && head_is_tls(t))
            gnutls_alert_send_appropriate(t->s, rc);
        livemig_error_set(err, "TLS handshake with the %s failed: %s",
                          creds->server ? "source" : "destination", why);
        lm_tls_free(t);
        return NULL;
    }
    bool ok = true;
    if (creds->x509 && creds->verify_peer)
        ok = verify_peer(t, creds->server ? NULL : hostname, err);
    if (ok && creds->server && authz)
        ok = authorize(t, err);
    if (!ok) {
        lm_tls_free(t);
        return NULL;
    }
    char *d = gnutls_session_get_desc(t->s);
    snprintf(t->cipher, sizeof(t->cipher), "%s", d ? d : "");
    gnutls_free(d);
    return t;
}

/* ---- record layer ------------------------------------------------------- */

static ssize_t fail(lm_tls *t, ssize_t rc, char *buf, size_t len)
{
    int saved = errno;
    if (rc == GNUTLS_E_AGAIN) {
        errno = EAGAIN;   /* a socket timeout expired */
        return -1;
    }
    if (rc == GNUTLS_E_PUSH_ERROR || rc == GNUTLS_E_PULL_ERROR) {
        /* The socket itself failed: errno says how, as without TLS. */
        errno = saved ? saved : EIO;
        return -1;
    }
    set_rc_error(t, (int)rc, buf, len);
    errno = EIO;
    return -1;
}

ssize_t lm_tls_recv(lm_tls *t, void *p, size_t len)
{
    for (;;) {
        ssize_t n = gnutls_record_recv(t->s, p, len);
        if (n >= 0)
            return n;
        if (n == GNUTLS_E_INTERRUPTED)
            continue;
        /* The stream ends with its own record: a missing close_notify is
         * an end of file for the layers above, which know if it came too
         * early. */
        if (n == GNUTLS_E_PREMATURE_TERMINATION)
            return 0;
        return fail(t, n, t->rx_err, sizeof(t->rx_err));
    }
}

ssize_t lm_tls_send(lm_tls *t, const void *p, size_t len)
{
    for (;;) {
        ssize_t n = gnutls_record_send(t->s, p, len > REC_MAX ? REC_MAX : len);
        if (n >= 0)
            return n;
        if (n == GNUTLS_E_INTERRUPTED)
            continue;
        return fail(t, n, t->tx_err, sizeof(t->tx_err));
    }
}

static bool send_all(lm_tls *t, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = lm_tls_send(t, p, len);
        if (n < 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool flush_gather(lm_tls *t)
{
    size_t n = t->ngather;
    t->ngather = 0;
    return send_all(t, t->gather, n);
}

static bool writev_records(lm_tls *t, struct iovec *iov, int iovcnt)
{
    for (int i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        /* Top up a started record first. */
        if (t->ngather) {
            size_t k = REC_MAX - t->ngather < len ? REC_MAX - t->ngather : len;
            memcpy(t->gather + t->ngather, p, k);
            t->ngather += k;
            p += k;
            len -= k;
            if (t->ngather == REC_MAX && !flush_gather(t))
                return false;
        }
        /* Whole records straight from the caller's memory. */
        size_t whole = len - len % REC_MAX;
        if (whole && !send_all(t, p, whole))
            return false;
        p += whole;
        len -= whole;
        if (len) {
            memcpy(t->gather, p, len);
            t->ngather = len;
        }
    }
    return t->ngather == 0 || flush_gather(t);
}

bool lm_tls_writev_all(lm_tls *t, struct iovec *iov, int iovcnt)
{
    t->batching = true;
    bool ok = writev_records(t, iov, iovcnt);
    t->batching = false;
    int e = errno;
    if (ok && t->wlen && !send_wbuf(t)) {
        e = errno == EAGAIN || errno == EWOULDBLOCK ? EAGAIN : errno;
        ok = false;
    }
    t->wlen = 0;
    errno = e;
    return ok;
}

size_t lm_tls_pending(lm_tls *t)
{
    return gnutls_record_check_pending(t->s) + (t->rlen - t->rpos);
}

const char *lm_tls_last_error(const lm_tls *t)
{
    return t->rx_err[0] ? t->rx_err : t->tx_err[0] ? t->tx_err : "";
}

const char *lm_tls_cipher(const lm_tls *t)
{
    return t->cipher;
}
